#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers for the model-graph features of ModelGraphTests.swift.

Writes Tests/VZQuantTests/Fixtures/models/graph/ (override with --out):

  idefics3_s{2,3}.*   a tiny random Idefics3Connector (transformers' SmolVLM connector): random vision features
                      [G*G, width] of a G x G patch grid, its pixel_shuffle output and the connector output; plus
                      idefics3_s{2,3}.gguf, the connector as llama.cpp names it (clip.projector_type "idefics3",
                      clip.vision.projector.scale_factor, mm.model.fc.weight), written with the gguf package.
  shuffle_4x6_s2.*    a non-square 4 x 6 grid shuffled by an independent numpy formula (transformers only takes
                      square grids; the formula is checked against transformers' pixel_shuffle on the squares).
  llava_linear1.bin   LLaVA's projector first layer alone (multi_modal_projector.linear_1) on the tiny LLaVA's
                      feature layer (Fixtures/models/llava/feature_hidden.bin without CLS): the "linear" projector.

  pruned.gguf, pruned_*  a tiny random LlamaForCausalLM (4 heads, 2 KV heads, FFN 64, 3 layers) structurally
                      pruned per layer — heads [2, 2, 4], KV heads [2, 1, 2], FFN [48, 64, 32] — written as a llama
                      GGUF with per-layer arrays (head_count, head_count_kv, feed_forward_length), Q/K rows permuted
                      as llama.cpp's converter does. Reference logits come from the unpruned model with the removed
                      heads' o_proj columns and removed neurons' down_proj columns zeroed; the script checks they
                      equal a physically pruned torch model's.
  rope_{linear,yarn}  logits of tiny random LlamaForCausalLM checkpoints with rope_parameters linear (factor 2) and
                      yarn (factor 4, original context 256), saved (F16) to Fixtures/hf/llama-rope-{linear,yarn}
                      with the tiny LLaVA's tokenizer, for the converter to turn into GGUF with rope.scaling keys.

Every array is one raw little-endian float32 file (int32 for token ids); manifest.json lists name, shape, file and how it was made.
Seeded and deterministic. Needs torch, transformers, gguf, numpy.
"""
import argparse
import json
import os

import gguf
import numpy as np
import torch
import copy
import shutil

from transformers import Idefics3Config, LlamaConfig, LlamaForCausalLM, LlavaForConditionalGeneration
from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "VZQuantTests", "Fixtures")


class Recorder:
    def __init__(self, out):
        self.out = out
        self.entries = []
        os.makedirs(out, exist_ok=True)

    def add(self, name, array, description):
        a = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
        a.tofile(os.path.join(self.out, name + ".bin"))
        self.entries.append({"name": name, "dtype": "float32", "shape": list(a.shape), "file": name + ".bin",
                             "description": description})

    def add_ids(self, name, ids, description):
        a = np.ascontiguousarray(np.asarray(ids, dtype=np.int32))
        a.tofile(os.path.join(self.out, name + ".bin"))
        self.entries.append({"name": name, "dtype": "int32", "shape": list(a.shape), "file": name + ".bin",
                             "description": description})

    def note(self, name, file, description):
        self.entries.append({"name": name, "file": file, "description": description})

    def finish(self):
        with open(os.path.join(self.out, "manifest.json"), "w") as f:
            json.dump(self.entries, f, indent=1)
            f.write("\n")


def shuffle_formula(x, rows, cols, s):
    """[rows*cols, D] raster patches -> [(rows/s)*(cols/s), s*s*D]: group (i, j) holds patches (i*s + r, j*s + c),
    r outer, c inner. Written from the layout, not from transformers' code; checked against it on squares."""
    d = x.shape[-1]
    g = x.reshape(rows // s, s, cols // s, s, d)      # [i, r, j, c, D]
    g = g.transpose(0, 2, 1, 3, 4)                     # [i, j, r, c, D]
    return g.reshape((rows // s) * (cols // s), s * s * d)


def idefics3(rec, out, s, grid, width, text_width, seed):
    torch.manual_seed(seed)
    config = Idefics3Config(scale_factor=s,
                            vision_config={"hidden_size": width, "num_attention_heads": 4},
                            text_config={"hidden_size": text_width, "num_attention_heads": 4, "model_type": "llama"})
    connector = Idefics3Connector(config).eval()
    torch.nn.init.normal_(connector.modality_projection.proj.weight, std=0.2)
    features = torch.randn(1, grid * grid, width)
    with torch.no_grad():
        shuffled = connector.pixel_shuffle(features, s)
        output = connector(features)
    assert np.array_equal(shuffled[0].numpy(), shuffle_formula(features[0].numpy(), grid, grid, s))
    name = f"idefics3_s{s}"
    rec.add(f"{name}_features", features[0], f"torch.randn [{grid}*{grid}, {width}] patch features, raster order")
    rec.add(f"{name}_shuffled", shuffled[0], f"Idefics3Connector.pixel_shuffle(features, {s}) [{(grid // s) ** 2}, {width * s * s}]")
    rec.add(f"{name}_output", output[0], f"Idefics3Connector(features) = proj(pixel_shuffle(features)) [{(grid // s) ** 2}, {text_width}]")

    w = gguf.GGUFWriter(os.path.join(out, name + ".gguf"), "clip")
    w.add_string("clip.projector_type", "idefics3")
    w.add_uint32("clip.vision.projector.scale_factor", s)
    w.add_uint32("clip.vision.embedding_length", width)
    w.add_tensor("mm.model.fc.weight", connector.modality_projection.proj.weight.detach().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    rec.note(name + ".gguf", name + ".gguf", f"the connector's weight as mm.model.fc.weight (F32) with llama.cpp's keys, scale factor {s}")


# MARK: - pruned Llama

PRUNE_KEEP_HEADS = [[0, 2], [0, 1], [0, 1, 2, 3]]     # query heads kept per layer
PRUNE_KEEP_KV = [[0, 1], [0], [0, 1]]                  # key/value heads kept per layer
PRUNE_FFN = [48, 64, 32]                               # FFN neurons kept per layer (the first n of a permutation)


def llama_permute(w, heads):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute: rotary halves -> adjacent pairs, per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def pruned_llama(rec, out):
    torch.manual_seed(4)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                         rms_norm_eps=1e-5, tie_word_embeddings=False, attn_implementation="eager")
    full = LlamaForCausalLM(config).eval()
    for p in full.parameters():
        torch.nn.init.normal_(p, std=0.3) if p.dim() > 1 else torch.nn.init.uniform_(p, 0.8, 1.2)
    hd, group = 8, 2
    neurons = [torch.randperm(64, generator=torch.Generator().manual_seed(10 + l))[:n].sort().values
               for l, n in enumerate(PRUNE_FFN)]

    # The reference: the unpruned model with the removed parts' outputs zeroed.
    zeroed = copy.deepcopy(full)
    physical = copy.deepcopy(full)
    for l in range(3):
        z = zeroed.model.layers[l]
        with torch.no_grad():
            for h in range(4):
                if h not in PRUNE_KEEP_HEADS[l]:
                    z.self_attn.o_proj.weight[:, h * hd:(h + 1) * hd] = 0
            mask = torch.ones(64, dtype=torch.bool)
            mask[neurons[l]] = False
            z.mlp.down_proj.weight[:, mask] = 0
        # Kept query heads must still read the key/value head they read before (h // group).
        kv_of = {h: PRUNE_KEEP_KV[l].index(h // group) for h in PRUNE_KEEP_HEADS[l]}
        assert all(kv_of[h] == i // (len(PRUNE_KEEP_HEADS[l]) // len(PRUNE_KEEP_KV[l]))
                   for i, h in enumerate(PRUNE_KEEP_HEADS[l]))
        # The physically pruned layer, in torch.
        a, m = physical.model.layers[l].self_attn, physical.model.layers[l].mlp
        qrows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in PRUNE_KEEP_HEADS[l]])
        kvrows = torch.cat([torch.arange(g * hd, (g + 1) * hd) for g in PRUNE_KEEP_KV[l]])
        def linear(w):
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight = torch.nn.Parameter(w.clone())
            return lin
        a.q_proj, a.k_proj, a.v_proj = linear(a.q_proj.weight[qrows]), linear(a.k_proj.weight[kvrows]), linear(a.v_proj.weight[kvrows])
        a.o_proj = linear(a.o_proj.weight[:, qrows])
        a.num_key_value_groups = len(PRUNE_KEEP_HEADS[l]) // len(PRUNE_KEEP_KV[l])
        m.gate_proj, m.up_proj = linear(m.gate_proj.weight[neurons[l]]), linear(m.up_proj.weight[neurons[l]])
        m.down_proj = linear(m.down_proj.weight[:, neurons[l]])

    ids = torch.tensor([[1, 17, 5, 33, 60, 2, 9, 41, 12, 7]])
    with torch.no_grad():
        ref = zeroed(ids).logits[0]
        phys = physical(ids).logits[0]
    err = (ref - phys).abs().max().item()
    assert err < 1e-5, err
    rec.add_ids("pruned_input_ids", ids[0], "token ids fed to the pruned model [10]")
    rec.add("pruned_logits", ref, f"zeroed-unpruned LlamaForCausalLM(ids).logits [10, 64]; physically pruned torch model agrees to {err:.1e}")

    w = gguf.GGUFWriter(os.path.join(out, "pruned.gguf"), "llama")
    w.add_block_count(3)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_key_value("llama.feed_forward_length", PRUNE_FFN, gguf.GGUFValueType.ARRAY)
    w.add_key_value("llama.attention.head_count", [len(h) for h in PRUNE_KEEP_HEADS], gguf.GGUFValueType.ARRAY)
    w.add_key_value("llama.attention.head_count_kv", [len(g) for g in PRUNE_KEEP_KV], gguf.GGUFValueType.ARRAY)
    w.add_uint32("llama.attention.key_length", hd)
    w.add_uint32("llama.attention.value_length", hd)
    w.add_uint32("llama.rope.dimension_count", hd)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    f32 = lambda t: t.detach().numpy().astype(np.float32)
    w.add_tensor("token_embd.weight", f32(physical.model.embed_tokens.weight))
    for l in range(3):
        layer = physical.model.layers[l]
        a, m = layer.self_attn, layer.mlp
        heads, kv = len(PRUNE_KEEP_HEADS[l]), len(PRUNE_KEEP_KV[l])
        w.add_tensor(f"blk.{l}.attn_norm.weight", f32(layer.input_layernorm.weight))
        w.add_tensor(f"blk.{l}.attn_q.weight", llama_permute(f32(a.q_proj.weight), heads))
        w.add_tensor(f"blk.{l}.attn_k.weight", llama_permute(f32(a.k_proj.weight), kv))
        w.add_tensor(f"blk.{l}.attn_v.weight", f32(a.v_proj.weight))
        w.add_tensor(f"blk.{l}.attn_output.weight", f32(a.o_proj.weight))
        w.add_tensor(f"blk.{l}.ffn_norm.weight", f32(layer.post_attention_layernorm.weight))
        w.add_tensor(f"blk.{l}.ffn_gate.weight", f32(m.gate_proj.weight))
        w.add_tensor(f"blk.{l}.ffn_up.weight", f32(m.up_proj.weight))
        w.add_tensor(f"blk.{l}.ffn_down.weight", f32(m.down_proj.weight))
    w.add_tensor("output_norm.weight", f32(physical.model.norm.weight))
    w.add_tensor("output.weight", f32(physical.lm_head.weight))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    rec.note("pruned.gguf", "pruned.gguf", "the physically pruned model as a llama GGUF with per-layer arrays (F32)")


# MARK: - RoPE scaling

def rope_scaled_llama(rec, name, rope):
    torch.manual_seed(5)
    config = LlamaConfig(vocab_size=401, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                         rms_norm_eps=1e-5, tie_word_embeddings=False, rope_parameters=rope,
                         bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3) if p.dim() > 1 else torch.nn.init.uniform_(p, 0.8, 1.2)
    target = os.path.join(FIXTURES, "hf", f"llama-{name}")
    shutil.rmtree(target, ignore_errors=True)
    model.to(torch.float16).save_pretrained(target)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(FIXTURES, "hf", "llava-4x", f), target)
    # The reference: the saved F16 checkpoint loaded back in float32 (converting the live model would also round
    # its rotary inverse-frequency buffer to fp16).
    model = LlamaForCausalLM.from_pretrained(target, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor([[1, 17, 5, 33, 260, 2, 9, 41, 312, 7, 100, 55, 3, 250]])
    with torch.no_grad():
        logits = model(ids).logits[0]
    rec.add_ids(f"{name}_input_ids", ids[0], "token ids [14]")
    rec.add(f"{name}_logits", logits, f"LlamaForCausalLM with rope_parameters {rope}: logits [14, 401]")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(FIXTURES, "models", "graph"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rec = Recorder(args.out)

    # Projectors.
    idefics3(rec, args.out, s=2, grid=6, width=32, text_width=48, seed=1)
    idefics3(rec, args.out, s=3, grid=6, width=32, text_width=40, seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4 * 6, 8)).astype(np.float32)
    rec.add("shuffle_4x6_s2_features", x, "numpy standard normal [4*6, 8] patches of a 4 x 6 grid, raster order")
    rec.add("shuffle_4x6_s2_shuffled", shuffle_formula(x, 4, 6, 2), "shuffle_formula(features, 4, 6, 2) [2*3, 32]")

    llava = LlavaForConditionalGeneration.from_pretrained(os.path.join(FIXTURES, "hf", "llava-4x"), dtype=torch.float32).eval()
    features = np.fromfile(os.path.join(FIXTURES, "models", "llava", "feature_hidden.bin"), dtype=np.float32)
    features = torch.from_numpy(features.reshape(-1, llava.config.vision_config.hidden_size))
    with torch.no_grad():
        linear = llava.model.multi_modal_projector.linear_1(features[1:])
    rec.add("llava_linear1", linear, "llava-4x multi_modal_projector.linear_1(models/llava/feature_hidden[1:]) [16, 64]")

    pruned_llama(rec, args.out)
    rope_scaled_llama(rec, "rope-linear", {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    rope_scaled_llama(rec, "rope-yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
                                         "beta_fast": 32.0, "beta_slow": 1.0, "rope_theta": 10000.0})

    rec.finish()


if __name__ == "__main__":
    main()
