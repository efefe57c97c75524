/*
 * elementwise.c — the row and element-wise work around the GEMMs: softmax, GELU (erf and tanh), quick GELU, SiLU,
 * layer norm and RMS norm, on fp32 rows.
 *
 * Every kernel is plain C written so that -O3 vectorizes it for the build's baseline ISA (SSE2 on x86-64, NEON on
 * AArch64): branch-free selects instead of ifs, bit casts through memcpy, no libm calls in the inner loops. exp is
 * our own (exp_parts below); erf, erfc and the sigmoid are built on it. Large calls are split over OpenMP threads
 * by rows or by fixed-size chunks (static schedule); small ones run on the calling thread.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* Every helper is inlined into each kernel loop, so that the loop is compiled whole for the ISA of the function
 * that holds it: the baseline one, or the AVX2+FMA copy on x86-64 (same source, 8 lanes instead of 4). */
#define CQ_INLINE static inline __attribute__((always_inline))

/* The AVX2 copies are plain functions called from the baseline OpenMP regions, as gemm.c does with its tiles. */
#if CQ_ARCH_X86
#define CQ_AVX2_COPY(name, params, args)                                                                     \
    __attribute__((target("avx2,fma,f16c"))) static void name##_avx2 params { name##_body args; }
#define CQ_PICK(name) (cq_kernel_is_avx2_level(cq_kernel_default()) ? name##_avx2 : name)
#else
#define CQ_AVX2_COPY(name, params, args)
#define CQ_PICK(name) (name)
#endif

/* Values per thread below which another thread costs more than it saves (about 20 µs of GELU). */
#define CQ_EW_ELEMS_PER_THREAD 16384
/* Chunk of an element-wise call that one loop iteration of the parallel region handles. */
#define CQ_EW_CHUNK 4096

