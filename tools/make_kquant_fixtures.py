#!/usr/bin/env python3
"""K-quant reference blocks made by llama.cpp itself, for CQuant's Q4_K / Q5_K / Q6_K quantizers.

gguf-py cannot quantize K-quants, so this script asks llama.cpp's own ggml library: ggml_quantize_chunk (without an
importance matrix, i.e. quantize_row_q{4,5,6}_K_ref, what llama-quantize writes when no imatrix is given), called
through ctypes from the shared libggml-base that the `llama-cpp-python` package (PyPI) ships in its llama_cpp/lib
folder. Nothing of llama.cpp is copied or committed: only the fixture this prints, which the C tests
(Tests/ckernels/test_kernels.c) hold cq_quantize_row to, byte for byte.

  quantize_<type>.in.bin   float32 inputs, 256-value super-blocks: random rows at scales 2^-12 … 2^11, rows around a
                           nonzero mean, one-signed rows, .5 ties on grids, constant blocks, zeros of both signs, zero
                           sub-blocks inside nonzero super-blocks, large magnitudes (fp16 overflow of d), tiny and
                           fp32-subnormal values, outliers, a single nonzero value, NaN and ±inf
  quantize_<type>.out.bin  the GGUF bytes ggml_quantize_chunk made of them

Files go to OUT (default Tests/VZQuantTests/Fixtures/quant), and the three cases into OUT/manifest.json beside
make_quant_fixtures.py's (format 1, labelled groups of values; ggml_divergences is empty: these bytes are ggml's own;
each case names its generator, seed and llama-cpp-python version). Earlier cases of the same names are replaced, the
rest of the manifest is kept, and make_quant_fixtures.py keeps these cases when it rewrites the manifest. So one
manifest lists every type CQuant quantizes, for the C tests and the Swift tests alike.
Seeded: the same numpy and llama.cpp give the same bytes. The library must be an x86-64 build (ggml's reference
quantizers are then free of FMA contraction, so the bytes do not depend on the compiler's choices).

Needs: numpy, llama-cpp-python (pip install llama-cpp-python; it builds llama.cpp, several minutes). --lib PATH
points at another libggml-base.so instead.
"""
import argparse
import ctypes
import json
import os
import platform
import sys

import numpy as np

from quant_manifest import dump_manifest

SEED = 20261207
GENERATOR = "tools/make_kquant_fixtures.py"  # make_quant_fixtures.py keeps the manifest cases marked with this
QK_K = 256
TYPES = {"q4_K": (12, 144), "q5_K": (13, 176), "q6_K": (14, 210)}  # name: (ggml type, bytes per super-block)


def find_ggml_base(explicit):
    if explicit:
        return explicit
    import llama_cpp  # only to locate its shared libraries
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        if os.path.exists(os.path.join(lib_dir, name)):
            return os.path.join(lib_dir, name)
    sys.exit(f"no libggml-base in {lib_dir}")


