/*
 * types.c — the type table: one row per tensor type, and the scalar quantizers/dequantizers it names.
 *
 * Quantizers reproduce ggml's reference rounding bit for bit (gguf-py mirrors it, but for the blocks cquant.h lists
 * at cq_quantize_row), so no fused multiply-add may change an intermediate: contraction is off for this file.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* gcc: -std=c11 already means -ffp-contract=off; the build scripts say it too */
#endif

#include "internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------------ */
/* fp16 / bf16                                                                                             */
/* ------------------------------------------------------------------------------------------------------ */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float cq_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: value = man · 2^-24, exact in fp32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return (sign ? -v : v);
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t cq_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf or nan (nan stays nan, quiet) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to ≥ 65520 → inf */
    if (ax < 0x38800000u) {                                    /* below the smallest normal half, 2^-14 */
        if (ax < 0x33000000u) return sign;                     /* < 2^-25 rounds to zero */
        /* subnormal half: round ax·2^24 to nearest even integer */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* value = m · 2^(e-150); want m · 2^(e-150+24) */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent, round mantissa 23 → 10 bits to nearest even (carry may bump the exponent) */
    uint32_t r = ax - 0x38000000u; /* exponent − 112 */
    uint32_t lsb = (r >> 13) & 1u;
    r += 0xfffu + lsb;
    return (uint16_t)(sign | (r >> 13));
}

float cq_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t cq_fp32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u); /* nan: force quiet */
    return (uint16_t)(((uint64_t)u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void store_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline float load_h(const uint8_t *p) { return cq_fp16_to_fp32(load_u16(p)); }

/* ------------------------------------------------------------------------------------------------------ */
/* Float types                                                                                             */
/* ------------------------------------------------------------------------------------------------------ */

static void quantize_f32(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }
static void dequantize_f32(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }

static void quantize_f16(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t i = 0; i < n; i++) store_u16(o + 2 * i, cq_fp32_to_fp16(x[i]));
}
static void dequantize_f16(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) y[i] = load_h(p + 2 * i);
}

static void quantize_bf16(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t i = 0; i < n; i++) store_u16(o + 2 * i, cq_fp32_to_bf16(x[i]));
}
static void dequantize_bf16(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) y[i] = cq_bf16_to_fp32(load_u16(p + 2 * i));
}

/* ------------------------------------------------------------------------------------------------------ */
/* Quantizers of the 32-value block types (ggml reference rounding) and the Q8_0/Q4_0 dequantizers         */
/* ------------------------------------------------------------------------------------------------------ */

/* ggml's reference quantizers are mirrored operation for operation (same fp32 steps, in the same order), and also
 * where their C is undefined: a float that is NaN or ±inf converted to an integer. There every quantizer here gives
 * code 0, what ggml on x86-64 and gguf-py's numpy on x86-64 give, so the bytes are the same on every host. NaN inputs
 * follow ggml's C, not gguf-py: the comparisons that find the scale (and the min) are false for NaN, so NaNs are
 * skipped there and only their own codes become 0 (gguf-py's numpy max/argmax return the NaN instead, so its d and m
 * are NaN). cquant.h lists every block where the bytes differ from gguf-py's. */

static void quantize_q8_0(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 32; b++, x += 32, o += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(o, cq_fp32_to_fp16(d));
        for (int j = 0; j < 32; j++) {
            const float r = roundf(x[j] * id); /* half away from zero, as ggml */
            /* |r| ≤ 127 whenever 1/d is finite. For d < 2^-128 (a block of fp32 subnormals) 1/d is inf and r is
             * ±inf or NaN: converting that to int8 is undefined in C (x86 happens to give 0, AArch64 −1 for +inf);
             * gguf-py gives 0, so do we. */
            o[2 + j] = isfinite(r) ? (uint8_t)(int8_t)r : 0;
        }
    }
}

static void dequantize_q8_0(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 32; b++, p += 34, y += 32) {
        const float d = load_h(p);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)p[2 + j] * d;
    }
}

