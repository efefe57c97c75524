/*
 * test_kernels.c — CQuant's C test driver: every kernel this CPU supports against the scalar reference.
 *
 * Built without SwiftPM (tools/ctest.sh), so the same file runs natively, under ASan+UBSan, and
 * cross-compiled for AArch64 under qemu. Exit code 0 only if every check passed; the last line is
 * "N passed, N failed".
 *
 * Environment:
 *   CQ_EXPECT_KERNEL=name   fail unless cq_kernel_best() is that kernel (the qemu runs pin their CPU model)
 *   CQ_TEST_QUICK=1         fewer/smaller shapes (for slow emulation and sanitizers)
 */
#include "cquant.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_passed, g_failed;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (cond) {                                                                                          \
            g_passed++;                                                                                      \
        } else {                                                                                             \
            g_failed++;                                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                      \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
        }                                                                                                    \
    } while (0)

/* ---------- deterministic random numbers ---------- */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float rnd_uniform(void) { return (float)rnd_u32() / 4294967296.0f * 2.0f - 1.0f; } /* [-1, 1) */
static float rnd_normalish(void) { return (rnd_uniform() + rnd_uniform() + rnd_uniform()) * 0.8f; }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    return p;
}

static int g_quick;

/* ------------------------------------------------------------------------------------------------------ */
static void test_fp16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = cq_fp16_to_fp32((uint16_t)h);
        const uint16_t back = cq_fp32_to_fp16(f);
        if (isnan(f)) {
            bad += !((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        } else {
            bad += back != h;
        }
    }
    CHECK(bad == 0, "fp16 round trip: %d of 65536 halves changed", bad);
    /* ties round to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 */
    CHECK(cq_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00, "fp16 tie to even (down)");
    CHECK(cq_fp32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02, "fp16 tie to even (up)");
    CHECK(cq_fp32_to_fp16(65520.0f) == 0x7c00, "fp16 overflow to inf");
    CHECK(cq_fp32_to_fp16(65519.0f) == 0x7bff, "fp16 largest finite");
    CHECK(cq_fp32_to_fp16(0x1p-24f) == 0x0001, "fp16 smallest subnormal");
    CHECK(cq_fp32_to_fp16(0x1p-25f) == 0x0000, "fp16 half of the smallest subnormal ties to zero");
    CHECK(cq_fp32_to_fp16(0x1.8p-25f) == 0x0001, "fp16 above half of the smallest subnormal");
    CHECK(cq_fp32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie to even");
    CHECK(cq_bf16_to_fp32(0x3f80) == 1.0f, "bf16 widen");
}

/* Quantize → dequantize error stays within the type's step bound in each block. */
static void test_quant_roundtrip(void) {
    const int types[] = {CQ_TYPE_Q8_0, CQ_TYPE_Q4_0};
    const int64_t n = 32 * 64;
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4);
    uint8_t *q = xmalloc(cq_row_bytes(CQ_TYPE_Q8_0, n));
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        for (int64_t i = 0; i < n; i++) x[i] = rnd_normalish() * (float)(1 + (i / 32) % 7);
        CHECK(cq_quantize_row(types[t], x, q, n) == CQ_OK, "quantize %s", cq_type_get(types[t])->name);
        CHECK(cq_dequantize_row(types[t], q, y, n) == CQ_OK, "dequantize");
        int bad = 0;
        for (int64_t b = 0; b < n / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            /* Q8_0: half a step; Q4_0: codes span [-8, 7], so the side opposite the extreme clips by up to a
             * whole step. Both: the fp16 scale's rounding (2^-11 relative) times the largest code. */
            const float bound = types[t] == CQ_TYPE_Q8_0 ? amax / 127 * 0.5f + amax * 0x1p-11f
                                                         : amax / 8 + amax * 0x1p-11f;
            for (int j = 0; j < 32; j++) bad += fabsf(x[b * 32 + j] - y[b * 32 + j]) > bound * 1.0001f + 1e-7f;
        }
        CHECK(bad == 0, "%s round trip: %d values off by more than half a step", cq_type_get(types[t])->name, bad);
    }
    CHECK(cq_quantize_row(CQ_TYPE_Q8_0, x, q, 31) == CQ_ERR_BAD_SHAPE, "row not a multiple of 32 rejected");
    CHECK(cq_quantize_row(CQ_TYPE_Q4_K, x, q, 288) == CQ_ERR_BAD_SHAPE, "q4_K: row not a multiple of 256 rejected");
    CHECK(cq_dequantize_row(5, q, y, 32) == CQ_ERR_UNSUPPORTED_TYPE, "unknown type id rejected");
    CHECK(cq_type_get(99) == NULL && cq_type_get(-1) == NULL, "type ids out of range");
    CHECK(cq_row_bytes(CQ_TYPE_Q4_0, 64) == 36 && cq_row_bytes(CQ_TYPE_Q6_K, 512) == 420, "row bytes");
    /* 4 bytes × (2^63 − 1) values does not fit in 64 bits; 4 × 2^61 does */
    CHECK(cq_row_bytes(CQ_TYPE_F32, INT64_MAX) == 0 && cq_row_bytes(CQ_TYPE_F32, INT64_C(1) << 61) == (size_t)1 << 63,
          "row bytes that overflow size_t give 0");
    free(x);
    free(y);
    free(q);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Activation quantization: every kernel's code gives the scalar bytes exactly.                            */
static void test_activation_quantization(cq_kernel kernel) {
    const int64_t m = 5, k = 32 * 41;
    float *x = xmalloc(m * k * 4);
    for (int64_t i = 0; i < m * k; i++) x[i] = rnd_normalish() * 3.0f;
    for (int j = 0; j < 32; j++) x[32 + j] = 0.0f;                   /* an all-zero block */
    for (int j = 0; j < 32; j++) x[64 + j] = (float)(j - 16) * 0.5f; /* exact .5 ties */
    for (int j = 0; j < 32; j++) x[96 + j] = 1e-38f * (float)(j - 7);  /* tiny values */
    cq_block_q8x *a = xmalloc(m * k / 32 * sizeof *a), *b = xmalloc(m * k / 32 * sizeof *b);
    CHECK(cq_quantize_activations(CQ_KERNEL_SCALAR, x, m, k, k, a) == CQ_OK, "scalar activation quantization");
    CHECK(cq_quantize_activations(kernel, x, m, k, k, b) == CQ_OK, "%s activation quantization", cq_kernel_name(kernel));
    int bad = 0;
    for (int64_t i = 0; i < m * k / 32; i++)
        bad += a[i].d != b[i].d || a[i].sum != b[i].sum || memcmp(a[i].q, b[i].q, 32) != 0;
    CHECK(bad == 0, "%s activation blocks differ from scalar in %d blocks", cq_kernel_name(kernel), bad);
    int range = 0;
    for (int64_t i = 0; i < m * k / 32; i++)
        for (int j = 0; j < 32; j++) range += a[i].q[j] < -127;
    CHECK(range == 0, "activations stay in [-127, 127]");
    free(x);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------------------------------------------ */
/* GEMM against the scalar reference                                                                       */

/* The 32-value block types (activations quantized to cq_block_q8x); the rest take fp32 activations. */
static int is_quantized(int type) { return cq_type_get(type)->block_elems == 32; }
/* The K-quants (256-value super-blocks; activations quantized to cq_block_q8k). */
static int is_kquant(int type) { return type == CQ_TYPE_Q4_K || type == CQ_TYPE_Q5_K || type == CQ_TYPE_Q6_K; }
/* value = d·code + m */
static int has_min(int type) { return type == CQ_TYPE_Q4_1 || type == CQ_TYPE_Q5_1; }
static int has_qh(int type) { return type == CQ_TYPE_Q5_0 || type == CQ_TYPE_Q5_1; }

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* File-layout offsets of a 32-value block (ggml): fp16 d at 0, fp16 m at 2, uint32 qh, then the codes. */
static size_t qh_at(int type) { return has_min(type) ? 4 : 2; }
static size_t qs_at(int type) {
    return type == CQ_TYPE_Q8_0 || type == CQ_TYPE_Q4_0 ? 2 : qh_at(type) + (has_qh(type) ? 4 : 0);
}

/* Weight j of one file block as its integer up to the scale (the value is d·that [+ m]): read from the bytes as ggml
 * lays them out, independently of the library's packers. */
static int file_code(int type, const uint8_t *blk, int j) {
    const uint8_t *qs = blk + qs_at(type);
    if (type == CQ_TYPE_Q8_0) return (int8_t)qs[j];
    int code = j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
    if (has_qh(type)) code |= (int)((get_u32(blk + qh_at(type)) >> j) & 1u) << 4;
    return code - (type == CQ_TYPE_Q4_0 ? 8 : type == CQ_TYPE_Q5_0 ? 16 : 0);
}

/* Test-side quantizers for Q4_1/Q5_1 (min/max affine) and Q5_0 (signed absmax), written apart from the library's
 * (fminf/fmaxf from the first value, plain casts): for finite blocks without zeros of both signs they follow ggml's
 * reference scheme byte for byte, and test_quantize_bounds holds cq_quantize_row to them. */
static void quantize_test(int type, const float *x, uint8_t *dst, int64_t k) {
    const size_t bb = cq_type_get(type)->block_bytes;
    for (int64_t b = 0; b < k / 32; b++, x += 32, dst += bb) {
        int code[32];
        memset(dst, 0, bb);
        if (has_min(type)) {
            float lo = x[0], hi = x[0];
            for (int j = 1; j < 32; j++) {
                lo = fminf(lo, x[j]);
                hi = fmaxf(hi, x[j]);
            }
            const int top = type == CQ_TYPE_Q4_1 ? 15 : 31;
            const float d = (hi - lo) / (float)top, id = d != 0.0f ? 1.0f / d : 0.0f;
            put_u16(dst, cq_fp32_to_fp16(d));
            put_u16(dst + 2, cq_fp32_to_fp16(lo));
            for (int j = 0; j < 32; j++) {
                const int q = (int)((x[j] - lo) * id + 0.5f);
                code[j] = q > top ? top : q;
            }
        } else { /* Q5_0 */
            float amax = 0.0f, vmax = 0.0f;
            for (int j = 0; j < 32; j++)
                if (amax < fabsf(x[j])) {
                    amax = fabsf(x[j]);
                    vmax = x[j];
                }
            const float d = vmax / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            put_u16(dst, cq_fp32_to_fp16(d));
            for (int j = 0; j < 32; j++) {
                const float s = x[j] * id + 16.5f;
                const int q = s > 0.0f ? (int)s : 0;
                code[j] = q > 31 ? 31 : q;
            }
        }
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            dst[qs_at(type) + j] = (uint8_t)((code[j] & 15) | ((code[j + 16] & 15) << 4));
            qh |= (uint32_t)(code[j] >> 4) << j | (uint32_t)(code[j + 16] >> 4) << (j + 16);
        }
        if (has_qh(type))
            for (int i = 0; i < 4; i++) dst[qh_at(type) + i] = (uint8_t)(qh >> (8 * i));
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* The 32-value quantizers (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): error bounds, determinism, extreme inputs, and   */
/* the bytes gguf-py made (the fixtures of tools/make_quant_fixtures.py).                                 */

static const int k_quantizers[] = {CQ_TYPE_Q8_0, CQ_TYPE_Q4_0, CQ_TYPE_Q4_1, CQ_TYPE_Q5_0, CQ_TYPE_Q5_1};
#define N_QUANTIZERS (sizeof k_quantizers / sizeof *k_quantizers)

/* How far fp16 rounding may move v: half an ulp, 2^-11 relative for normal halves, 2^-25 below them. */
static float half_err(float v) { return fmaxf(fabsf(v) * 0x1p-11f, 0x1p-25f); }

/* The block's fp32 scale d and min m as the format defines them, computed here from the values: Q8_0 max|x|/127,
 * Q4_0/Q5_0 (the value of largest magnitude)/−8 or /−16, Q4_1/Q5_1 (max − min)/15 or /31 with m = min. */
static void block_scale(int type, const float *x, float *d, float *m) {
    float lo = x[0], hi = x[0], vmax = 0.0f;
    for (int j = 0; j < 32; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
        if (fabsf(x[j]) > fabsf(vmax)) vmax = x[j];
    }
    *m = 0.0f;
    switch (type) {
    case CQ_TYPE_Q8_0: *d = fabsf(vmax) / 127.0f; break;
    case CQ_TYPE_Q4_0: *d = vmax / -8.0f; break;
    case CQ_TYPE_Q5_0: *d = vmax / -16.0f; break;
    default:
        *d = (hi - lo) / (type == CQ_TYPE_Q4_1 ? 15.0f : 31.0f);
        *m = lo;
    }
}

/* The most one value may move through quantize → dequantize: half a step (|d|/2), plus the fp16 rounding of d times
 * the largest code magnitude and of m, plus fp32 rounding. Q4_0/Q5_0 codes reach −8·d…7·d / −16·d…15·d, so on the
 * side opposite the block's extreme (code −8 / −16) values past 7.5·d / 15.5·d end on the last code, up to one
 * step away. */
static float roundtrip_bound(int type, float x, float d, float m) {
    const float ad = fabsf(d);
    /* the largest |code| that multiplies d (codes less 8 / 16 for Q4_0 / Q5_0) */
    const int cmax = type == CQ_TYPE_Q8_0 ? 127 : type == CQ_TYPE_Q4_0 ? 8 : type == CQ_TYPE_Q5_0 ? 16
                   : type == CQ_TYPE_Q4_1 ? 15 : 31;
    float step = 0.5f * ad;
    if ((type == CQ_TYPE_Q4_0 || type == CQ_TYPE_Q5_0) && d != 0.0f) {
        const float last = (float)(cmax - 1); /* 7 or 15: the largest code − 8 / − 16 */
        if (x / d > last + 0.5f) step = fabsf(x - last * d);
    }
    return step + (float)cmax * half_err(d) + (has_min(type) ? half_err(m) : 0.0f) +
           2e-6f * (fabsf(x) + fabsf(m) + (float)cmax * ad);
}

/* Blocks of several kinds, for the bound and determinism checks: block b of the row gets kind b % 10. */
static void make_quant_rows(float *x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        float *v = x + 32 * b;
        const float s = ldexpf(1.0f, (int)(rnd_u32() % 24) - 12); /* 2^-12 … 2^11 */
        for (int j = 0; j < 32; j++) {
            switch (b % 10) {
            case 0: v[j] = rnd_normalish() * s; break;                                  /* centred */
            case 1: v[j] = (3.0f + rnd_normalish()) * s; break;                         /* offset: a min pays */
            case 2: v[j] = (rnd_uniform() + 1.0f) * s; break;                           /* all positive */
            case 3: v[j] = -(rnd_uniform() + 1.5f) * s; break;                          /* all negative */
            case 4: v[j] = 0.37f * s; break;                                            /* constant */
            case 5: v[j] = ((float)(int)(rnd_u32() % 31) - 15.0f + 0.5f) * s; break;    /* grid of .5 ties */
            case 6: v[j] = j % 3 ? rnd_uniform() * s : (j % 2 ? 0.0f : -0.0f); break;   /* signed zeros */
            case 7: v[j] = rnd_uniform() * 1e-6f; break;                                /* fp16 d subnormal */
            case 8: v[j] = rnd_normalish() * 4000.0f + 20000.0f; break;                 /* large, in fp16 range */
            default: v[j] = rnd_uniform() * s * (j == 7 ? 20.0f : 1.0f); break;         /* an outlier */
            }
        }
    }
}

static void test_quantize_bounds(void) {
    const uint64_t saved_rng = g_rng; /* the tests after this one see the same random numbers as without it */
    const int64_t n = 32 * 400;
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4);
    /* Q8_0's 34-byte blocks are the largest */
    uint8_t *q = xmalloc(cq_row_bytes(CQ_TYPE_Q8_0, n) + 16), *q2 = xmalloc(cq_row_bytes(CQ_TYPE_Q8_0, n) + 16);
    make_quant_rows(x, n);
    for (size_t t = 0; t < N_QUANTIZERS; t++) {
        const int type = k_quantizers[t];
        const char *name = cq_type_get(type)->name;
        const size_t bb = cq_type_get(type)->block_bytes, row = cq_row_bytes(type, n);
        CHECK(cq_type_get(type)->can_quantize == 1, "%s can_quantize", name);
        memset(q, 0xA5, row + 16);
        CHECK(cq_quantize_row(type, x, q, n) == CQ_OK, "quantize %s", name);
        int canary = 0;
        for (int i = 0; i < 16; i++) canary += q[row + i] != 0xA5;
        CHECK(canary == 0, "%s quantize writes past the row", name);
        CHECK(cq_dequantize_row(type, q, y, n) == CQ_OK, "dequantize %s", name);
        int bad = 0, checked = 0;
        double worst = 0;
        for (int64_t b = 0; b < n / 32; b++) {
            float d, m;
            block_scale(type, x + 32 * b, &d, &m);
            if (!(fabsf(d) < 65504.0f && fabsf(m) < 65504.0f)) continue; /* fp16 d or m would be inf */
            checked++;
            for (int j = 0; j < 32; j++) {
                const float v = x[32 * b + j], bound = roundtrip_bound(type, v, d, m);
                const float err = fabsf(v - y[32 * b + j]);
                if (err / bound > worst) worst = err / bound;
                if (!(err <= bound)) {
                    if (bad < 4)
                        printf("  %s block %lld (kind %lld) value %d: %a → %a, error %g > bound %g (d %g, m %g)\n",
                               name, (long long)b, (long long)(b % 10), j, v, y[32 * b + j], err, bound, d, m);
                    bad++;
                }
            }
        }
        CHECK(bad == 0 && checked == n / 32, "%s round trip: %d values off by more than half a step (+ fp16 d/m), "
              "%d of %lld blocks checked, worst %.3f× the bound", name, bad, checked, (long long)(n / 32), worst);

        /* deterministic, and blocks independent: the row at once, again, and block by block give the same bytes */
        CHECK(cq_quantize_row(type, x, q2, n) == CQ_OK && memcmp(q, q2, row) == 0, "%s quantize twice differs", name);
        int bad_blocks = 0;
        for (int64_t b = 0; b < n / 32; b++) {
            uint8_t one[64];
            cq_quantize_row(type, x + 32 * b, one, 32);
            bad_blocks += memcmp(one, q + b * bb, bb) != 0;
        }
        CHECK(bad_blocks == 0, "%s: %d blocks quantized alone differ from the row's", name, bad_blocks);

        /* Q4_1/Q5_0/Q5_1 against the test-side quantizer (quantize_test, written apart from the library): the same
         * bytes for finite blocks without signed-zero ties (fminf/fmaxf may pick either zero) */
        if (type == CQ_TYPE_Q4_1 || type == CQ_TYPE_Q5_0 || type == CQ_TYPE_Q5_1) {
            int differ = 0, compared = 0;
            for (int64_t b = 0; b < n / 32; b++) {
                if (b % 10 == 6) continue;
                uint8_t mine[64];
                quantize_test(type, x + 32 * b, mine, 32);
                differ += memcmp(mine, q + b * bb, bb) != 0;
                compared++;
            }
            CHECK(differ == 0 && compared > 0, "%s: %d of %d blocks differ from the test-side quantizer", name,
                  differ, compared);
        }
    }
    CHECK(cq_quantize_row(CQ_TYPE_Q5_1, x, q, 0) == CQ_OK, "a row of 0 values");
    CHECK(cq_quantize_row(CQ_TYPE_Q4_1, x, q, 33) == CQ_ERR_BAD_SHAPE, "q4_1: row not a multiple of 32 rejected");
    CHECK(cq_quantize_row(CQ_TYPE_Q5_0, NULL, q, 32) == CQ_ERR_INVALID_ARGUMENT, "q5_0: NULL source rejected");
    CHECK(cq_quantize_row(CQ_TYPE_Q5_1, x, NULL, 32) == CQ_ERR_INVALID_ARGUMENT, "q5_1: NULL destination rejected");
    free(x);
    free(y);
    free(q);
    free(q2);
    g_rng = saved_rng;
}

