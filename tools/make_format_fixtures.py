#!/usr/bin/env python3
"""Fixtures for Tests/VZQuantTests/FormatTests.swift, made by independent writers (gguf-py, and plain
struct + json for safetensors), so the Swift readers are tested against files they did not write.

Writes to OUT (default Tests/VZQuantTests/Fixtures/formats):

  python_writer.gguf   gguf.GGUFWriter output: every metadata value type (incl. a nested array, UTF-8
                       strings, 64-bit extremes), alignment 64, tensors F32 / F16 / Q8_0 / Q4_0 (quantized with
                       gguf.quants.quantize) of assorted shapes
  python_writer.json   what the file holds, in tools/gguf_verify.py's EXPECTED format (values dequantized by
                       gguf.quants.dequantize); the script checks the file with gguf_verify.py before exiting
  tiny.safetensors     F32, F16, BF16, I64 tensors, a 0-element tensor and __metadata__
  tiny.json            expected names, dtypes, shapes, values (F32/F16/BF16 as floats, I64 as ints)
  sharded/             model.safetensors.index.json + two shards, same tensors split across them

Everything is seeded. Needs: numpy, gguf (pip install gguf).
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V
from gguf.quants import dequantize, quantize

SEED = 20251123
HERE = os.path.dirname(os.path.abspath(__file__))


def typed(vtype, value, element=None):
    """A value in gguf_verify.py's EXPECTED form."""
    if vtype == V.ARRAY:
        return {"type": "ARRAY", "element": element.name, "value": value}
    return {"type": vtype.name, "value": value}


