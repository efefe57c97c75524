/*
 * gemm_avx2.c — x86-64 AVX2 + FMA + F16C micro-kernels.
 *
 * The package is compiled for baseline x86-64; every function here carries its own target attribute and is
 * chosen at run time (cpu.c). Nothing here opens an OpenMP region.
 *
 * Numerics follow arch/scalar/gemm_scalar.c bit for bit:
 *   - activation blocks: the same d, id, round-half-even, clamp and sum;
 *   - quantized tiles: the same integer dot product per (column, k-block), then
 *     acc = fma(float(isum), dx·dw, acc) block after block, and for Q4_1/Q5_1 acc = fma(float(Σqx), dx·mw, acc)
 *     right after it — only vectorised across the 8 columns;
 *   - float tiles: acc = fma(x[k], w[k], acc) for k in order, vectorised across the 8 columns.
 *
 * Q8_0 group (8 columns × 8 k-values, 64 bytes) = two registers of 4 columns × 8 bytes. Each is multiplied
 * against the activation's 8 bytes broadcast to all four 64-bit lanes with the sign trick
 * maddubs(|w|, sign(x, w)) (|w| computed once and shared by every row), widened with madd(·, 1) to i32
 * lanes [c0 c0 c1 c1 | c2 c2 c3 c3], summed over the 4 groups, and one hadd of the two halves gives
 * [c0 c1 c4 c5 | c2 c3 c6 c7]. The block scales are permuted the same way once per block, and the fp32
 * accumulators are put back into column order only when stored.
 *
 * Q4_0/Q4_1/Q5_0/Q5_1 group = one register: low nibbles are columns 0..3, high nibbles columns 4..7. The Q5 types
 * keep columns 0..3's whole codes in bits 0-4 of the same bytes (one and), columns 4..7's low 3 bits in bits 5-7
 * and their top 2 bits in one 32-byte register per block, 2 bits per group (shift, and, shift, and, or).
 * Codes are unsigned (0..15 or 0..31), so maddubs(code, x) needs no sign trick; its int16 pair sums are added over
 * the 4 groups of a block (≤ 4·2·15·127 = 15240, or 31496 for 5 bits). 4-bit: one hadd_epi16 of the two halves
 * (≤ 30480, still int16) and one madd widen them to [c0 c1 c4 c5 | c2 c3 c6 c7]; 5-bit: each half is widened by a
 * madd first, then one hadd_epi32 — the same lanes. Q4_0 and Q5_0 subtract their offset as 8·Σx / 16·Σx (exact
 * integers); Q4_1 and Q5_1 scale Σx by the mins instead.
 *
 * F32/F16: per k one register of 8 weights, x[r][k] broadcast, one fma per row. The one-panel tiles have only
 * `rows` independent chains; the two-panel tiles (cq_tile2_*) double them to cover the fma latency.
 *
 * The sign trick takes |w| as the unsigned operand, so a −128 weight code (never written by ggml, but legal
 * bytes) is still exact: |−128| = 128 as u8, and pair sums stay ≤ 2·128·127 < 32768.
 *
 * Why Q8_0 runs at about half the int8 peak (cq_measure_int8_peak_gops: maddubs → madd → add per 32 products)
 * while Q4_0 exceeds 80 %: int8 × int8 has no AVX2 instruction, so every 32 products cost a fourth operation here
 * (vpsignb, which issues on the same two ports as vpmaddubsw/vpmaddwd on Zen 4), and the i16 pair sums (up to
 * 32512) cannot be added before widening, as the 4-bit ones can. Tried and measured on Zen 4 (clang -O3, one
 * thread, K=2048 N=5632 M=128; this kernel 50 %): the sign as xor/sub with a shared mask (other ports, one more
 * operation) 44-46 %; int16 madd with the activations widened once per tile, on 4-value and on 2-value interleaved
 * panels (no sign, no hadd) 51 %; splitting the codes into nibbles doubles the maddubs. What would reach 70 %:
 * vpdpbusd (AVX-VNNI / AVX512-VNNI), a kernel level of its own: the vnni level, arch/x86/gemm_vnni.c.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "../../internal.h"

#if CQ_ARCH_X86

#include "avx2_common.h"

/* ------------------------------------------------------------------------------------------------------ */
/* Activation quantization                                                                                 */
/* ------------------------------------------------------------------------------------------------------ */