/* Non-finite, huge, subnormal and signed-zero inputs: defined bytes on every host (the sanitizer build checks that no
 * float → integer conversion overflows), the same bytes twice, and the values ggml's C gives where it is defined. */
static float f32_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_quantize_extremes(void) {
    const uint64_t saved_rng = g_rng;
    enum { KINDS = 16 };
    float x[KINDS * 32];
    for (int k = 0; k < KINDS; k++)
        for (int j = 0; j < 32; j++) {
            float *v = &x[32 * k + j];
            const float r = rnd_uniform();
            switch (k) {
            case 0: *v = NAN; break;
            case 1: *v = INFINITY; break;
            case 2: *v = -INFINITY; break;
            case 3: *v = j % 2 ? FLT_MAX : -FLT_MAX; break;                  /* max − min overflows */
            case 4: *v = j == 9 ? NAN : r; break;
            case 5: *v = j == 30 ? INFINITY : r; break;
            case 6: *v = j == 0 ? -INFINITY : r; break;
            case 7: *v = j == 3 ? INFINITY : j == 4 ? -INFINITY : j == 5 ? NAN : r; break;
            case 8: *v = f32_of_bits(1u + rnd_u32() % 0x7fffffu) * (j % 3 ? 1.0f : -1.0f); break; /* subnormals */
            case 9: *v = f32_of_bits(1u + rnd_u32() % 16u); break;            /* d rounds to 0 or 1/d = inf */
            case 10: *v = -0.0f; break;
            case 11: *v = j % 2 ? 0.0f : -0.0f; break;
            case 12: *v = r * 3e38f; break;
            case 13: *v = j == 17 ? 1e30f : r * 1e-30f; break;               /* one value dominates */
            case 14: *v = FLT_MIN * (float)(j - 16); break;
            default: *v = j % 4 == 0 ? NAN : (j % 4 == 1 ? -1.0f : 1e-20f); break;
            }
        }
    for (size_t t = 0; t < N_QUANTIZERS; t++) {
        const int type = k_quantizers[t];
        const char *name = cq_type_get(type)->name;
        const size_t bb = cq_type_get(type)->block_bytes, row = cq_row_bytes(type, KINDS * 32);
        uint8_t q[KINDS * 34], q2[KINDS * 34];
        float y[KINDS * 32];
        CHECK(cq_quantize_row(type, x, q, KINDS * 32) == CQ_OK, "%s extremes quantize", name);
        CHECK(cq_quantize_row(type, x, q2, KINDS * 32) == CQ_OK && memcmp(q, q2, row) == 0,
              "%s extremes: two runs differ", name);
        CHECK(cq_dequantize_row(type, q, y, KINDS * 32) == CQ_OK, "%s extremes dequantize", name);

        /* A NaN is skipped when the scale (and min) are found and gets code 0: the same bytes as the block with the
         * NaN replaced by a value whose code is 0 anyway — the min (Q4_1/Q5_1), the extreme (Q4_0/Q5_0), 0 (Q8_0). */
        for (int k = 0; k < KINDS; k++) {
            float clean[32], lo = INFINITY, vmax = 0.0f;
            int nans = 0;
            for (int j = 0; j < 32; j++) {
                clean[j] = x[32 * k + j];
                nans += isnan(clean[j]);
                if (isnan(clean[j])) continue;
                lo = fminf(lo, clean[j]);
                if (fabsf(clean[j]) > fabsf(vmax)) vmax = clean[j];
            }
            if (nans == 0 || nans == 32 || k == 7) continue; /* (k 7 also holds ±inf) */
            for (int j = 0; j < 32; j++)
                if (isnan(clean[j])) clean[j] = has_min(type) ? lo : type == CQ_TYPE_Q8_0 ? 0.0f : vmax;
            uint8_t c[34];
            cq_quantize_row(type, clean, c, 32);
            CHECK(memcmp(c, q + k * bb, bb) == 0, "%s extremes kind %d: a NaN is not quantized like its stand-in",
                  name, k);
        }
    }

    /* Exact bytes where ggml's C is defined (and gguf-py agrees, except where noted) */
    uint8_t b[34];
    cq_quantize_row(CQ_TYPE_Q4_1, x + 32 * 1, b, 32); /* all +inf: min stays FLT_MAX (gguf-py: d = inf − inf = NaN) */
    CHECK(get_u16(b) == 0x7c00 && get_u16(b + 2) == 0x7c00 && b[4] == 0 && b[19] == 0, "q4_1 all +inf");
    cq_quantize_row(CQ_TYPE_Q5_1, x + 32 * 2, b, 32); /* all −inf: max stays −FLT_MAX, d = +inf, m = −inf */
    CHECK(get_u16(b) == 0x7c00 && get_u16(b + 2) == 0xfc00 && get_u32(b + 4) == 0 && b[8] == 0, "q5_1 all -inf");
    cq_quantize_row(CQ_TYPE_Q4_1, x, b, 32); /* all NaN: d = (−FLT_MAX − FLT_MAX)/15 = −inf, m = fp16(FLT_MAX) = inf */
    CHECK(get_u16(b) == 0xfc00 && get_u16(b + 2) == 0x7c00 && b[4] == 0, "q4_1 all NaN");
    cq_quantize_row(CQ_TYPE_Q5_0, x, b, 32); /* all NaN: max stays +0.0, d = −0.0, codes 0 */
    CHECK(get_u16(b) == 0x8000 && get_u32(b + 2) == 0 && b[6] == 0 && b[21] == 0, "q5_0 all NaN");
    cq_quantize_row(CQ_TYPE_Q5_0, x + 32 * 10, b, 32); /* all −0.0: d = +0/−16 = −0.0, codes 16 (gguf-py: d = +0.0) */
    CHECK(get_u16(b) == 0x8000 && get_u32(b + 2) == 0xffffffffu && b[6] == 0 && b[21] == 0, "q5_0 all -0.0");
    cq_quantize_row(CQ_TYPE_Q5_0, x + 32 * 5, b, 32); /* +inf at 30: d = −inf, finite codes 16, the inf's 0 */
    CHECK(get_u16(b) == 0xfc00 && get_u32(b + 2) == 0xbfffffffu, "q5_0 +inf among finite values: qh %08x",
          get_u32(b + 2));
    cq_quantize_row(CQ_TYPE_Q4_1, x + 32 * 11, b, 32); /* zeros led by −0.0: m keeps the first zero's sign, d = +0 */
    CHECK(get_u16(b) == 0x0000 && get_u16(b + 2) == 0x8000 && b[4] == 0, "q4_1 signed zeros");
    cq_quantize_row(CQ_TYPE_Q5_1, x + 32 * 3, b, 32); /* ±FLT_MAX: max − min = inf, d = m = ±inf, every code 0 */
    CHECK(get_u16(b) == 0x7c00 && get_u16(b + 2) == 0xfc00 && get_u32(b + 4) == 0 && b[8] == 0, "q5_1 ±FLT_MAX");
    g_rng = saved_rng;
}