CQ_INLINE uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
CQ_INLINE float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* exp(hi + lo) where lo is a small correction to hi (|lo| ≲ 2^-10·|hi|), so that callers can pass an argument
 * carrying more bits than one float (GELU's −x²/2).
 *
 * Range reduction: hi = n·ln2 + r, |r| ≤ ln2/2, n = round(hi/ln2) found with the 1.5·2^23 shifter (its low bits
 * then hold n, so no float→int conversion is needed, which NaN would make undefined). ln2 is split in a 16-bit
 * head (n·head exact) and a tail. exp(r) = 1 + r + r²·q(r), q of degree 4: a weighted least-squares fit of
 * (exp(r) − 1 − r)/r² on [−ln2/2, ln2/2], relative error 3e-9 before float rounding. 2^n is applied as two
 * factors 2^n1·2^n2 built from exponent bits, so results down in the subnormal range and up to overflow are
 * rounded once, correctly signed and never wrapped.
 * hi is clamped to [−104, 89] first: below, the result rounds to 0; above, to +inf. NaN passes every comparison
 * false, so it survives the clamps and propagates through r. */
CQ_INLINE float exp_parts(float hi, float lo) {
    float x = hi > 89.0f ? 89.0f : hi;
    x = x < -104.0f ? -104.0f : x;
    const float shifter = 0x1.8p23f;
    const float kf = x * 0x1.715476p+0f + shifter;
    const uint32_t kbits = f2u(kf);
    const float n = kf - shifter;
    float r = x - n * 0x1.62e4p-1f; /* ln2 head: 0.693145751953125 */
    r = r - n * 0x1.7f7d1cp-20f;    /* ln2 tail */
    r = r + lo;
    const float q = 0.4999999404f + r * (0.1666652113f + r * (0.04166808352f + r * (0.008368699811f + r * 0.001383155701f)));
    const float p = 1.0f + (r + r * r * q);
    /* nb = n + 256 ∈ [106, 385]; n1 = ⌊n/2⌋, n2 = n − n1, each in [−75, 65]: valid normal exponents. Unsigned
     * arithmetic throughout, so NaN's garbage bits wrap harmlessly (the NaN in p wins). */
    const uint32_t nb = kbits - 0x4B400000u + 256u;
    const uint32_t n1b = nb >> 1;
    const float s1 = u2f((n1b - 1u) << 23);      /* 2^(n1b − 128) = 2^n1 */
    const float s2 = u2f((nb - n1b - 1u) << 23); /* 2^(nb − n1b − 128) = 2^n2 */
    return p * s1 * s2;
}

CQ_INLINE float exp_one(float x) { return exp_parts(x, 0.0f); }

/* σ(v) = 1/(1 + e^−v), evaluated with e = exp(−|v|) ≤ 1 so that neither side overflows: 1/(1+e) for v ≥ 0,
 * e/(1+e) for v < 0 (relative accuracy kept in the far negative tail). */
CQ_INLINE float sigmoid_one(float v) {
    const float e = exp_one(-fabsf(v));
    return (v >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* Φ(x) = ½(1 + erf(x/√2)), the standard normal CDF, to ~3e-7 relative everywhere it is a normal float.
 *   |x/√2| < 0.5:  erf(z) = z·P(z²), P of degree 4 (least-squares fit, 1.5e-9 relative), Φ = ½ ± ½·erf(|z|).
 *   otherwise:     erfc(z) = e^(−z²) · t·R(t), t = 1/(1 + z/2), R of degree 9 fitted to erfc(z)·e^(z²)/t over
 *                  z ∈ [0.5, 10] (2e-9 before float rounding); Φ = ½·erfc(|z|) for x < 0, 1 − ½·erfc(z) else.
 * −z² = −x²/2 is passed to exp as an exact head (x with 12 significant bits, squared) plus a small tail, since
 * rounding x² to float would cost up to z²·2^-24 of relative error in e^(−z²). |x| is clamped to 15 on that
 * branch (Φ is then 0 or 1 in float anyway), which keeps inf − inf out of the split. */
CQ_INLINE float normal_cdf(float x) {
    const float az = fabsf(x) * 0.70710678118654752f;
    const float z2 = az * az;
    const float erf_small =
        az * (1.128379226f + z2 * (-0.3761261404f + z2 * (0.112829186f + z2 * (-0.02676265314f + z2 * 0.004728125874f))));
    const float phi_small = 0.5f + 0.5f * (x < 0.0f ? -erf_small : erf_small);

    float xc = x > 15.0f ? 15.0f : x;
    xc = xc < -15.0f ? -15.0f : xc;
    const float zc = fabsf(xc) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.5f * zc);
    const float rt =
        0.282086044549942f +
        t * (0.2823290228843689f +
             t * (0.24415051937103271f +
                  t * (0.1934630423784256f +
                       t * (0.016939617693424225f +
                            t * (0.15590500831604004f +
                                 t * (-0.27751681208610535f +
                                      t * (0.06832144409418106f + t * (0.06399156153202057f + t * -0.029696926474571228f))))))));
    const float xh = u2f(f2u(xc) & 0xFFFFF000u); /* 12 significant bits: xh² is exact */
    const float head = -0.5f * (xh * xh);
    const float tail = -0.5f * ((xc - xh) * (xc + xh));
    const float half_erfc = 0.5f * exp_parts(head, tail) * (t * rt);
    const float phi_big = x < 0.0f ? half_erfc : 1.0f - half_erfc;
    return az < 0.5f ? phi_small : phi_big;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Element-wise kernels on one chunk. Each is a single loop with no calls left after inlining.              */
/* ------------------------------------------------------------------------------------------------------ */

/* Kernels work in place on one pointer: with separate x and y, the vectorizer guards the loop with an overlap
 * check that fails for x = y and falls back to scalar code, so out-of-place calls copy first (see below). */
typedef void (*ew_fn)(float *x, int64_t n);

CQ_INLINE void exp_chunk_body(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = exp_one(x[i]);
}

CQ_INLINE void gelu_chunk_body(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * normal_cdf(x[i]);
}

/* ½x(1 + tanh(u)) = x·σ(2u), u = √(2/π)(x + 0.044715x³): the sigmoid form has no cancellation for x < 0. */
CQ_INLINE void gelu_tanh_chunk_body(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        const float u = 0.7978845608028654f * (v + 0.044715f * (v * v * v));
        x[i] = v * sigmoid_one(2.0f * u);
    }
}

CQ_INLINE void quick_gelu_chunk_body(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * sigmoid_one(1.702f * x[i]);
}

CQ_INLINE void silu_chunk_body(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * sigmoid_one(x[i]);
}

static void exp_chunk(float *x, int64_t n) { exp_chunk_body(x, n); }
static void gelu_chunk(float *x, int64_t n) { gelu_chunk_body(x, n); }
static void gelu_tanh_chunk(float *x, int64_t n) { gelu_tanh_chunk_body(x, n); }
static void quick_gelu_chunk(float *x, int64_t n) { quick_gelu_chunk_body(x, n); }
static void silu_chunk(float *x, int64_t n) { silu_chunk_body(x, n); }
CQ_AVX2_COPY(exp_chunk, (float *x, int64_t n), (x, n))
CQ_AVX2_COPY(gelu_chunk, (float *x, int64_t n), (x, n))
CQ_AVX2_COPY(gelu_tanh_chunk, (float *x, int64_t n), (x, n))
CQ_AVX2_COPY(quick_gelu_chunk, (float *x, int64_t n), (x, n))
CQ_AVX2_COPY(silu_chunk, (float *x, int64_t n), (x, n))

/* y = fn(x) for one chunk: copied into y first when out of place (the copy stays in L1 for the kernel). */
static void run_chunk(ew_fn fn, const float *x, float *y, int64_t n) {
    if (x != y) memmove(y, x, (size_t)n * sizeof(float));
    fn(y, n);
}

/* Runs `fn` over n values, cut into CQ_EW_CHUNK pieces shared by the threads when there are enough of them. */
static cq_status run_elementwise(ew_fn fn, const float *x, float *y, int64_t n) {
    if (n < 0 || (n > 0 && (!x || !y))) return CQ_ERR_INVALID_ARGUMENT;
    if (n == 0) return CQ_OK;
    const int threads = cq_threads_for(n / CQ_EW_ELEMS_PER_THREAD);
    if (threads <= 1) {
        run_chunk(fn, x, y, n);
        return CQ_OK;
    }
    const int64_t chunks = (n + CQ_EW_CHUNK - 1) / CQ_EW_CHUNK;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t at = c * CQ_EW_CHUNK, len = n - at < CQ_EW_CHUNK ? n - at : CQ_EW_CHUNK;
        run_chunk(fn, x + at, y + at, len);
    }
    return CQ_OK;
}

cq_status cq_exp(const float *x, float *y, int64_t n) { return run_elementwise(CQ_PICK(exp_chunk), x, y, n); }
cq_status cq_gelu(const float *x, float *y, int64_t n) { return run_elementwise(CQ_PICK(gelu_chunk), x, y, n); }
cq_status cq_gelu_tanh(const float *x, float *y, int64_t n) { return run_elementwise(CQ_PICK(gelu_tanh_chunk), x, y, n); }
cq_status cq_quick_gelu(const float *x, float *y, int64_t n) { return run_elementwise(CQ_PICK(quick_gelu_chunk), x, y, n); }
cq_status cq_silu(const float *x, float *y, int64_t n) { return run_elementwise(CQ_PICK(silu_chunk), x, y, n); }

/* ------------------------------------------------------------------------------------------------------ */
/* Rows                                                                                                     */
/* ------------------------------------------------------------------------------------------------------ */

/* Independent partial sums and maxima: 16 lanes give the vectorizer whole registers to work on (a single
 * accumulator would force the strict left-to-right order that C requires of float sums). */
#define CQ_LANES 16

/* Softmax of the first `n` values of a row in place; values n … cols−1 become 0 (masked). */
CQ_INLINE void softmax_row_body(float *row, int64_t n, int64_t cols) {
    float lane[CQ_LANES];
    for (int l = 0; l < CQ_LANES; l++) lane[l] = -INFINITY;
    int64_t j = 0;
    for (; j + CQ_LANES <= n; j += CQ_LANES)
        for (int l = 0; l < CQ_LANES; l++) lane[l] = row[j + l] > lane[l] ? row[j + l] : lane[l];
    float mx = -INFINITY;
    for (; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    for (int l = 0; l < CQ_LANES; l++) mx = lane[l] > mx ? lane[l] : mx;

    for (j = 0; j < n; j++) row[j] = exp_one(row[j] - mx);

    for (int l = 0; l < CQ_LANES; l++) lane[l] = 0.0f;
    for (j = 0; j + CQ_LANES <= n; j += CQ_LANES)
        for (int l = 0; l < CQ_LANES; l++) lane[l] += row[j + l];
    float sum = 0.0f;
    for (; j < n; j++) sum += row[j];
    for (int l = 0; l < CQ_LANES; l++) sum += lane[l];

    const float inv = 1.0f / sum;
    for (j = 0; j < n; j++) row[j] *= inv;
    for (j = n; j < cols; j++) row[j] = 0.0f;
}

static void softmax_row(float *row, int64_t n, int64_t cols) { softmax_row_body(row, n, cols); }
CQ_AVX2_COPY(softmax_row, (float *row, int64_t n, int64_t cols), (row, n, cols))

cq_status cq_softmax_rows(float *x, int64_t rows, int64_t cols, int64_t ld, int64_t causal_offset) {
    if (rows < 0 || cols < 0 || ld < cols || (rows > 0 && cols > 0 && !x)) return CQ_ERR_INVALID_ARGUMENT;
    if (rows == 0 || cols == 0) return CQ_OK;
    const int64_t work = rows * cols / CQ_EW_ELEMS_PER_THREAD;
    const int threads = cq_threads_for(work < rows ? work : rows);
    void (*const row_fn)(float *, int64_t, int64_t) = CQ_PICK(softmax_row);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = cols;
        if (causal_offset >= 0 && causal_offset + r + 1 < cols) n = causal_offset + r + 1;
        row_fn(x + r * ld, n, cols);
    }
    return CQ_OK;
}

/* Σ x over a row in double, in 4 lanes (vectorizes as two double pairs). */
static double row_sum(const float *x, int64_t d) {
    double lane[4] = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 4 <= d; j += 4)
        for (int l = 0; l < 4; l++) lane[l] += (double)x[j + l];
    for (; j < d; j++) lane[0] += (double)x[j];
    return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}