def load_quantizer(path):
    lib = ctypes.CDLL(path)
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t

    def quantize(ggml_type, block_bytes, x):
        x = np.ascontiguousarray(x, dtype="<f4")
        assert x.size % QK_K == 0
        out = np.zeros(x.size // QK_K * block_bytes, dtype=np.uint8)
        lib.ggml_quantize_init(ggml_type)
        n = lib.ggml_quantize_chunk(ggml_type, x.ctypes.data, out.ctypes.data, 0, 1, x.size, None)
        assert n == out.size, (n, out.size)
        return out

    return quantize


class Groups:
    """Labelled ranges of values, written to the manifest so a failing test can name the broken block."""

    def __init__(self):
        self.parts, self.groups, self.count = [], [], 0

    def add(self, label, values):
        values = np.asarray(values, dtype=np.float32).ravel()
        assert values.size % QK_K == 0, (label, values.size)
        self.groups.append({"start": self.count, "count": int(values.size), "label": label})
        self.parts.append(values)
        self.count += values.size

    def array(self):
        return np.concatenate(self.parts).astype(np.float32)


def inputs(rng):
    g = Groups()
    f = np.float32
    for i in range(10):
        s = f(2.0) ** int(rng.integers(-12, 12))
        g.add(f"random normal, scale 2^{int(np.log2(s))}", rng.standard_normal(QK_K) * s)
    for i in range(3):
        g.add("random around a nonzero mean", (rng.standard_normal(QK_K) * 0.3 + rng.uniform(-4, 4)))
    g.add("all positive", rng.uniform(0.1, 2.0, QK_K))
    g.add("all negative", -rng.uniform(0.5, 3.0, QK_K))
    g.add("sub-blocks of very different ranges",
          np.concatenate([rng.standard_normal(32) * f(2.0) ** e for e in (-8, -3, 0, 2, -1, 5, -6, 1)]))
    g.add(".5 ties on a grid of step 1", np.repeat(np.arange(-16, 16) + 0.5, 8))
    g.add(".5 ties on a grid of step 2^-5", (rng.integers(-40, 40, QK_K) + 0.5) / 32)
    g.add("integers 0…15 (a step fits)", rng.integers(0, 16, QK_K))
    g.add("integers -32…31", rng.integers(-32, 32, QK_K))
    g.add("constant positive", np.full(QK_K, 0.37))
    g.add("constant negative", np.full(QK_K, -2.5))
    g.add("all +0", np.zeros(QK_K))
    g.add("all -0", np.full(QK_K, -0.0))
    g.add("zeros of both signs", np.where(np.arange(QK_K) % 2, 0.0, -0.0))
    z = rng.standard_normal(QK_K)
    z[64:128] = 0.0
    z[200:232] = 0.0
    g.add("zero sub-blocks inside a random super-block", z)
    g.add("large, within fp16", rng.standard_normal(QK_K) * 4000 + 20000)
    g.add("±60000", rng.uniform(-60000, 60000, QK_K))
    g.add("1e30 (fp16 d overflows)", rng.standard_normal(QK_K) * 1e30)
    g.add("tiny 1e-30", rng.standard_normal(QK_K) * 1e-30)
    g.add("fp32 subnormals", rng.integers(1, 1 << 23, QK_K).astype(np.uint32).view(np.float32) *
          np.where(rng.random(QK_K) < 0.5, -1, 1).astype(np.float32))
    o = rng.standard_normal(QK_K) * 0.01
    o[77] = 3.0
    g.add("one outlier", o)
    one = np.zeros(QK_K)
    one[255] = -1.25
    g.add("single nonzero value, last", one)
    n = rng.standard_normal(QK_K)
    n[5] = np.nan
    g.add("one NaN", n)
    i = rng.standard_normal(QK_K)
    i[40] = np.inf
    g.add("one +inf", i)
    i2 = rng.standard_normal(QK_K)
    i2[130] = -np.inf
    g.add("one -inf", i2)
    return g


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests",
                                                  "VZQuantTests", "Fixtures", "quant"))
    ap.add_argument("--lib", help="path of libggml-base (default: the one llama-cpp-python ships)")
    args = ap.parse_args()
    assert sys.byteorder == "little"
    if platform.machine() not in ("x86_64", "AMD64"):
        print("warning: not x86-64; ggml may have been compiled with FMA contraction", file=sys.stderr)
    quantize = load_quantizer(find_ggml_base(args.lib))
    out_dir = os.path.normpath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    try:
        from importlib.metadata import version
        llama_version = version("llama-cpp-python")
    except Exception:
        llama_version = None
    cases = []
    for name, (ggml_type, block_bytes) in TYPES.items():
        g = inputs(np.random.default_rng([SEED, ggml_type]))
        x = g.array()
        with np.errstate(all="ignore"):
            y = quantize(ggml_type, block_bytes, x)
        case = f"quantize_{name}"
        with open(os.path.join(out_dir, f"{case}.in.bin"), "wb") as f:
            f.write(x.astype("<f4").tobytes())
        with open(os.path.join(out_dir, f"{case}.out.bin"), "wb") as f:
            f.write(y.tobytes())
        cases.append({
            "name": case, "op": "quantize", "type": name, "ggml_type": ggml_type, "values": int(x.size),
            "blocks": int(x.size // QK_K), "block_values": QK_K, "block_bytes": block_bytes,
            "input": f"{case}.in.bin", "expected": f"{case}.out.bin", "ggml_divergences": [], "groups": g.groups,
            "generator": GENERATOR, "seed": SEED, "numpy": np.__version__, "llama_cpp_python": llama_version,
            "source": "llama.cpp ggml_quantize_chunk, no imatrix, x86-64",
        })

    path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    else:
        manifest = {"format": 1, "cases": []}
    ours = {c["name"] for c in cases}
    manifest["cases"] = [c for c in manifest["cases"] if c["name"] not in ours] + cases
    text = dump_manifest(manifest)
    assert json.loads(text) == manifest
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    total = sum(os.path.getsize(os.path.join(out_dir, f"quantize_{n}.{e}.bin")) for n in TYPES for e in ("in", "out"))
    print(f"{len(cases)} cases, {total} bytes of blocks in {out_dir}")


if __name__ == "__main__":
    main()