/* ---------- the fixtures gguf-py made ---------- */

static uint8_t *read_file(const char *dir, const char *name, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *grown = realloc(buf, cap + 1);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int hex_nibble(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* Replaces the blocks that the case `name` lists under "ggml_divergences" (one {"block": B, "ggml_bytes": "…"} per
 * line, as make_quant_fixtures.py writes them) with ggml's bytes. Returns how many, or -1 on a malformed entry. */
static int apply_divergences(const char *manifest, const char *name, uint8_t *expected, size_t bb, int64_t blocks) {
    char key[96];
    snprintf(key, sizeof key, "\"name\": \"%s\"", name);
    const char *c = strstr(manifest, key);
    if (!c) return -1;
    const char *next = strstr(c + 1, "\"name\": ");
    const char *list = strstr(c, "\"ggml_divergences\": ");
    if (!list || (next && list > next)) return -1;
    list += strlen("\"ggml_divergences\": ");
    if (strncmp(list, "[]", 2) == 0) return 0;
    int count = 0;
    for (const char *line = strchr(list, '\n'); line && (!next || line < next); line = strchr(line + 1, '\n')) {
        const char *p = line + 1;
        while (*p == ' ') p++;
        if (*p == ']') break;
        int block = -1, used = 0;
        if (sscanf(p, "{\"block\": %d, \"ggml_bytes\": \"%n", &block, &used) != 1 || used == 0) return -1;
        if (block < 0 || block >= blocks) return -1;
        p += used;
        for (size_t i = 0; i < bb; i++) {
            const int hi = hex_nibble(p[2 * i]), lo = hi < 0 ? -1 : hex_nibble(p[2 * i + 1]);
            if (lo < 0) return -1;
            expected[(size_t)block * bb + i] = (uint8_t)(hi << 4 | lo);
        }
        if (p[2 * bb] != '"') return -1;
        count++;
    }
    return count;
}

/* cq_quantize_row gives the bytes of the quantize fixtures of `types` in `manifest_name` (gguf-py's, ggml's C where the
 * manifest lists a divergence; for the K-quants llama.cpp's own), here on every host and build this driver runs on.
 * CQ_FIXTURES overrides the directory (default: the repository's, relative to its root, where tools/ctest.sh runs). */
static void test_fixture_set(const char *manifest_name, const int *types, size_t ntypes, const char *source) {
    const char *dir = getenv("CQ_FIXTURES");
    if (!dir || !*dir) dir = "Tests/VZQuantTests/Fixtures/quant";
    size_t mlen = 0;
    char *manifest = (char *)read_file(dir, manifest_name, &mlen);
    CHECK(manifest != NULL, "fixtures: cannot read %s/%s (set CQ_FIXTURES)", dir, manifest_name);
    if (!manifest) return;
    for (size_t t = 0; t < ntypes; t++) {
        const cq_type_info *info = cq_type_get(types[t]);
        char name[64], file[80];
        snprintf(name, sizeof name, "quantize_%s", info->name);
        size_t in_len = 0, out_len = 0;
        snprintf(file, sizeof file, "%s.in.bin", name);
        uint8_t *in = read_file(dir, file, &in_len);
        snprintf(file, sizeof file, "%s.out.bin", name);
        uint8_t *expected = read_file(dir, file, &out_len);
        const int64_t n = (int64_t)(in_len / 4), blocks = n / info->block_elems;
        const int ok = in && expected && in_len % 4 == 0 && cq_row_bytes(types[t], n) == out_len && out_len > 0;
        CHECK(ok, "fixture %s: missing or sizes do not match", name);
        if (ok) {
            float *x = xmalloc(in_len);
            memcpy(x, in, in_len); /* little-endian float32, as every host this runs on */
            const int divergences = apply_divergences(manifest, name, expected, info->block_bytes, blocks);
            CHECK(divergences >= 0, "fixture %s: unreadable ggml_divergences", name);
            uint8_t *ours = xmalloc(out_len);
            CHECK(cq_quantize_row(types[t], x, ours, n) == CQ_OK, "fixture %s: quantize", name);
            int bad = 0;
            for (int64_t b = 0; b < blocks; b++) {
                const size_t at = (size_t)b * info->block_bytes;
                if (memcmp(ours + at, expected + at, info->block_bytes) == 0) continue;
                if (bad++ < 4) {
                    printf("  %s block %lld: ours ", name, (long long)b);
                    for (size_t i = 0; i < info->block_bytes; i++) printf("%02x", ours[at + i]);
                    const int pad = (int)strlen(name) + snprintf(NULL, 0, "%lld", (long long)b) + 4;
                    printf("\n  %*s expected ", pad, "");
                    for (size_t i = 0; i < info->block_bytes; i++) printf("%02x", expected[at + i]);
                    printf("\n");
                }
            }
            CHECK(bad == 0, "fixture %s: %d of %lld blocks differ from %s (%d listed as ggml divergences)", name,
                  bad, (long long)blocks, source, divergences);
            free(x);
            free(ours);
        }
        free(in);
        free(expected);
    }
    free(manifest);
}

static void test_quant_fixtures(void) {
    const int types[] = {CQ_TYPE_Q8_0, CQ_TYPE_Q4_0, CQ_TYPE_Q4_1, CQ_TYPE_Q5_0, CQ_TYPE_Q5_1, CQ_TYPE_F16,
                         CQ_TYPE_BF16};
    test_fixture_set("manifest.json", types, sizeof types / sizeof *types, "gguf-py");
    /* the same manifest's K-quant cases, from tools/make_kquant_fixtures.py: llama.cpp's ggml_quantize_chunk bytes */
    const int ktypes[] = {CQ_TYPE_Q4_K, CQ_TYPE_Q5_K, CQ_TYPE_Q6_K};
    test_fixture_set("manifest.json", ktypes, 3, "llama.cpp");
}

/* ---------- K-quant quantizers: consistency with the dequantizer, determinism, extreme inputs ---------- */

static int kq_file_value(int type, const uint8_t *blk, int l, int *sc, int *mn);
static float kq_d(int type, const uint8_t *blk);
static float kq_dmin(int type, const uint8_t *blk);

/* Each value's code is round((x + dmin·m)/(d·sc)) clamped (the search's code where d·sc = 0): so a value inside its
 * sub-block's range [−dmin·m, −dmin·m + nmax·d·sc] comes back within half a step (+ fp32 rounding), and the super-block
 * holds at most a few values outside it. Q6_K the same with x/(d·sc) in −32…31. Checked on finite blocks whose fp16
 * d (and dmin) are finite. */
static void test_kquant_quantize(void) {
    const uint64_t saved_rng = g_rng;
    const int types[] = {CQ_TYPE_Q4_K, CQ_TYPE_Q5_K, CQ_TYPE_Q6_K};
    const int64_t n = 256 * 40;
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4);
    for (int64_t b = 0; b < n / 256; b++) { /* super-blocks of several kinds, each at its own scale */
        const float s = ldexpf(1.0f, (int)(rnd_u32() % 24) - 12); /* 2^-12 … 2^11 */
        for (int j = 0; j < 256; j++) {
            float *v = &x[256 * b + j];
            switch (b % 8) {
            case 0: *v = rnd_normalish() * s; break;
            case 1: *v = (3.0f + rnd_normalish()) * s; break;                        /* offset: the min pays */
            case 2: *v = (rnd_uniform() + 1.0f) * s; break;                          /* all positive */
            case 3: *v = -(rnd_uniform() + 1.5f) * s; break;                         /* all negative */
            case 4: *v = 0.37f * s; break;                                           /* constant */
            case 5: *v = ((float)(int)(rnd_u32() % 31) - 15.0f + 0.5f) * s; break;   /* grid of .5 ties */
            case 6: *v = j % 3 ? rnd_uniform() * s : (j % 2 ? 0.0f : -0.0f); break;  /* signed zeros */
            default: *v = rnd_uniform() * s * (j == 7 ? 20.0f : 1.0f); break;        /* an outlier */
            }
        }
    }
    uint8_t *q = xmalloc(cq_row_bytes(CQ_TYPE_Q6_K, n) + 16), *q2 = xmalloc(cq_row_bytes(CQ_TYPE_Q6_K, n) + 16);
    for (size_t t = 0; t < 3; t++) {
        const int type = types[t];
        const char *name = cq_type_get(type)->name;
        const size_t bb = cq_type_get(type)->block_bytes, row = cq_row_bytes(type, n);
        CHECK(cq_type_get(type)->can_quantize == 1, "%s can_quantize", name);
        memset(q, 0xA5, row + 16);
        CHECK(cq_quantize_row(type, x, q, n) == CQ_OK, "quantize %s", name);
        int canary = 0;
        for (int i = 0; i < 16; i++) canary += q[row + i] != 0xA5;
        CHECK(canary == 0, "%s quantize writes past the row", name);
        CHECK(cq_dequantize_row(type, q, y, n) == CQ_OK, "dequantize %s", name);
        const int nmax = type == CQ_TYPE_Q4_K ? 15 : 31;
        int bad = 0, outside = 0, checked = 0;
        for (int64_t b = 0; b < n / 256; b++) {
            const uint8_t *blk = q + b * bb;
            if (!isfinite(kq_d(type, blk)) || !isfinite(kq_dmin(type, blk))) continue;
            checked++;
            for (int l = 0; l < 256; l++) {
                int sc, mn;
                kq_file_value(type, blk, l, &sc, &mn);
                const float v = x[256 * b + l], d = kq_d(type, blk) * (float)sc, dm = kq_dmin(type, blk) * (float)mn;
                const float s = type == CQ_TYPE_Q6_K ? v / d : (v + dm) / d;
                const int inside = d != 0.0f && (type == CQ_TYPE_Q6_K ? s >= -32.5f && s <= 31.5f : s >= -0.5f && s <= nmax + 0.5f);
                if (!inside) {
                    outside++;
                    continue;
                }
                const float err = fabsf(v - y[256 * b + l]);
                const float bound = 0.5f * fabsf(d) * 1.0001f + 4e-7f * (fabsf(v) + fabsf(dm) + 32.0f * fabsf(d)) + 1e-30f;
                if (!(err <= bound) && bad++ < 4)
                    printf("  %s super-block %lld value %d: %a → %a (step %g)\n", name, (long long)b, l, v, y[256 * b + l], d);
            }
        }
        CHECK(bad == 0 && checked == n / 256, "%s: %d values off by more than half a step, %d of %lld super-blocks checked",
              name, bad, checked, (long long)(n / 256));
        /* values outside their sub-block's range: the scale search may clip a few, not many */
        CHECK(outside < n / 20, "%s: %d of %lld values outside their sub-block's range", name, outside, (long long)n);

        CHECK(cq_quantize_row(type, x, q2, n) == CQ_OK && memcmp(q, q2, row) == 0, "%s quantize twice differs", name);
        int bad_blocks = 0;
        for (int64_t b = 0; b < n / 256; b++) {
            uint8_t one[210];
            cq_quantize_row(type, x + 256 * b, one, 256);
            bad_blocks += memcmp(one, q + b * bb, bb) != 0;
        }
        CHECK(bad_blocks == 0, "%s: %d super-blocks quantized alone differ from the row's", name, bad_blocks);

        /* extreme inputs: defined bytes (the sanitizer build checks every conversion), the same twice */
        float e[256 * 8];
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 256; j++) {
                const float r = rnd_uniform();
                float *v = &e[256 * k + j];
                switch (k) {
                case 0: *v = NAN; break;
                case 1: *v = j % 3 ? INFINITY : -INFINITY; break;
                case 2: *v = j == 100 ? NAN : r; break;
                case 3: *v = r * 3e38f; break;
                case 4: *v = j % 2 ? FLT_MAX : -FLT_MAX; break;
                case 5: *v = f32_of_bits(1u + rnd_u32() % 0x7fffffu); break;
                case 6: *v = j % 2 ? 0.0f : -0.0f; break;
                default: *v = j == 17 ? 1e30f : r * 1e-30f; break;
                }
            }
        uint8_t qa[210 * 8], qb[210 * 8];
        CHECK(cq_quantize_row(type, e, qa, 256 * 8) == CQ_OK && cq_quantize_row(type, e, qb, 256 * 8) == CQ_OK &&
                  memcmp(qa, qb, bb * 8) == 0,
              "%s extremes: two runs differ", name);
        /* a block of zeros of both signs is all zero bytes (d = dmin = +0, every code 0) */
        int nonzero = 0;
        for (size_t i = 0; i < bb; i++) nonzero += qa[6 * bb + i] != 0;
        CHECK(nonzero == 0, "%s: a block of signed zeros quantizes to %d nonzero bytes", name, nonzero);
    }
    CHECK(cq_quantize_row(CQ_TYPE_Q6_K, x, q, 0) == CQ_OK, "a row of 0 values");
    CHECK(cq_quantize_row(CQ_TYPE_Q5_K, x, q, 128) == CQ_ERR_BAD_SHAPE, "q5_K: row not a multiple of 256 rejected");
    CHECK(cq_quantize_row(CQ_TYPE_Q6_K, NULL, q, 256) == CQ_ERR_INVALID_ARGUMENT, "q6_K: NULL source rejected");
    free(x);
    free(y);
    free(q);
    free(q2);
    g_rng = saved_rng;
}