/* Σ (x − c)² over a row in double. */
static double row_sum_squares(const float *x, int64_t d, double c) {
    double lane[4] = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 4 <= d; j += 4)
        for (int l = 0; l < 4; l++) {
            const double v = (double)x[j + l] - c;
            lane[l] += v * v;
        }
    for (; j < d; j++) {
        const double v = (double)x[j] - c;
        lane[0] += v * v;
    }
    return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}

/* The norms read their statistics from x, then write y; with y = x the final loop would again meet the
 * vectorizer's failing overlap check, so it always reads the copy in y. */
static void layer_norm_row(const float *x, int64_t d, const float *w, const float *b, float eps, float *y) {
    const double mean = row_sum(x, d) / (double)d;
    const double variance = row_sum_squares(x, d, mean) / (double)d;
    const float inv = (float)(1.0 / sqrt(variance + (double)eps)), m = (float)mean;
    if (x != y) memmove(y, x, (size_t)d * sizeof(float));
    if (b) {
        for (int64_t j = 0; j < d; j++) y[j] = (y[j] - m) * inv * w[j] + b[j];
    } else {
        for (int64_t j = 0; j < d; j++) y[j] = (y[j] - m) * inv * w[j];
    }
}

static void rms_norm_row(const float *x, int64_t d, const float *w, float eps, float *y) {
    const double ms = row_sum_squares(x, d, 0.0) / (double)d;
    const float inv = (float)(1.0 / sqrt(ms + (double)eps));
    if (x != y) memmove(y, x, (size_t)d * sizeof(float));
    for (int64_t j = 0; j < d; j++) y[j] = y[j] * inv * w[j];
}

