#!/usr/bin/env python3
"""Reference activations from Hugging Face transformers for vzquant's Swift model graph and VisionZip.

Writes one directory per model under OUT (default Tests/VZQuantTests/Fixtures/models):

  llava/      LlavaForConditionalGeneration from Fixtures/hf/llava-4x (F16 on disk, run in float32):
              pixel values, every CLIP hidden state and attention map, the feature layer (vision_feature_layer
              = -2) with its k_proj output, the projector output, LLM prefill logits with the image spliced in,
              3 cached greedy decode steps, and text-only logits.
  visionzip/  VisionZip (see /work/shared/visionzip.md) computed here, from the spec, on the LLaVA feature
              layer for budgets (D, C) = (4,2) (6,3) (17,0) (1,4), plus a hand-made input with exact ties.
  qwen2/      Qwen2ForCausalLM from Fixtures/hf/qwen2 (F32): prefill logits and 3 cached greedy decode steps.
  siglip/     a tiny random SiglipVisionModel built here (its checkpoint is saved to Fixtures/hf/siglip).
  dinov2/     a tiny random Dinov2Model with layer scale built here (checkpoint saved to Fixtures/hf/dinov2),
              run at its native 28x28 and at 35x49, where the position embeddings are interpolated.

Every array is one raw little-endian file (float32, or int32 for token ids and indices), batch dimension
dropped; manifest.json in each directory lists name, dtype, shape, file and how the array was obtained.
Everything is seeded, single-threaded and run with torch.use_deterministic_algorithms(True): re-running with
the same torch and transformers reproduces the same bytes (--check runs twice into temporary directories and
compares).

Needs: pip install --find-links /opt/wheels 'torch==2.13.0+cpu' 'transformers==5.23.0' safetensors
"""
import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import (
    AutoTokenizer,
    Dinov2Config,
    Dinov2Model,
    LlavaForConditionalGeneration,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "VZQuantTests", "Fixtures")

# OpenAI CLIP normalisation (what CLIPImageProcessor uses for LLaVA-1.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

DECODE_STEPS = 3


# MARK: - Output