/* The 256-value activation blocks: every kernel's code gives the scalar bytes exactly, the sums are the codes' sums. */
static void test_activation_quantization_k(cq_kernel kernel) {
    const int64_t m = 5, k = 256 * 9;
    float *x = xmalloc(m * k * 4);
    for (int64_t i = 0; i < m * k; i++) x[i] = rnd_normalish() * 3.0f;
    for (int j = 0; j < 256; j++) x[256 + j] = 0.0f;                     /* an all-zero block */
    for (int j = 0; j < 256; j++) x[512 + j] = (float)(j % 64 - 32) * 0.5f; /* exact .5 ties */
    for (int j = 0; j < 256; j++) x[768 + j] = 1e-38f * (float)(j % 16 - 7); /* tiny values */
    for (int j = 0; j < 256; j++) x[1024 + j] = j == 9 ? NAN : (j == 10 ? INFINITY : rnd_uniform());
    cq_block_q8k *a = xmalloc(m * k / 256 * sizeof *a), *b = xmalloc(m * k / 256 * sizeof *b);
    CHECK(cq_quantize_activations_k(CQ_KERNEL_SCALAR, x, m, k, k, a) == CQ_OK, "scalar K activation quantization");
    CHECK(cq_quantize_activations_k(kernel, x, m, k, k, b) == CQ_OK, "%s K activation quantization", cq_kernel_name(kernel));
    int bad = 0, sums = 0, range = 0;
    for (int64_t i = 0; i < m * k / 256; i++) {
        bad += memcmp(&a[i], &b[i], sizeof a[i]) != 0 && !(isnan(a[i].d) && isnan(b[i].d));
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) {
                sum += a[i].q[16 * s + j];
                range += a[i].q[16 * s + j] < -127;
            }
            sums += sum != a[i].bsum16[s] || (s % 2 && a[i].bsum32[s / 2] != a[i].bsum16[s] + a[i].bsum16[s - 1]);
        }
    }
    CHECK(bad == 0, "%s K activation blocks differ from scalar in %d blocks", cq_kernel_name(kernel), bad);
    CHECK(sums == 0 && range == 0, "K activation sums (%d wrong) and range (%d below -127)", sums, range);
    CHECK(cq_quantize_activations_k(kernel, x, 1, 300, 300, a) == CQ_ERR_BAD_SHAPE, "K activations: K %% 256 rejected");
    free(x);
    free(a);
    free(b);
}

typedef struct {
    int type;
    int64_t n, k;
    void *w;       /* file layout, n rows */
    float *wdeq;   /* dequantized, n × k */
    float *wmag;   /* |d·code| + |m| per weight (|wdeq| without a min): the size of the terms the kernels add */
} weights;

/* ---------- K-quant file blocks, read here independently of the library (ggml's layouts, cquant.h) ---------- */

/* Value l (0…255) of one K-quant file block as integers: value = d·sc·code − dmin·mn (Q4_K/Q5_K, code unsigned) or
 * d·sc·code (Q6_K, code = 6-bit − 32, mn = 0). Returns code; sc and mn through the pointers. */
static int kq_file_value(int type, const uint8_t *blk, int l, int *sc, int *mn) {
    if (type == CQ_TYPE_Q6_K) {
        /* ggml's dequantize_row_q6_K: per 128 values, ql[i] / ql[i+32] low then high nibbles, qh[i] 2 bits each */
        const int half = l / 128, r = l % 128, i = r % 32, which = r / 32; /* 0: ql[i] lo, 1: ql[i+32] lo, 2, 3: hi */
        const uint8_t *ql = blk + 64 * half, *qh = blk + 128 + 32 * half;
        const int nibble = (which & 1 ? ql[i + 32] : ql[i]) >> (which & 2 ? 4 : 0) & 15;
        *sc = (int8_t)blk[192 + l / 16];
        *mn = 0;
        return (nibble | ((qh[i] >> (2 * which)) & 3) << 4) - 32;
    }
    const int j = l / 32, i = l % 32;
    const uint8_t *s = blk + 4;
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
    const uint8_t *qs = blk + (type == CQ_TYPE_Q5_K ? 48 : 16);
    int code = (qs[32 * (j / 2) + i] >> (j % 2 ? 4 : 0)) & 15;
    if (type == CQ_TYPE_Q5_K) code |= ((blk[16 + i] >> j) & 1) << 4;
    return code;
}

static float kq_d(int type, const uint8_t *blk) { return cq_fp16_to_fp32(get_u16(blk + (type == CQ_TYPE_Q6_K ? 208 : 0))); }
static float kq_dmin(int type, const uint8_t *blk) { return type == CQ_TYPE_Q6_K ? 0.0f : cq_fp16_to_fp32(get_u16(blk + 2)); }

/* |d·sc·code| + |dmin·mn| per weight of a row: the size of the terms the kernels add. */
static void kq_magnitudes(int type, const uint8_t *row, int64_t k, float *mag) {
    const size_t bb = cq_type_get(type)->block_bytes;
    for (int64_t i = 0; i < k; i++) {
        const uint8_t *blk = row + (i / 256) * bb;
        int sc, mn;
        const int code = kq_file_value(type, blk, (int)(i % 256), &sc, &mn);
        mag[i] = fabsf(kq_d(type, blk) * (float)sc * (float)code) + fabsf(kq_dmin(type, blk) * (float)mn);
    }
}

/* Y of a K-quant straight from the file bytes with the reference numerics (gemm_kquant_scalar.c): per super-block the
 * exact isum = Σ sc·code·qx and msum = Σ mn·qx, acc = fma(isum, dx·d, acc), acc = fma(−msum, dx·dmin, acc); + bias. */
static void kq_gemm_from_file(const weights *w, const float *x, int64_t m, const float *bias, float *y) {
    const int64_t nb = w->k / 256;
    const size_t bb = cq_type_get(w->type)->block_bytes, row = cq_row_bytes(w->type, w->k);
    cq_block_q8k *xq = xmalloc(m * nb * sizeof *xq);
    cq_quantize_activations_k(CQ_KERNEL_SCALAR, x, m, w->k, w->k, xq);
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < w->n; c++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = (const uint8_t *)w->w + c * row + b * bb;
                const cq_block_q8k *xb = &xq[r * nb + b];
                int32_t isum = 0, msum = 0;
                for (int l = 0; l < 256; l++) {
                    int sc, mn;
                    const int code = kq_file_value(w->type, blk, l, &sc, &mn);
                    isum += sc * code * xb->q[l];
                    msum += mn * xb->q[l];
                }
                acc = fmaf((float)isum, xb->d * kq_d(w->type, blk), acc);
                if (w->type != CQ_TYPE_Q6_K) acc = fmaf(-(float)msum, xb->d * kq_dmin(w->type, blk), acc);
            }
            y[r * w->n + c] = bias ? acc + bias[c] : acc;
        }
    free(xq);
}

/* A block's fp16 scale (and min) for the `exact` weights: powers of two, and small integers times them, so every
 * product the kernels form is exact. */
static uint16_t exact_half(int integer) {
    const int v = integer ? (int)(rnd_u32() % 17) - 8 : 1;
    return cq_fp32_to_fp16(ldexpf((float)v, -(int)(rnd_u32() % 3)));
}

static weights make_weights(int type, int64_t n, int64_t k, int exact) {
    weights w = {type, n, k, NULL, NULL, NULL};
    const size_t row = cq_row_bytes(type, k);
    w.w = xmalloc(row * n);
    w.wdeq = xmalloc(n * k * 4);
    w.wmag = xmalloc(n * k * 4);
    float *tmp = xmalloc(k * 4);
    for (int64_t r = 0; r < n; r++) {
        uint8_t *dst = (uint8_t *)w.w + r * row;
        if (exact && is_kquant(type)) {
            /* random bytes (every code, 6-bit scale and min, Q6_K scale −128…127) with exact fp16 super-block scales */
            const size_t bb = cq_type_get(type)->block_bytes;
            for (int64_t b = 0; b < k / 256; b++) {
                uint8_t *blk = dst + b * bb;
                for (size_t j = 0; j < bb; j++) blk[j] = (uint8_t)rnd_u32();
                if (type == CQ_TYPE_Q6_K) {
                    put_u16(blk + 208, exact_half(0));
                } else {
                    put_u16(blk, exact_half(0));
                    put_u16(blk + 2, exact_half(1));
                }
            }
        } else if (exact && is_quantized(type)) {
            /* power-of-two scales and random codes: every product below is exact */
            const size_t bb = cq_type_get(type)->block_bytes;
            for (int64_t b = 0; b < k / 32; b++) {
                uint8_t *blk = dst + b * bb;
                /* every byte value, including the Q8_0 code -128 that ggml never writes but other tools may */
                for (size_t j = 2; j < bb; j++) blk[j] = (uint8_t)rnd_u32();
                put_u16(blk, exact_half(0));
                if (has_min(type)) put_u16(blk + 2, exact_half(1));
                if (type == CQ_TYPE_Q8_0 && b % 3 == 0) blk[2 + rnd_u32() % 32] = 0x80;
            }
        } else {
            for (int64_t i = 0; i < k; i++) tmp[i] = rnd_normalish() * 0.5f;
            if (is_quantized(type) && !cq_type_get(type)->can_quantize) {
                quantize_test(type, tmp, dst, k);
            } else if (cq_quantize_row(type, tmp, dst, k) != CQ_OK) {
                printf("cannot make %s weights\n", cq_type_get(type)->name);
                exit(2);
            }
        }
        cq_dequantize_row(type, dst, w.wdeq + r * k, k);
        if (is_kquant(type)) {
            kq_magnitudes(type, dst, k, w.wmag + r * k);
            continue;
        }
        for (int64_t i = 0; i < k; i++) {
            const uint8_t *blk = dst + (i / 32) * cq_type_get(type)->block_bytes;
            const float m = has_min(type) ? cq_fp16_to_fp32(get_u16(blk + 2)) : 0.0f;
            w.wmag[r * k + i] = fabsf(w.wdeq[r * k + i] - m) + fabsf(m);
        }
    }
    free(tmp);
    return w;
}

static void free_weights(weights *w) {
    free(w->w);
    free(w->wdeq);
    free(w->wmag);
}

/* Activations; with `exact`, every 32-block holds integers·2^e with one ±127, so quantization is exact. */
static void make_x(float *x, int64_t m, int64_t k, int exact) {
    for (int64_t r = 0; r < m; r++)
        for (int64_t b = 0; b < k / 32 || (b == 0 && k < 32); b++) {
            const int64_t len = k < 32 ? k : 32;
            float *blk = x + r * k + b * 32;
            if (exact) {
                const float s = ldexpf(1.0f, -(int)(rnd_u32() % 3));
                for (int j = 0; j < len; j++) blk[j] = (float)((int)(rnd_u32() % 255) - 127) * s;
                blk[rnd_u32() % len] = (rnd_u32() & 1 ? 127.0f : -127.0f) * s;
            } else {
                for (int j = 0; j < len; j++) blk[j] = rnd_normalish();
            }
        }
    if (!exact)
        for (int64_t i = (k / 32) * 32; i < k; i++)
            for (int64_t r = 0; r < m; r++) x[r * k + i] = rnd_normalish();
}