cq_status cq_layer_norm_rows(const float *x, int64_t rows, int64_t dim, const float *weight, const float *bias,
                             float eps, float *y) {
    if (rows < 0 || dim <= 0 || (rows > 0 && (!x || !weight || !y))) return CQ_ERR_INVALID_ARGUMENT;
    const int64_t work = rows * dim / CQ_EW_ELEMS_PER_THREAD;
    const int threads = cq_threads_for(work < rows ? work : rows);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) layer_norm_row(x + r * dim, dim, weight, bias, eps, y + r * dim);
    return CQ_OK;
}

cq_status cq_rms_norm_rows(const float *x, int64_t rows, int64_t dim, const float *weight, float eps, float *y) {
    if (rows < 0 || dim <= 0 || (rows > 0 && (!x || !weight || !y))) return CQ_ERR_INVALID_ARGUMENT;
    const int64_t work = rows * dim / CQ_EW_ELEMS_PER_THREAD;
    const int threads = cq_threads_for(work < rows ? work : rows);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) rms_norm_row(x + r * dim, dim, weight, eps, y + r * dim);
    return CQ_OK;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Attention over a KV cache (decode)                                                                      */
/* ------------------------------------------------------------------------------------------------------ */

/* Key/value rows longer than this are converted in pieces (head dims are 64–256 in practice). */
#define CQ_ATTN_ROW 512