/* One 4- or 5-bit code: ggml's MIN(top, (int8_t)s), i.e. s truncated toward zero and clamped to top. s is the scaled
 * value (rounded to fp32 first) plus 8.5 / 16.5 (Q4_0 / Q5_0) or plus 0.5 (Q4_1 / Q5_1); whenever 1/d is finite and
 * the input is too, s lies in (0, top + 2), where this is exactly ggml's cast. A non-finite s gives 0: a NaN input;
 * an infinite one, times 1/d = ±0 (its block's scale is infinite); every value of a block whose 1/d is ±inf
 * (0 < |d| < 2^-128, a block of fp32 subnormals). ggml's int8 cast is undefined there; x86 gives 0, and so does
 * gguf-py's numpy on x86. */
static inline uint8_t trunc_code(float scaled, float bias, int top) {
    const float s = scaled + bias; /* its own statement: never fused with the product that made `scaled` */
    return !isfinite(s) ? 0 : s >= (float)top ? (uint8_t)top : (s > 0.0f ? (uint8_t)s : 0);
}

/* Q4_0 / Q5_0 scale source: the value of largest magnitude, sign kept; the first one on ties. As in ggml, the search
 * starts from +0.0 and takes only a strictly larger magnitude, so a block of zeros gives +0.0 whatever the zeros'
 * signs (hence d = −0.0) and NaNs are never taken. */
static inline float signed_absmax(const float *x) {
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            vmax = x[j];
        }
    }
    return vmax;
}

/* Q4_1 / Q5_1 range: ggml's min and max start from +FLT_MAX and −FLT_MAX and take only strictly smaller / larger
 * values. So NaNs are skipped, the first of equal values is kept (the first zero met, of either sign), a block of
 * +inf keeps min = FLT_MAX and a block of −inf keeps max = −FLT_MAX (d = +inf, never inf − inf = NaN), and a
 * block of NaNs keeps both starts (d = −inf, m = fp16(FLT_MAX) = +inf). */
static inline void block_min_max(const float *x, float *min_out, float *max_out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        const float v = x[j];
        if (v < min) min = v;
        if (v > max) max = v;
    }
    *min_out = min;
    *max_out = max;
}