/* Σ|x·w| over k: the scale the tolerance is measured against (dequantized activations for quantized W). */
static double magnitude(const float *x, const float *w, int64_t k) {
    double s = 0;
    for (int64_t i = 0; i < k; i++) s += fabs((double)x[i] * w[i]);
    return s;
}

static int run_gemm(int type, cq_kernel kernel, const weights *w, const float *x, int64_t m, const float *bias,
                    float *y) {
    cq_matrix *mat = NULL;
    cq_status st = cq_matrix_pack(type, w->w, w->n, w->k, 0, kernel, &mat);
    if (st != CQ_OK) {
        printf("pack %s for %s: %s\n", cq_type_get(type)->name, cq_kernel_name(kernel), cq_status_string(st));
        return 0;
    }
    const size_t ws_bytes = cq_gemm_workspace_bytes(mat, m);
    void *ws = ws_bytes ? xmalloc(ws_bytes) : NULL;
    st = cq_gemm(mat, x, m, w->k, bias, y, w->n, ws);
    free(ws);
    cq_matrix_free(mat);
    if (st != CQ_OK) printf("gemm: %s\n", cq_status_string(st));
    return st == CQ_OK;
}

/* Same bits, or both NaN (a NaN's payload is the hardware's business). */
static int same_float(float a, float b) { return memcmp(&a, &b, 4) == 0 || (isnan(a) && isnan(b)); }

/* Y of a quantized type straight from the file bytes, following the reference numerics (gemm_scalar.c) without the
 * library's packing or tiles: per block the exact integer Σ qx·c, acc = fma(isum, dx·dw, acc), then for the types
 * with a min acc = fma(Σqx, dx·mw, acc); + bias. The scalar GEMM must give these bits. */
static void gemm_from_file(const weights *w, const float *x, int64_t m, const float *bias, float *y) {
    const int64_t nb = w->k / 32;
    const size_t bb = cq_type_get(w->type)->block_bytes, row = cq_row_bytes(w->type, w->k);
    cq_block_q8x *xq = xmalloc(m * nb * sizeof *xq);
    cq_quantize_activations(CQ_KERNEL_SCALAR, x, m, w->k, w->k, xq);
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < w->n; c++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = (const uint8_t *)w->w + c * row + b * bb;
                const cq_block_q8x *xb = &xq[r * nb + b];
                int32_t isum = 0;
                for (int j = 0; j < 32; j++) isum += file_code(w->type, blk, j) * xb->q[j];
                acc = fmaf((float)isum, xb->d * cq_fp16_to_fp32(get_u16(blk)), acc);
                if (has_min(w->type)) acc = fmaf((float)xb->sum, xb->d * cq_fp16_to_fp32(get_u16(blk + 2)), acc);
            }
            y[r * w->n + c] = bias ? acc + bias[c] : acc;
        }
    free(xq);
}

static void compare_gemm(int type, cq_kernel kernel, int64_t m, int64_t n, int64_t k, int exact) {
    weights w = make_weights(type, n, k, exact);
    float *x = xmalloc(m * k * 4), *ref = xmalloc(m * n * 4), *got = xmalloc(m * n * 4), *bias = xmalloc(n * 4);
    make_x(x, m, k, exact);
    for (int64_t i = 0; i < n; i++) bias[i] = exact ? 0.0f : rnd_uniform();
    /* NaN canaries: a kernel that skips a store is caught */
    for (int64_t i = 0; i < m * n; i++) ref[i] = got[i] = NAN;
    const int ok = run_gemm(type, CQ_KERNEL_SCALAR, &w, x, m, exact ? NULL : bias, ref) &&
                   run_gemm(type, kernel, &w, x, m, exact ? NULL : bias, got);
    CHECK(ok, "%s/%s gemm ran", cq_type_get(type)->name, cq_kernel_name(kernel));
    if (!ok) goto done;

    /* dequantized activations, for the tolerance scale */
    float *xd = xmalloc(m * k * 4);
    const int quantized = is_quantized(type);
    if (is_kquant(type)) {
        cq_block_q8k *xq = xmalloc(m * (k / 256) * sizeof *xq);
        cq_quantize_activations_k(CQ_KERNEL_SCALAR, x, m, k, k, xq);
        for (int64_t i = 0; i < m * (k / 256); i++)
            for (int j = 0; j < 256; j++) xd[i * 256 + j] = xq[i].d * xq[i].q[j];
        free(xq);
    } else if (quantized) {
        cq_block_q8x *xq = xmalloc(m * (k / 32) * sizeof *xq);
        cq_quantize_activations(CQ_KERNEL_SCALAR, x, m, k, k, xq);
        for (int64_t i = 0; i < m * (k / 32); i++)
            for (int j = 0; j < 32; j++) xd[i * 32 + j] = xq[i].d * xq[i].q[j];
        free(xq);
    } else {
        memcpy(xd, x, m * k * 4);
    }
    int bad = 0, differ = 0, nonfinite = 0;
    double worst = 0;
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++) {
            const float a = ref[r * n + c], b = got[r * n + c];
            differ += !same_float(a, b);
            if (!isfinite(a) || !isfinite(b)) {
                nonfinite++;
                continue;
            }
            const double tol = 1e-5 * magnitude(xd + r * k, w.wmag + c * k, k) + 1e-6;
            const double err = fabs((double)a - b);
            if (err / tol > worst) worst = err / tol;
            bad += err > tol;
        }
    CHECK(nonfinite == 0, "%s/%s m=%lld n=%lld k=%lld: %d non-finite outputs", cq_type_get(type)->name,
          cq_kernel_name(kernel), (long long)m, (long long)n, (long long)k, nonfinite);
    /* every kernel follows the reference's operations in the reference's order: the same bits */
    CHECK(differ == 0, "%s/%s m=%lld n=%lld k=%lld%s: %d of %lld outputs not bit-identical to scalar",
          cq_type_get(type)->name, cq_kernel_name(kernel), (long long)m, (long long)n, (long long)k,
          exact ? " exact" : "", differ, (long long)(m * n));
    CHECK(bad == 0, "%s/%s m=%lld n=%lld k=%lld%s: %d of %lld outputs outside tolerance (worst %.2f× tol)",
          cq_type_get(type)->name, cq_kernel_name(kernel), (long long)m, (long long)n, (long long)k,
          exact ? " exact" : "", bad, (long long)(m * n), worst);

    if (kernel == CQ_KERNEL_SCALAR || m <= 3) {
        /* the reference itself against a double-precision sum of dequantized products, within rounding: for the
         * types with a min the kernels add d·code and m terms separately, so the scale is Σ|x|·(|d·code| + |m|) */
        int bad_ref = 0;
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < n; c++) {
                double s = exact ? 0.0 : bias[c];
                for (int64_t i = 0; i < k; i++) s += (double)xd[r * k + i] * w.wdeq[c * k + i];
                const double tol = 1e-5 * magnitude(xd + r * k, w.wmag + c * k, k) + 1e-6;
                bad_ref += fabs(s - ref[r * n + c]) > tol;
            }
        CHECK(bad_ref == 0, "%s scalar reference vs double sum (m=%lld n=%lld k=%lld%s): %d outputs off",
              cq_type_get(type)->name, (long long)m, (long long)n, (long long)k, exact ? " exact" : "", bad_ref);
        /* and against the same numerics computed from the file bytes (checks the packing bit for bit) */
        if (quantized || is_kquant(type)) {
            float *direct = xmalloc(m * n * 4);
            (quantized ? gemm_from_file : kq_gemm_from_file)(&w, x, m, exact ? NULL : bias, direct);
            int bad_file = 0;
            for (int64_t i = 0; i < m * n; i++) bad_file += !same_float(direct[i], ref[i]);
            CHECK(bad_file == 0, "%s scalar gemm vs the file-byte reference (m=%lld n=%lld k=%lld%s): %d differ",
                  cq_type_get(type)->name, (long long)m, (long long)n, (long long)k, exact ? " exact" : "", bad_file);
            free(direct);
        }
    }
    free(xd);
done:
    free(x);
    free(ref);
    free(got);
    free(bias);
    free_weights(&w);
}

static void test_gemm_shapes(cq_kernel kernel) {
    const int types[] = {CQ_TYPE_Q8_0, CQ_TYPE_Q4_0, CQ_TYPE_Q4_1, CQ_TYPE_Q5_0, CQ_TYPE_Q5_1,
                         CQ_TYPE_F32,  CQ_TYPE_F16,  CQ_TYPE_BF16};
    const int64_t ms_full[] = {1, 2, 3, 7, 64, 129};
    const int64_t ms_quick[] = {1, 2, 3, 7, 9};
    const int64_t ns[] = {1, 5, 8, 13, 67};
    const int64_t ks_full[] = {32, 64, 96, 320, 1024, 4096, 4160};
    const int64_t ks_quick[] = {32, 96, 320, 4160};
    const int64_t *ms = g_quick ? ms_quick : ms_full;
    const int64_t *ks = g_quick ? ks_quick : ks_full;
    const int nm = g_quick ? 5 : 6, nk = g_quick ? 4 : 7;
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (int a = 0; a < nm; a++)
            for (int c = 0; c < nk; c++) {
                const int64_t n = ns[(a + c) % 5];
                /* keep the big-K × big-M corner affordable for the scalar reference */
                if (ks[c] >= 4096 && ms[a] > 7) continue;
                compare_gemm(types[t], kernel, ms[a], n, ks[c], 0);
            }
    /* big K and big M once each per type, and the exact (integer) check */
    /* the K-quants: K a multiple of 256 */
    const int ktypes[] = {CQ_TYPE_Q4_K, CQ_TYPE_Q5_K, CQ_TYPE_Q6_K};
    const int64_t kks_full[] = {256, 512, 1024, 4096, 4352};
    const int64_t kks_quick[] = {256, 768, 4352};
    const int64_t *kks = g_quick ? kks_quick : kks_full;
    const int nkk = g_quick ? 3 : 5;
    for (size_t t = 0; t < sizeof ktypes / sizeof *ktypes; t++) {
        for (int a = 0; a < nm; a++)
            for (int c = 0; c < nkk; c++) {
                if (kks[c] >= 4096 && ms[a] > 7) continue;
                compare_gemm(ktypes[t], kernel, ms[a], ns[(a + c) % 5], kks[c], 0);
            }
        compare_gemm(ktypes[t], kernel, g_quick ? 9 : 64, 13, 4096, 0);
        compare_gemm(ktypes[t], kernel, 7, 21, 1024, 1);
        compare_gemm(ktypes[t], kernel, 1, 67, 512, 1);
        compare_gemm(ktypes[t], kernel, 4, 19, 768, 1);
    }
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        compare_gemm(types[t], kernel, g_quick ? 9 : 64, 13, 4096, 0);
        if (is_quantized(types[t])) {
            compare_gemm(types[t], kernel, 7, 21, 1024, 1);
            compare_gemm(types[t], kernel, 1, 67, 512, 1);
        }
    }
    /* F32 weights take any K, not only multiples of 32 */
    compare_gemm(CQ_TYPE_F32, kernel, 5, 11, 7, 0);
    compare_gemm(CQ_TYPE_F32, kernel, 3, 9, 61, 0);
}

static const int k_qtypes[] = {CQ_TYPE_Q8_0, CQ_TYPE_Q4_0, CQ_TYPE_Q4_1, CQ_TYPE_Q5_0, CQ_TYPE_Q5_1,
                               CQ_TYPE_Q4_K, CQ_TYPE_Q5_K, CQ_TYPE_Q6_K};
#define N_QTYPES (sizeof k_qtypes / sizeof *k_qtypes)

/* Activation rows with extreme values: zeros, ±1e30, subnormal range, one 3e38, tiny, one dominant value. */
static void make_extreme_x(float *x, int64_t k) {
    for (int64_t i = 0; i < k; i++) {
        x[0 * k + i] = 0.0f;
        x[1 * k + i] = (i % 2 ? 1e30f : -1e30f) * (0.5f + 0.5f * rnd_uniform());
        x[2 * k + i] = 1e-38f * rnd_uniform(); /* subnormal-range scale */
        x[3 * k + i] = i == 5 ? 3e38f : 0.0f;
        x[4 * k + i] = (float)(i % 3) * 1e-30f;
        x[5 * k + i] = i % 32 == 0 ? -1.0f : 1e-7f;
    }
}

static int count_differ(const float *a, const float *b, int64_t n) {
    int d = 0;
    for (int64_t i = 0; i < n; i++) d += !same_float(a[i], b[i]);
    return d;
}

