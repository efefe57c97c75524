#!/usr/bin/env python3
"""Independent check of `vzquant convert` output against the Hugging Face checkpoint it came from.

    tools/check_convert.py SRC_DIR OUT.gguf [MMPROJ.gguf] [-- SRC_DIR OUT.gguf [MMPROJ.gguf] ...]

Reads our GGUF files with gguf-py's GGUFReader and the safetensors with numpy (header parsed here with
json + struct), maps the HF text-model names with gguf-py's own TensorNameMap (so the name check does not
trust vzquant's Swift table), applies llama.cpp's Q/K rotary permutation in numpy for arch llama, and compares
every tensor after gguf.quants.dequantize within the bound of its type:
  F32  exact;  F16  fp16 rounding;  Q8_0  half a step of the block scale + the scale's fp16 rounding;
  Q4_0  one step + the scale's fp16 rounding; Q5_0 the same with codes to 16;
  Q4_1/Q5_1  half a step + the fp16 rounding of the scale (times the largest code) and of the minimum;
  Q4_K/Q5_K/Q6_K  half a step of each sub-block's scale (d·sc, parsed here from the 6-bit / int8 scales), plus the
  distance to the sub-block's representable range for values the codes clamp (ggml's quantizers pick the nearest
  code for the final scales).
Also checks metadata, types (the type policy), that nothing is missing or extra, and for LLaVA the vision
feature-layer truncation. Prints a summary; exits 1 on any mismatch. Needs: gguf, numpy (tools/setup.sh --dev).
"""
import json
import os
import struct
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
except ImportError as e:  # pragma: no cover
    sys.exit(f"check_convert.py needs the gguf package ({e}); run tools/setup.sh --dev")

FILE_TYPE_TO_QT = {0: QT.F32, 1: QT.F16, 2: QT.Q4_0, 3: QT.Q4_1, 7: QT.Q8_0, 8: QT.Q5_0, 9: QT.Q5_1,
                   14: QT.Q4_K, 15: QT.Q4_K, 16: QT.Q5_K, 17: QT.Q5_K, 18: QT.Q6_K}
# llama.cpp's mixes (file types 14–18) give some matrices more bits, and fall back where 256 does not divide a row.
K_FALLBACK = {QT.Q4_K: QT.Q5_0, QT.Q5_K: QT.Q5_1, QT.Q6_K: QT.Q8_0}
# 32-value block types: (block bytes, has a minimum, step error, largest code the scale multiplies)
BLOCK_TYPES = {QT.Q8_0: (34, False, 0.5, 127), QT.Q4_0: (18, False, 1.0, 8), QT.Q5_0: (22, False, 1.0, 16),
               QT.Q4_1: (20, True, 0.5, 15), QT.Q5_1: (24, True, 0.5, 31)}
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

errors: list[str] = []
checked = {"tensors": 0, "values": 0, "keys": 0}


def fail(msg: str) -> None:
    errors.append(msg)