class Recorder:
    """Collects arrays for one model directory and writes them with their manifest."""

    def __init__(self, name: str, **meta):
        self.name = name
        self.meta = meta
        self.arrays = []  # (name, np.ndarray, description, extra)

    def add(self, name: str, value, description: str, **extra) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if value.dtype.kind in "iu":
            assert value.size == 0 or (value.min() >= -(2**31) and value.max() < 2**31), name
            value = value.astype("<i4")
        else:
            value = value.astype("<f4")
        assert np.all(np.isfinite(value)) if value.dtype.kind == "f" else True, f"{name}: non-finite values"
        assert all(a[0] != name for a in self.arrays), f"duplicate array {name}"
        self.arrays.append((name, np.ascontiguousarray(value), description, extra))
        return value

    def write(self, out_root: str) -> None:
        d = os.path.join(out_root, self.name)
        if os.path.isdir(d):  # only files this script writes live here
            for f in os.listdir(d):
                if f.endswith(".bin") or f == "manifest.json":
                    os.remove(os.path.join(d, f))
        os.makedirs(d, exist_ok=True)
        entries = []
        for name, value, description, extra in self.arrays:
            file = name + ".bin"
            with open(os.path.join(d, file), "wb") as fh:
                fh.write(value.tobytes(order="C"))
            entry = {
                "name": name,
                "dtype": "float32" if value.dtype.kind == "f" else "int32",
                "shape": list(value.shape),
                "file": file,
                "description": description,
            }
            entry.update(extra)
            entries.append(entry)
        manifest = {
            "format": 1,
            "generator": "tools/make_model_references.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "model": self.name,
        }
        manifest.update(self.meta)
        manifest["arrays"] = entries
        with open(os.path.join(d, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, ensure_ascii=False)
            fh.write("\n")


def np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def top2_margin(row) -> float:
    """Gap between the largest and second largest logit: how safe an argmax comparison is."""
    v = np.sort(np.asarray(row, dtype=np.float64))
    return float(v[-1] - v[-2])


def argmax_first(row) -> int:
    row = np.asarray(row)
    return int(np.flatnonzero(row == row.max())[0])


def clip_pixels(height: int, width: int, seed_offset: int = 0) -> torch.Tensor:
    """A deterministic RGB uint8 test pattern (stripes, a gradient and a checker) normalised with CLIP's mean
    and std in float32, as CLIPImageProcessor would after resizing: shape [1, 3, H, W]."""
    y = np.arange(height).reshape(height, 1)
    x = np.arange(width).reshape(1, width)
    r = (x * 7 + y * 3 + seed_offset * 11) % 256
    g = (y * 8 + ((x // 4 + y // 4) % 2) * 90 + seed_offset * 5) % 256
    b = (x * y + 40 * ((x + 2 * y) % 5)) % 256
    rgb = np.stack([r, g, b]).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(CLIP_STD, dtype=np.float32).reshape(3, 1, 1)
    return torch.from_numpy(((rgb - mean) / std).astype(np.float32)).unsqueeze(0)


def layer_output_hooks(layers):
    """Forward hooks that keep each decoder layer's output hidden states (the residual stream after the layer)."""
    captured = [None] * len(layers)
    handles = []
    for i, layer in enumerate(layers):
        def hook(_module, _inputs, output, i=i):
            captured[i] = (output[0] if isinstance(output, tuple) else output).detach().clone()
        handles.append(layer.register_forward_hook(hook))
    return captured, handles


def greedy(rec: Recorder, model, prefill_kwargs: dict, prefix: str = "") -> dict:
    """Prefill with use_cache=True, then DECODE_STEPS single-token steps that feed the greedy token back with
    past_key_values, as GenerationMixin.generate(do_sample=False) does. Cross-checked against generate()."""
    with torch.no_grad():
        out = model(**prefill_kwargs, use_cache=True)
        prefill_logits = out.logits[0]
        cache = out.past_key_values
        tokens = [argmax_first(np32(prefill_logits[-1]))]
        step_logits = []
        for _ in range(DECODE_STEPS):
            step = model(input_ids=torch.tensor([[tokens[-1]]]), past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            step_logits.append(step.logits[0, -1])
            tokens.append(argmax_first(np32(step_logits[-1])))
        step_logits = torch.stack(step_logits)

        gen = model.generate(
            **prefill_kwargs, max_new_tokens=DECODE_STEPS + 1, do_sample=False, num_beams=1,
            output_logits=True, return_dict_in_generate=True, eos_token_id=None, pad_token_id=0,
        )
        seq_len = prefill_kwargs["input_ids"].shape[1]
        gen_tokens = gen.sequences[0, seq_len:].tolist()
        assert gen_tokens == tokens, f"generate() chose {gen_tokens}, manual decode {tokens}"
        gen_logits = torch.stack([lg[0] for lg in gen.logits])
        gen_diff = float((gen_logits - torch.cat([prefill_logits[-1:], step_logits])).abs().max())

        # the same positions recomputed without a cache
        full_ids = torch.cat([prefill_kwargs["input_ids"], torch.tensor([tokens[:-1]])], dim=1)
        full = model(**{**prefill_kwargs, "input_ids": full_ids}, use_cache=False).logits[0, seq_len:]
        nocache_diff = float((full - step_logits).abs().max())

    rec.add(prefix + "prefill_logits", prefill_logits,
            "model(input_ids, ..., use_cache=True).logits[0]: logits at every prompt position [S, vocab]")
    rec.add(prefix + "greedy_tokens", np.asarray(tokens, dtype=np.int64),
            f"greedy tokens: [0] = argmax(prefill_logits[S-1]), [i+1] = argmax(decode_logits[i]); equal to "
            f"generate(do_sample=False, max_new_tokens={DECODE_STEPS + 1}).sequences[0, S:]")
    rec.add(prefix + "decode_logits", step_logits,
            f"decode step i (0..{DECODE_STEPS - 1}): model(input_ids=[[greedy_tokens[i]]], past_key_values=<cache "
            f"of the previous call>, use_cache=True).logits[0, -1], i.e. the token at position S+i")
    margins = [top2_margin(np32(prefill_logits[-1]))] + [top2_margin(np32(r)) for r in step_logits]
    return {
        "greedy_top2_margins": [round(m, 6) for m in margins],
        "generate_logits_max_abs_diff": gen_diff,
        "decode_vs_no_cache_max_abs_diff": nocache_diff,
    }


# MARK: - VisionZip (written from /work/shared/visionzip.md)


def visionzip(attn: np.ndarray, keys_mean: np.ndarray, hidden: np.ndarray, dominant: int, contextual: int) -> dict:
    """attn [heads, T, T] softmax probabilities of layer L, keys_mean [T, head_dim] (k_proj output averaged over
    heads), hidden [T, width] (layer L's output). Token 0 is CLS. Returns indices, assignment and rows.

    Scores and similarities are computed in float64 from the float32 inputs; rows are computed in float64 and
    rounded to float32 once."""
    heads, T, _ = attn.shape
    assert 1 <= dominant <= T and contextual >= 0
    a = attn.astype(np.float64)
    h = hidden.astype(np.float64)

    # Step 1: dominant tokens. CLS query row summed over heads, patches only; top D-1, ties -> lower index.
    scores = a[:, 0, 1:].sum(axis=0)  # scores[j-1] belongs to token j
    patch_ids = np.arange(1, T)
    order = np.lexsort((patch_ids, -scores))  # descending score, then ascending index
    chosen = patch_ids[order[: dominant - 1]]
    dominant_ids = np.concatenate([[0], np.sort(chosen)]).astype(np.int64)
    # how far the last kept score is from the first dropped one (0 means the tie rule decided)
    ranked = scores[order]
    boundary_gap = float(ranked[dominant - 2] - ranked[dominant - 1]) if 1 < dominant < T else None

    # Step 2: contextual tokens among the remaining ones, ascending index order.
    keep = np.zeros(T, dtype=bool)
    keep[dominant_ids] = True
    remaining = np.flatnonzero(~keep)
    R = len(remaining)
    rows = [h[i] for i in dominant_ids]
    targets = np.zeros(0, dtype=np.int64)
    members = np.zeros(0, dtype=np.int64)
    assign_gap = None
    if contextual > 0 and R > 0:
        k = keys_mean.astype(np.float64)[remaining]
        k = k / np.linalg.norm(k, axis=1, keepdims=True)
        step = max(1, R // contextual)
        target_pos = np.arange(0, R, step)[:contextual]
        targets = remaining[target_pos]
        is_target = np.zeros(R, dtype=bool)
        is_target[target_pos] = True
        members = np.full(R, -1, dtype=np.int64)
        gaps = []
        for p in np.flatnonzero(~is_target):
            sims = k[target_pos] @ k[p]
            best = int(np.flatnonzero(sims == sims.max())[0])  # ties -> lowest target
            members[p] = best
            if len(sims) > 1:
                s = np.sort(sims)
                gaps.append(float(s[-1] - s[-2]))
        assign_gap = min(gaps) if gaps else None
        for c, t in enumerate(targets):
            mine = remaining[members == c]
            mean = h[mine].mean(axis=0) if len(mine) else np.zeros(h.shape[1])
            rows.append(h[t] + mean)
    out = np.stack(rows).astype(np.float32)
    return {
        "scores": scores,
        "dominant": dominant_ids,
        "remaining": remaining.astype(np.int64),
        "targets": targets.astype(np.int64),
        "members": members,
        "rows": out,
        "boundary_gap": boundary_gap,
        "assign_gap": assign_gap,
    }


def visionzip_torch_style(attn, keys_mean, hidden, dominant, contextual) -> np.ndarray:
    """A second, vectorised formulation (topk / argmax / scatter over float32 tensors) of the same algorithm,
    used only to cross-check visionzip() where there are no near-ties."""
    A = torch.from_numpy(attn)
    H = torch.from_numpy(hidden)
    K = torch.from_numpy(keys_mean)
    T = A.shape[-1]
    s = A[:, 0, 1:].sum(0)
    top = torch.topk(s, dominant - 1).indices + 1
    idx = torch.cat([torch.zeros(1, dtype=torch.long), torch.sort(top).values])
    mask = torch.ones(T, dtype=torch.bool)
    mask[idx] = False
    parts = [H[idx]]
    if contextual > 0 and int(mask.sum()) > 0:
        Hr, Kr = H[mask], K[mask]
        Kr = Kr / Kr.norm(dim=-1, keepdim=True)
        R = Hr.shape[0]
        step = max(1, R // contextual)
        tpos = torch.arange(0, R, step)[:contextual]
        tmask = torch.zeros(R, dtype=torch.bool)
        tmask[tpos] = True
        sim = Kr[~tmask] @ Kr[tpos].T
        onehot = torch.zeros(sim.shape).scatter_(1, sim.argmax(1, keepdim=True), 1.0)
        counts = onehot.sum(0).clamp(min=1).unsqueeze(-1)
        parts.append(Hr[tpos] + onehot.T @ Hr[~tmask] / counts)
    return torch.cat(parts).numpy()


def tie_case_inputs():
    """A hand-made T = 17 layer (4 heads, head_dim 8, width 32) whose scores and similarities tie exactly.

    CLS query rows: the same multiples of 1/64 in every head, so summed scores are exact and several patches
    share the top score. Other rows: 1/16 everywhere except a zero diagonal (rows sum to exactly 1).
    keys_mean rows have four entries of +-1 (norm 2), so unit metrics are +-0.5 and every cosine is an exact
    multiple of 1/4; some tokens are equally similar to two targets. hidden: small multiples of 1/8."""
    T, heads, hd, width = 17, 4, 8, 32
    cls = np.array([4, 3, 5, 3, 4, 5, 2, 3, 5, 4, 3, 4, 3, 2, 4, 5, 5], dtype=np.float64)
    cls[0] += 64 - cls.sum()
    assert cls[0] > 0 and cls.sum() == 64
    attn = np.full((heads, T, T), 1.0 / 16.0)
    for i in range(T):
        attn[:, i, i] = 0.0
    attn[:, 0, :] = cls / 64.0
    patterns = [
        [1, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
        [1, 1, 0, 0, 1, 1, 0, 0],  # cos 0.5 with both of the above: a tie
        [1, 0, 1, 0, 0, 1, 0, 1],  # tie again
        [1, 1, 1, -1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, -1],
        [-1, -1, 0, 0, 1, 1, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 0],
    ]
    keys = np.array([patterns[(3 * i) % len(patterns)] for i in range(T)], dtype=np.float64)
    rng = np.random.default_rng(7)
    hidden = rng.integers(-16, 17, size=(T, width)) / 8.0
    return attn.astype(np.float32), keys.astype(np.float32), hidden.astype(np.float32)


# MARK: - Models


def llava(models_out: str, hf: str) -> list:
    path = os.path.join(hf, "llava-4x")
    model, info = LlavaForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    model.eval()
    tok = AutoTokenizer.from_pretrained(path)
    cfg = model.config
    vcfg = cfg.vision_config
    vt = model.model.vision_tower
    n_layers = vcfg.num_hidden_layers
    heads = vcfg.num_attention_heads
    head_dim = vcfg.hidden_size // heads
    feature_layer = cfg.vision_feature_layer
    L = n_layers + feature_layer if feature_layer < 0 else feature_layer - 1  # layer whose OUTPUT is the feature
    assert L == n_layers - 2
    grid = vcfg.image_size // vcfg.patch_size
    n_patches = grid * grid
    T = n_patches + 1

    pixel_values = clip_pixels(vcfg.image_size, vcfg.image_size)

    keys = {}
    handle = vt.encoder.layers[L].self_attn.k_proj.register_forward_hook(
        lambda _m, _i, o: keys.__setitem__("k", o.detach().clone()))
    with torch.no_grad():
        vis = vt(pixel_values, output_hidden_states=True, output_attentions=True)
    handle.remove()
    hidden_states = torch.stack([h[0] for h in vis.hidden_states])  # [layers+1, T, width]
    attentions = torch.stack([a[0] for a in vis.attentions])  # [layers, heads, T, T]
    features = vis.hidden_states[feature_layer][0]
    k = keys["k"][0]  # [T, width]
    keys_mean = k.view(T, heads, head_dim).mean(dim=1)

    with torch.no_grad():
        image_features = model.model.get_image_features(
            pixel_values, vision_feature_layer=feature_layer, vision_feature_select_strategy="default")
        projected = image_features.pooler_output[0]
        assert torch.equal(projected, model.model.multi_modal_projector(features[1:].unsqueeze(0))[0])
        assert torch.equal(features, image_features.hidden_states[feature_layer][0])

    rec = Recorder(
        "llava", checkpoint="Fixtures/hf/llava-4x",
        loading="LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32, "
                "attn_implementation='eager'); weights are F16 on disk, upcast exactly",
        vision_feature_layer=feature_layer, feature_layer_index=L, vision_feature_select_strategy="default",
        image_token_id=cfg.image_token_id, tokens_per_image=n_patches,
        notes=[
            "Batch dimension dropped everywhere.",
            "CLIP hidden_states[0] is pre_layrnorm(embeddings(pixel_values)); hidden_states[i] is the output of "
            "encoder layer i-1; hidden_states[-1] equals last_hidden_state (post_layernorm is only applied to the "
            "pooled CLS token).",
            "vision_feature_layer = -2 selects hidden_states[-2], the OUTPUT of encoder layer "
            f"{L} (0-based) = num_layers - 2; attentions[{L}] and layers[{L}].self_attn.k_proj belong to it.",
            "The image placeholder is expanded to one <image> token per patch (16) in input_ids, as "
            "LlavaProcessor does; LlavaModel overwrites their embeddings with the projector rows "
            "(inputs_embeds.masked_scatter), in order.",
            "LLM hidden states: decoder layer outputs are taken with forward hooks on "
            "model.model.language_model.layers[i]; HF's own output_hidden_states tuple ends with the final RMSNorm "
            "output instead of the last layer's raw output.",
        ],
    )
    rec.add("pixel_values", pixel_values[0],
            "[3, 32, 32] deterministic RGB pattern (see clip_pixels) /255, minus CLIP mean, over CLIP std, float32")
    rec.add("vision_hidden_states", hidden_states,
            "model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states stacked: "
            "[0] = pre_layrnorm(embeddings), [i] = output of encoder layer i-1; [layers+1, T, width]")
    rec.add("vision_attentions", attentions,
            "vision_tower(..., output_attentions=True).attentions stacked (eager attention, softmax "
            "probabilities): [layers, heads, T(query), T(key)]", softmax_rows=True)
    rec.add("vision_pooled", vis.pooler_output[0],
            "vision_tower(...).pooler_output: post_layernorm(last_hidden_state[CLS]) (LLaVA does not use it)")
    rec.add("feature_hidden", features,
            f"hidden_states[{feature_layer}] = output of encoder layer {L}, CLS included: [T, width]")
    rec.add("feature_attention", attentions[L],
            f"attentions[{L}]: softmax probabilities of the feature layer [heads, T, T]", softmax_rows=True)
    rec.add("feature_keys", k,
            f"forward hook on vision_tower.encoder.layers[{L}].self_attn.k_proj: its output (after bias, before "
            "the per-head reshape) [T, width]")
    rec.add("feature_keys_mean", keys_mean,
            "feature_keys.view(T, heads, head_dim).mean(dim=1): keys averaged over heads, VisionZip's metric "
            "[T, head_dim]")
    rec.add("projector_output", projected,
            "model.model.get_image_features(pixel_values, vision_feature_layer=-2, "
            "vision_feature_select_strategy='default').pooler_output[0] = multi_modal_projector(feature_hidden[1:]) "
            "(CLS dropped): [patches, text hidden]")

    # image + text prompt
    prompt = "USER: <image>\nWhat is shown in this image? ASSISTANT:"
    ids = tok(prompt, add_special_tokens=True).input_ids
    assert ids.count(cfg.image_token_id) == 1
    at = ids.index(cfg.image_token_id)
    ids = ids[:at] + [cfg.image_token_id] * n_patches + ids[at + 1:]
    input_ids = torch.tensor([ids])
    rec.add("input_ids", input_ids[0],
            f"tok({prompt!r}) from the checkpoint's tokenizer (BOS added), the one <image> token expanded to "
            f"{n_patches} copies of id {cfg.image_token_id}: [S]")

    lm = model.model.language_model
    captured, handles = layer_output_hooks(lm.layers)
    embeds = {}
    pre = lm.register_forward_pre_hook(
        lambda _m, _a, kw: embeds.__setitem__("x", kw["inputs_embeds"].detach().clone()), with_kwargs=True)
    with torch.no_grad():
        out = model(input_ids=input_ids, pixel_values=pixel_values, use_cache=False, output_hidden_states=True)
    pre.remove()
    for h in handles:
        h.remove()
    e = embeds["x"][0]
    expected = lm.embed_tokens(input_ids)[0].clone()
    expected[input_ids[0] == cfg.image_token_id] = projected
    assert torch.equal(e, expected)
    assert torch.equal(out.hidden_states[-1][0], lm.norm(captured[-1])[0])
    rec.add("prefill_inputs_embeds", e,
            "inputs_embeds the language model receives: embed_tokens(input_ids) with the <image> rows replaced, in "
            "order, by projector_output (pre-hook on model.model.language_model): [S, hidden]")
    rec.add("prefill_layer_outputs", torch.stack([c[0] for c in captured]),
            "forward hooks on model.model.language_model.layers[i]: each decoder layer's output [layers, S, hidden]")
    rec.add("prefill_final_norm", out.hidden_states[-1][0],
            "model(..., output_hidden_states=True).hidden_states[-1] = language_model.norm(last layer output) "
            "[S, hidden]")
    stats = greedy(rec, model, {"input_ids": input_ids, "pixel_values": pixel_values})
    # generate() passes pixel_values only on the first step; the cached steps are text-only.

    # text-only prompt
    text_prompt = "USER: Describe a red car. ASSISTANT:"
    text_ids = torch.tensor([tok(text_prompt, add_special_tokens=True).input_ids])
    with torch.no_grad():
        text_logits = model(input_ids=text_ids, use_cache=False).logits[0]
    rec.add("text_input_ids", text_ids[0], f"tok({text_prompt!r}) with BOS: [S_text]")
    rec.add("text_logits", text_logits, "model(input_ids=text_input_ids).logits[0] (no pixel_values) [S_text, vocab]")
    rec.meta.update(stats)
    rec.meta["text_last_top2_margin"] = round(top2_margin(np32(text_logits[-1])), 6)
    rec.write(models_out)

    return [rec, model, np32(attentions[L]), np32(keys_mean), np32(features), ids]


def visionzip_refs(models_out: str, llava_parts) -> None:
    _, model, attn, keys_mean, hidden, image_ids = llava_parts
    T = attn.shape[-1]
    rec = Recorder(
        "visionzip", spec="/work/shared/visionzip.md", source_layer="llava feature layer (see ../llava)",
        notes=[
            "Inputs attention/keys_mean/hidden are byte-identical copies of llava's feature_attention, "
            "feature_keys_mean and feature_hidden.",
            "Computed by visionzip() in tools/make_model_references.py, written from the spec: "
            "scores[j-1] = sum_h A[h,0,j]; dominant = [0] + sorted(top D-1 patches, ties -> lower index); "
            "remaining (ascending) keys normalised to unit L2; targets at remaining positions 0, step, 2*step, ... "
            "(step = max(1, R // C), first C); each non-target joins the target of highest cosine (ties -> lowest "
            "target); contextual row = H[target] + mean(H[members]) (0 when no members). Output: dominant rows, "
            "then contextual rows.",
            "Scores, cosines and means are computed in float64 from the float32 inputs, rows rounded to float32 "
            "once; compare rows with a tolerance (~1e-5 relative).",
            "members: one entry per remaining token (ascending index): the contextual slot (0..C-1) of the target "
            "it joined, or -1 if it is a target itself.",
            "boundary_gap: score of the last kept minus the first dropped patch (0 = decided by the tie rule); "
            "assign_gap: smallest best-minus-second cosine over all members (0 = decided by the tie rule).",
        ],
    )
    rec.add("attention", attn, "feature-layer softmax probabilities [heads, T, T]", softmax_rows=True)
    rec.add("keys_mean", keys_mean, "feature-layer k_proj output averaged over heads [T, head_dim]")
    rec.add("hidden", hidden, "feature-layer output hidden states, CLS first [T, width]")
    cases = []
    first = True
    for D, C in [(4, 2), (6, 3), (17, 0), (1, 4)]:
        assert D <= T
        r = visionzip(attn, keys_mean, hidden, D, C)
        if first:
            rec.add("scores", r["scores"], "sum over heads of attention[h, 0, j] for patches j = 1..T-1 [T-1]")
            first = False
        p = f"d{D}_c{C}"
        ok = (r["boundary_gap"] is None or r["boundary_gap"] > 1e-5) and (r["assign_gap"] is None or r["assign_gap"] > 1e-5)
        if ok:
            alt = visionzip_torch_style(attn, keys_mean, hidden, D, C)
            assert np.allclose(alt, r["rows"], rtol=1e-5, atol=1e-5), p
        case = add_visionzip_case(rec, p, r, D, C, "llava feature layer", "")
        cases.append(case)

    # LLaVA with VisionZip (4, 2): the D + C rows go through the projector and replace the image tokens.
    r = visionzip(attn, keys_mean, hidden, 4, 2)
    with torch.no_grad():
        rows = torch.from_numpy(r["rows"])
        projected = model.model.multi_modal_projector(rows.unsqueeze(0))[0]
        image_token = model.config.image_token_id
        at = image_ids.index(image_token)
        n = image_ids.count(image_token)
        ids = image_ids[:at] + [image_token] * rows.shape[0] + image_ids[at + n:]
        input_ids = torch.tensor([ids])
        lm = model.model.language_model
        embeds = lm.embed_tokens(input_ids)
        embeds[input_ids == image_token] = projected
        logits = model(inputs_embeds=embeds, use_cache=False).logits[0]
    rec.add("d4_c2_projected", projected,
            "model.model.multi_modal_projector(d4_c2_rows) — CLS row included, as VisionZip feeds it [D+C, hidden]")
    rec.add("d4_c2_input_ids", input_ids[0],
            "llava's input_ids with the 16 <image> tokens replaced by D+C = 6 of them [S']")
    rec.add("d4_c2_prefill_logits", logits,
            "model(inputs_embeds=embed_tokens(d4_c2_input_ids) with <image> rows replaced by d4_c2_projected)"
            ".logits[0] [S', vocab]")

    # exact ties
    attn_t, keys_t, hidden_t = tie_case_inputs()
    rec.add("tie_attention", attn_t, "hand-made tie case (see tie_case_inputs) [heads, T, T]", softmax_rows=True)
    rec.add("tie_keys_mean", keys_t, "hand-made tie case: keys averaged over heads [T, head_dim]")
    rec.add("tie_hidden", hidden_t, "hand-made tie case: hidden states [T, width]")
    for D, C in [(4, 2), (7, 3)]:
        r = visionzip(attn_t, keys_t, hidden_t, D, C)
        assert r["boundary_gap"] == 0.0 and r["assign_gap"] == 0.0, (D, C, r["boundary_gap"], r["assign_gap"])
        case = add_visionzip_case(rec, f"tie_d{D}_c{C}", r, D, C, "tie case", "tie_")
        cases.append(case)
    rec.meta["cases"] = cases
    rec.write(models_out)


def add_visionzip_case(rec, p, r, D, C, source, inputs) -> dict:
    rec.add(p + "_dominant", r["dominant"], f"{source}, D={D}: dominant token indices, CLS (0) first, then ascending [D]")
    rec.add(p + "_remaining", r["remaining"], f"{source}: tokens not dominant, ascending [R = T - D]")
    rec.add(p + "_targets", r["targets"], f"{source}, C={C}: contextual target token indices [C]")
    rec.add(p + "_members", r["members"],
            f"{source}: per remaining token, slot of the target it joined, -1 for targets themselves [R] "
            "(empty when C = 0)")
    rec.add(p + "_rows", r["rows"], f"{source}: VisionZip output, D dominant rows then C contextual rows [D+C, width]")
    return {
        "name": p, "source": source, "dominant": D, "contextual": C,
        "boundary_gap": r["boundary_gap"], "assign_gap": r["assign_gap"],
        "inputs": {k: inputs + k for k in ("attention", "keys_mean", "hidden")},
        "arrays": [p + s for s in ("_dominant", "_remaining", "_targets", "_members", "_rows")],
    }


def qwen2(models_out: str, hf: str) -> None:
    path = os.path.join(hf, "qwen2")
    model, info = Qwen2ForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    model.eval()
    tok = AutoTokenizer.from_pretrained(path)
    # The fixture's tokenizer.json does not list <|im_start|> (id 1) / <|im_end|> (id 2) as added tokens, so
    # tokenizing them as text splits them into bytes: the ChatML frame is spliced in as ids instead.
    im_start, im_end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert (im_start, im_end) == (1, 2)
    ids = ([im_start] + tok("user\nWhat is shown in this image?").input_ids + [im_end] + tok("\n").input_ids
           + [im_start] + tok("assistant\n").input_ids)
    text = "<|im_start|>user\nWhat is shown in this image?<|im_end|>\n<|im_start|>assistant\n"
    input_ids = torch.tensor([ids])
    rec = Recorder(
        "qwen2", checkpoint="Fixtures/hf/qwen2",
        loading="Qwen2ForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation='eager')",
        notes=["Batch dimension dropped.", "q/k/v projections have biases; lm_head is tied to embed_tokens.",
               "Decoder layer outputs via forward hooks on model.model.layers[i]."],
    )
    rec.add("input_ids", input_ids[0],
            f"fixed ids for {text!r}: <|im_start|> = 1 and <|im_end|> = 2 as ids, the text between them from "
            "tok(...).input_ids (no BOS: Qwen2 has none) [S]")
    captured, handles = layer_output_hooks(model.model.layers)
    with torch.no_grad():
        out = model(input_ids=input_ids, use_cache=False, output_hidden_states=True)
    for h in handles:
        h.remove()
    rec.add("prefill_layer_outputs", torch.stack([c[0] for c in captured]),
            "forward hooks on model.model.layers[i]: each decoder layer's output [layers, S, hidden]")
    rec.add("prefill_final_norm", out.hidden_states[-1][0],
            "model(..., output_hidden_states=True).hidden_states[-1] = model.model.norm(last layer output) [S, hidden]")
    stats = greedy(rec, model, {"input_ids": input_ids})
    assert torch.equal(out.logits[0], torch.from_numpy(rec.arrays[-3][1]))
    rec.meta.update(stats)
    rec.write(models_out)


def save_checkpoint(model, directory: str) -> None:
    if os.path.isdir(directory):
        for f in ("config.json", "model.safetensors"):
            if os.path.exists(os.path.join(directory, f)):
                os.remove(os.path.join(directory, f))
    model.save_pretrained(directory)
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"], os.listdir(directory)


def randomize_norms_and_biases(model, seed: int) -> None:
    """Non-trivial LayerNorm weights/biases and linear biases, so an implementation that skips one is caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias") or name.endswith("in_proj_bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def vision_common(rec: Recorder, out, prefix: str = "") -> None:
    rec.add(prefix + "hidden_states", torch.stack([h[0] for h in out.hidden_states]),
            "model(pixel_values, output_hidden_states=True).hidden_states stacked: [0] = embeddings output, "
            "[i] = output of encoder layer i-1 (before the final layernorm) [layers+1, T, width]")
    rec.add(prefix + "attentions", torch.stack([a[0] for a in out.attentions]),
            "model(..., output_attentions=True).attentions stacked, eager softmax probabilities "
            "[layers, heads, T, T]; the last layer is [-1]", softmax_rows=True)
    rec.add(prefix + "last_hidden_state", out.last_hidden_state[0],
            "model(...).last_hidden_state: final layernorm applied to hidden_states[-1] [T, width]")
    rec.add(prefix + "pooler_output", out.pooler_output[0], "model(...).pooler_output [width]")


def siglip(models_out: str, hf: str) -> None:
    config = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_channels=3,
        image_size=32, patch_size=8, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=True,
    )
    torch.manual_seed(4321)
    model = SiglipVisionModel(config).eval()
    randomize_norms_and_biases(model, 4322)
    directory = os.path.join(hf, "siglip")
    save_checkpoint(model, directory)
    model = SiglipVisionModel.from_pretrained(directory, attn_implementation="eager").eval()
    pixel_values = clip_pixels(32, 32, seed_offset=1)
    with torch.no_grad():
        out = model(pixel_values, output_hidden_states=True, output_attentions=True)
        assert torch.equal(out.last_hidden_state, model.post_layernorm(out.hidden_states[-1])) if hasattr(
            model, "post_layernorm") else True
    rec = Recorder(
        "siglip", checkpoint="Fixtures/hf/siglip",
        loading="SiglipVisionModel.from_pretrained(path, attn_implementation='eager') (F32 on disk; built by "
                "this script: SiglipVisionConfig + torch.manual_seed(4321), norms/biases re-randomised)",
        notes=["No CLS token: T = 16 patches.", "Batch dimension dropped.",
               "hidden_states[0] = patch embedding (conv) + position embedding.",
               "pooler_output is SiglipMultiheadAttentionPoolingHead: torch.nn.MultiheadAttention(probe, h, h) "
               "(packed in_proj_weight/in_proj_bias, out_proj), then x + mlp(layernorm(x)) where x is the attention "
               "output (not the probe), token 0.",
               "pixel_values use CLIP mean/std only to make a pattern; real SigLIP uses mean = std = 0.5."],
    )
    rec.add("pixel_values", pixel_values[0], "[3, 32, 32] deterministic pattern (clip_pixels, offset 1)")
    vision_common(rec, out)
    rec.write(models_out)


def dinov2(models_out: str, hf: str) -> None:
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=2, image_size=28, patch_size=7,
        num_channels=3, hidden_act="gelu", layer_norm_eps=1e-6, layerscale_value=0.5, use_swiglu_ffn=False,
        drop_path_rate=0.0,
    )
    torch.manual_seed(2468)
    model = Dinov2Model(config).eval()
    randomize_norms_and_biases(model, 2469)
    g = torch.Generator().manual_seed(2470)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lambda1"):  # per-channel layer scale, not the constant init
                p.copy_(0.5 + 0.2 * torch.randn(p.shape, generator=g))
            if name.endswith("position_embeddings") or name.endswith("cls_token"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    directory = os.path.join(hf, "dinov2")
    save_checkpoint(model, directory)
    model = Dinov2Model.from_pretrained(directory, attn_implementation="eager").eval()
    rec = Recorder(
        "dinov2", checkpoint="Fixtures/hf/dinov2",
        loading="Dinov2Model.from_pretrained(path, attn_implementation='eager') (F32 on disk; built by this script: "
                "Dinov2Config + torch.manual_seed(2468), norms/biases/layer scales/position embeddings re-randomised)",
        notes=[
            "Batch dimension dropped. T = 1 (CLS) + patches; no register tokens.",
            "Layer: h = h + lambda1 * attn(norm1(h)); h = h + lambda2 * mlp(norm2(h)) (layer_scale1/2.lambda1).",
            "pooler_output = layernorm(hidden_states[-1])[CLS] = last_hidden_state[0].",
            "Position embeddings are interpolated unless the patch count equals the stored one AND height == "
            "width: patch embeddings reshaped to the stored sqrt(N) x sqrt(N) grid, then "
            "torch.nn.functional.interpolate(size=(H/patch, W/patch), mode='bicubic', align_corners=False) in "
            "float32 (PyTorch's bicubic: A = -0.75, border indices clamped, no antialias); CLS position kept.",
        ],
    )
    for prefix, (height, width) in (("", (28, 28)), ("interp_", (35, 49))):
        pixel_values = clip_pixels(height, width, seed_offset=2)
        with torch.no_grad():
            out = model(pixel_values, output_hidden_states=True, output_attentions=True)
            emb = model.embeddings(pixel_values)
            assert torch.equal(emb, out.hidden_states[0])
            pos = model.embeddings.interpolate_pos_encoding(emb, height, width)[0]
        rec.add(prefix + "pixel_values", pixel_values[0],
                f"[3, {height}, {width}] deterministic pattern (clip_pixels, offset 2); grid "
                f"{height // 7} x {width // 7}")
        if prefix:
            rec.add(prefix + "position_embeddings", pos,
                    "model.embeddings.interpolate_pos_encoding(embeddings, 35, 49)[0]: CLS position then the 4x4 "
                    "stored grid resampled bicubically to 5 x 7 (row-major) [1 + 35, width]")
        vision_common(rec, out, prefix)
    rec.write(models_out)


# MARK: - Driver


def generate(models_out: str, hf: str) -> None:
    torch.manual_seed(0)
    parts = llava(models_out, hf)
    visionzip_refs(models_out, parts)
    qwen2(models_out, hf)
    siglip(models_out, hf)
    dinov2(models_out, hf)


def same_tree(a: str, b: str) -> list:
    diffs = []
    for root, _, files in os.walk(a):
        for f in files:
            pa = os.path.join(root, f)
            pb = os.path.join(b, os.path.relpath(pa, a))
            if not os.path.exists(pb) or not filecmp.cmp(pa, pb, shallow=False):
                diffs.append(os.path.relpath(pa, a))
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(FIXTURES, "models"), help="reference arrays go here")
    parser.add_argument("--hf", default=os.path.join(FIXTURES, "hf"),
                        help="reads llava-4x and qwen2 here; writes siglip and dinov2 checkpoints here")
    parser.add_argument("--check", action="store_true",
                        help="also run twice more into temporary directories and compare every byte")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    generate(args.out, args.hf)
    total = 0
    for root, _, files in sorted(os.walk(args.out)):
        for f in sorted(files):
            total += os.path.getsize(os.path.join(root, f))
    print(f"{args.out}: {total} bytes")

    if args.check:
        runs = []
        for _ in range(2):
            tmp = tempfile.mkdtemp(prefix="vzq-refs-")
            hf = os.path.join(tmp, "hf")
            os.makedirs(hf)
            for name in ("llava-4x", "qwen2"):
                shutil.copytree(os.path.join(args.hf, name), os.path.join(hf, name))
            generate(os.path.join(tmp, "models"), hf)
            runs.append(tmp)
        bad = same_tree(args.out, os.path.join(runs[0], "models")) + same_tree(
            os.path.join(runs[0], "models"), os.path.join(runs[1], "models"))
        for name in ("siglip", "dinov2"):
            bad += ["hf/" + name + "/" + d for d in same_tree(os.path.join(args.hf, name), os.path.join(runs[0], "hf", name))]
            bad += ["hf/" + name + "/" + d for d in same_tree(os.path.join(runs[0], "hf", name), os.path.join(runs[1], "hf", name))]
        for tmp in runs:
            shutil.rmtree(tmp)
        if bad:
            print("NOT deterministic:", sorted(set(bad)))
            sys.exit(1)
        print("deterministic: two further runs reproduced every byte")


if __name__ == "__main__":
    main()