/* Zeros, ±large values and tiny scales: finite results, zero rows give exactly the bias, bits as scalar. */
static void test_extremes(cq_kernel kernel) {
    const int64_t m = 6, n = 16;
    for (size_t t = 0; t < N_QTYPES; t++) {
        const int type = k_qtypes[t];
        const int64_t k = is_kquant(type) ? 512 : 128;
        weights w = make_weights(type, n, k, 0);
        float *x = xmalloc(m * k * 4), *y = xmalloc(m * n * 4), *ys = xmalloc(m * n * 4), *bias = xmalloc(n * 4);
        for (int64_t i = 0; i < n; i++) bias[i] = (float)i - 3.5f;
        make_extreme_x(x, k);
        const int ok =
            run_gemm(type, kernel, &w, x, m, bias, y) && run_gemm(type, CQ_KERNEL_SCALAR, &w, x, m, bias, ys);
        CHECK(ok, "extremes ran");
        int nonfinite = 0, zero_row = 0;
        for (int64_t i = 0; i < n; i++) {
            for (int64_t r = 0; r < m; r++)
                if (r != 3) nonfinite += !isfinite(y[r * n + i]);
            zero_row += y[i] != bias[i];
        }
        CHECK(nonfinite == 0, "%s/%s extremes: %d non-finite outputs", cq_type_get(type)->name,
              cq_kernel_name(kernel), nonfinite);
        CHECK(zero_row == 0, "%s/%s: a zero row must give exactly the bias", cq_type_get(type)->name,
              cq_kernel_name(kernel));
        /* 3e38 · a weight can legitimately overflow; a NaN from a single finite input cannot */
        int nan3 = 0;
        for (int64_t i = 0; i < n; i++) nan3 += isnan(y[3 * n + i]);
        CHECK(nan3 == 0, "%s/%s: finite huge input produced NaN", cq_type_get(type)->name, cq_kernel_name(kernel));
        const int differ = count_differ(y, ys, m * n);
        CHECK(differ == 0, "%s/%s extremes: %d outputs not bit-identical to scalar", cq_type_get(type)->name,
              cq_kernel_name(kernel), differ);
        free(x);
        free(y);
        free(ys);
        free(bias);
        free_weights(&w);
    }
}

/* Weights whose fp16 scales (and mins) are the format's extremes — ±0, the smallest subnormal, the smallest normal,
 * ±65504, ±inf, NaN — over random codes, against ordinary and extreme activations: whatever comes out (inf and NaN
 * included), every kernel gives the scalar bits (NaN matching NaN). And with the largest finite scales and
 * mins (±65504) against ordinary activations, every output is finite. */
static void test_extreme_scales(cq_kernel kernel) {
    static const uint16_t halves[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x0400, 0x3c00, 0xbc00,
                                      0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00};
    const int nh = (int)(sizeof halves / sizeof *halves);
    const int64_t m = 9, n = 21, k = 256;
    for (size_t t = 0; t < N_QTYPES; t++) {
        const int type = k_qtypes[t];
        for (int finite = 0; finite < 2; finite++) {
            weights w = make_weights(type, n, k, 1); /* random codes */
            const size_t bb = cq_type_get(type)->block_bytes;
            const int64_t per_block = cq_type_get(type)->block_elems;
            for (int64_t b = 0; b < n * (k / per_block); b++) {
                uint8_t *blk = (uint8_t *)w.w + b * bb;
                /* finite: the largest scale, and the largest mins of both signs (or 0) */
                const size_t d_at = type == CQ_TYPE_Q6_K ? 208 : 0;
                const int min_at = has_min(type) || type == CQ_TYPE_Q4_K || type == CQ_TYPE_Q5_K ? 2 : -1;
                put_u16(blk + d_at, finite ? 0x7bff : halves[rnd_u32() % nh]);
                if (min_at >= 0) put_u16(blk + min_at, finite ? (uint16_t[]){0x7bff, 0xfbff, 0}[rnd_u32() % 3]
                                                              : halves[rnd_u32() % nh]);
            }
            float *x = xmalloc(m * k * 4), *y = xmalloc(m * n * 4), *ys = xmalloc(m * n * 4), *bias = xmalloc(n * 4);
            for (int64_t i = 0; i < n; i++) bias[i] = rnd_uniform();
            make_x(x, m, k, 0);
            if (!finite) make_extreme_x(x, k); /* rows 0-5 extreme, 6-8 ordinary */
            const int ok =
                run_gemm(type, kernel, &w, x, m, bias, y) && run_gemm(type, CQ_KERNEL_SCALAR, &w, x, m, bias, ys);
            CHECK(ok, "extreme scales ran");
            const int differ = count_differ(y, ys, m * n);
            CHECK(differ == 0, "%s/%s %s fp16 scales: %d outputs not bit-identical to scalar", cq_type_get(type)->name,
                  cq_kernel_name(kernel), finite ? "largest finite" : "extreme", differ);
            if (finite) {
                int nonfinite = 0;
                for (int64_t i = 0; i < m * n; i++) nonfinite += !isfinite(y[i]);
                CHECK(nonfinite == 0, "%s/%s ±65504 scales: %d non-finite outputs", cq_type_get(type)->name,
                      cq_kernel_name(kernel), nonfinite);
            }
            free(x);
            free(y);
            free(ys);
            free(bias);
            free_weights(&w);
        }
    }
}

/* The integer corners: every byte of the weights one value (every code at its largest, its smallest, or a pattern;
 * K-quant scales and mins at 63, Q6_K scales −1, −128, 127, −86) against activation blocks of one magnitude (every
 * code ±127, one sign or alternating). The SIMD kernels keep partial sums in narrow lanes (int16 pair sums, packed
 * vpdpbusd lanes), whose bounds these reach. Two-panel shapes and a 1-row tail; bit-identical to scalar. */
static void test_code_extremes(cq_kernel kernel) {
    const int64_t m = 5, n = 24;
    const uint8_t fills[] = {0xFF, 0x00, 0x80, 0x7F, 0xAA};
    for (size_t t = 0; t < N_QTYPES; t++) {
        const int type = k_qtypes[t];
        const int64_t k = is_kquant(type) ? 512 : 128;
        const size_t bb = cq_type_get(type)->block_bytes, row = cq_row_bytes(type, k);
        const int64_t nblk = k / cq_type_get(type)->block_elems;
        for (size_t f = 0; f < sizeof fills; f++) {
            weights w = {type, n, k, xmalloc(row * n), NULL, NULL};
            memset(w.w, fills[f], row * n);
            for (int64_t r = 0; r < n; r++)
                for (int64_t b = 0; b < nblk; b++) {
                    uint8_t *blk = (uint8_t *)w.w + r * row + b * bb;
                    if (type == CQ_TYPE_Q6_K) {
                        put_u16(blk + 208, exact_half(0));
                    } else {
                        put_u16(blk, exact_half(0));
                        if (has_min(type) || is_kquant(type)) put_u16(blk + 2, exact_half(1));
                    }
                }
            float *x = xmalloc(m * k * 4), *y = xmalloc(m * n * 4), *ys = xmalloc(m * n * 4);
            for (int64_t r = 0; r < m; r++)
                for (int64_t i = 0; i < k; i++)
                    x[r * k + i] = r == 0 ? 1.0f : r == 1 ? -1.0f : r == 2 ? (i & 1 ? -2.0f : 2.0f)
                                 : r == 3 ? ((i / 4) & 1 ? -0.5f : 0.5f) : (i & 8 ? 3.0f : -3.0f);
            const int ok = run_gemm(type, kernel, &w, x, m, NULL, y) && run_gemm(type, CQ_KERNEL_SCALAR, &w, x, m, NULL, ys);
            CHECK(ok, "code extremes ran");
            const int differ = count_differ(y, ys, m * n);
            CHECK(differ == 0, "%s/%s code extremes (bytes 0x%02X): %d outputs not bit-identical to scalar",
                  cq_type_get(type)->name, cq_kernel_name(kernel), fills[f], differ);
            free(x);
            free(y);
            free(ys);
            free(w.w);
        }
    }
}

/* Results do not depend on the thread count (tiles are independent). */
static void test_threads_deterministic(cq_kernel kernel) {
    const int64_t m = 37, n = 45, k = 256;
    const int types[] = {CQ_TYPE_Q4_0, CQ_TYPE_Q5_1, CQ_TYPE_Q4_K, CQ_TYPE_Q5_K, CQ_TYPE_Q6_K};
    for (int t = 0; t < 5; t++) {
        weights w = make_weights(types[t], n, k, 0);
        float *x = xmalloc(m * k * 4), *a = xmalloc(m * n * 4), *b = xmalloc(m * n * 4);
        make_x(x, m, k, 0);
        const int saved = cq_get_threads();
        cq_set_threads(1);
        run_gemm(types[t], kernel, &w, x, m, NULL, a);
        cq_set_threads(3);
        run_gemm(types[t], kernel, &w, x, m, NULL, b);
        cq_set_threads(saved);
        CHECK(memcmp(a, b, m * n * 4) == 0, "%s/%s: 1 thread and 3 threads give different bits",
              cq_type_get(types[t])->name, cq_kernel_name(kernel));
        free(x);
        free(a);
        free(b);
        free_weights(&w);
    }
}

/* Packed quantized matrices take the file's bytes: 8 × the block size per panel block, padding rows only. */
static void test_pack_sizes(void) {
    const int64_t n = 13;
    for (size_t t = 0; t < N_QTYPES; t++) {
        const int type = k_qtypes[t];
        const cq_type_info *info = cq_type_get(type);
        const int64_t k = is_kquant(type) ? 768 : 320;
        CHECK(info->can_gemm == 1, "%s can_gemm", info->name);
        weights w = make_weights(type, n, k, 1);
        cq_matrix *mat = NULL;
        const size_t want = (size_t)((n + 7) / 8) * 8 * cq_row_bytes(type, k);
        /* every kernel's panels, including those with a packer of their own (vnni Q8_0: w + 128) */
        for (int kk = 0; kk < CQ_KERNEL_COUNT; kk++) {
            if (!cq_kernel_supported((cq_kernel)kk)) continue;
            CHECK(cq_matrix_pack(type, w.w, n, k, 0, (cq_kernel)kk, &mat) == CQ_OK, "%s packs for %s", info->name,
                  cq_kernel_name((cq_kernel)kk));
            CHECK(cq_matrix_bytes(mat) == want, "%s/%s packed %zu bytes, want %zu (8 rows x file blocks per panel)",
                  info->name, cq_kernel_name((cq_kernel)kk), cq_matrix_bytes(mat), want);
            cq_matrix_free(mat);
            mat = NULL;
        }
        CHECK(cq_matrix_pack(type, w.w, n, is_kquant(type) ? 288 : 48, 0, CQ_KERNEL_SCALAR, &mat) == CQ_ERR_BAD_SHAPE &&
                  mat == NULL,
              "%s K not a multiple of the block rejected", info->name);
        free_weights(&w);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
static void naive_sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                        int64_t ldb, int bt, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) s += (double)a[i * lda + p] * (bt ? b[j * ldb + p] : b[p * ldb + j]);
            c[i * ldc + j] = (float)(alpha * s + (beta == 0 ? 0.0 : beta * c[i * ldc + j]));
        }
}

static void test_sgemm(cq_kernel kernel) {
    if (cq_kernel_set_default(kernel) != CQ_OK) return;
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 9, 64}, {64, 577, 64}, {129, 64, 577}, {7, 33, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int bt = 0; bt < 2; bt++) {
            const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            const int64_t lda = k + 3, ldb = (bt ? k : n) + 1, ldc = n + 2;
            float *a = xmalloc(m * lda * 4), *b = xmalloc((bt ? n : k) * ldb * 4);
            float *c = xmalloc(m * ldc * 4), *r = xmalloc(m * ldc * 4);
            for (int64_t i = 0; i < m * lda; i++) a[i] = rnd_normalish();
            for (int64_t i = 0; i < (bt ? n : k) * ldb; i++) b[i] = rnd_normalish();
            const float beta = s % 2 ? 0.5f : 0.0f;
            for (int64_t i = 0; i < m * ldc; i++) c[i] = r[i] = beta == 0 ? NAN : rnd_uniform();
            naive_sgemm(m, n, k, 0.125f, a, lda, b, ldb, bt, beta, r, ldc);
            CHECK(cq_sgemm(m, n, k, 0.125f, a, lda, b, ldb, bt, beta, c, ldc, NULL) == CQ_OK, "sgemm ran");
            int bad = 0;
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    double mag = 0;
                    for (int64_t p = 0; p < k; p++) mag += fabs((double)a[i * lda + p] * (bt ? b[j * ldb + p] : b[p * ldb + j]));
                    const double tol = 1e-5 * (0.125 * mag + fabs(beta)) + 1e-6;
                    bad += !(fabs((double)c[i * ldc + j] - r[i * ldc + j]) <= tol);
                }
            CHECK(bad == 0, "sgemm/%s m=%lld n=%lld k=%lld bt=%d: %d outputs off", cq_kernel_name(kernel),
                  (long long)m, (long long)n, (long long)k, bt, bad);
            free(a);
            free(b);
            free(c);
            free(r);
        }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Element-wise and row kernels (elementwise.c) against double-precision libm references.                  */