CQ_AVX2 void cq_quantize_x_avx2(const float *x, int64_t k, cq_block_q8x *out) {
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 lim_hi = _mm256_set1_ps(127.0f), lim_lo = _mm256_set1_ps(-127.0f);
    const __m256i unscramble = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < k / CQ_QBLOCK; b++, x += CQ_QBLOCK, out++) {
        __m256 v[4];
        CQ_UNROLL
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + 8 * i);
        /* max(|x|, m): a NaN |x| leaves m unchanged (maxps returns its second operand), as fmaxf ignores NaN */
        __m256 m = _mm256_setzero_ps();
        CQ_UNROLL
        for (int i = 0; i < 4; i++) m = _mm256_max_ps(_mm256_andnot_ps(sign_bit, v[i]), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f;
        if (d < CQ_MIN_ACT_SCALE) d = 0.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        CQ_UNROLL
        for (int i = 0; i < 4; i++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(v[i], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)); /* NaN → 0 */
            r = _mm256_min_ps(_mm256_max_ps(r, lim_lo), lim_hi);
            q[i] = _mm256_cvtps_epi32(r);
        }
        /* sum of the 32 codes */
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        /* i32 → i8: the packs interleave 128-bit lanes; one dword permute restores the order */
        const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
        const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), unscramble);
        _mm256_storeu_si256((__m256i *)out->q, bytes);
        out->d = d;
        out->sum = _mm_cvtsi128_si32(s4);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Q8_0                                                                                                    */
/* ------------------------------------------------------------------------------------------------------ */

CQ_AVX2_INLINE void q8_0_rows(const cq_tile *t, const int R) {
    const int64_t nb = t->k / CQ_QBLOCK;
    const cq_block_q8x *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8x *)t->x + (int64_t)r * t->x_stride;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i order = hadd_order();
    __m256 acc[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += CQ_Q8_0_PANEL_BLOCK_BYTES) {
        __m256i lo[CQ_TILE_ROWS], hi[CQ_TILE_ROWS]; /* i32 [c0 c0 c1 c1 | c2 c2 c3 c3], same for c4..c7 */
        CQ_UNROLL
        for (int g = 0; g < 4; g++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(blk + 16 + 64 * g));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(blk + 48 + 64 * g));
            const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                const __m256i xb = bcast_q8(xr[r][b].q + 8 * g);
                const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(xb, w0)), ones);
                const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(xb, w1)), ones);
                lo[r] = g ? _mm256_add_epi32(lo[r], p0) : p0;
                hi[r] = g ? _mm256_add_epi32(hi[r], p1) : p1;
                keep(&lo[r], &hi[r]);
            }
        }
        const __m256 dw = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk)), order);
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(xr[r][b].d));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(lo[r], hi[r])), s, acc[r]);
        }
    }
    const __m256 bias = load_bias(t);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(t, r, _mm256_permutevar8x32_ps(acc[r], order), bias);
}

CQ_AVX2 void cq_tile_q8_0_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: q8_0_rows(t, 1); break;
    case 2: q8_0_rows(t, 2); break;
    case 3: q8_0_rows(t, 3); break;
    default: q8_0_rows(t, 4); break;
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Q4_0, Q4_1, Q5_0, Q5_1: one routine, the format a compile-time constant                                 */
/* ------------------------------------------------------------------------------------------------------ */

typedef enum { NIB_Q4_0, NIB_Q4_1, NIB_Q5_0, NIB_Q5_1 } nib_fmt;

CQ_AVX2_INLINE size_t nib_block_bytes(nib_fmt f) {
    return f == NIB_Q4_0 ? CQ_Q4_0_PANEL_BLOCK_BYTES
         : f == NIB_Q4_1 ? CQ_Q4_1_PANEL_BLOCK_BYTES
         : f == NIB_Q5_0 ? CQ_Q5_0_PANEL_BLOCK_BYTES
                         : CQ_Q5_1_PANEL_BLOCK_BYTES;
}
CQ_AVX2_INLINE size_t nib_codes_offset(nib_fmt f) {
    return f == NIB_Q4_0 ? CQ_Q4_0_CODES_OFFSET
         : f == NIB_Q4_1 ? CQ_Q4_1_CODES_OFFSET
         : f == NIB_Q5_0 ? CQ_Q5_0_CODES_OFFSET
                         : CQ_Q5_1_CODES_OFFSET;
}
CQ_AVX2_INLINE size_t nib_qh_offset(nib_fmt f) { return f == NIB_Q5_0 ? CQ_Q5_0_QH_OFFSET : CQ_Q5_1_QH_OFFSET; }
CQ_AVX2_INLINE int nib_has_qh(nib_fmt f) { return f == NIB_Q5_0 || f == NIB_Q5_1; }
CQ_AVX2_INLINE int nib_has_min(nib_fmt f) { return f == NIB_Q4_1 || f == NIB_Q5_1; }
/* log2 of the offset subtracted from the unsigned code (Q4_0: 8, Q5_0: 16), 0 for none */
CQ_AVX2_INLINE int nib_offset_shift(nib_fmt f) { return f == NIB_Q4_0 ? 3 : f == NIB_Q5_0 ? 4 : 0; }