/* n values of a cache (F32, F16 or Q8_0; for Q8_0 index and n are multiples of 32) from element `index` on, as
 * fp32: in place for F32, converted into buf otherwise. */
CQ_INLINE const float *kv_row(int kv_type, const void *base, int64_t index, int64_t n, float *buf) {
    if (kv_type == CQ_TYPE_F32) return (const float *)base + index;
    if (kv_type == CQ_TYPE_Q8_0) {
        const uint8_t *b = (const uint8_t *)base + (index / CQ_QBLOCK) * 34;
        for (int64_t i0 = 0; i0 < n; i0 += CQ_QBLOCK, b += 34) {
            const float d = cq_h2f(b);
            const int8_t *qs = (const int8_t *)(b + 2);
            for (int i = 0; i < CQ_QBLOCK; i++) buf[i0 + i] = d * (float)qs[i];
        }
        return buf;
    }
#if defined(__FLT16_MAX__)
    /* The compiler's own half type: one vcvtph2ps per 8 values in the AVX2 copy (F16C), fcvtl on ARM. */
    const _Float16 *h = (const _Float16 *)base + index;
    for (int64_t i = 0; i < n; i++) buf[i] = (float)h[i];
#else
    const uint16_t *h = (const uint16_t *)base + index;
    for (int64_t i = 0; i < n; i++) buf[i] = cq_fp16_to_fp32(h[i]);
#endif
    return buf;
}

CQ_INLINE float dot_lanes(const float *a, const float *b, int64_t n) {
    float lane[CQ_LANES] = {0};
    int64_t i = 0;
    for (; i + CQ_LANES <= n; i += CQ_LANES)
        for (int l = 0; l < CQ_LANES; l++) lane[l] += a[i + l] * b[i + l];
    float sum = 0.0f;
    for (; i < n; i++) sum += a[i] * b[i];
    for (int l = 0; l < CQ_LANES; l++) sum += lane[l];
    return sum;
}

/* Query row i, heads h0 … h1−1 (all of KV group g): every key row is read once and scored against each of those
 * heads, each head's scores go through softmax, then every value row is read once and added to each head's output
 * with its weight. */
CQ_INLINE void attend_body(int64_t i, int64_t g, int64_t h0, int64_t h1, int64_t s, int64_t heads, int64_t hd,
                           float scale, const float *q, int64_t ldq, int kv_type, const void *k, int64_t ldk,
                           const void *v, int64_t ldv, int64_t causal_offset, float *scores, float *out, int64_t ldo) {
    int64_t n = s;
    if (causal_offset >= 0 && causal_offset + i + 1 < s) n = causal_offset + i + 1;
    float buf[CQ_ATTN_ROW];
    const float *qi = q + i * ldq;
    for (int64_t h = h0; h < h1; h++) {
        float *o = out + i * ldo + h * hd;
        for (int64_t e = 0; e < hd; e++) o[e] = 0.0f;
    }
    for (int64_t e0 = 0; e0 < hd; e0 += CQ_ATTN_ROW) {
        const int64_t w = hd - e0 < CQ_ATTN_ROW ? hd - e0 : CQ_ATTN_ROW;
        for (int64_t j = 0; j < n; j++) {
            const float *key = kv_row(kv_type, k, j * ldk + g * hd + e0, w, buf);
            for (int64_t h = h0; h < h1; h++) {
                float *sc = scores + (i * heads + h) * s;
                const float part = dot_lanes(qi + h * hd + e0, key, w);
                sc[j] = e0 == 0 ? part : sc[j] + part;
            }
        }
    }
    for (int64_t h = h0; h < h1; h++) {
        float *sc = scores + (i * heads + h) * s;
        for (int64_t j = 0; j < n; j++) sc[j] *= scale;
        softmax_row_body(sc, n, n);
    }
    for (int64_t e0 = 0; e0 < hd; e0 += CQ_ATTN_ROW) {
        const int64_t w = hd - e0 < CQ_ATTN_ROW ? hd - e0 : CQ_ATTN_ROW;
        for (int64_t j = 0; j < n; j++) {
            const float *val = kv_row(kv_type, v, j * ldv + g * hd + e0, w, buf);
            for (int64_t h = h0; h < h1; h++) {
                const float p = scores[(i * heads + h) * s + j];
                float *o = out + i * ldo + h * hd + e0;
                for (int64_t e = 0; e < w; e++) o[e] += p * val[e];
            }
        }
    }
}