#define FLT_MIN_NORMAL 0x1p-126
#define FLT_TRUE_MIN_D 0x1p-149

/* Inputs for the element-wise checks: a dense sweep of [lo, hi], log-spaced magnitudes of both signs from
 * subnormal to near FLT_MAX, and the edge values. Returns the count written to xs (capacity `cap`). */
static int64_t ew_inputs(float *xs, int64_t cap, float lo, float hi, int64_t dense) {
    int64_t n = 0;
    for (int64_t i = 0; i < dense && n < cap; i++) xs[n++] = lo + (hi - lo) * (float)((double)i / (double)(dense - 1));
    for (int e = -149; e <= 127 && n + 2 <= cap; e++) {
        const float v = ldexpf(1.0f + 0.37f * (float)((e + 150) % 3), e);
        xs[n++] = v;
        xs[n++] = -v;
    }
    const float edges[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-40f, -1e-40f, 88.72f, 88.73f, -87.33f, -103.9f, -104.5f,
                           3.4e38f, -3.4e38f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof edges / sizeof *edges && n < cap; i++) xs[n++] = edges[i];
    return n;
}

/* Worst relative error of `got` against `ref` (doubles), with the tolerance tol_rel·|ref| + tol_abs; NaN must
 * match NaN, infinities must match exactly. Prints the first few failures. */
static int ew_compare(const char *name, const float *x, const float *got, const double *ref, const double *tol_rel,
                      int64_t n, double *worst) {
    int bad = 0;
    *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        int ok;
        if (isnan(ref[i])) {
            ok = isnan(got[i]);
        } else if (isinf(ref[i]) || fabs(ref[i]) > 3.4028234663852886e38) {
            ok = (double)got[i] == (ref[i] > 0 ? INFINITY : -INFINITY);
        } else {
            const double err = fabs((double)got[i] - ref[i]);
            const double tol = tol_rel[i] * fabs(ref[i]) + FLT_TRUE_MIN_D * (1.0 + fabs((double)x[i]));
            ok = err <= tol;
            if (fabs(ref[i]) >= FLT_MIN_NORMAL && err / fabs(ref[i]) > *worst) *worst = err / fabs(ref[i]);
        }
        if (!ok && bad++ < 5)
            printf("  %s(%.9g) = %.9g, reference %.17g\n", name, (double)x[i], (double)got[i], ref[i]);
    }
    return bad;
}

static void test_elementwise(void) {
    const int64_t cap = 1 << 20, dense = g_quick ? 60000 : 600000;
    float *x = xmalloc(cap * 4), *y = xmalloc(cap * 4);
    double *ref = xmalloc(cap * 8), *tol = xmalloc(cap * 8);
    double worst;

    /* exp: 2e-7 relative for normal results (subnormal ones within one subnormal step) */
    int64_t n = ew_inputs(x, cap, -110.0f, 90.0f, dense);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = exp((double)x[i]);
        tol[i] = 2e-7;
    }
    CHECK(cq_exp(x, y, n) == CQ_OK, "cq_exp ran");
    int bad = ew_compare("exp", x, y, ref, tol, n, &worst);
    CHECK(bad == 0, "exp: %d of %lld values outside 2e-7 relative (worst %.3g)", bad, (long long)n, worst);
    printf("  %s exp: worst relative error %.3g over %lld values\n", cq_kernel_name(cq_kernel_default()), worst, (long long)n);

    n = ew_inputs(x, cap, -20.0f, 20.0f, dense);
    /* GELU (erf): x·Φ(x), Φ from erfc so the reference keeps its accuracy for x < 0 */
    for (int64_t i = 0; i < n; i++) {
        const double v = x[i];
        ref[i] = isinf(v) ? (v > 0 ? INFINITY : NAN) : 0.5 * v * erfc(-v * 0.70710678118654752440);
        tol[i] = 1e-6;
    }
    CHECK(cq_gelu(x, y, n) == CQ_OK, "cq_gelu ran");
    bad = ew_compare("gelu", x, y, ref, tol, n, &worst);
    CHECK(bad == 0, "gelu: %d of %lld values outside 1e-6 relative (worst %.3g)", bad, (long long)n, worst);
    printf("  %s gelu: worst relative error %.3g\n", cq_kernel_name(cq_kernel_default()), worst);

    /* The sigmoid-based activations: x·σ(v). A float kernel rounds its argument v (a few ulps of v), which σ turns
     * into a relative error of |v|·(1 − σ(v)) times that; the tolerance carries this term on top of 1e-6. */
    for (int which = 0; which < 3; which++) {
        static const char *const names[] = {"gelu_tanh", "quick_gelu", "silu"};
        const double ulps[] = {4, 2, 0}; /* roundings in the argument: tanh's cubic, 1.702·x, none */
        for (int64_t i = 0; i < n; i++) {
            const double v = x[i];
            double arg = v;
            if (which == 0) arg = 2.0 * 0.79788456080286535588 * (v + 0.044715 * v * v * v);
            if (which == 1) arg = 1.702 * v;
            /* x·σ(arg), written so neither side overflows */
            const double e = exp(-fabs(arg)), sig = arg >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
            ref[i] = isnan(v) ? NAN : (v == -INFINITY ? NAN : v * sig);
            tol[i] = 1e-6 + ulps[which] * 0x1p-24 * fabs(arg) * (1.0 - sig);
        }
        const cq_status st = which == 0 ? cq_gelu_tanh(x, y, n) : which == 1 ? cq_quick_gelu(x, y, n) : cq_silu(x, y, n);
        CHECK(st == CQ_OK, "%s ran", names[which]);
        bad = ew_compare(names[which], x, y, ref, tol, n, &worst);
        CHECK(bad == 0, "%s: %d of %lld values outside tolerance (worst relative %.3g)", names[which], bad, (long long)n,
              worst);
        printf("  %s %s: worst relative error %.3g\n", cq_kernel_name(cq_kernel_default()), names[which], worst);
    }

    /* in place, and independent of the thread count (chunks are fixed) */
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    cq_gelu(y, y, n);
    float *z = xmalloc(n * 4);
    const int saved = cq_get_threads();
    cq_set_threads(1);
    cq_gelu(x, z, n);
    cq_set_threads(saved);
    CHECK(memcmp(y, z, n * 4) == 0, "gelu in place with %d threads differs from out of place with 1", saved);
    free(z);

    CHECK(cq_gelu(NULL, y, 5) == CQ_ERR_INVALID_ARGUMENT && cq_silu(x, y, -1) == CQ_ERR_INVALID_ARGUMENT &&
              cq_exp(NULL, NULL, 0) == CQ_OK,
          "element-wise argument checks");
    free(x);
    free(y);
    free(ref);
    free(tol);
}

static void test_softmax(void) {
    const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 16}, {4, 17}, {33, 577}, {9, 1024}, {70, 600}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int causal = 0; causal < 2; causal++) {
            const int64_t rows = shapes[s][0], cols = shapes[s][1], ld = cols + 5;
            const int64_t offset = causal ? (cols > rows ? cols - rows : 0) : -1;
            float *x = xmalloc(rows * ld * 4), *orig = xmalloc(rows * ld * 4);
            for (int64_t i = 0; i < rows * ld; i++) {
                const float spread = (float)(1 + (i / ld) % 4) * 8.0f; /* rows from ±8 to ±32 */
                x[i] = rnd_normalish() * spread;
                if (rnd_u32() % 23 == 0 && cols > 1) x[i] = -INFINITY; /* masked entries */
            }
            for (int64_t r = 0; r < rows; r++) x[r * ld] = 1.0f; /* every row keeps one finite value */
            memcpy(orig, x, rows * ld * 4);
            CHECK(cq_softmax_rows(x, rows, cols, ld, offset) == CQ_OK, "softmax ran");
            int bad = 0, masked = 0, padding = 0;
            /* float sums of `cols` terms in 16 lanes: rounding grows with the lane length */
            const double tol = 4e-7 + 0x1p-24 * (double)(cols / 16 + 16);
            for (int64_t r = 0; r < rows; r++) {
                const float *o = orig + r * ld, *g = x + r * ld;
                const int64_t n = offset >= 0 && offset + r + 1 < cols ? offset + r + 1 : cols;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < n; j++) mx = o[j] > mx ? o[j] : mx;
                for (int64_t j = 0; j < n; j++) sum += exp((double)o[j] - mx);
                for (int64_t j = 0; j < n; j++) {
                    const double want = exp((double)o[j] - mx) / sum;
                    const double err = fabs(g[j] - want);
                    /* x − max is rounded to float first (as in any fp32 softmax): half an ulp of it, which exp
                     * turns into that much relative error */
                    const double arg_rounding = o[j] == -INFINITY ? 0.0 : 0x1p-24 * fabs((double)o[j] - mx);
                    if (!(err <= (tol + arg_rounding) * want + FLT_TRUE_MIN_D)) {
                        if (bad++ < 3) printf("  softmax row %lld col %lld: %.9g, want %.17g\n", (long long)r, (long long)j, g[j], want);
                    }
                    masked += o[j] == -INFINITY && g[j] != 0.0f;
                }
                for (int64_t j = n; j < cols; j++) masked += g[j] != 0.0f;
                for (int64_t j = cols; j < ld; j++) padding += memcmp(&g[j], &o[j], 4) != 0;
            }
            CHECK(bad == 0, "softmax %lldx%lld causal %d: %d values outside %.2g relative", (long long)rows,
                  (long long)cols, causal, bad, tol);
            CHECK(masked == 0, "softmax %lldx%lld: %d masked values not exactly 0", (long long)rows, (long long)cols, masked);
            CHECK(padding == 0, "softmax wrote %d values past cols", padding);
            free(x);
            free(orig);
        }
    /* a NaN poisons its row, a row of only −∞ is NaN (both as in PyTorch), other rows are unaffected */
    float x[3][4] = {{1, NAN, 2, 3}, {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, {0, 0, -INFINITY, 0}};
    CHECK(cq_softmax_rows(&x[0][0], 3, 4, 4, -1) == CQ_OK, "softmax edge rows ran");
    CHECK(isnan(x[0][0]) && isnan(x[0][3]) && isnan(x[1][0]), "softmax NaN rows");
    CHECK(fabsf(x[2][0] - 1.0f / 3) < 1e-7f && x[2][2] == 0.0f, "softmax row with −∞: %g %g", x[2][0], x[2][2]);
    CHECK(cq_softmax_rows(&x[0][0], 2, 4, 3, -1) == CQ_ERR_INVALID_ARGUMENT && cq_softmax_rows(NULL, 1, 1, 1, -1) ==
          CQ_ERR_INVALID_ARGUMENT && cq_softmax_rows(NULL, 0, 4, 4, -1) == CQ_OK, "softmax argument checks");
}

static void test_norms(void) {
    const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 64}, {40, 768}, {5, 1153}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t rows = shapes[s][0], dim = shapes[s][1];
        float *x = xmalloc(rows * dim * 4), *y = xmalloc(rows * dim * 4), *w = xmalloc(dim * 4), *b = xmalloc(dim * 4);
        for (int64_t i = 0; i < rows * dim; i++) x[i] = rnd_normalish() * 3.0f + (float)(i / dim) * 0.5f;
        for (int64_t i = 0; i < dim; i++) {
            w[i] = 1.0f + rnd_uniform();
            b[i] = rnd_uniform();
        }
        for (int rms = 0; rms < 2; rms++) {
            const cq_status st = rms ? cq_rms_norm_rows(x, rows, dim, w, 1e-6f, y)
                                     : cq_layer_norm_rows(x, rows, dim, w, s % 2 ? b : NULL, 1e-5f, y);
            CHECK(st == CQ_OK, "norm ran");
            int bad = 0;
            for (int64_t r = 0; r < rows; r++) {
                const float *xr = x + r * dim;
                double mean = 0, var = 0;
                if (!rms) {
                    for (int64_t j = 0; j < dim; j++) mean += xr[j];
                    mean /= (double)dim;
                }
                for (int64_t j = 0; j < dim; j++) var += ((double)xr[j] - mean) * ((double)xr[j] - mean);
                var /= (double)dim;
                const double inv = 1.0 / sqrt(var + (rms ? 1e-6 : 1e-5));
                for (int64_t j = 0; j < dim; j++) {
                    const double scaled = ((double)xr[j] - mean) * inv * w[j];
                    const double bias = !rms && s % 2 ? b[j] : 0.0;
                    /* four float roundings on the way, each relative to the larger of the two terms */
                    const double tol = 1e-6 * (fabs(scaled) + fabs(bias) + fabs(mean * inv * w[j])) + 1e-7;
                    bad += !(fabs(y[r * dim + j] - (scaled + bias)) <= tol);
                }
            }
            CHECK(bad == 0, "%s %lldx%lld: %d values off", rms ? "rms_norm" : "layer_norm", (long long)rows,
                  (long long)dim, bad);
        }
        /* in place gives the same bits */
        cq_layer_norm_rows(x, rows, dim, w, b, 1e-5f, y);
        cq_layer_norm_rows(x, rows, dim, w, b, 1e-5f, x);
        CHECK(memcmp(x, y, rows * dim * 4) == 0, "layer_norm in place");
        free(x);
        free(y);
        free(w);
        free(b);
    }
    float v = 1;
    CHECK(cq_layer_norm_rows(&v, 1, 0, &v, NULL, 1e-5f, &v) == CQ_ERR_INVALID_ARGUMENT &&
              cq_rms_norm_rows(&v, 1, 1, NULL, 1e-5f, &v) == CQ_ERR_INVALID_ARGUMENT,
          "norm argument checks");
}