CQ_AVX2_INLINE void nib_rows(const cq_tile *t, const int R, const nib_fmt fmt) {
    const int64_t nb = t->k / CQ_QBLOCK;
    const int five = nib_has_qh(fmt);
    const cq_block_q8x *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8x *)t->x + (int64_t)r * t->x_stride;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i nib = _mm256_set1_epi8(15);
    const __m256i order = hadd_order();
    const __m256i five_bits = _mm256_set1_epi8(31), three_bits = _mm256_set1_epi8(7), top_bits = _mm256_set1_epi8(24);
    __m256 acc[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += nib_block_bytes(fmt)) {
        __m256i lo[CQ_TILE_ROWS], hi[CQ_TILE_ROWS]; /* i16 pair sums over the block, columns 0..3 and 4..7 */
        /* 5-bit types: bits 3-4 of columns 4..7's codes, group g in bits 2g and 2g+1 of each byte */
        const __m256i top = five ? _mm256_loadu_si256((const __m256i *)(blk + nib_qh_offset(fmt)))
                                 : _mm256_setzero_si256();
        CQ_UNROLL
        for (int g = 0; g < 4; g++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(blk + nib_codes_offset(fmt) + 32 * g));
            __m256i c0, c1;
            if (five) {
                /* columns 0..3: bits 0-4 of each byte; columns 4..7: bits 5-7, and bits 3-4 from `top` shifted by
                 * 3 − 2g. The 16-bit shifts carry bits across bytes only into positions the masks drop. */
                c0 = _mm256_and_si256(w, five_bits);
                const __m256i t = g == 0 ? _mm256_slli_epi16(top, 3)
                                : g == 1 ? _mm256_slli_epi16(top, 1)
                                : g == 2 ? _mm256_srli_epi16(top, 1)
                                         : _mm256_srli_epi16(top, 3);
                c1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(w, 5), three_bits),
                                     _mm256_and_si256(t, top_bits));
            } else {
                c0 = _mm256_and_si256(w, nib);
                c1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), nib);
            }
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                const __m256i xb = bcast_q8(xr[r][b].q + 8 * g);
                /* unsigned codes, so maddubs needs no sign trick: pairs ≤ 2·31·127 */
                const __m256i p0 = _mm256_maddubs_epi16(c0, xb);
                const __m256i p1 = _mm256_maddubs_epi16(c1, xb);
                lo[r] = g ? _mm256_add_epi16(lo[r], p0) : p0;
                hi[r] = g ? _mm256_add_epi16(hi[r], p1) : p1;
                keep(&lo[r], &hi[r]);
            }
        }
        const __m256 dw = load_scales(blk, order);
        const __m256 mw = nib_has_min(fmt) ? load_scales(blk + CQ_PANEL_MIN_OFFSET, order) : _mm256_setzero_ps();
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            __m256i isum;
            if (five) {
                /* 5-bit sums over a block reach 4·7874 per i16 lane: widen each half before adding them */
                isum = _mm256_hadd_epi32(_mm256_madd_epi16(lo[r], ones), _mm256_madd_epi16(hi[r], ones));
            } else {
                /* 4-bit: i16 pair sums of the two halves, |·| ≤ 2·15240, still fit; one madd widens */
                isum = _mm256_madd_epi16(_mm256_hadd_epi16(lo[r], hi[r]), ones);
            }
            /* either way the lanes are [c0 c1 c4 c5 | c2 c3 c6 c7] */
            const int shift = nib_offset_shift(fmt);
            if (shift) isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(_mm256_set1_epi32(xr[r][b].sum), shift));
            const __m256 dx = _mm256_set1_ps(xr[r][b].d);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, dx), acc[r]);
            if (nib_has_min(fmt))
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps((float)xr[r][b].sum), _mm256_mul_ps(mw, dx), acc[r]);
        }
    }
    const __m256 bias = load_bias(t);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(t, r, _mm256_permutevar8x32_ps(acc[r], order), bias);
}

#define NIB_TILE(name, fmt)                                                                                  \
    CQ_AVX2 void name(const cq_tile *t) {                                                                    \
        switch (t->rows) {                                                                                   \
        case 1: nib_rows(t, 1, fmt); break;                                                                  \
        case 2: nib_rows(t, 2, fmt); break;                                                                  \
        case 3: nib_rows(t, 3, fmt); break;                                                                  \
        default: nib_rows(t, 4, fmt); break;                                                                 \
        }                                                                                                    \
    }