static void attend(int64_t i, int64_t g, int64_t h0, int64_t h1, int64_t s, int64_t heads, int64_t hd, float scale,
                   const float *q, int64_t ldq, int kv_type, const void *k, int64_t ldk, const void *v, int64_t ldv,
                   int64_t causal_offset, float *scores, float *out, int64_t ldo) {
    attend_body(i, g, h0, h1, s, heads, hd, scale, q, ldq, kv_type, k, ldk, v, ldv, causal_offset, scores, out, ldo);
}
CQ_AVX2_COPY(attend,
             (int64_t i, int64_t g, int64_t h0, int64_t h1, int64_t s, int64_t heads, int64_t hd, float scale,
              const float *q, int64_t ldq, int kv_type, const void *k, int64_t ldk, const void *v, int64_t ldv,
              int64_t causal_offset, float *scores, float *out, int64_t ldo),
             (i, g, h0, h1, s, heads, hd, scale, q, ldq, kv_type, k, ldk, v, ldv, causal_offset, scores, out, ldo))

cq_status cq_attention_cached(int64_t t, int64_t s, int64_t heads, int64_t kv_heads, int64_t hd, float scale,
                              const float *q, int64_t ldq, int kv_type, const void *k, int64_t ldk, const void *v,
                              int64_t ldv, int64_t causal_offset, float *scores, float *out, int64_t ldo) {
    if (t < 0 || s < 0 || heads < 1 || kv_heads < 1 || heads % kv_heads != 0 || hd < 1) return CQ_ERR_INVALID_ARGUMENT;
    if (kv_type != CQ_TYPE_F32 && kv_type != CQ_TYPE_F16 && kv_type != CQ_TYPE_Q8_0) return CQ_ERR_UNSUPPORTED_TYPE;
    if (ldq < heads * hd || ldo < heads * hd || ldk < kv_heads * hd || ldv < kv_heads * hd) return CQ_ERR_INVALID_ARGUMENT;
    /* Q8_0 rows are whole blocks: every head starts a block. */
    if (kv_type == CQ_TYPE_Q8_0 && (hd % CQ_QBLOCK || ldk % CQ_QBLOCK || ldv % CQ_QBLOCK)) return CQ_ERR_BAD_SHAPE;
    if (t == 0) return CQ_OK;
    if (!q || !out || !scores || (s > 0 && (!k || !v))) return CQ_ERR_INVALID_ARGUMENT;
    if (s == 0) {
        for (int64_t i = 0; i < t; i++)
            for (int64_t e = 0; e < heads * hd; e++) out[i * ldo + e] = 0.0f;
        return CQ_OK;
    }
    const int64_t group = heads / kv_heads;
    /* Tasks: (query row, KV group) when there are enough groups to keep every thread busy, so that a group's heads
     * share each key row; else (query row, head). */
    const int threads0 = cq_get_threads();
    const int by_group = kv_heads * t >= threads0;
    const int64_t per_row = by_group ? kv_heads : heads;
    const int64_t tasks = t * per_row;
    const int threads = cq_threads_for(tasks * s * hd < 32768 ? 1 : tasks);
    void (*const fn)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, const float *, int64_t, int,
                     const void *, int64_t, const void *, int64_t, int64_t, float *, float *, int64_t) = CQ_PICK(attend);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t task = 0; task < tasks; task++) {
        const int64_t i = task / per_row, r = task % per_row;
        const int64_t g = by_group ? r : r / group;
        const int64_t h0 = by_group ? g * group : r, h1 = by_group ? h0 + group : r + 1;
        fn(i, g, h0, h1, s, heads, hd, scale, q, ldq, kv_type, k, ldk, v, ldv, causal_offset, scores, out, ldo);
    }
    return CQ_OK;
}