/* ------------------------------------------------------------------------------------------------------ */
static void test_api_errors(void) {
    cq_matrix *mat = (cq_matrix *)0x1;
    float w[64] = {0};
    CHECK(cq_matrix_pack(CQ_TYPE_Q8_0, w, 1, 31, 0, CQ_KERNEL_SCALAR, &mat) == CQ_ERR_BAD_SHAPE && mat == NULL,
          "pack rejects K %% 32 != 0");
    CHECK(cq_matrix_pack(5, w, 1, 256, 0, CQ_KERNEL_SCALAR, &mat) == CQ_ERR_UNSUPPORTED_TYPE,
          "pack rejects unknown types");
    CHECK(cq_matrix_pack(CQ_TYPE_F32, NULL, 1, 8, 0, CQ_KERNEL_SCALAR, &mat) == CQ_ERR_INVALID_ARGUMENT,
          "pack rejects NULL");
    CHECK(cq_matrix_pack(CQ_TYPE_F32, w, 2, 8, 4, CQ_KERNEL_SCALAR, &mat) == CQ_ERR_INVALID_ARGUMENT,
          "pack rejects a row stride shorter than a row");
    CHECK(cq_matrix_pack(CQ_TYPE_F32, w, 1, 8, 0, (cq_kernel)99, &mat) == CQ_ERR_UNSUPPORTED_KERNEL,
          "pack rejects unknown kernels");
    CHECK(cq_kernel_parse("dotprod") == CQ_KERNEL_DOTPROD && cq_kernel_parse("nope") == -1, "kernel names");
    CHECK(cq_kernel_parse("vnni") == CQ_KERNEL_VNNI && strcmp(cq_kernel_name(CQ_KERNEL_VNNI), "vnni") == 0,
          "kernel name vnni");
    /* vnni is the AVX2 level plus VPDPBUSD: supported only with avx2, and preferred to it */
    CHECK(!cq_kernel_supported(CQ_KERNEL_VNNI) ||
              (cq_kernel_supported(CQ_KERNEL_AVX2) && cq_kernel_best() == CQ_KERNEL_VNNI),
          "vnni implies avx2 and is the best kernel where supported");
    CHECK(cq_gemm(NULL, w, 1, 8, NULL, w, 8, NULL) == CQ_ERR_INVALID_ARGUMENT, "gemm rejects NULL matrix");
    CHECK(cq_sgemm(2, 2, 2, 1, w, 1, w, 2, 0, 0, w, 2, NULL) == CQ_ERR_INVALID_ARGUMENT, "sgemm rejects lda < k");
}

/* cq_attention_cached against an fp64 reference of the same attention, over caches in F32 and F16 (the reference
 * reads the F16 cache widened, so both see the same keys): grouped and plain heads, one and several query rows,
 * causal offsets, head dims past the 512-value piece, and s = 0. */
static void test_attention_cached(void) {
    const struct { int64_t t, s, heads, kv, hd, offset; } cases[] = {
        {1, 1, 1, 1, 8, 0}, {1, 37, 9, 3, 64, 36}, {1, 300, 8, 8, 64, 299}, {3, 50, 4, 2, 32, 47}, {2, 20, 6, 1, 16, -1},
        {1, 9, 2, 2, 520, 8}, {1, 0, 4, 2, 8, -1}, {4, 33, 12, 4, 80, 29},
    };
    int q8_cases = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t t = cases[c].t, s = cases[c].s, heads = cases[c].heads, kvh = cases[c].kv, hd = cases[c].hd;
        /* cache rows padded: by 2 values, or by a whole block where the head dim allows Q8_0 rows */
        const int64_t off = cases[c].offset, ldq = heads * hd + 3, ldo = heads * hd + 5, ldk = kvh * hd + (hd % 32 ? 2 : 32);
        const float scale = 1.0f / sqrtf((float)hd);
        float *q = xmalloc(sizeof(float) * (size_t)(t * ldq));
        float *k = xmalloc(sizeof(float) * (size_t)(s * ldk + 1)), *v = xmalloc(sizeof(float) * (size_t)(s * ldk + 1));
        uint16_t *kh = xmalloc(2 * (size_t)(s * ldk + 1)), *vh = xmalloc(2 * (size_t)(s * ldk + 1));
        /* Q8_0 caches (whole blocks per head): the same values quantized, the reference reading them dequantized */
        const int q8 = hd % 32 == 0 && ldk % 32 == 0;
        uint8_t *kq = xmalloc((size_t)(s * ldk / 32 * 34 + 1)), *vq = xmalloc((size_t)(s * ldk / 32 * 34 + 1));
        float *kd = xmalloc(sizeof(float) * (size_t)(s * ldk + 1)), *vd = xmalloc(sizeof(float) * (size_t)(s * ldk + 1));
        float *out = xmalloc(sizeof(float) * (size_t)(t * ldo)), *scores = xmalloc(sizeof(float) * (size_t)(t * heads * s + 1));
        for (int64_t i = 0; i < t * ldq; i++) q[i] = rnd_normalish() * 2.0f;
        for (int64_t i = 0; i < s * ldk; i++) {
            kh[i] = cq_fp32_to_fp16(rnd_normalish() * 2.0f);
            vh[i] = cq_fp32_to_fp16(rnd_normalish());
            k[i] = cq_fp16_to_fp32(kh[i]);
            v[i] = cq_fp16_to_fp32(vh[i]);
        }
        if (q8 && s > 0) {
            CHECK(cq_quantize_row(CQ_TYPE_Q8_0, k, kq, s * ldk) == CQ_OK && cq_quantize_row(CQ_TYPE_Q8_0, v, vq, s * ldk) == CQ_OK &&
                      cq_dequantize_row(CQ_TYPE_Q8_0, kq, kd, s * ldk) == CQ_OK && cq_dequantize_row(CQ_TYPE_Q8_0, vq, vd, s * ldk) == CQ_OK,
                  "attention_cached: q8_0 cache made");
        }
        for (int type = 0; type < 3; type++) {
            if (type == 2 && !q8) continue;
            const int kv_type = type == 2 ? CQ_TYPE_Q8_0 : type ? CQ_TYPE_F16 : CQ_TYPE_F32;
            const void *kc = type == 2 ? (void *)kq : type ? (void *)kh : (void *)k;
            const void *vc = type == 2 ? (void *)vq : type ? (void *)vh : (void *)v;
            const float *kr = type == 2 ? kd : k, *vr = type == 2 ? vd : v; /* what the reference reads */
            for (int64_t i = 0; i < t * ldo; i++) out[i] = NAN;
            cq_status st = cq_attention_cached(t, s, heads, kvh, hd, scale, q, ldq, kv_type, kc, ldk, vc, ldk, off, scores, out, ldo);
            CHECK(st == CQ_OK, "attention_cached case %zu ran (%s)", c, cq_status_string(st));
            int bad = 0;
            double worst = 0;
            for (int64_t i = 0; i < t; i++) {
                int64_t n = s;
                if (off >= 0 && off + i + 1 < s) n = off + i + 1;
                for (int64_t h = 0; h < heads; h++) {
                    const int64_t g = h / (heads / kvh);
                    double *p = malloc(sizeof(double) * (size_t)(n + 1)), mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < n; j++) {
                        double d = 0;
                        for (int64_t e = 0; e < hd; e++) d += (double)q[i * ldq + h * hd + e] * kr[j * ldk + g * hd + e];
                        p[j] = d * scale;
                        mx = p[j] > mx ? p[j] : mx;
                    }
                    for (int64_t j = 0; j < n; j++) sum += (p[j] = exp(p[j] - mx));
                    for (int64_t e = 0; e < hd; e++) {
                        double want = 0, mag = 0;
                        for (int64_t j = 0; j < n; j++) {
                            want += p[j] / sum * vr[j * ldk + g * hd + e];
                            mag += p[j] / sum * fabs(vr[j * ldk + g * hd + e]);
                        }
                        const double err = fabs(out[i * ldo + h * hd + e] - want);
                        if (!(err <= 2e-5 * (mag + 1e-3))) bad++;
                        worst = err > worst ? err : worst;
                    }
                    free(p);
                }
            }
            q8_cases += type == 2;
            CHECK(bad == 0, "attention_cached t=%lld s=%lld heads=%lld/%lld hd=%lld %s: %d values off (worst %.3g)",
                  (long long)t, (long long)s, (long long)heads, (long long)kvh, (long long)hd,
                  type == 2 ? "q8_0" : type ? "f16" : "f32", bad, worst);
        }
        free(q); free(k); free(v); free(kh); free(vh); free(kq); free(vq); free(kd); free(vd); free(out); free(scores);
    }
    CHECK(q8_cases == 3, "attention_cached: %d Q8_0 cases ran", q8_cases);
    float one = 1;
    CHECK(cq_attention_cached(1, 1, 3, 2, 8, 1, &one, 24, CQ_TYPE_F32, &one, 16, &one, 16, 0, &one, &one, 24) ==
              CQ_ERR_INVALID_ARGUMENT, "attention_cached: heads not a multiple of kv heads rejected");
    CHECK(cq_attention_cached(1, 1, 2, 2, 8, 1, &one, 16, CQ_TYPE_Q8_0, &one, 16, &one, 16, 0, &one, &one, 16) ==
              CQ_ERR_BAD_SHAPE, "attention_cached: a Q8_0 cache with heads of 8 values rejected");
    CHECK(cq_attention_cached(1, 1, 2, 2, 8, 1, &one, 16, CQ_TYPE_Q4_0, &one, 16, &one, 16, 0, &one, &one, 16) ==
              CQ_ERR_UNSUPPORTED_TYPE, "attention_cached: a Q4_0 cache is not served");
    CHECK(cq_attention_cached(1, 1, 2, 2, 8, 1, &one, 8, CQ_TYPE_F32, &one, 16, &one, 16, 0, &one, &one, 16) ==
              CQ_ERR_INVALID_ARGUMENT, "attention_cached: a query stride shorter than a row rejected");
}

int main(void) {
    g_quick = getenv("CQ_TEST_QUICK") && atoi(getenv("CQ_TEST_QUICK")) != 0;
    const cq_kernel best = cq_kernel_best();
    printf("cquant tests: best kernel %s, default %s, %d threads, openmp %s\n", cq_kernel_name(best),
           cq_kernel_name(cq_kernel_default()), cq_get_threads(), cq_has_openmp() ? "yes" : "no");
    const char *expect = getenv("CQ_EXPECT_KERNEL");
    if (expect && *expect)
        CHECK(cq_kernel_parse(expect) == (int)best, "expected kernel %s, CPU detection chose %s", expect,
              cq_kernel_name(best));

    test_fp16();
    test_quant_roundtrip();
    test_quantize_bounds();
    test_quantize_extremes();
    test_quant_fixtures();
    test_kquant_quantize();
    test_api_errors();
    test_pack_sizes();
    test_norms();
    for (int kk = 0; kk < CQ_KERNEL_COUNT; kk++) {
        const cq_kernel kernel = (cq_kernel)kk;
        if (!cq_kernel_supported(kernel)) continue;
        printf("-- kernel %s\n", cq_kernel_name(kernel));
        test_activation_quantization(kernel);
        test_activation_quantization_k(kernel);
        test_gemm_shapes(kernel);
        test_extremes(kernel);
        test_extreme_scales(kernel);
        test_code_extremes(kernel);
        test_threads_deterministic(kernel);
        test_sgemm(kernel);
        /* the element-wise kernels follow the default kernel: baseline code for scalar/neon, AVX2 copies for avx2 */
        if (cq_kernel_set_default(kernel) == CQ_OK) {
            test_elementwise();
            test_softmax();
            test_attention_cached();
        }
    }
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