static inline void store_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void quantize_q4_0(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 32; b++, x += 32, o += 18) {
        const float d = signed_absmax(x) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(o, cq_fp32_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            const uint8_t q0 = trunc_code(x[j] * id, 8.5f, 15);
            const uint8_t q1 = trunc_code(x[j + 16] * id, 8.5f, 15);
            o[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* value = d·(code − 16), d = max / −16: the extreme gets code 0, the other side clamps at code 31 (value 15·d). */
static void quantize_q5_0(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 32; b++, x += 32, o += 22) {
        const float d = signed_absmax(x) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(o, cq_fp32_to_fp16(d));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const uint8_t q0 = trunc_code(x[j] * id, 16.5f, 31);
            const uint8_t q1 = trunc_code(x[j + 16] * id, 16.5f, 31);
            o[6 + j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        store_u32(o + 2, qh);
    }
}

/* value = d·code + m with m = min, d = (max − min) / 15: codes round half up, (x − min)·(1/d) + 0.5 truncated. */
static void quantize_q4_1(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 32; b++, x += 32, o += 20) {
        float min, max;
        block_min_max(x, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(o, cq_fp32_to_fp16(d));
        store_u16(o + 2, cq_fp32_to_fp16(min));
        for (int j = 0; j < 16; j++) {
            const uint8_t q0 = trunc_code((x[j] - min) * id, 0.5f, 15);
            const uint8_t q1 = trunc_code((x[j + 16] - min) * id, 0.5f, 15);
            o[4 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* As Q4_1 with 5-bit codes, d = (max − min) / 31; the 5th bits go to qh (bit j for value j). */
static void quantize_q5_1(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 32; b++, x += 32, o += 24) {
        float min, max;
        block_min_max(x, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(o, cq_fp32_to_fp16(d));
        store_u16(o + 2, cq_fp32_to_fp16(min));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const uint8_t q0 = trunc_code((x[j] - min) * id, 0.5f, 31);
            const uint8_t q1 = trunc_code((x[j + 16] - min) * id, 0.5f, 31);
            o[8 + j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        store_u32(o + 4, qh);
    }
}

static void dequantize_q4_0(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 32; b++, p += 18, y += 32) {
        const float d = load_h(p);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((p[2 + j] & 15) - 8) * d;
            y[j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
        }
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Dequantizers of the rest                                                                                */
/* ------------------------------------------------------------------------------------------------------ */

static void dequantize_q4_1(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 32; b++, p += 20, y += 32) {
        const float d = load_h(p), m = load_h(p + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(p[4 + j] & 15) * d + m;
            y[j + 16] = (float)(p[4 + j] >> 4) * d + m;
        }
    }
}

static inline uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void dequantize_q5_0(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 32; b++, p += 22, y += 32) {
        const float d = load_h(p);
        const uint32_t qh = load_u32(p + 2);
        for (int j = 0; j < 16; j++) {
            const int hi0 = (int)((qh >> j) & 1u) << 4;
            const int hi1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (float)(((p[6 + j] & 15) | hi0) - 16) * d;
            y[j + 16] = (float)(((p[6 + j] >> 4) | hi1) - 16) * d;
        }
    }
}

static void dequantize_q5_1(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 32; b++, p += 24, y += 32) {
        const float d = load_h(p), m = load_h(p + 2);
        const uint32_t qh = load_u32(p + 4);
        for (int j = 0; j < 16; j++) {
            const int hi0 = (int)((qh >> j) & 1u) << 4;
            const int hi1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (float)((p[8 + j] & 15) | hi0) * d + m;
            y[j + 16] = (float)((p[8 + j] >> 4) | hi1) * d + m;
        }
    }
}

/* K-quants: 256-value super-blocks of 8 sub-blocks with 6-bit scales/mins packed into 12 bytes. */
static void k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *mn = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void dequantize_q4_k(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 256; b++, p += 144) {
        const float d = load_h(p), dmin = load_h(p + 2);
        const uint8_t *scales = p + 4, *q = p + 16;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, mn;
            k_scale_min(j, scales, &sc, &mn);
            const float d1 = d * sc, m1 = dmin * mn;
            k_scale_min(j + 1, scales, &sc, &mn);
            const float d2 = d * sc, m2 = dmin * mn;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 15) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void dequantize_q5_k(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 256; b++, p += 176) {
        const float d = load_h(p), dmin = load_h(p + 2);
        const uint8_t *scales = p + 4, *qh = p + 16, *ql = p + 48;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, ql += 32, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
            uint8_t sc, mn;
            k_scale_min(j, scales, &sc, &mn);
            const float d1 = d * sc, m1 = dmin * mn;
            k_scale_min(j + 1, scales, &sc, &mn);
            const float d2 = d * sc, m2 = dmin * mn;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 15) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

static void dequantize_q6_k(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / 256; b++, p += 210) {
        const uint8_t *ql = p, *qh = p + 128;
        const int8_t *sc = (const int8_t *)(p + 192);
        const float d = load_h(p + 208);
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* K-quant quantizers: ggml's reference rounding (quantize_row_q{4,5,6}_K_ref), restated                  */
/* ------------------------------------------------------------------------------------------------------ */

/* ggml's rounding helper: add 1.5·2^23 and read the low 22 bits of the sum as a signed integer. For |f| < 2^22 that is
 * f rounded half to even; for every other float (huge, ±inf, NaN) it is still a defined integer in
 * [−2^22, 2^22), and ggml's quantizers use it there too (then clamp), so we keep the same bits. */
static inline int k_round(float f) {
    const float v = f + 12582912.0f;
    return (int)(f32_bits(v) & 0x7fffffu) - 0x400000;
}

/* One sub-block's affine fit (ggml's make_qkx2_quants with squared error): codes L in 0…nmax, value ≈ scale·L − min
 * (the returned min is ≥ 0, subtracted). First the range fit (min clamped to ≤ 0), then nstep + 1 trial inverse scales
 * (rmin + rdelta·i + nmax)/(max − min): each rounds the codes, solves the weighted least squares for scale and min
 * (min ≤ 0 again), and is kept when its weighted squared error is strictly smaller. */
static float k_fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *min_out, float rmin,
                          float rdelta, int nstep) {
    float lo = x[0], hi = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *min_out = -lo;
        return 0.0f;
    }
    float iscale = (float)nmax / (hi - lo);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        const int l = k_round(iscale * (x[i] - lo));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * (float)L[i] + lo - x[i];
        diff = diff * diff;
        best += w[i] * diff;
    }
    uint8_t trial[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = k_round(iscale * (x[i] - lo));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            trial[i] = (uint8_t)l;
            const float wl = w[i] * (float)l;
            sum_l += wl;
            sum_l2 += wl * (float)l;
            sum_xl += wl * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)trial[i] + this_min - x[i];
                diff = diff * diff;
                err += w[i] * diff;
            }
            if (err < best) {
                memcpy(L, trial, (size_t)n);
                best = err;
                scale = this_scale;
                lo = this_min;
            }
        }
    }
    *min_out = -lo;
    return scale;
}

/* Q4_K and Q5_K share everything but the code width and the search's (rmin, steps). */
static void quantize_k_affine(const float *x, uint8_t *o, int nmax, float rmin, int nstep, uint8_t L[256]) {
    float scales[8], mins[8], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *v = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += v[l] * v[l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(v[l]);
        scales[j] = k_fit_affine(32, nmax, v, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *sc = o + 4;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)k_round(inv_scale * scales[j]); /* to 8 bits first (modulo 256), then capped, as ggml */
        lm[j] = (uint8_t)k_round(inv_min * mins[j]);
        if (ls[j] > 63) ls[j] = 63;
        if (lm[j] > 63) lm[j] = 63;
    }
    for (int j = 0; j < 4; j++) {
        sc[j] = (uint8_t)(ls[j] | (ls[j + 4] >> 4) << 6);
        sc[j + 4] = (uint8_t)(lm[j] | (lm[j + 4] >> 4) << 6);
        sc[j + 8] = (uint8_t)((ls[j + 4] & 15) | (lm[j + 4] & 15) << 4);
    }
    store_u16(o, cq_fp32_to_fp16(max_scale / 63.0f));
    store_u16(o + 2, cq_fp32_to_fp16(max_min / 63.0f));
    const float d_all = load_h(o), dmin_all = load_h(o + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t s6, m6;
        k_scale_min(j, sc, &s6, &m6);
        const float d = d_all * (float)s6;
        if (d == 0.0f) continue; /* keeps the search's codes */
        const float dm = dmin_all * (float)m6;
        for (int l = 0; l < 32; l++) {
            const int q = k_round((x[32 * j + l] + dm) / d);
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
        }
    }
}

static void quantize_q4_k(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 256; b++, x += 256, o += 144) {
        uint8_t L[256];
        quantize_k_affine(x, o, 15, -1.0f, 20, L);
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < 32; l++) o[16 + 32 * i + l] = (uint8_t)(L[64 * i + l] | L[64 * i + 32 + l] << 4);
    }
}

