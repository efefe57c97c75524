#!/usr/bin/env python3
"""Independent references for the synthetic presets (`vzquant convert --preset`).

    tools/check_preset.py counts          writes Tests/VZQuantTests/Fixtures/presets/param_counts.json
    tools/check_preset.py verify PRESET TEXT.gguf MMPROJ.gguf [PRESET TEXT MMPROJ ...]

counts: builds each published architecture with transformers on the meta device (no memory, no download: the
configs are written out here from the models' config.json on the hub) and counts the parameters of exactly the
parts the GGUF files hold: the text model (+ lm_head unless tied), the vision tower up to LLaVA's feature layer
(llama.cpp drops the later layers and the unused post-layernorm), and the projector (+ image_newline for
LLaVA-NeXT). PresetTests compares SyntheticModel.plan against these numbers.

verify: reads written files with gguf-py's GGUFReader: every tensor dequantizes (gguf.quants) to finite values
of the expected size, norm weights are 1, 2-D weights have a std near 1/sqrt(row length), token count == vocab,
text tensor names are in gguf-py's own llama tensor map, and the metadata keys llama.cpp needs are present.
Exits 1 on any problem. Needs: torch, transformers (counts); gguf, numpy (verify).
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "Tests/VZQuantTests/Fixtures/presets/param_counts.json")

VICUNA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5)
VICUNA_13B = dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                  num_key_value_heads=40, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5)
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                    rms_norm_eps=1e-5, tie_word_embeddings=True)
CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
SIGLIP_B16_512 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=512, patch_size=16, hidden_act="gelu_pytorch_tanh")


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def text_count(cfg: dict, tied: bool) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM
    import torch
    with torch.device("meta"):
        m = LlamaForCausalLM(LlamaConfig(**{**cfg, "tie_word_embeddings": tied}))
    # parameters() yields a tied weight once
    return n_params(m)


def clip_count(cfg: dict, feature_layer: int) -> int:
    from transformers import CLIPVisionConfig, CLIPVisionModel
    import torch
    kept = cfg["num_hidden_layers"] + 1 + feature_layer
    with torch.device("meta"):
        m = CLIPVisionModel(CLIPVisionConfig(**{**cfg, "num_hidden_layers": kept}))
    # transformers 5 puts the tower's modules on the model itself, 4.x under .vision_model
    tower = getattr(m, "vision_model", m)
    return n_params(m) - n_params(tower.post_layernorm)


def full_clip_count(cfg: dict) -> int:
    from transformers import CLIPVisionConfig, CLIPVisionModel
    import torch
    with torch.device("meta"):
        return n_params(CLIPVisionModel(CLIPVisionConfig(**cfg)))


def llava_projector_count(vision_hidden: int, text_hidden: int) -> int:
    from transformers import LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
    import torch
    cfg = LlavaConfig(vision_config=dict(model_type="clip_vision_model", hidden_size=vision_hidden, num_attention_heads=16),
                      text_config=dict(model_type="llama", hidden_size=text_hidden))
    with torch.device("meta"):
        return n_params(LlavaMultiModalProjector(cfg))


def idefics3_vision_and_connector(vision: dict, text_hidden: int, scale: int) -> tuple[int, int]:
    from transformers import Idefics3Config
    from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector, Idefics3VisionTransformer
    import torch
    cfg = Idefics3Config(vision_config=vision, text_config=dict(model_type="llama", hidden_size=text_hidden),
                         scale_factor=scale)
    with torch.device("meta"):
        return n_params(Idefics3VisionTransformer(cfg.vision_config)), n_params(Idefics3Connector(cfg))


QWEN25_VL_3B_TEXT = dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                         intermediate_size=11008, vocab_size=151936, max_position_embeddings=128000, rms_norm_eps=1e-6,
                         tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6})
QWEN25_VL_3B_VISION = dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=2048,
                           window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
QWEN2_VL_2B_TEXT = dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                        intermediate_size=8960, vocab_size=151936, max_position_embeddings=32768, rms_norm_eps=1e-6,
                        tie_word_embeddings=True,
                        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6})
QWEN2_VL_2B_VISION = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536)


def qwen_vl_counts(v25: bool) -> dict:
    """Text (language model + lm_head, tied) and mmproj (the visual module: tower and merger)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    config_class, model_class = (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration) if v25 else (Qwen2VLConfig, Qwen2VLForConditionalGeneration)
    text, vision = (QWEN25_VL_3B_TEXT, QWEN25_VL_3B_VISION) if v25 else (QWEN2_VL_2B_TEXT, QWEN2_VL_2B_VISION)
    with torch.device("meta"):
        m = model_class(config_class(text_config=text, vision_config=vision, tie_word_embeddings=True))
    total, visual = n_params(m), n_params(m.model.visual)
    return {"text": total - visual, "mmproj": visual, "total": total}


def counts() -> None:
    clip = clip_count(CLIP_L_336, -2)
    smol_vision, smol_connector = idefics3_vision_and_connector(SIGLIP_B16_512, 576, 4)
    out = {
        "_source": "tools/check_preset.py counts (transformers modules on the meta device)",
        "llava-1.5-7b": {"text": text_count(VICUNA_7B, False), "mmproj": clip + llava_projector_count(1024, 4096)},
        "llava-1.5-13b": {"text": text_count(VICUNA_13B, False), "mmproj": clip + llava_projector_count(1024, 5120)},
        "llava-next-7b": {"text": text_count(VICUNA_7B, False),
                          "mmproj": clip + llava_projector_count(1024, 4096) + 4096},
        "smolvlm-256m": {"text": text_count({**SMOLLM2_135M, "vocab_size": 49280}, False),
                         "mmproj": smol_vision + smol_connector},
        "qwen2.5-vl-3b": qwen_vl_counts(True),
        "qwen2-vl-2b": qwen_vl_counts(False),
        # references from the model cards' totals, to tie the above to published numbers
        "smollm2-135m-text": text_count(SMOLLM2_135M, True),
        "clip-vit-l-14-336-full-tower": full_clip_count(CLIP_L_336),
    }
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(out, indent=1, sort_keys=True))


