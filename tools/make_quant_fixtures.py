#!/usr/bin/env python3
"""Bit-compatibility fixtures for CQuant's block formats, made by gguf-py (the `gguf` package).

gguf.quants mirrors ggml's reference C code, independently of CQuant. This script records its answers so
Tests/VZQuantTests/QuantFixtureTests.swift can demand the same bytes and bits from cq_quantize_row and
cq_dequantize_row:

  quantize_<type>    float32 inputs (random blocks of mixed scales plus hand-made nasty blocks) and the
                     bytes gguf.quants.quantize makes of them         (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16)
  dequantize_<type>  random valid raw blocks (random bytes, fp16 scale fields replaced by finite halves)
                     and gguf.quants.dequantize's float32 values      (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
                                                                       Q4_K, Q5_K, Q6_K, F16, BF16)

Files go to OUT (default Tests/VZQuantTests/Fixtures/quant): <case>.in.bin, <case>.out.bin (little-endian:
float32 for values, raw GGUF bytes for blocks) and manifest.json, which lists every case with its type, its
counts, its file names and labelled value ranges ("groups") so a failing test can say which block broke.
Where gguf-py itself departs from ggml's reference C (see ggml_divergences), the case lists the block with the
bytes ggml makes ("ggml_divergences"); the .out.bin file always holds gguf-py's bytes unchanged. To find those
blocks, every quantized block of the 32-value types is also computed by a scalar transcription of ggml's reference
C (ggml_quantize_block), which must give gguf-py's bytes on every other block: a difference of an unknown kind
stops the script.
Everything is seeded: re-running with the same numpy and gguf reproduces the same bytes. The K-quants' quantize
cases in the manifest come from tools/make_kquant_fixtures.py (llama.cpp's bytes) and are kept as they are.

Needs: numpy, gguf (pip install gguf).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

import gguf
from quant_manifest import dump_manifest
import gguf.quants as gq
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

SEED = 20240611
QK = 32  # values per block of Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1
QK_K = 256  # values per K-quant super-block

# Offsets of the fp16 fields (scales, mins) inside one block of each quantized type.
HALF_FIELDS = {
    T.Q8_0: [0],
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def f32_from_bits(bits):
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def half_bits(values):
    return np.asarray(values, dtype=np.float32).astype(np.float16).view(np.uint16)


class Groups:
    """Labelled ranges of values, written to the manifest so test failures can name the broken block."""

    def __init__(self):
        self.values = []
        self.groups = []
        self.count = 0

    def add(self, label, values):
        v = np.asarray(values, dtype=np.float32).ravel()
        self.groups.append({"start": self.count, "count": int(v.size), "label": label})
        self.values.append(v)
        self.count += v.size

    def array(self):
        return np.concatenate(self.values).astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# Quantize inputs
# ------------------------------------------------------------------------------------------------------------

def random_mixed_blocks(rng, n_blocks, block):
    """Blocks of normal values, each block at its own scale (1e-6 … 1e6), some with an outlier."""
    out = []
    for _ in range(n_blocks):
        scale = np.float32(10.0 ** rng.uniform(-6, 6))
        v = rng.standard_normal(block).astype(np.float32) * scale
        if rng.random() < 0.3:
            v[rng.integers(block)] *= np.float32(rng.uniform(4, 40))
        out.append(v)
    return np.concatenate(out).astype(np.float32)


def block_of(rng, fill, block=QK):
    v = np.asarray(fill, dtype=np.float32)
    assert v.size == block, v.size
    return v


def q8_0_nasty(rng, g):
    b = QK
    g.add("all zeros", np.zeros(b))
    g.add("all negative zeros", -np.zeros(b))
    # amax 127 → d = 1, id = 1: every k + 0.5 is an exact tie, rounded away from zero
    ties = np.array([127.0] + [k + 0.5 for k in range(-16, 15)], dtype=np.float32)
    g.add("x.5 ties after scaling (d = 1)", ties)
    # amax 127·2^-7 → d = 2^-7 exactly, id = 2^7: ties at a power-of-two scale, both signs
    t2 = np.array([-127.0] + [(k + 0.5) for k in range(-15, 16)], dtype=np.float32) * np.float32(2.0 ** -7)
    g.add("x.5 ties after scaling (d = 2^-7), max negative", t2)
    g.add("ties at 0.5 and -0.5 only, d = 1", np.array([127.0, -0.5, 0.5, 1.5, -1.5, 2.5, -2.5] + [0.5] * 25))
    v = rng.uniform(-4, 4, b).astype(np.float32)
    v[7] = -5.0
    g.add("largest magnitude negative", v)
    v = rng.uniform(-4, 4, b).astype(np.float32)
    v[19] = 5.0
    g.add("largest magnitude positive", v)
    v = rng.uniform(-2, 2, b).astype(np.float32)
    v[3], v[10] = 3.0, -3.0
    g.add("max magnitude tie, positive first", v)
    v = rng.uniform(-2, 2, b).astype(np.float32)
    v[3], v[10] = -3.0, 3.0
    g.add("max magnitude tie, negative first", v)
    g.add("constant block", np.full(b, 0.1))
    v = np.zeros(b, dtype=np.float32)
    v[31] = -1e-3
    g.add("single nonzero value, last", v)
    g.add("tiny normal values (fp16 d underflows to 0)", rng.uniform(-1, 1, b) * 1e-30)
    g.add("small values (fp16 d subnormal)", rng.uniform(-1, 1, b) * 2e-4)
    v = rng.uniform(-1, 1, b).astype(np.float32)
    v[::4] = f32_from_bits(rng.integers(1, 0x7FFFFF, b // 4))
    g.add("fp32 subnormals mixed into a normal block", v)
    g.add("huge values (fp16 d overflows to inf)", rng.uniform(-1, 1, b) * 1e7)
    g.add("near fp32 max", rng.uniform(-1, 1, b) * 3e38)
    v = (rng.uniform(-1, 1, b) * 10.0 ** rng.uniform(-3, 3, b)).astype(np.float32)
    g.add("magnitudes 1e-3 … 1e3 in one block", v)
    g.add("alternating ±amax", np.tile([1.0, -1.0], b // 2) * 0.75)
    # 1/d overflows to inf in fp32 (amax < ~127·2^-128): ggml's C casts inf/NaN to int8 here (undefined);
    # gguf-py's numpy gives 0. Recorded so CQuant's answer is pinned down.
    g.add("subnormal-only block (1/d overflows)", f32_from_bits(rng.integers(1, 0x7FFFFF, b)) * np.float32(-1) ** rng.integers(0, 2, b))


def q4_0_nasty(rng, g):
    b = QK
    g.add("all zeros", np.zeros(b))
    g.add("all negative zeros", -np.zeros(b))
    # max -8 → d = 1, id = 1: x + 8.5 hits k + 0.0 exactly for x = k - 0.5 (the truncation boundary)
    ties = np.array([-8.0] + [k + 0.5 for k in range(-8, 7)] + [k * 0.5 for k in range(-8, 8)], dtype=np.float32)
    g.add("x.5 boundaries after scaling (d = 1, max negative)", ties)
    ties = np.array([8.0] + [k + 0.5 for k in range(-8, 7)] + [k * 0.5 for k in range(-8, 8)], dtype=np.float32)
    g.add("x.5 boundaries after scaling (d = -1, max positive)", ties)
    v = np.array([-8.0, 8.0] + [7.5, -7.5] * 15, dtype=np.float32)
    g.add("max magnitude tie -8 then 8 (code 16 clamps to 15)", v)
    v = np.array([8.0, -8.0] + [7.5, -7.5] * 15, dtype=np.float32)
    g.add("max magnitude tie 8 then -8", v)
    v = rng.uniform(-4, 4, b).astype(np.float32)
    v[5] = -6.0
    g.add("largest magnitude negative", v)
    v = rng.uniform(-4, 4, b).astype(np.float32)
    v[25] = 6.0
    g.add("largest magnitude positive", v)
    v = rng.uniform(-2, 2, b).astype(np.float32)
    v[0], v[31] = 3.0, -3.0
    g.add("max magnitude tie, positive first", v)
    v = rng.uniform(-2, 2, b).astype(np.float32)
    v[0], v[31] = -3.0, 3.0
    g.add("max magnitude tie, negative first", v)
    g.add("constant positive block", np.full(b, 0.37))
    g.add("constant negative block", np.full(b, -0.37))
    v = np.zeros(b, dtype=np.float32)
    v[16] = 2.0
    g.add("single nonzero value in the high half", v)
    g.add("tiny normal values (fp16 d underflows to 0)", rng.uniform(-1, 1, b) * 1e-30)
    g.add("small values (fp16 d subnormal)", rng.uniform(-1, 1, b) * 2e-4)
    v = rng.uniform(-1, 1, b).astype(np.float32)
    v[1::4] = f32_from_bits(rng.integers(1, 0x7FFFFF, b // 4))
    g.add("fp32 subnormals mixed into a normal block", v)
    g.add("huge values (fp16 d overflows to inf)", rng.uniform(-1, 1, b) * 1e7)
    g.add("near fp32 max", rng.uniform(-1, 1, b) * 3e38)
    v = (rng.uniform(-1, 1, b) * 10.0 ** rng.uniform(-3, 3, b)).astype(np.float32)
    g.add("magnitudes 1e-3 … 1e3 in one block", v)
    # 1/d overflows to inf: values of the max's sign scale to -inf, the others to +inf, zeros to NaN
    v = f32_from_bits(rng.integers(1, 0x7FFFFF, b)) * np.float32(-1) ** rng.integers(0, 2, b)
    v[9] = 0.0
    g.add("subnormal-only block (1/d overflows)", v)


def q5_0_nasty(rng, g):
    b = QK
    g.add("all zeros", np.zeros(b))
    g.add("all negative zeros", -np.zeros(b))
    g.add("zeros of both signs, -0.0 first", np.tile([-0.0, 0.0], b // 2))
    g.add("zeros of both signs, +0.0 first", np.tile([0.0, -0.0], b // 2))
    # max -16 → d = 1, id = 1: x + 16.5 hits k + 0.0 exactly for x = k - 0.5 (the truncation boundary)
    ties = np.array([-16.0] + [k + 0.5 for k in range(-16, 15)], dtype=np.float32)
    g.add("x.5 boundaries after scaling (d = 1, max negative)", ties)
    ties = np.array([16.0] + [k + 0.5 for k in range(-16, 15)], dtype=np.float32)
    g.add("x.5 boundaries after scaling (d = -1, max positive)", ties)
    # max 2 → d = -2^-3, id = -8: boundaries k·2^-3 + 2^-4, and their float neighbours
    t = np.array([2.0] + [(k + 0.5) / 8 for k in range(-16, 15)], dtype=np.float32)
    t[1::3] = np.nextafter(t[1::3], np.float32(np.inf))
    t[2::3] = np.nextafter(t[2::3], np.float32(-np.inf))
    g.add("x.5 boundaries and their neighbours (d = -2^-3)", t)
    v = np.array([-16.0, 16.0] + [15.5, -15.5] * 15, dtype=np.float32)
    g.add("max magnitude tie -16 then 16 (code 32 clamps to 31)", v)
    v = np.array([16.0, -16.0] + [15.5, -15.5] * 15, dtype=np.float32)
    g.add("max magnitude tie 16 then -16", v)
    v = rng.uniform(-4, 4, b).astype(np.float32)
    v[11] = -6.0
    g.add("largest magnitude negative", v)
    v = rng.uniform(-4, 4, b).astype(np.float32)
    v[30] = 6.0
    g.add("largest magnitude positive", v)
    v = rng.uniform(-2, 2, b).astype(np.float32)
    v[4], v[20] = 3.0, -3.0
    g.add("max magnitude tie, positive first", v)
    v = rng.uniform(-2, 2, b).astype(np.float32)
    v[4], v[20] = -3.0, 3.0
    g.add("max magnitude tie, negative first", v)
    g.add("constant positive block", np.full(b, 0.37))
    g.add("constant negative block", np.full(b, -0.37))
    v = np.zeros(b, dtype=np.float32)
    v[17] = -2.0
    g.add("single nonzero value in the high half", v)
    g.add("tiny normal values (fp16 d underflows to 0)", rng.uniform(-1, 1, b) * 1e-30)
    g.add("small values (fp16 d subnormal)", rng.uniform(-1, 1, b) * 4e-4)
    v = rng.uniform(-1, 1, b).astype(np.float32)
    v[2::4] = f32_from_bits(rng.integers(1, 0x7FFFFF, b // 4))
    g.add("fp32 subnormals mixed into a normal block", v)
    g.add("huge values (fp16 d overflows to inf)", rng.uniform(-1, 1, b) * 2e7)
    g.add("near fp32 max", rng.uniform(-1, 1, b) * 3e38)
    v = (rng.uniform(-1, 1, b) * 10.0 ** rng.uniform(-3, 3, b)).astype(np.float32)
    g.add("magnitudes 1e-3 … 1e3 in one block", v)
    v = f32_from_bits(rng.integers(1, 0x7FFFFF, b)) * np.float32(-1) ** rng.integers(0, 2, b)
    v[21] = 0.0
    g.add("subnormal-only block (1/d overflows)", v)
    v = rng.uniform(-1, 1, b).astype(np.float32)
    v[6] = np.inf
    g.add("+inf among finite values (d = -inf, inf·0 is NaN)", v)
    v = rng.uniform(-1, 1, b).astype(np.float32)
    v[0], v[27] = -np.inf, np.inf
    g.add("-inf first, +inf later", v)
    v = rng.uniform(-1, 1, b).astype(np.float32)
    v[13] = np.nan
    g.add("NaN among finite values", v)
    g.add("all NaN", np.full(b, np.nan))


def affine_nasty(top):
    """Q4_1 (top 15) and Q5_1 (top 31): value = d·code + m, m = min, d = (max - min) / top."""

    def make(rng, g):
        b = QK
        g.add("all zeros", np.zeros(b))
        g.add("all negative zeros", -np.zeros(b))
        g.add("zeros of both signs, -0.0 first", np.tile([-0.0, 0.0], b // 2))
        g.add("zeros of both signs, +0.0 first", np.tile([0.0, -0.0], b // 2))
        v = np.concatenate([[0.75], np.tile([-0.0, 0.0], 15), [0.0]])
        g.add("positive values, min a zero of both signs (-0.0 first)", v)
        v = np.concatenate([[0.75], np.tile([0.0, -0.0], 15), [-0.0]])
        g.add("positive values, min a zero of both signs (+0.0 first)", v)
        v = np.concatenate([[-0.75], np.tile([-0.0, 0.0], 15), [0.0]])
        g.add("negative values, max a zero of both signs", v)
        # min 0, max top → d = 1, id = 1: (x - min)·id + 0.5 is exactly k + 1.0 for x = k + 0.5
        ties = np.array([0.0, top] + [k + 0.5 for k in range(top)] * 2, dtype=np.float32)[:b]
        g.add("x.5 boundaries after scaling (d = 1, min 0)", ties)
        ties = np.array([-8.0, top - 8.0] + [k + 0.5 - 8.0 for k in range(top)] * 2, dtype=np.float32)[:b]
        g.add("x.5 boundaries after scaling (d = 1, min -8)", ties)
        # min 0, max top/8 → d = 2^-3 exactly: boundaries (k + 0.5)/8 and their float neighbours
        t = np.array([0.0, top / 8.0] + [(k + 0.5) / 8 for k in range(top)] * 2, dtype=np.float32)[:b]
        t[2::3] = np.nextafter(t[2::3], np.float32(np.inf))
        t[3::3] = np.nextafter(t[3::3], np.float32(-np.inf))
        g.add("x.5 boundaries and their neighbours (d = 2^-3)", t)
        g.add("constant positive block (d = 0)", np.full(b, 0.37))
        g.add("constant negative block (d = 0)", np.full(b, -0.37))
        g.add("constant block past fp16 range (m = inf)", np.full(b, 1e5))
        v = np.zeros(b, dtype=np.float32)
        v[16] = 2.0
        g.add("single nonzero value in the high half", v)
        v = -rng.uniform(0.5, 3.0, b).astype(np.float32)
        g.add("all negative (negative max)", v)
        v = rng.uniform(-4, 4, b).astype(np.float32)
        v[9] = -6.0
        g.add("largest magnitude negative", v)
        v = rng.uniform(0.25, 1.0, b).astype(np.float32)
        v[3], v[28] = 0.25, 0.25
        g.add("min tie", v)
        v = (1000.0 + rng.uniform(-0.5, 0.5, b)).astype(np.float32)
        g.add("offset 1000, range 1 (m rounds to fp16's 0.5 grid)", v)
        g.add("tiny normal values (fp16 d and m underflow to 0)", rng.uniform(-1, 1, b) * 1e-30)
        g.add("small values (fp16 d subnormal)", rng.uniform(-1, 1, b) * 2e-4)
        v = rng.uniform(-1, 1, b).astype(np.float32)
        v[1::4] = f32_from_bits(rng.integers(1, 0x7FFFFF, b // 4))
        g.add("fp32 subnormals mixed into a normal block", v)
        g.add("range past fp16 (d overflows to inf, m finite)", rng.uniform(0, 1, b) * 2e6 + np.float32(-1000.0))
        g.add("huge values (d and m overflow to inf)", rng.uniform(-1, 1, b) * 1e7)
        v = (rng.uniform(-1, 1, b) * 3e38).astype(np.float32)
        v[0], v[1] = 3e38, -3e38
        g.add("near fp32 max (max - min overflows fp32)", v)
        v = (rng.uniform(-1, 1, b) * 10.0 ** rng.uniform(-3, 3, b)).astype(np.float32)
        g.add("magnitudes 1e-3 … 1e3 in one block", v)
        v = f32_from_bits(rng.integers(1, 0x7FFFFF, b)) * np.float32(-1) ** rng.integers(0, 2, b)
        g.add("subnormal-only block (1/d overflows or d rounds to 0)", v)
        v = f32_from_bits(rng.integers(1, 0x400, b))
        v[5] = 0.0
        g.add("tiny subnormal-only block (d rounds to 0)", v)
        v = rng.uniform(-1, 1, b).astype(np.float32)
        v[6] = np.inf
        g.add("+inf among finite values (d = inf, inf·0 is NaN)", v)
        v = rng.uniform(-1, 1, b).astype(np.float32)
        v[25] = -np.inf
        g.add("-inf among finite values (m = -inf)", v)
        v = rng.uniform(-1, 1, b).astype(np.float32)
        v[0], v[31] = -np.inf, np.inf
        g.add("-inf and +inf", v)
        g.add("all +inf", np.full(b, np.inf))
        g.add("all -inf", np.full(b, -np.inf))
        v = rng.uniform(-1, 1, b).astype(np.float32)
        v[13] = np.nan
        g.add("NaN among finite values", v)
        g.add("all NaN", np.full(b, np.nan))

    return make


def random_offset_blocks(rng, n_blocks, block):
    """Blocks around a nonzero mean (where a min pays off), each at its own scale (1e-4 … 1e3)."""
    out = []
    for _ in range(n_blocks):
        scale = np.float32(10.0 ** rng.uniform(-4, 3))
        v = (rng.uniform(-1, 1) * 4 + rng.standard_normal(block)) * scale
        out.append(v.astype(np.float32))
    return np.concatenate(out).astype(np.float32)


def f16_inputs(rng, g):
    big = [60000.0, -60000.0, 65504.0, -65504.0, 65519.0, -65519.0, 65519.996, 65520.0, -65520.0,
           65535.0, 70000.0, -70000.0, 1e10, -1e10, 3.4e38, np.inf, -np.inf]
    g.add("near and past fp16 overflow, inf", big)
    g.add("quiet NaNs (signed, with payload)", f32_from_bits([0x7FC00000, 0xFFC00000, 0x7FC12345, 0x7FFFFFFF]))
    h = 2.0 ** -24  # smallest fp16 subnormal
    sub = [0.0, -0.0, h, -h, h / 2, -h / 2, h * 0.5000001, h * 0.4999999, 1.5 * h, 2.5 * h, 3.5 * h,
           h * 1023, h * 1023.5, h * 1024, -h * 1023.5, 2.0 ** -14, 2.0 ** -14 * (1 - 2.0 ** -12),
           2.0 ** -26, 2.0 ** -30, -(2.0 ** -26)]
    g.add("fp16 subnormals, their rounding ties, the normal boundary", sub)
    g.add("fp32 subnormals", f32_from_bits([1, 2, 0x80000001, 0x7FFFFF, 0x807FFFFF, 0x00400000]))
    ulp = 2.0 ** -10
    ties = [1 + ulp / 2, 1 + 3 * ulp / 2, -(1 + ulp / 2), -(1 + 3 * ulp / 2), 2048 + 1, 2048 + 3, 1024.5, 1025.5,
            1 + ulp / 2 + 2.0 ** -23, 1 + ulp / 2 - 2.0 ** -24, 2047.5 + 0.25, 4095.0 + 0.5]
    g.add("round-to-nearest-even ties in the normal range", ties)
    # every fp32 exponent a half can reach, random mantissas and signs
    e = rng.integers(-30, 17, 512)
    v = rng.uniform(1, 2, 512) * 2.0 ** e * np.where(rng.random(512) < 0.5, -1, 1)
    g.add("random values over the whole fp16 range", v)
    # fp32 values exactly halfway between neighbouring halves: the low 13 mantissa bits are 0x1000
    bits = (rng.integers(0x38800000, 0x477F0000, 256, dtype=np.uint32) & np.uint32(0xFFFFE000)) | np.uint32(0x1000)
    bits |= np.where(rng.random(256) < 0.5, np.uint32(0x80000000), np.uint32(0)).astype(np.uint32)
    g.add("exact ties between neighbouring halves", f32_from_bits(bits))
    g.add("mixed-scale blocks", random_mixed_blocks(rng, 40, QK))


def bf16_inputs(rng, g):
    nans = [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7F810000, 0x7FFFFFFF, 0x7FC08000,
            0x7F80FFFF, 0xFFFF8000]
    g.add("NaNs: quiet, signalling, payload only in the low half", f32_from_bits(nans))
    g.add("±inf, fp32 max (rounds to inf), just below", f32_from_bits(
        [0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7E8000]))
    # low half exactly 0x8000: ties, to even (upper half even stays, odd rounds up); 0x7FFF / 0x8001 around them
    ties = []
    for upper in [0x3F80, 0x3F81, 0xBF80, 0xBF81, 0x4049, 0x404A, 0x0001, 0x0000, 0x8000, 0x007F, 0x7F7F]:
        for low in [0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF]:
            ties.append((upper << 16) | low)
    g.add("rounding ties and their neighbours", f32_from_bits(ties))
    g.add("zeros and fp32 subnormals", f32_from_bits([0, 0x80000000, 1, 0x80000001, 0x7FFFFF, 0x00008000, 0x00018000,
                                                       0x00400000, 0x807F8000]))
    bits = rng.integers(0, 2**32, 512, dtype=np.uint64).astype(np.uint32)
    g.add("random bit patterns (any class)", f32_from_bits(bits))
    e = rng.integers(-40, 40, 512)
    v = rng.uniform(1, 2, 512) * 2.0 ** e * np.where(rng.random(512) < 0.5, -1, 1)
    g.add("random values", v)
    g.add("mixed-scale blocks", random_mixed_blocks(rng, 30, QK))


# ------------------------------------------------------------------------------------------------------------
# Dequantize inputs
# ------------------------------------------------------------------------------------------------------------

def reasonable_halves(rng, n):
    """Finite fp16 bit patterns: mostly log-uniform magnitudes 1e-4 … 4 of either sign."""
    mags = 10.0 ** rng.uniform(-4, 0.6, n)
    signs = np.where(rng.random(n) < 0.25, -1.0, 1.0)
    return half_bits(mags * signs)


def random_blocks(rng, qtype, n_blocks):
    block_values, block_bytes = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    fields = HALF_FIELDS[qtype]
    special = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00, 0xBC00, 0x8001]
    labels = []
    for i in range(n_blocks):
        for k, off in enumerate(fields):
            if i < len(special):
                # the first blocks get special scales (first field) with ordinary second fields
                h = special[i] if k == 0 else int(reasonable_halves(rng, 1)[0])
            else:
                h = int(reasonable_halves(rng, 1)[0])
            raw[i, off] = h & 0xFF
            raw[i, off + 1] = h >> 8
        first = int(raw[i, fields[0]]) | (int(raw[i, fields[0] + 1]) << 8)
        labels.append(f"random block, scale fp16 0x{first:04x}")
    # one block with all-zero / all-ones quant bits, to pin the edges of every code range
    if n_blocks > len(special) + 2:
        for i, fill in [(len(special), 0x00), (len(special) + 1, 0xFF)]:
            keep = {off + j for off in fields for j in (0, 1)}
            for j in range(block_bytes):
                if j not in keep:
                    raw[i, j] = fill
            labels[i] = f"quant bits all 0x{fill:02x}, " + labels[i]
    return raw, labels, block_values


def random_f16_bits(rng, n):
    bits = rng.integers(0, 2**16, n, dtype=np.uint32).astype(np.uint16)
    # signalling NaN halves (exponent 31, quiet bit clear, payload nonzero) widen differently on different
    # hosts (numpy's software path keeps them signalling, F16C hardware and ggml quiet them): make them quiet
    snan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0) & ((bits & 0x0200) == 0)
    bits = np.where(snan, bits | np.uint16(0x0200), bits).astype(np.uint16)
    edge = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0xFE00,
                     0x7E01, 0x3C00, 0x3555], dtype=np.uint16)
    return np.concatenate([edge, bits]).astype(np.uint16)


def random_bf16_bits(rng, n):
    bits = rng.integers(0, 2**16, n, dtype=np.uint32).astype(np.uint16)
    edge = np.array([0x0000, 0x8000, 0x0001, 0x807F, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1, 0x7F7F, 0x3F80],
                    dtype=np.uint16)
    return np.concatenate([edge, bits]).astype(np.uint16)


# ------------------------------------------------------------------------------------------------------------

TYPE_NAMES = {T.F32: "f32", T.F16: "f16", T.BF16: "bf16", T.Q4_0: "q4_0", T.Q4_1: "q4_1", T.Q5_0: "q5_0",
              T.Q5_1: "q5_1", T.Q8_0: "q8_0", T.Q4_K: "q4_K", T.Q5_K: "q5_K", T.Q6_K: "q6_K"}


def gguf_quantize(values, qtype):
    with np.errstate(all="ignore"):
        out = gq.quantize(values.reshape(1, -1), qtype)
    return np.ascontiguousarray(out).view(np.uint8).ravel()


def gguf_dequantize(raw, qtype):
    with np.errstate(all="ignore"):
        out = gq.dequantize(np.ascontiguousarray(raw).view(np.uint8).reshape(1, -1), qtype)
    out = np.ascontiguousarray(out, dtype=np.float32).ravel()
    assert out.dtype == np.float32
    return out


# ------------------------------------------------------------------------------------------------------------
# ggml's reference C, transcribed (to find and explain the blocks where gguf-py departs from it)
# ------------------------------------------------------------------------------------------------------------

F32 = np.float32
FLT_MAX = np.finfo(np.float32).max


def _half(v):
    """fp16 bytes of a float32 (round to nearest even, as GGML_FP32_TO_FP16)."""
    return np.array([v], dtype=np.float32).astype(np.float16).tobytes()


def _code(s, top):
    """ggml's MIN(top, (int8_t)s): s truncated toward zero, clamped to top. The C cast is undefined for non-finite s;
    x86 gives 0 there (and CQuant does everywhere)."""
    if not np.isfinite(s):
        return 0
    return top if s >= top else (int(s) if s > 0 else 0)


def _signed_absmax(block):
    """quantize_row_q4_0_ref / q5_0: amax and max start at +0.0, replaced only by a strictly larger |v|."""
    amax, vmax = F32(0), F32(0)
    for v in block:
        if amax < abs(v):
            amax, vmax = abs(v), v
    return vmax


def _min_max(block):
    """quantize_row_q4_1_ref / q5_1: min from FLT_MAX, max from -FLT_MAX, strict comparisons."""
    lo, hi = F32(FLT_MAX), F32(-FLT_MAX)
    for v in block:
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return lo, hi


def _pack(codes, with_qh):
    qs = bytes((codes[j] & 15) | ((codes[j + 16] & 15) << 4) for j in range(16))
    qh = sum((c >> 4) << j for j, c in enumerate(codes)).to_bytes(4, "little")
    return (qh if with_qh else b"") + qs


def ggml_quantize_block(qtype, block):
    """The bytes of ggml's quantize_row_<type>_ref for one block, fp32 step by fp32 step (numpy float32 scalars)."""
    block = [F32(v) for v in block]
    with np.errstate(all="ignore"):
        if qtype == T.Q8_0:
            amax = F32(0)
            for v in block:
                amax = np.fmax(amax, abs(v))
            d = amax / F32(127)
            inv = F32(1) / d if d != 0 else F32(0)
            out = b""
            for v in block:
                r = v * inv
                if not np.isfinite(r):
                    q = 0
                else:  # roundf: half away from zero (exact in double)
                    a = float(abs(r))
                    q = int(math.copysign(math.floor(a) + (1 if a - math.floor(a) >= 0.5 else 0), float(r)))
                out += bytes([q & 0xFF])
            return _half(d) + out
        if qtype in (T.Q4_0, T.Q5_0):
            top, bias = (15, F32(8.5)) if qtype == T.Q4_0 else (31, F32(16.5))
            d = _signed_absmax(block) / F32(-(top + 1) // 2)
            inv = F32(1) / d if d != 0 else F32(0)
            codes = [_code(v * inv + bias, top) for v in block]
            return _half(d) + _pack(codes, qtype == T.Q5_0)
        if qtype in (T.Q4_1, T.Q5_1):
            top = 15 if qtype == T.Q4_1 else 31
            lo, hi = _min_max(block)
            d = (hi - lo) / F32(top)
            inv = F32(1) / d if d != 0 else F32(0)
            codes = [_code((v - lo) * inv + F32(0.5), top) for v in block]
            return _half(d) + _half(lo) + _pack(codes, qtype == T.Q5_1)
    raise ValueError(qtype)


GGML_REF_TYPES = (T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_1, T.Q5_1)


def divergence_reason(qtype, block):
    """Why gguf-py may give other bytes than ggml's C for this block, or None if it should not."""
    symmetric = qtype in (T.Q8_0, T.Q4_0, T.Q5_0)
    if np.isnan(block).any():
        if symmetric:
            return ("NaN in the block: ggml's C skips NaN when it looks for the largest magnitude (comparisons with "
                    "NaN are false) and gives the NaN code 0 (its C cast is undefined; 0 on x86); gguf-py's numpy takes "
                    "the NaN as the maximum, so d is NaN and every code 0")
        return ("NaN in the block: ggml's C skips NaN in its min and max (comparisons with NaN are false) and gives "
                "the NaN code 0 (its C cast is undefined; 0 on x86); gguf-py's numpy min/max return the NaN, so d "
                "and m are NaN and every code 0")
    if symmetric:
        if qtype != T.Q8_0 and np.all(block == 0) and np.signbit(block[0]):
            return ("all-zero block led by -0.0: ggml's C gives d = -0.0 (max starts at +0.0), gguf-py d = +0.0 "
                    "(max = first value)")
        return None
    if np.all(block == np.inf) or np.all(block == -np.inf):
        return ("every value the same infinity: ggml's C min (for +inf) or max (for -inf) keeps its start, +-FLT_MAX, "
                "so d = +inf; gguf-py computes inf - inf = NaN (whose sign is the host's)")
    zeros = block[block == 0]
    if zeros.size and np.signbit(zeros).any() and not np.signbit(zeros).all() and (
            block.min() == 0 or block.max() == 0):
        return ("the min or max is a zero and the block holds zeros of both signs: ggml's C keeps the first zero it "
                "meets (strict comparisons), gguf-py's numpy min/max reductions may return another, so the sign of "
                "m (or of d = max - min) differs")
    return None


def ggml_divergences(qtype, x, y):
    """Blocks where ggml's reference C quantizer and gguf-py disagree, with the bytes ggml makes.

    Every block of the 32-value types is recomputed by ggml_quantize_block. Where its bytes differ from gguf-py's,
    the difference must be of a known kind (divergence_reason), else the script stops: either the transcription or
    gguf-py changed. The known kinds:
      - Q4_0/Q5_0 blocks of zeros that start with -0.0. ggml's C starts `max` at +0.0 and replaces it only by a
        value of larger magnitude, so an all-zero block keeps max = +0.0 and d = +0/-8 = -0.0 (fp16 0x8000)
        whatever the zeros' signs. gguf-py's argmax takes the block's first value as the max, so a leading -0.0
        gives d = +0.0. Both scales dequantize to zeros.
      - Q4_1/Q5_1 blocks whose min (or max) is a zero, with zeros of both signs: ggml keeps the first zero met,
        numpy's reductions another, so the sign of m (or d) differs.
      - Q4_1/Q5_1 blocks of one infinity only: ggml's min/max keep their +-FLT_MAX start, so d = +inf, where
        gguf-py's inf - inf gives a NaN d.
      - NaN inputs (every type): ggml's comparisons skip them, gguf-py's numpy max/argmax/min return them.
    CQuant follows ggml's C, whose output is what GGUF files in the wild hold.
    """
    found = []
    if qtype not in GGML_REF_TYPES:
        return found
    block_values, block_bytes = GGML_QUANT_SIZES[qtype]
    for b in range(x.size // block_values):
        block = x[b * block_values:(b + 1) * block_values]
        gguf_bytes = y[b * block_bytes:(b + 1) * block_bytes].tobytes()
        ggml_bytes = ggml_quantize_block(qtype, block)
        assert len(ggml_bytes) == block_bytes
        if ggml_bytes == gguf_bytes:
            continue
        reason = divergence_reason(qtype, block)
        if reason is None:
            sys.exit(f"{TYPE_NAMES[qtype]} block {b}: ggml's C (transcribed) and gguf-py differ for no known reason\n"
                     f"  input {block.tolist()}\n  ggml {ggml_bytes.hex()}\n  gguf {gguf_bytes.hex()}")
        found.append({"block": b, "ggml_bytes": ggml_bytes.hex(), "reason": reason})
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests",
                                                  "VZQuantTests", "Fixtures", "quant"))
    args = ap.parse_args()
    out_dir = os.path.normpath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    assert sys.byteorder == "little"

    rng = np.random.default_rng(SEED)
    cases = []

    def write(name, op, qtype, values_count, in_bytes, out_bytes, groups, divergences=()):
        block_values, block_bytes = GGML_QUANT_SIZES[qtype]
        in_file, out_file = f"{name}.in.bin", f"{name}.out.bin"
        with open(os.path.join(out_dir, in_file), "wb") as f:
            f.write(in_bytes)
        with open(os.path.join(out_dir, out_file), "wb") as f:
            f.write(out_bytes)
        cases.append({
            "name": name, "op": op, "type": TYPE_NAMES[qtype], "ggml_type": int(qtype),
            "values": int(values_count), "blocks": int(values_count // block_values),
            "block_values": int(block_values), "block_bytes": int(block_bytes),
            "input": in_file, "expected": out_file, "ggml_divergences": list(divergences), "groups": groups,
        })

    # quantize: float32 in, GGUF bytes out
    # (Q4_1, Q5_0 and Q5_1 draw from generators of their own, so adding them left the older fixtures' bytes as
    # they were.)
    for qtype, make, fill_blocks in [(T.Q8_0, q8_0_nasty, 60), (T.Q4_0, q4_0_nasty, 60),
                                     (T.F16, f16_inputs, 0), (T.BF16, bf16_inputs, 0),
                                     (T.Q4_1, affine_nasty(15), 40), (T.Q5_0, q5_0_nasty, 40),
                                     (T.Q5_1, affine_nasty(31), 40)]:
        g = Groups()
        own = qtype in (T.Q4_1, T.Q5_0, T.Q5_1)
        r = np.random.default_rng([SEED, int(qtype)]) if own else rng
        make(r, g)
        block_values = GGML_QUANT_SIZES[qtype][0]
        for i in range(fill_blocks):
            if own and i % 2:
                g.add("random block around a nonzero mean, its own scale", random_offset_blocks(r, 1, block_values))
            else:
                g.add("random block, its own scale", random_mixed_blocks(r, 1, block_values))
        x = g.array()
        assert x.size % block_values == 0, (qtype, x.size)
        y = gguf_quantize(x, qtype)
        assert y.size == x.size // block_values * GGML_QUANT_SIZES[qtype][1]
        write(f"quantize_{TYPE_NAMES[qtype]}", "quantize", qtype, x.size, x.astype("<f4").tobytes(), y.tobytes(),
              g.groups, ggml_divergences(qtype, x, y))

    # dequantize: GGUF bytes in, float32 out
    for qtype, n_blocks in [(T.Q8_0, 64), (T.Q4_0, 64), (T.Q4_1, 64), (T.Q5_0, 64), (T.Q5_1, 64),
                            (T.Q4_K, 12), (T.Q5_K, 12), (T.Q6_K, 12)]:
        raw, labels, block_values = random_blocks(rng, qtype, n_blocks)
        y = gguf_dequantize(raw, qtype)
        assert y.size == n_blocks * block_values
        groups = [{"start": i * block_values, "count": block_values, "label": labels[i]} for i in range(n_blocks)]
        write(f"dequantize_{TYPE_NAMES[qtype]}", "dequantize", qtype, y.size, raw.tobytes(),
              y.astype("<f4").tobytes(), groups)
    for qtype, bits in [(T.F16, random_f16_bits(rng, 1009)), (T.BF16, random_bf16_bits(rng, 1013))]:
        y = gguf_dequantize(bits.view(np.uint8), qtype)
        groups = [{"start": 0, "count": 15 if qtype == T.F16 else 11, "label": "edge bit patterns"},
                  {"start": 15 if qtype == T.F16 else 11, "count": int(bits.size) - (15 if qtype == T.F16 else 11),
                   "label": "random bit patterns"}]
        write(f"dequantize_{TYPE_NAMES[qtype]}", "dequantize", qtype, y.size, bits.astype("<u2").tobytes(),
              y.astype("<f4").tobytes(), groups)

    # The K-quant quantize cases come from tools/make_kquant_fixtures.py (llama.cpp's own bytes; gguf-py cannot
    # quantize K-quants): kept as they are.
    old_path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(old_path):
        with open(old_path, encoding="utf-8") as f:
            cases += [c for c in json.load(f)["cases"] if c.get("generator") == "tools/make_kquant_fixtures.py"]

    manifest = {
        "format": 1,
        "generator": "tools/make_quant_fixtures.py",
        "seed": SEED,
        "numpy": np.__version__,
        "gguf": getattr(gguf, "__version__", None) or _gguf_version(),
        "note": "quantize: input float32 LE values, expected GGUF bytes. dequantize: input GGUF bytes, expected "
                "float32 LE values. groups label value ranges [start, start+count).",
        "cases": cases,
    }
    text = dump_manifest(manifest)
    assert json.loads(text) == manifest
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(text)
    total = sum(os.path.getsize(os.path.join(out_dir, p)) for p in os.listdir(out_dir))
    print(f"{len(cases)} cases, {total} bytes in {out_dir}")


def _gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:
        return None


if __name__ == "__main__":
    main()