static void quantize_q5_k(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 256; b++, x += 256, o += 176) {
        uint8_t L[256];
        quantize_k_affine(x, o, 31, -0.5f, 15, L);
        uint8_t *qh = o + 16, *qs = o + 48;
        memset(qh, 0, 32);
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < 32; l++) {
                const uint8_t a = L[64 * i + l], c = L[64 * i + 32 + l];
                qh[l] |= (uint8_t)((a >> 4) << (2 * i) | (c >> 4) << (2 * i + 1));
                qs[32 * i + l] = (uint8_t)((a & 15) | (c & 15) << 4);
            }
    }
}

/* One Q6_K sub-block's scale (ggml's make_qx_quants with rmse_type 1, nmax = 32): from the value of largest |x|
 * (the first of equal ones), codes l = round(iscale·x) in −32…31 for iscale = −32/max, the x²-weighted least-squares
 * scale Σwxl/Σwl², then 18 trial iscales −(32 + 0.1·i)/max (i = ±1…±9), each kept when it fits strictly better
 * (Σwxl² > best·Σwl²). L gets the codes + 32. */
static float k_fit_q6(const float *x, int8_t *L) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < 16; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            vmax = x[i];
        }
    }
    if (amax < 1e-15f) {
        for (int i = 0; i < 16; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = -32.0f / vmax;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < 16; i++) {
        int l = k_round(iscale * x[i]);
        l = l < -32 ? -32 : l > 31 ? 31 : l;
        L[i] = (int8_t)(l + 32);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(32.0f + 0.1f * (float)is) / vmax;
        sumlx = suml2 = 0;
        for (int i = 0; i < 16; i++) {
            int l = k_round(iscale * x[i]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < 16; i++) {
                int l = k_round(iscale * x[i]);
                l = l < -32 ? -32 : l > 31 ? 31 : l;
                L[i] = (int8_t)(l + 32);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quantize_q6_k(const float *x, void *y, int64_t n) {
    uint8_t *o = y;
    for (int64_t b = 0; b < n / 256; b++, x += 256, o += 210) {
        int8_t L[256];
        float scales[16];
        float max_scale = 0, max_abs = 0;
        for (int i = 0; i < 16; i++) {
            scales[i] = k_fit_q6(x + 16 * i, L + 16 * i);
            if (fabsf(scales[i]) > max_abs) {
                max_abs = fabsf(scales[i]);
                max_scale = scales[i];
            }
        }
        memset(o, 0, 210);
        if (max_abs < 1e-15f) continue; /* all zero, d = +0 */
        const float iscale = -128.0f / max_scale;
        store_u16(o + 208, cq_fp32_to_fp16(1 / iscale));
        int8_t *sc = (int8_t *)(o + 192);
        for (int i = 0; i < 16; i++) {
            const int v = k_round(iscale * scales[i]);
            sc[i] = (int8_t)(uint8_t)(v < 127 ? v : 127); /* to 8 bits modulo 256, as gcc and clang convert */
        }
        const float d_all = load_h(o + 208);
        for (int i = 0; i < 16; i++) {
            const float d = d_all * (float)sc[i];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) {
                int q = k_round(x[16 * i + l] / d);
                q = q < -32 ? -32 : q > 31 ? 31 : q;
                L[16 * i + l] = (int8_t)(q + 32);
            }
        }
        uint8_t *ql = o, *qh = o + 128;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const int8_t *v = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((v[l] & 15) | (v[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((v[l + 32] & 15) | (v[l + 96] & 15) << 4);
                qh[l] = (uint8_t)((v[l] >> 4) | (v[l + 32] >> 4) << 2 | (v[l + 64] >> 4) << 4 | (v[l + 96] >> 4) << 6);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* The table                                                                                               */
/* ------------------------------------------------------------------------------------------------------ */

static const cq_type_traits k_traits[CQ_TYPE_COUNT] = {
    [CQ_TYPE_F32] = {
        .info = {"f32", 1, 4, 1, 1},
        .quantize_row = quantize_f32, .dequantize_row = dequantize_f32,
        .packed_type = CQ_TYPE_F32, .panel_bytes = cq_panel_bytes_f32, .pack_panel = cq_pack_panel_f32,
        .act = CQ_ACT_F32,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_f32_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_f32_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_f32_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_f32_neon),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_f32_neon),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_f32_avx2)},
        .tile2 = {[CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile2_f32_avx2),
                  [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_f32_avx2)},
    },
    [CQ_TYPE_F16] = {
        .info = {"f16", 1, 2, 1, 1},
        .quantize_row = quantize_f16, .dequantize_row = dequantize_f16,
        .packed_type = CQ_TYPE_F16, .panel_bytes = cq_panel_bytes_f16, .pack_panel = cq_pack_panel_f16,
        .act = CQ_ACT_F32,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_f16_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_f16_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_f16_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_f16_neon),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_f16_neon),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_f16_avx2)},
        .tile2 = {[CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile2_f16_avx2),
                  [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_f16_avx2)},
    },
    [CQ_TYPE_BF16] = {
        .info = {"bf16", 1, 2, 1, 1},
        .quantize_row = quantize_bf16, .dequantize_row = dequantize_bf16,
        /* bf16 widens exactly to f32; its panels are f32 panels */
        .packed_type = CQ_TYPE_F32, .panel_bytes = cq_panel_bytes_f32, .pack_panel = cq_pack_panel_bf16,
        .act = CQ_ACT_F32,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_f32_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_f32_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_f32_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_f32_neon),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_f32_neon),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_f32_avx2)},
        .tile2 = {[CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile2_f32_avx2),
                  [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_f32_avx2)},
    },
    [CQ_TYPE_Q8_0] = {
        .info = {"q8_0", 32, 34, 1, 1},
        .quantize_row = quantize_q8_0, .dequantize_row = dequantize_q8_0,
        .packed_type = CQ_TYPE_Q8_0, .panel_bytes = cq_panel_bytes_q8_0, .pack_panel = cq_pack_panel_q8_0,
        .pack_panel_for = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_pack_panel_q8_0_u8)},
        .act = CQ_ACT_Q8X,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q8_0_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q8_0_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q8_0_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q8_0_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q8_0_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q8_0_vnni)},
        .tile2 = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_q8_0_vnni)},
    },
    [CQ_TYPE_Q4_0] = {
        .info = {"q4_0", 32, 18, 1, 1},
        .quantize_row = quantize_q4_0, .dequantize_row = dequantize_q4_0,
        .packed_type = CQ_TYPE_Q4_0, .panel_bytes = cq_panel_bytes_q4_0, .pack_panel = cq_pack_panel_q4_0,
        .act = CQ_ACT_Q8X,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q4_0_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q4_0_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q4_0_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q4_0_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q4_0_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q4_0_vnni)},
        .tile2 = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_q4_0_vnni)},
    },
    [CQ_TYPE_Q4_1] = {
        /* multiplied natively: panels hold the file's bytes */
        .info = {"q4_1", 32, 20, 1, 1},
        .quantize_row = quantize_q4_1, .dequantize_row = dequantize_q4_1,
        .packed_type = CQ_TYPE_Q4_1, .panel_bytes = cq_panel_bytes_q4_1, .pack_panel = cq_pack_panel_q4_1,
        .act = CQ_ACT_Q8X,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q4_1_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q4_1_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q4_1_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q4_1_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q4_1_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q4_1_vnni)},
        .tile2 = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_q4_1_vnni)},
    },
    [CQ_TYPE_Q5_0] = {
        /* multiplied natively: panels hold the file's bytes */
        .info = {"q5_0", 32, 22, 1, 1},
        .quantize_row = quantize_q5_0, .dequantize_row = dequantize_q5_0,
        .packed_type = CQ_TYPE_Q5_0, .panel_bytes = cq_panel_bytes_q5_0, .pack_panel = cq_pack_panel_q5_0,
        .act = CQ_ACT_Q8X,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q5_0_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q5_0_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q5_0_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q5_0_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q5_0_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q5_0_vnni)},
        .tile2 = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_q5_0_vnni)},
    },
    [CQ_TYPE_Q5_1] = {
        /* multiplied natively: panels hold the file's bytes */
        .info = {"q5_1", 32, 24, 1, 1},
        .quantize_row = quantize_q5_1, .dequantize_row = dequantize_q5_1,
        .packed_type = CQ_TYPE_Q5_1, .panel_bytes = cq_panel_bytes_q5_1, .pack_panel = cq_pack_panel_q5_1,
        .act = CQ_ACT_Q8X,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q5_1_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q5_1_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q5_1_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q5_1_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q5_1_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q5_1_vnni)},
        .tile2 = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_q5_1_vnni)},
    },
    /* K-quants: 256-value activation blocks (cq_block_q8k); panels hold the file's bytes, regrouped */
    [CQ_TYPE_Q4_K] = {
        .info = {"q4_K", 256, 144, 1, 1},
        .quantize_row = quantize_q4_k, .dequantize_row = dequantize_q4_k,
        .packed_type = CQ_TYPE_Q4_K, .panel_bytes = cq_panel_bytes_q4_k, .pack_panel = cq_pack_panel_q4_k,
        .act = CQ_ACT_Q8K,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q4_k_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q4_k_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q4_k_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q4_k_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q4_k_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q4_k_vnni)},
        .tile2 = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_q4_k_vnni)},
    },
    [CQ_TYPE_Q5_K] = {
        .info = {"q5_K", 256, 176, 1, 1},
        .quantize_row = quantize_q5_k, .dequantize_row = dequantize_q5_k,
        .packed_type = CQ_TYPE_Q5_K, .panel_bytes = cq_panel_bytes_q5_k, .pack_panel = cq_pack_panel_q5_k,
        .act = CQ_ACT_Q8K,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q5_k_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q5_k_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q5_k_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q5_k_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q5_k_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q5_k_vnni)},
        .tile2 = {[CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile2_q5_k_vnni)},
    },
    [CQ_TYPE_Q6_K] = {
        .info = {"q6_K", 256, 210, 1, 1},
        .quantize_row = quantize_q6_k, .dequantize_row = dequantize_q6_k,
        .packed_type = CQ_TYPE_Q6_K, .panel_bytes = cq_panel_bytes_q6_k, .pack_panel = cq_pack_panel_q6_k,
        .act = CQ_ACT_Q8K,
        .tile = {[CQ_KERNEL_SCALAR] = cq_tile_q6_k_scalar, [CQ_KERNEL_AVX2] = CQ_X86_FN(cq_tile_q6_k_avx2),
                 [CQ_KERNEL_NEON] = CQ_ARM_FN(cq_tile_q6_k_neon), [CQ_KERNEL_DOTPROD] = CQ_ARM_FN(cq_tile_q6_k_dotprod),
                 [CQ_KERNEL_I8MM] = CQ_ARM_FN(cq_tile_q6_k_i8mm),
                 [CQ_KERNEL_VNNI] = CQ_VNNI_FN(cq_tile_q6_k_vnni)},
    },
};