def make_gguf(out):
    rng = np.random.default_rng(SEED)
    path = os.path.join(out, "python_writer.gguf")
    w = gguf.GGUFWriter(path, arch="vzq-test")
    meta = [("general.architecture", typed(V.STRING, "vzq-test"))]
    w.add_custom_alignment(64)
    meta.append(("general.alignment", typed(V.UINT32, 64)))

    def kv(key, value, vtype, sub=None, expected=None):
        w.add_key_value(key, value, vtype, sub_type=sub)
        meta.append((key, expected if expected is not None else typed(vtype, value)))

    kv("test.u8", 255, V.UINT8)
    kv("test.i8", -128, V.INT8)
    kv("test.u16", 65535, V.UINT16)
    kv("test.i16", -32768, V.INT16)
    kv("test.u32", 4294967295, V.UINT32)
    kv("test.i32", -2147483648, V.INT32)
    kv("test.f32", 0.1, V.FLOAT32, expected=typed(V.FLOAT32, float(np.float32(0.1))))
    kv("test.bool_true", True, V.BOOL)
    kv("test.bool_false", False, V.BOOL)
    kv("test.string", "héllo, wörld ✓ 日本", V.STRING)
    kv("test.empty_string", "", V.STRING)
    kv("test.u64", 18446744073709551615, V.UINT64)
    kv("test.i64", -9223372036854775808, V.INT64)
    kv("test.f64", 2.718281828459045, V.FLOAT64)
    strings = ["<s>", "</s>", "▁the", "ü", ""]
    kv("test.strings", strings, V.ARRAY, expected=typed(V.ARRAY, [typed(V.STRING, s) for s in strings], V.STRING))
    ints = [1, -2, 3, 2147483647]
    kv("test.ints", ints, V.ARRAY, sub=V.INT32, expected=typed(V.ARRAY, [typed(V.INT32, i) for i in ints], V.INT32))
    floats = [0.5, -1.25, 3.0e-5]
    kv("test.floats", floats, V.ARRAY, sub=V.FLOAT32,
       expected=typed(V.ARRAY, [typed(V.FLOAT32, float(np.float32(f))) for f in floats], V.FLOAT32))
    u8s = [0, 1, 254, 255]
    kv("test.u8s", u8s, V.ARRAY, sub=V.UINT8, expected=typed(V.ARRAY, [typed(V.UINT8, i) for i in u8s], V.UINT8))
    nested = [[1, 2], [3]]
    kv("test.nested", nested, V.ARRAY,
       expected=typed(V.ARRAY, [typed(V.ARRAY, [typed(V.INT32, i) for i in inner], V.INT32) for inner in nested], V.ARRAY))

    tensors = []

    def add(name, values, qtype):
        """values: numpy float32 array in PyTorch order (outermost first)."""
        if qtype == T.F32:
            data = values.astype(np.float32)
        elif qtype == T.F16:
            data = values.astype(np.float16)
        else:
            data = quantize(values.astype(np.float32), qtype)
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qtype)
        back = dequantize(data, qtype).astype(np.float32).reshape(-1)
        tensors.append({"name": name, "type": qtype.name, "dims": list(reversed(values.shape)),
                        "values": [float(x) for x in back]})

    add("embd.weight", rng.standard_normal((3, 64)).astype(np.float32), T.F32)
    add("norm.bias", rng.standard_normal((7,)).astype(np.float32), T.F32)
    add("blk.0.attn_q.weight", rng.standard_normal((4, 64)).astype(np.float32), T.F16)
    add("blk.0.ffn_up.weight", rng.standard_normal((5, 96)).astype(np.float32), T.Q8_0)
    add("blk.0.ffn_down.weight", rng.standard_normal((2, 3, 64)).astype(np.float32), T.Q4_0)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    expected = {"alignment": 64, "metadata": [{"key": k, "value": v} for k, v in meta], "tensors": tensors}
    json_path = os.path.join(out, "python_writer.json")
    with open(json_path, "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    # The expectations must hold for gguf-py's own reader before the Swift reader is held to them.
    subprocess.run([sys.executable, os.path.join(HERE, "gguf_verify.py"), path, json_path], check=True)


def bf16_bytes(values):
    """float32 → bf16 by dropping the low half; the test values are exact in bf16, so no rounding happens."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    assert np.all(bits & 0xFFFF == 0), "bf16 fixture values must be exact"
    return (bits >> 16).astype("<u2").tobytes()


def safetensors_bytes(tensors, metadata):
    """tensors: list of (name, dtype, shape, raw bytes), laid out in order."""
    header, data, offset = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # the reference writer pads the header with spaces to 8 bytes
    return struct.pack("<Q", len(text)) + text + data


def make_safetensors(out):
    rng = np.random.default_rng(SEED + 1)
    f32 = rng.standard_normal((2, 3)).astype(np.float32)
    f16 = rng.standard_normal((4,)).astype(np.float16)
    bf16 = np.array([[1.0, -2.5, 0.15625], [3.0, 0.0, -0.75]], dtype=np.float32)
    i64 = np.array([1, -1, 9007199254740993], dtype=np.int64)
    tensors = [
        ("model.embed.weight", "F32", f32.shape, f32.astype("<f4").tobytes(), [float(x) for x in f32.reshape(-1)]),
        ("model.norm.weight", "F16", f16.shape, f16.astype("<f2").tobytes(), [float(x) for x in f16.astype(np.float32)]),
        ("model.proj.weight", "BF16", bf16.shape, bf16_bytes(bf16), [float(x) for x in bf16.reshape(-1)]),
        ("model.position_ids", "I64", i64.shape, i64.astype("<i8").tobytes(), [int(x) for x in i64]),
        ("model.empty", "F32", (0, 4), b"", []),
    ]
    metadata = {"format": "pt", "note": "vzquant fixture"}
    with open(os.path.join(out, "tiny.safetensors"), "wb") as f:
        f.write(safetensors_bytes([t[:4] for t in tensors], metadata))
    expected = {"metadata": metadata,
                "tensors": [{"name": n, "dtype": d, "shape": list(s), "values": v} for n, d, s, _, v in tensors]}
    with open(os.path.join(out, "tiny.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    # The same tensors in two shards with an index, as transformers' save_pretrained writes them.
    shard_dir = os.path.join(out, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    shards = {"model-00001-of-00002.safetensors": tensors[:2], "model-00002-of-00002.safetensors": tensors[2:]}
    weight_map = {}
    for shard, ts in shards.items():
        with open(os.path.join(shard_dir, shard), "wb") as f:
            f.write(safetensors_bytes([t[:4] for t in ts], {"format": "pt"}))
        for t in ts:
            weight_map[t[0]] = shard
    with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(len(t[3]) for t in tensors)}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "Tests", "VZQuantTests", "Fixtures", "formats"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    make_gguf(args.out)
    make_safetensors(args.out)
    print(f"fixtures written to {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
