#!/usr/bin/env python3
"""The tensor types llama.cpp's llama-quantize chooses for its mixes, for vzquant's QuantMix rules.

For a few small llama/qwen2-shaped models (random f32 weights written with gguf-py: deep and shallow, grouped and
plain attention, tied and untied output, row lengths that K-quants cannot cut, and an 80-layer model of llama.cpp's
70B class), this script asks llama.cpp itself — `llama_model_quantize` of the `llama-cpp-python` package (PyPI; it
builds llama.cpp) — to quantize each as Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M and Q6_K, reads the type of every tensor back
with gguf-py, and writes one JSON file: per model its tensors (name, GGUF dims), whether its KV heads are grouped,
and per mix the type of every tensor, in the order of the tensor list. Nothing of llama.cpp is copied or committed: only that JSON, which
ConvertTests hold TypePolicy to, tensor for tensor.

Needs: numpy, gguf, llama-cpp-python. Usage: make_quant_mix_fixtures.py [OUT.json]
"""
import json
import os
import sys
import tempfile

import numpy as np
import gguf
import llama_cpp

MIXES = {"q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18}

# name, arch, layers, hidden, heads, kv heads, ffn, vocab, tied
MODELS = [
    ("deep-gqa-untied", "llama", 16, 256, 4, 2, 768, 512, False),
    ("smollm-shaped-tied", "llama", 10, 576, 9, 3, 1536, 320, True),
    ("qwen2-shallow", "qwen2", 3, 512, 8, 2, 1280, 640, False),
    ("odd-rows", "llama", 6, 288, 6, 6, 800, 300, False),
    ("seventy-b-class", "llama", 80, 256, 4, 1, 256, 256, True),
]


def write_model(path, arch, layers, hidden, heads, kv, ffn, vocab, tied, rng):
    w = gguf.GGUFWriter(path, arch)
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(0)
    w.add_vocab_size(vocab)
    head_dim = hidden // heads
    tensors = [("token_embd.weight", (vocab, hidden)), ("output_norm.weight", (hidden,))]
    if not tied:
        tensors.append(("output.weight", (vocab, hidden)))
    for i in range(layers):
        p = f"blk.{i}."
        tensors += [(p + "attn_norm.weight", (hidden,)), (p + "attn_q.weight", (hidden, hidden)),
                    (p + "attn_k.weight", (kv * head_dim, hidden)), (p + "attn_v.weight", (kv * head_dim, hidden)),
                    (p + "attn_output.weight", (hidden, hidden)), (p + "ffn_norm.weight", (hidden,)),
                    (p + "ffn_gate.weight", (ffn, hidden)), (p + "ffn_up.weight", (ffn, hidden)),
                    (p + "ffn_down.weight", (hidden, ffn))]
        if arch == "qwen2":
            tensors += [(p + "attn_q.bias", (hidden,)), (p + "attn_k.bias", (kv * head_dim,)), (p + "attn_v.bias", (kv * head_dim,))]
    for name, shape in tensors:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "Tests/VZQuantTests/Fixtures/quant_mixes/llama_cpp_types.json"
    rng = np.random.default_rng(20261207)
    result = {"generator": "tools/make_quant_mix_fixtures.py (llama.cpp's llama_model_quantize via llama-cpp-python "
                           + llama_cpp.__version__ + ")", "models": []}
    with tempfile.TemporaryDirectory() as d:
        for name, arch, layers, hidden, heads, kv, ffn, vocab, tied in MODELS:
            src = os.path.join(d, name + ".gguf")
            write_model(src, arch, layers, hidden, heads, kv, ffn, vocab, tied, rng)
            reader = gguf.GGUFReader(src)
            model = {"name": name, "grouped_kv": kv < heads,
                     "tensors": [[t.name, [int(x) for x in t.shape]] for t in reader.tensors], "types": {}}
            for mix, ftype in MIXES.items():
                dst = os.path.join(d, f"{name}-{mix}.gguf")
                params = llama_cpp.llama_model_quantize_default_params()
                params.ftype = ftype
                params.nthread = 1
                if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params) != 0:
                    raise SystemExit(f"llama.cpp failed to quantize {name} as {mix}")
                chosen = {t.name: t.tensor_type.name.lower() for t in gguf.GGUFReader(dst).tensors}
                model["types"][mix] = [chosen[t[0]] for t in model["tensors"]]
                os.remove(dst)
            result["models"].append(model)
            print(f"{name}: {len(model['tensors'])} tensors", file=sys.stderr)
    with open(out, "w") as f:
        json.dump(result, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