# ---------------------------------------------------------------------------------------------- safetensors
def load_safetensors(directory: str) -> dict[str, np.ndarray]:
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for name in files:
        with open(os.path.join(directory, name), "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + n])
        base = 8 + n
        for key, e in header.items():
            if key == "__metadata__":
                continue
            b, end = e["data_offsets"]
            raw = np.frombuffer(blob, dtype=np.uint8, count=end - b, offset=base + b)
            if e["dtype"] == "F32":
                a = raw.view("<f4")
            elif e["dtype"] == "F16":
                a = raw.view("<f2").astype(np.float32)
            elif e["dtype"] == "BF16":
                a = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                raise SystemExit(f"{name}: {key} has dtype {e['dtype']}, not a float type")
            out[key] = a.astype(np.float32).reshape(e["shape"])
    return out


# ---------------------------------------------------------------------------------------------- comparison
def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's HF → GGUF rotary permutation: rows of each head [2, hd/2] → [hd/2, 2]."""
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def compare(label: str, t, src: np.ndarray) -> None:
    """t: a ReaderTensor; src: fp32 in HF (row-major, outermost first) order, already permuted."""
    checked["tensors"] += 1
    ne = [int(x) for x in t.shape]
    if int(np.prod(ne)) != src.size:
        return fail(f"{label}: {t.name} has {int(np.prod(ne))} values, source has {src.size} {list(src.shape)}")
    squeezed = [d for d in src.shape]
    while len(squeezed) > 1 and squeezed[0] == 1:
        squeezed = squeezed[1:]
    if list(reversed(ne)) != squeezed:
        return fail(f"{label}: {t.name} dims {ne} are not the reverse of the source shape {list(src.shape)}")
    typ = QT(t.tensor_type)
    deq = np.asarray(gguf.quants.dequantize(np.asarray(t.data), typ), dtype=np.float32).reshape(-1)
    x = src.reshape(-1)
    diff = np.abs(deq - x)
    checked["values"] += x.size
    if typ == QT.F32:
        bound = np.zeros_like(x)
    elif typ == QT.F16:
        bound = np.abs(x) * 2.0**-11 + 2.0**-24
    elif typ in BLOCK_TYPES:
        bsz, has_min, step, qmax = BLOCK_TYPES[typ]
        blocks = np.asarray(t.data).reshape(-1).view(np.uint8).reshape(-1, bsz)
        d = np.abs(blocks[:, :2].copy().view("<f2").astype(np.float32).reshape(-1, 1))
        m = np.abs(blocks[:, 2:4].copy().view("<f2").astype(np.float32).reshape(-1, 1)) if has_min else 0.0
        # the step error (half a step where the quantizer rounds, a full step where it truncates and clamps) plus
        # the fp16 rounding of the scale times the largest code, and of the minimum
        bound = np.broadcast_to((d * (step + qmax * 2.0**-11) + m * 2.0**-11) * (1 + 2.0**-10) + 1e-7,
                                (d.shape[0], 32)).reshape(-1)
    elif typ in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        bound = kquant_bound(np.asarray(t.data).reshape(-1).view(np.uint8), typ, x)
    else:
        return fail(f"{label}: {t.name} has type {typ.name}, which the converter never writes")
    bad = diff > bound
    if bad.any():
        i = int(np.argmax(diff - bound))
        fail(f"{label}: {t.name} ({typ.name}) {int(bad.sum())} values outside the bound; worst at {i}: "
             f"got {deq[i]}, source {x[i]}, bound {bound[i]:.3g}")


def kquant_bound(raw: np.ndarray, typ, x: np.ndarray) -> np.ndarray:
    """Per value: half a step of its sub-block (step = d·sc) plus how far x lies outside the values the codes reach."""
    f16 = lambda b: b.copy().view("<f2").astype(np.float32).reshape(-1, 1)
    if typ == QT.Q6_K:
        blocks = raw.reshape(-1, 210)
        sc = blocks[:, 192:208].view(np.int8).astype(np.float32)            # 16 sub-blocks of 16
        step = f16(blocks[:, 208:210]) * sc
        lo, hi = np.minimum(-32 * step, 31 * step), np.maximum(-32 * step, 31 * step)
        size = 16
    else:
        bsz, qmax = (144, 15) if typ == QT.Q4_K else (176, 31)
        blocks = raw.reshape(-1, bsz)
        d, dmin, q = f16(blocks[:, 0:2]), f16(blocks[:, 2:4]), blocks[:, 4:16].astype(np.int32)
        sc, m = np.empty((len(blocks), 8), np.float32), np.empty((len(blocks), 8), np.float32)
        for j in range(8):                                                 # ggml's 6-bit scale/min packing
            if j < 4:
                sc[:, j], m[:, j] = q[:, j] & 63, q[:, j + 4] & 63
            else:
                sc[:, j] = (q[:, j + 4] & 0xF) | ((q[:, j - 4] >> 6) << 4)
                m[:, j] = (q[:, j + 4] >> 4) | ((q[:, j] >> 6) << 4)
        step, off = d * sc, dmin * m
        lo, hi = -off, qmax * step - off
        size = 32
    xs = x.reshape(len(blocks), -1, size)
    step, lo, hi = (a.reshape(len(blocks), -1, 1) for a in (step, lo, hi))
    outside = np.maximum(0, np.maximum(lo - xs, xs - hi))
    bound = np.abs(step) * 0.5 * (1 + 2.0**-10) + outside * (1 + 2.0**-10) + np.abs(xs) * 2.0**-20 + 1e-7
    # a sub-block whose step is 0 (all zeros) decodes to its offset
    bound = np.where(step == 0, np.abs(xs - lo) + 1e-7, bound)
    return bound.reshape(-1)


def expect_key(label: str, r, key: str, want, tol: float = 0.0) -> None:
    checked["keys"] += 1
    f = r.fields.get(key)
    if f is None:
        return fail(f"{label}: metadata key {key} is missing")
    got = f.contents()
    if isinstance(want, float) or (isinstance(want, list) and want and isinstance(want[0], float)):
        ok = np.allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=1e-6, atol=tol)
    else:
        ok = got == want
    if not ok:
        fail(f"{label}: {key} is {got!r}, expected {want!r}")