const cq_type_traits *cq_traits(int type) {
    if (type < 0 || type >= CQ_TYPE_COUNT || k_traits[type].dequantize_row == NULL) return NULL;
    return &k_traits[type];
}

const cq_type_info *cq_type_get(int type) {
    const cq_type_traits *t = cq_traits(type);
    return t ? &t->info : NULL;
}

size_t cq_row_bytes(int type, int64_t n) {
    const cq_type_traits *t = cq_traits(type);
    if (!t || n < 0 || n % t->info.block_elems != 0) return 0;
    const uint64_t blocks = (uint64_t)(n / t->info.block_elems);
    if (blocks > SIZE_MAX / t->info.block_bytes) return 0; /* a hostile shape must not wrap to a small size */
    return (size_t)blocks * t->info.block_bytes;
}

cq_status cq_quantize_row(int type, const float *src, void *dst, int64_t n) {
    const cq_type_traits *t = cq_traits(type);
    if (!t) return CQ_ERR_UNSUPPORTED_TYPE;
    if (!t->quantize_row) return CQ_ERR_UNSUPPORTED_TYPE;
    if (n < 0 || (n > 0 && (!src || !dst))) return CQ_ERR_INVALID_ARGUMENT;
    if (n % t->info.block_elems != 0) return CQ_ERR_BAD_SHAPE;
    t->quantize_row(src, dst, n);
    return CQ_OK;
}

cq_status cq_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const cq_type_traits *t = cq_traits(type);
    if (!t) return CQ_ERR_UNSUPPORTED_TYPE;
    if (n < 0 || (n > 0 && (!src || !dst))) return CQ_ERR_INVALID_ARGUMENT;
    if (n % t->info.block_elems != 0) return CQ_ERR_BAD_SHAPE;
    t->dequantize_row(src, dst, n);
    return CQ_OK;
}

const char *cq_status_string(cq_status status) {
    switch (status) {
    case CQ_OK: return "ok";
    case CQ_ERR_INVALID_ARGUMENT: return "invalid argument";
    case CQ_ERR_UNSUPPORTED_TYPE: return "unsupported tensor type for this operation";
    case CQ_ERR_BAD_SHAPE: return "shape not supported (row length must be a multiple of the block size)";
    case CQ_ERR_OUT_OF_MEMORY: return "out of memory";
    case CQ_ERR_UNSUPPORTED_KERNEL: return "kernel not supported by this CPU or build";
    }
    return "unknown status";
}