NIB_TILE(cq_tile_q4_0_avx2, NIB_Q4_0)
NIB_TILE(cq_tile_q4_1_avx2, NIB_Q4_1)
NIB_TILE(cq_tile_q5_0_avx2, NIB_Q5_0)
NIB_TILE(cq_tile_q5_1_avx2, NIB_Q5_1)

/* ------------------------------------------------------------------------------------------------------ */
/* F32 / F16 weights, fp32 activations                                                                     */
/* ------------------------------------------------------------------------------------------------------ */

CQ_AVX2_INLINE __m256 load_w_f32(const void *p, int64_t i) { return _mm256_loadu_ps((const float *)p + 8 * i); }
CQ_AVX2_INLINE __m256 load_w_f16(const void *p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + 8 * i)));
}

CQ_AVX2_INLINE void float_rows(const cq_tile *t, const int R, const int half) {
    const float *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const float *)t->x + (int64_t)r * t->x_stride;
    __m256 acc[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const int64_t k = t->k;
#pragma GCC unroll 4
    for (int64_t i = 0; i < k; i++) {
        const __m256 w = half ? load_w_f16(t->panel, i) : load_w_f32(t->panel, i);
        CQ_UNROLL
        for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(xr[r] + i), w, acc[r]);
    }
    const __m256 bias = load_bias(t);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(t, r, acc[r], bias);
}

/* Two panels: 2·R fma chains, enough to cover the fma latency; each column still sums k in order. */
CQ_AVX2_INLINE void float_rows2(const cq_tile *t, const int R, const int half) {
    const float *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const float *)t->x + (int64_t)r * t->x_stride;
    __m256 a0[CQ_TILE_ROWS], a1[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) a0[r] = a1[r] = _mm256_setzero_ps();
    const int64_t k = t->k;
    const void *p0 = t->panel;
    const void *p1 = (const uint8_t *)t->panel + (size_t)k * CQ_PANEL_COLS * (half ? 2 : 4);
#pragma GCC unroll 2
    for (int64_t i = 0; i < k; i++) {
        const __m256 w0 = half ? load_w_f16(p0, i) : load_w_f32(p0, i);
        const __m256 w1 = half ? load_w_f16(p1, i) : load_w_f32(p1, i);
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            const __m256 xb = _mm256_broadcast_ss(xr[r] + i);
            a0[r] = _mm256_fmadd_ps(xb, w0, a0[r]);
            a1[r] = _mm256_fmadd_ps(xb, w1, a1[r]);
        }
    }
    cq_tile hi = *t; /* the second panel's columns, as a one-panel tile for the stores */
    hi.cols = t->cols - CQ_PANEL_COLS;
    hi.y = t->y + CQ_PANEL_COLS;
    hi.bias = t->bias ? t->bias + CQ_PANEL_COLS : NULL;
    cq_tile lo = *t;
    lo.cols = t->cols < CQ_PANEL_COLS ? t->cols : CQ_PANEL_COLS;
    const __m256 b0 = load_bias(&lo);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(&lo, r, a0[r], b0);
    if (hi.cols > 0) {
        const __m256 b1 = load_bias(&hi);
        CQ_UNROLL
        for (int r = 0; r < R; r++) store_row(&hi, r, a1[r], b1);
    }
}

CQ_AVX2 void cq_tile2_f32_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: float_rows2(t, 1, 0); break;
    case 2: float_rows2(t, 2, 0); break;
    case 3: float_rows2(t, 3, 0); break;
    default: float_rows2(t, 4, 0); break;
    }
}

CQ_AVX2 void cq_tile2_f16_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: float_rows2(t, 1, 1); break;
    case 2: float_rows2(t, 2, 1); break;
    case 3: float_rows2(t, 3, 1); break;
    default: float_rows2(t, 4, 1); break;
    }
}

CQ_AVX2 void cq_tile_f32_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: float_rows(t, 1, 0); break;
    case 2: float_rows(t, 2, 0); break;
    case 3: float_rows(t, 3, 0); break;
    default: float_rows(t, 4, 0); break;
    }
}

CQ_AVX2 void cq_tile_f16_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: float_rows(t, 1, 1); break;
    case 2: float_rows(t, 2, 1); break;
    case 3: float_rows(t, 3, 1); break;
    default: float_rows(t, 4, 1); break;
    }
}

#endif /* CQ_ARCH_X86 */