def expected_types(name: str, ne: list[int], file_type: int) -> set:
    """The types the policy may give a tensor: one, or for llama.cpp's K mixes the few its rules choose among
    (which one, tensor by tensor, is checked against llama.cpp itself in QuantMixTests)."""
    base = FILE_TYPE_TO_QT[file_type]
    if len(ne) == 1 or "position_embd" in name or name == "v.class_embd":
        return {QT.F32}
    if len(ne) == 4:
        return {QT.F32 if base == QT.F32 else QT.F16}
    if base in K_FALLBACK:
        wanted = {base, QT.Q5_K, QT.Q6_K, QT.Q8_0}
        fallback = {K_FALLBACK[t] for t in wanted if t in K_FALLBACK} | {QT.Q8_0}
        return (wanted if ne[0] % 256 == 0 else fallback) if ne[0] % 32 == 0 else {QT.F16}
    if name == "token_embd.weight" and base in (QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1):
        return {QT.Q8_0}
    if base in BLOCK_TYPES and ne[0] % 32 != 0:
        return {QT.F16}
    return {base}


def check_types(label: str, r) -> None:
    ft = int(r.fields["general.file_type"].contents())
    for t in r.tensors:
        want = expected_types(t.name, [int(x) for x in t.shape], ft)
        if QT(t.tensor_type) not in want:
            fail(f"{label}: {t.name} is {QT(t.tensor_type).name}, the type policy says {sorted(w.name for w in want)}")


# ---------------------------------------------------------------------------------------------- text model
def text_config(cfg: dict) -> dict:
    return cfg.get("text_config", cfg)