# -------------------------------------------------------------------------------------------------- verify
def verify(preset: str, text_path: str, mmproj_path: str) -> list[str]:
    import gguf
    errors: list[str] = []

    def field(r, key):
        f = r.fields.get(key)
        if f is None:
            errors.append(f"{r.path if hasattr(r, 'path') else ''}: missing key {key}")
            return None
        return f.contents()

    def check_tensors(label, r):
        for t in r.tensors:
            data = np.asarray(gguf.quants.dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32).reshape(-1)
            if data.size != int(np.prod(t.shape)):
                errors.append(f"{label}: {t.name} has {data.size} values, shape {list(t.shape)}")
            if not np.all(np.isfinite(data)):
                errors.append(f"{label}: {t.name} has non-finite values")
            if t.name.endswith("norm.weight") or t.name.endswith("ln1.weight") or t.name.endswith("ln2.weight") \
                    or t.name.endswith("_ln.weight"):
                if not np.all(data == 1):
                    errors.append(f"{label}: {t.name} is not all ones")
            elif len(t.shape) == 2 and not t.name.startswith("v.position"):
                want = 1 / np.sqrt(int(t.shape[0]))
                got = float(data.std())
                if not (0.8 * want < got < 1.25 * want):
                    errors.append(f"{label}: {t.name} std {got:.4g}, expected about {want:.4g}")

    r = gguf.GGUFReader(text_path)
    if field(r, "general.name") != preset:
        errors.append(f"{text_path}: general.name is not {preset}")
    if field(r, "vzquant.synthetic") is not True:
        errors.append(f"{text_path}: vzquant.synthetic is not true")
    arch = field(r, "general.architecture")
    for k in ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
              "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base", "vocab_size"]:
        field(r, f"{arch}.{k}")
    tokens = field(r, "tokenizer.ggml.tokens") or []
    vocab = field(r, f"{arch}.vocab_size")
    if len(tokens) != vocab or len(field(r, "tokenizer.ggml.scores") or []) != vocab \
            or len(field(r, "tokenizer.ggml.token_type") or []) != vocab:
        errors.append(f"{text_path}: tokenizer arrays are not {vocab} long")
    embd = next(t for t in r.tensors if t.name == "token_embd.weight")
    if int(embd.shape[1]) != vocab:
        errors.append(f"{text_path}: token_embd has {embd.shape[1]} rows, vocab {vocab}")
    # names: every tensor must be one gguf-py's llama tensor map knows
    n_blocks = field(r, f"{arch}.block_count")
    known = set()
    for t, name in gguf.TENSOR_NAMES.items():
        if t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.LLAMA]:
            known.update([name.format(bid=b) + ".weight" for b in range(n_blocks)] if "{bid}" in name else [name + ".weight"])
    for t in r.tensors:
        if t.name not in known:
            errors.append(f"{text_path}: tensor {t.name} is not in gguf-py's llama tensor map")
    check_tensors(text_path, r)

    m = gguf.GGUFReader(mmproj_path)
    for k in ["general.architecture", "clip.projector_type", "clip.vision.image_size", "clip.vision.patch_size",
              "clip.vision.embedding_length", "clip.vision.feed_forward_length", "clip.vision.block_count",
              "clip.vision.attention.head_count", "clip.vision.attention.layer_norm_epsilon", "clip.vision.image_mean",
              "clip.vision.image_std", "vzquant.vision.family", "vzquant.synthetic"]:
        field(m, k)
    blocks = field(m, "clip.vision.block_count")
    names = {t.name for t in m.tensors}
    for b in range(blocks or 0):
        for s in ["attn_q", "attn_k", "attn_v", "attn_out", "ln1", "ln2", "ffn_up", "ffn_down"]:
            for w in ["weight", "bias"]:
                if f"v.blk.{b}.{s}.{w}" not in names:
                    errors.append(f"{mmproj_path}: missing v.blk.{b}.{s}.{w}")
    if f"v.blk.{blocks}.attn_q.weight" in names:
        errors.append(f"{mmproj_path}: more blocks than clip.vision.block_count")
    check_tensors(mmproj_path, m)
    n_params = sum(int(np.prod(t.shape)) for t in r.tensors), sum(int(np.prod(t.shape)) for t in m.tensors)
    print(f"{preset}: text {len(r.tensors)} tensors {n_params[0]} params, mmproj {len(m.tensors)} tensors "
          f"{n_params[1]} params, {len(tokens)} tokens")
    return errors


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "counts":
        counts()
        return
    if len(sys.argv) >= 5 and sys.argv[1] == "verify" and (len(sys.argv) - 2) % 3 == 0:
        errors = []
        args = sys.argv[2:]
        for i in range(0, len(args), 3):
            errors += verify(*args[i:i + 3])
        for e in errors:
            print("FAIL", e)
        print("ok" if not errors else f"{len(errors)} problems")
        sys.exit(1 if errors else 0)
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