def llama3_factors(head_dim: int, base: float, factor: float, low: float, high: float, original: int) -> np.ndarray:
    """Llama 3.1 rope factors in float64: 1 for wavelengths below original/high, `factor` above original/low,
    a smooth blend 1/((1-s)/factor + s), s = (original/wavelength - low)/(high - low), in between."""
    k = np.arange(head_dim // 2, dtype=np.float64)
    wavelength = 2 * np.pi * base ** (2 * k / head_dim)
    s = (original / wavelength - low) / (high - low)
    blend = 1 / ((1 - s) / factor + s)
    return np.where(wavelength < original / high, 1.0, np.where(wavelength > original / low, factor, blend))


def check_rope_scaling(label: str, r, tc: dict, a: str, head_dim: int, base: float, tensors: dict, seen: set) -> None:
    """rope_parameters/rope_scaling as convert_hf_to_gguf.py records it (key names from gguf-py's Keys.Rope)."""
    p = tc.get("rope_parameters") or tc.get("rope_scaling") or {}
    kind = p.get("rope_type", p.get("type"))
    keys = {k: v for k, v in r.fields.items() if k.startswith(f"{a}.rope.scaling.")}
    K = gguf.Keys.Rope
    if kind == "llama3":
        if keys:
            fail(f"{label}: llama3 rope scaling must write no rope.scaling keys, found {sorted(keys)}")
        t = tensors.get("rope_freqs.weight")
        if t is None:
            return fail(f"{label}: llama3 rope scaling but no rope_freqs.weight")
        seen.add("rope_freqs.weight")
        if QT(t.tensor_type) != QT.F32 or [int(x) for x in t.shape] != [head_dim // 2]:
            fail(f"{label}: rope_freqs.weight is {QT(t.tensor_type).name} {list(t.shape)}, want F32 [{head_dim // 2}]")
        want = llama3_factors(head_dim, base, p.get("factor", 8.0), p.get("low_freq_factor", 1.0),
                              p.get("high_freq_factor", 4.0), p.get("original_max_position_embeddings", 8192))
        got = np.asarray(t.data, dtype=np.float64).reshape(-1)
        if got.shape != want.shape or not np.allclose(got, want, rtol=2e-6, atol=0):
            fail(f"{label}: rope_freqs.weight {got.tolist()} != {want.tolist()}")
        checked["values"] += got.size
        return
    if "rope_freqs.weight" in tensors:
        fail(f"{label}: rope_freqs.weight written without llama3 rope scaling")
    want = {}
    if kind in ("linear", "yarn") and p.get("factor") is not None:
        want[K.SCALING_TYPE.format(arch=a)] = kind
        want[K.SCALING_FACTOR.format(arch=a)] = float(p["factor"])
        if kind == "yarn":
            want[K.SCALING_ORIG_CTX_LEN.format(arch=a)] = p["original_max_position_embeddings"]
    if set(keys) - set(want):
        fail(f"{label}: unexpected rope scaling keys {sorted(set(keys) - set(want))}")
    for key, v in want.items():
        expect_key(label, r, key, v)


def check_text(src_dir: str, cfg: dict, weights: dict, path: str) -> None:
    label = os.path.basename(path)
    r = gguf.GGUFReader(path)
    tc = text_config(cfg)
    arch_name = r.fields["general.architecture"].contents()
    model_type = tc.get("model_type", "llama")
    want_arch = "qwen2" if model_type == "qwen2" else "llama"
    if arch_name != want_arch:
        fail(f"{label}: general.architecture {arch_name!r}, expected {want_arch!r}")
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[want_arch]
    n_layers, n_head = tc["num_hidden_layers"], tc["num_attention_heads"]
    n_kv = tc.get("num_key_value_heads", n_head)
    hidden = tc["hidden_size"]
    head_dim = tc.get("head_dim") or hidden // n_head
    tied = tc.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
    rope = tc.get("rope_theta", (tc.get("rope_parameters") or {}).get("rope_theta", 10000.0))

    a = want_arch
    for key, want in [
        ("general.quantization_version", 2),
        (f"{a}.block_count", n_layers),
        (f"{a}.embedding_length", hidden),
        (f"{a}.feed_forward_length", tc["intermediate_size"]),
        (f"{a}.attention.head_count", n_head),
        (f"{a}.attention.head_count_kv", n_kv),
        (f"{a}.rope.dimension_count", head_dim),
        (f"{a}.context_length", tc["max_position_embeddings"]),
        (f"{a}.vocab_size", tc["vocab_size"]),
        (f"{a}.rope.freq_base", float(rope)),
        (f"{a}.attention.layer_norm_rms_epsilon", float(tc["rms_norm_eps"])),
    ]:
        expect_key(label, r, key, want)
    # llama.cpp does not load a text model without its tokenizer.
    if "tokenizer.ggml.model" not in r.fields:
        fail(f"{label}: no tokenizer.ggml.model (tokenizer not imported)")
    toks = r.fields.get("tokenizer.ggml.tokens")
    if toks is None or len(toks.data) != tc["vocab_size"]:
        fail(f"{label}: tokenizer.ggml.tokens has {len(toks.data) if toks else 0} entries, vocab_size is {tc['vocab_size']}")

    tmap = gguf.get_tensor_name_map(arch, n_layers)
    tensors = {t.name: t for t in r.tensors}
    seen = set()
    for hf_name, w in sorted(weights.items()):
        # transformers 4.x/5.x LLaVA names → the plain CausalLM names gguf-py's table knows
        name = hf_name
        for old, new in [("model.language_model.", "model."), ("language_model.model.", "model."),
                         ("language_model.lm_head.", "lm_head.")]:
            if name.startswith(old):
                name = new + name[len(old):]
        if not (name.startswith("model.") or name.startswith("lm_head.")) or "vision" in name or "projector" in name:
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if name == "lm_head.weight" and tied:
            continue
        gname = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            fail(f"{label}: gguf-py has no llama.cpp name for {hf_name}")
            continue
        t = tensors.get(gname)
        if t is None:
            fail(f"{label}: {gname} (from {hf_name}) is missing")
            continue
        seen.add(gname)
        if want_arch == "llama" and (".attn_q." in gname or ".attn_k." in gname):
            w = permute(w, n_head if ".attn_q." in gname else n_kv)
        compare(label, t, w)
    check_rope_scaling(label, r, tc, a, head_dim, float(rope), tensors, seen)
    for extra in sorted(set(tensors) - seen):
        fail(f"{label}: {extra} has no source tensor")
    if tied and "output.weight" in tensors:
        fail(f"{label}: output.weight written although the embeddings are tied")
    check_types(label, r)


# ---------------------------------------------------------------------------------------------- mmproj
def check_mmproj(src_dir: str, cfg: dict, weights: dict, path: str) -> None:
    label = os.path.basename(path)
    r = gguf.GGUFReader(path)
    vc = cfg["vision_config"]
    n = vc["num_hidden_layers"]
    fl = cfg.get("vision_feature_layer", -2)
    kept = n + 1 + fl if fl < 0 else fl
    expect_key(label, r, "general.architecture", "clip")
    expect_key(label, r, "clip.has_vision_encoder", True)
    expect_key(label, r, "clip.has_llava_projector", True)
    expect_key(label, r, "clip.projector_type", "mlp")
    expect_key(label, r, "clip.use_gelu", vc.get("hidden_act", "quick_gelu").startswith("gelu"))
    expect_key(label, r, "clip.vision.block_count", kept)
    expect_key(label, r, "vzquant.vision.feature_layer", fl)
    expect_key(label, r, "vzquant.vision.source_block_count", n)
    expect_key(label, r, "vzquant.vision.feature_select", cfg.get("vision_feature_select_strategy", "default"))
    for key, want in [("image_size", vc["image_size"]), ("patch_size", vc["patch_size"]),
                      ("embedding_length", vc["hidden_size"]), ("feed_forward_length", vc["intermediate_size"]),
                      ("projection_dim", vc["projection_dim"]), ("attention.head_count", vc["num_attention_heads"])]:
        expect_key(label, r, f"clip.vision.{key}", want)
    expect_key(label, r, "clip.vision.attention.layer_norm_epsilon", float(vc["layer_norm_eps"]))
    pre = os.path.join(src_dir, "preprocessor_config.json")
    mean, std = CLIP_MEAN, CLIP_STD
    if os.path.exists(pre):
        with open(pre) as f:
            p = json.load(f)
        mean, std = p.get("image_mean", mean), p.get("image_std", std)
    expect_key(label, r, "clip.vision.image_mean", [float(x) for x in mean], 1e-7)
    expect_key(label, r, "clip.vision.image_std", [float(x) for x in std], 1e-7)

    # gguf-py's MMPROJ table knows the 4.x on-disk names "vision_tower.vision_model.*"; its generic
    # "multi_modal_projector.linear_{bid}" → mm.{bid} is the pixtral numbering, while clip.cpp's LLaVA MLP
    # projector reads mm.0 / mm.2 (the original nn.Sequential indices), so the projector is mapped here.
    vmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, n)
    tensors = {t.name: t for t in r.tensors}
    seen = set()
    for hf_name, w in sorted(weights.items()):
        name = hf_name
        for old in ["model.vision_tower.vision_model.", "vision_tower.vision_model.", "model.vision_tower.", "vision_tower."]:
            if name.startswith(old):
                name = "vision_tower.vision_model." + name[len(old):]
                break
        for old in ["model.multi_modal_projector.", "multi_modal_projector."]:
            if name.startswith(old):
                name = "multi_modal_projector." + name[len(old):]
        if name.startswith("multi_modal_projector.linear_"):
            idx = int(name.split(".")[1].split("_")[1])
            gname = f"mm.{2 * (idx - 1)}.{name.rsplit('.', 1)[1]}"
        elif name.startswith("vision_tower.vision_model."):
            gname = vmap.get_name(name, try_suffixes=(".weight", ".bias"))
            if gname is None:
                fail(f"{label}: gguf-py has no llama.cpp name for {hf_name}")
                continue
            if gname.startswith("v.blk."):
                layer = int(gname.split(".")[2])
                if layer >= kept:
                    if gname in tensors:
                        fail(f"{label}: {gname} is beyond the feature layer ({kept} blocks kept) but was written")
                    continue
            if gname.startswith("v.post_ln"):
                if gname in tensors:
                    fail(f"{label}: {gname} written, but LLaVA reads an inner layer (no post-norm)")
                continue
        else:
            continue
        t = tensors.get(gname)
        if t is None:
            fail(f"{label}: {gname} (from {hf_name}) is missing")
            continue
        seen.add(gname)
        compare(label, t, w)
    for extra in sorted(set(tensors) - seen):
        fail(f"{label}: {extra} has no source tensor")
    check_types(label, r)


def check_one(src: str, out: str, mmproj) -> int:
    errors.clear()
    for k in checked:
        checked[k] = 0
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    weights = load_safetensors(src)
    arch = cfg["architectures"][0]
    check_text(src, cfg, weights, out)
    if arch == "LlavaForConditionalGeneration":
        if mmproj is None:
            fail("a LLaVA source needs the mmproj file as the third argument")
        else:
            check_mmproj(src, cfg, weights, mmproj)
    files = " + ".join(os.path.basename(p) for p in [out, mmproj] if p)
    print(f"check_convert: {src} → {files}: {checked['tensors']} tensors, {checked['values']} values, "
          f"{checked['keys']} metadata keys checked, {len(errors)} problem(s)")
    for e in errors[:40]:
        print("  " + e)
    return len(errors)


def main() -> None:
    # Several checks in one run (one interpreter start): groups separated by "--".
    groups, cur = [], []
    for a in sys.argv[1:]:
        if a == "--":
            groups.append(cur)
            cur = []
        else:
            cur.append(a)
    groups.append(cur)
    if any(len(g) not in (2, 3) for g in groups):
        sys.exit("usage: tools/check_convert.py SRC_DIR OUT.gguf [MMPROJ.gguf] [-- SRC_DIR OUT.gguf [MMPROJ.gguf] ...]")
    problems = sum(check_one(g[0], g[1], g[2] if len(g) == 3 else None) for g in groups)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
