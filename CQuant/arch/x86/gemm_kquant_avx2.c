/*
 * gemm_kquant_avx2.c — x86-64 AVX2 + FMA + F16C micro-kernels of the K-quants (Q4_K, Q5_K, Q6_K) and their
 * 256-value activation quantizer.
 *
 * Numerics follow arch/scalar/gemm_kquant_scalar.c bit for bit: the same activation blocks; per super-block and
 * column the same exact integers isum (and msum), then acc = fma(float(isum), dx·d, acc) and, for Q4_K/Q5_K,
 * acc = fma(−float(msum), dx·dmin, acc) — vectorised across the 8 columns.
 *
 * Codes are decoded as for Q4_0/Q5_0 (gemm_avx2.c): per 8-value group one register of 4 columns × 8 bytes for the low
 * nibbles (columns 0-3) and one for the high nibbles (columns 4-7); maddubs(code, x) (codes unsigned) gives int16 pair
 * sums [c0 ×4, c1 ×4 | c2 ×4, c3 ×4] that are added over a sub-block (Q4_K: 4 groups, ≤ 15240; Q5_K: 4 groups,
 * ≤ 31496; Q6_K: 2 groups, ≤ 32004 — all int16). The sub-block's 8 scales then enter through madd:
 *   Q4_K  hadd_epi16 of the two halves (≤ 30480) → madd with the scales in hadd order → int32 [c0 c1 c4 c5 | c2 c3 c6 c7]
 *   Q5_K, Q6_K  madd of each half with its columns' scales ([c0 c0 c1 c1 | c2 c2 c3 c3] and the same for 4-7), summed
 *         per half over the super-block and folded by one hadd_epi32 after it → the same lanes (one hadd per
 *         sub-block instead cost 8 % of Q5_K's and Q6_K's speed)
 * and the int32 sums are added over the super-block (|isum| < 2^31, cquant.h). The 6-bit scales of a Q4_K/Q5_K panel
 * block are unpacked once for all rows (three loads, a dozen byte operations), each sub-block's 8 then spread to
 * int16 lanes by one broadcast and one byte shuffle. The mins term is 4 madds per row and super-block: (M_j, M_j+1)
 * per column against (bsum32_j, bsum32_j+1). Q6_K codes are unsigned here (0…63); its −32 is 32·Σ_i sc_i·bsum16_i,
 * 8 madds per row and super-block, subtracted from isum — the same integer as the scalar Σ sc·Σ (code − 32)·qx.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "../../internal.h"

#if CQ_ARCH_X86

#include "avx2_common.h"

/* ------------------------------------------------------------------------------------------------------ */
/* Activation quantization (256-value blocks)                                                              */
/* ------------------------------------------------------------------------------------------------------ */

/* Sum of the 8 int32 lanes. */
CQ_AVX2_INLINE int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

CQ_AVX2 void cq_quantize_xk_avx2(const float *x, int64_t k, cq_block_q8k *out) {
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 lim_hi = _mm256_set1_ps(127.0f), lim_lo = _mm256_set1_ps(-127.0f);
    const __m256i unscramble = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < k / CQ_KBLOCK; b++, x += CQ_KBLOCK, out++) {
        /* max(|x|, m): a NaN |x| leaves m unchanged (maxps returns its second operand), as fmaxf ignores NaN */
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < CQ_KBLOCK / 8; i++) m = _mm256_max_ps(_mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + 8 * i)), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float d = _mm_cvtss_f32(m4) / 127.0f;
        if (d < CQ_MIN_ACT_SCALE) d = 0.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        for (int c = 0; c < CQ_KBLOCK / 32; c++) {
            __m256i q[4];
            CQ_UNROLL
            for (int i = 0; i < 4; i++) {
                const __m256 v = _mm256_loadu_ps(x + 32 * c + 8 * i);
                __m256 r = _mm256_round_ps(_mm256_mul_ps(v, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)); /* NaN → 0 */
                r = _mm256_min_ps(_mm256_max_ps(r, lim_lo), lim_hi);
                q[i] = _mm256_cvtps_epi32(r);
            }
            const int32_t s0 = hsum_epi32(_mm256_add_epi32(q[0], q[1])), s1 = hsum_epi32(_mm256_add_epi32(q[2], q[3]));
            out->bsum16[2 * c] = (int16_t)s0;
            out->bsum16[2 * c + 1] = (int16_t)s1;
            out->bsum32[c] = (int16_t)(s0 + s1);
            const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(out->q + 32 * c),
                                _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), unscramble));
        }
        out->d = d;
        memset(out->reserved, 0, sizeof out->reserved);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Shared pieces                                                                                           */
/* ------------------------------------------------------------------------------------------------------ */

/* Byte shuffles that spread 8 per-column bytes (broadcast to every 64-bit lane) into int16 lanes; −1 (0x80 set)
 * zeroes a byte. SPREAD_HADD: [b0 b0 b1 b1 b4 b4 b5 b5 | b2 b2 b3 b3 b6 b6 b7 b7] (hadd order, each column twice);
 * SPREAD_LO / SPREAD_HI: [b0 ×4 b1 ×4 | b2 ×4 b3 ×4] / the same for b4…b7 — the lanes of maddubs' pair sums. `hi`
 * puts the byte in the high half of each int16 (then an arithmetic shift right by 8 sign-extends it). */
#define Z (-1)
CQ_AVX2_INLINE __m256i spread_hadd(void) {
    return _mm256_setr_epi8(0, Z, 0, Z, 1, Z, 1, Z, 4, Z, 4, Z, 5, Z, 5, Z, 2, Z, 2, Z, 3, Z, 3, Z, 6, Z, 6, Z, 7, Z, 7, Z);
}
CQ_AVX2_INLINE __m256i spread_lo(int hi) {
    return hi ? _mm256_setr_epi8(Z, 0, Z, 0, Z, 0, Z, 0, Z, 1, Z, 1, Z, 1, Z, 1, Z, 2, Z, 2, Z, 2, Z, 2, Z, 3, Z, 3, Z, 3, Z, 3)
              : _mm256_setr_epi8(0, Z, 0, Z, 0, Z, 0, Z, 1, Z, 1, Z, 1, Z, 1, Z, 2, Z, 2, Z, 2, Z, 2, Z, 3, Z, 3, Z, 3, Z, 3, Z);
}
CQ_AVX2_INLINE __m256i spread_hi(int hi) {
    return hi ? _mm256_setr_epi8(Z, 4, Z, 4, Z, 4, Z, 4, Z, 5, Z, 5, Z, 5, Z, 5, Z, 6, Z, 6, Z, 6, Z, 6, Z, 7, Z, 7, Z, 7, Z, 7)
              : _mm256_setr_epi8(4, Z, 4, Z, 4, Z, 4, Z, 5, Z, 5, Z, 5, Z, 5, Z, 6, Z, 6, Z, 6, Z, 6, Z, 7, Z, 7, Z, 7, Z, 7, Z);
}
#undef Z

/* Two rows of 8 per-column bytes (row a at p, row b at p + 8) as int16 pairs (a, b) per column, zero- or
 * sign-extended, the int32 lanes (one column each) in hadd order. */
CQ_AVX2_INLINE __m256i pair_rows(const uint8_t *p, int is_signed, __m256i order) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    const __m128i ab = _mm_unpacklo_epi8(v, _mm_srli_si128(v, 8));
    const __m256i w = is_signed ? _mm256_cvtepi8_epi16(ab) : _mm256_cvtepu8_epi16(ab);
    return _mm256_permutevar8x32_epi32(w, order);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Q4_K and Q5_K                                                                                           */
/* ------------------------------------------------------------------------------------------------------ */

/* The 6-bit scales S[j][c] (bytes 8j + c of S) and mins M of one panel block, from its 96-byte area. */
CQ_AVX2_INLINE void unpack_k_scales(const uint8_t *blk, uint8_t S[64], uint8_t M[64]) {
    const __m256i m15 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    const __m256i sl = _mm256_loadu_si256((const __m256i *)(blk + CQ_K_SCALES_OFFSET));
    const __m256i ml = _mm256_loadu_si256((const __m256i *)(blk + CQ_K_SCALES_OFFSET + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)(blk + CQ_K_SCALES_OFFSET + 64));
    /* the top bits are masked before the 16-bit shift left, so nothing crosses into the neighbouring byte */
    const __m256i top0 = _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4);
    const __m256i top1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4);
    const __m256i top2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4);
    const __m256i top3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4);
    _mm256_storeu_si256((__m256i *)S, _mm256_or_si256(_mm256_and_si256(sl, m15), top0));
    _mm256_storeu_si256((__m256i *)(S + 32), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(sl, 4), m15), top1));
    _mm256_storeu_si256((__m256i *)M, _mm256_or_si256(_mm256_and_si256(ml, m15), top2));
    _mm256_storeu_si256((__m256i *)(M + 32), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ml, 4), m15), top3));
}

CQ_AVX2_INLINE void k_affine_rows(const cq_tile *t, const int R, const int five) {
    const int64_t nb = t->k / CQ_KBLOCK;
    const size_t block_bytes = five ? CQ_Q5_K_PANEL_BLOCK_BYTES : CQ_Q4_K_PANEL_BLOCK_BYTES;
    const size_t sub_bytes = five ? CQ_Q5_K_SUB_BYTES : CQ_Q4_K_SUB_BYTES, codes_at = five ? 32 : 0;
    const cq_block_q8k *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8k *)t->x + (int64_t)r * t->x_stride;
    const __m256i nib = _mm256_set1_epi8(15), sixteen = _mm256_set1_epi8(16);
    const __m256i order = hadd_order();
    const __m256i shl = _mm256_setr_epi64x(4, 3, 2, 1), shr = _mm256_setr_epi64x(0, 1, 2, 3);
    __m256 acc[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += block_bytes) {
        _Alignas(32) uint8_t S[64], M[64];
        unpack_k_scales(blk, S, M);
        /* Q4_K: isum [c0 c1 c4 c5 | c2 c3 c6 c7]; Q5_K: isum (columns 0-3) and isum_hi (4-7) as madd leaves them,
         * folded by one hadd after the super-block */
        __m256i isum[CQ_TILE_ROWS], isum_hi[CQ_TILE_ROWS];
        CQ_UNROLL
        for (int r = 0; r < R; r++) isum[r] = isum_hi[r] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const uint8_t *sub = blk + CQ_K_SUBS_OFFSET + (size_t)j * sub_bytes;
            __m256i lo[CQ_TILE_ROWS], hi[CQ_TILE_ROWS]; /* i16 pair sums over the sub-block, columns 0-3 and 4-7 */
            CQ_UNROLL
            for (int g = 0; g < 4; g++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(sub + codes_at + 32 * g));
                __m256i c0 = _mm256_and_si256(w, nib);
                __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), nib);
                if (five) { /* 5th bits as in gemm_avx2.c's Q5 tiles */
                    const __m256i h = bcast_q8(sub + 8 * g);
                    c0 = _mm256_or_si256(c0, _mm256_and_si256(_mm256_sllv_epi64(h, shl), sixteen));
                    c1 = _mm256_or_si256(c1, _mm256_and_si256(_mm256_srlv_epi64(h, shr), sixteen));
                }
                CQ_UNROLL
                for (int r = 0; r < R; r++) {
                    const __m256i xb = bcast_q8(xr[r][b].q + 32 * j + 8 * g);
                    const __m256i p0 = _mm256_maddubs_epi16(c0, xb), p1 = _mm256_maddubs_epi16(c1, xb);
                    lo[r] = g ? _mm256_add_epi16(lo[r], p0) : p0;
                    hi[r] = g ? _mm256_add_epi16(hi[r], p1) : p1;
                    keep(&lo[r], &hi[r]);
                }
            }
            const __m256i s8 = bcast_q8(S + 8 * j);
            if (five) {
                const __m256i sc_lo = _mm256_shuffle_epi8(s8, spread_lo(0)), sc_hi = _mm256_shuffle_epi8(s8, spread_hi(0));
                CQ_UNROLL
                for (int r = 0; r < R; r++) {
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(lo[r], sc_lo));
                    isum_hi[r] = _mm256_add_epi32(isum_hi[r], _mm256_madd_epi16(hi[r], sc_hi));
                }
            } else {
                const __m256i sc = _mm256_shuffle_epi8(s8, spread_hadd());
                CQ_UNROLL
                for (int r = 0; r < R; r++)
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(_mm256_hadd_epi16(lo[r], hi[r]), sc));
            }
        }
        /* mins: (M_j, M_j+1) per column against (bsum32_j, bsum32_j+1) */
        __m256i mp[4];
        CQ_UNROLL
        for (int p = 0; p < 4; p++) mp[p] = pair_rows(M + 16 * p, 0, order);
        const __m256 dw = load_scales(blk, order), mw = load_scales(blk + CQ_K_DMIN_OFFSET, order);
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            if (five) isum[r] = _mm256_hadd_epi32(isum[r], isum_hi[r]);
            __m256i msum = _mm256_setzero_si256();
            CQ_UNROLL
            for (int p = 0; p < 4; p++) {
                int32_t bs;
                memcpy(&bs, &xr[r][b].bsum32[2 * p], 4);
                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mp[p], _mm256_set1_epi32(bs)));
            }
            const __m256 dx = _mm256_set1_ps(xr[r][b].d);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_mul_ps(dw, dx), acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(mw, dx), acc[r]);
        }
    }
    const __m256 bias = load_bias(t);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(t, r, _mm256_permutevar8x32_ps(acc[r], order), bias);
}

CQ_AVX2 void cq_tile_q4_k_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: k_affine_rows(t, 1, 0); break;
    case 2: k_affine_rows(t, 2, 0); break;
    case 3: k_affine_rows(t, 3, 0); break;
    default: k_affine_rows(t, 4, 0); break;
    }
}

CQ_AVX2 void cq_tile_q5_k_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: k_affine_rows(t, 1, 1); break;
    case 2: k_affine_rows(t, 2, 1); break;
    case 3: k_affine_rows(t, 3, 1); break;
    default: k_affine_rows(t, 4, 1); break;
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Q6_K                                                                                                    */
/* ------------------------------------------------------------------------------------------------------ */

CQ_AVX2_INLINE void q6_k_rows(const cq_tile *t, const int R) {
    const int64_t nb = t->k / CQ_KBLOCK;
    const cq_block_q8k *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8k *)t->x + (int64_t)r * t->x_stride;
    const __m256i nib = _mm256_set1_epi8(15), top = _mm256_set1_epi8(0x30);
    const __m256i order = hadd_order();
    __m256 acc[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += CQ_Q6_K_PANEL_BLOCK_BYTES) {
        const uint8_t *scales = blk + CQ_Q6_K_SCALES_OFFSET;
        __m256i isum_lo[CQ_TILE_ROWS], isum_hi[CQ_TILE_ROWS]; /* columns 0-3 and 4-7 as madd leaves them */
        CQ_UNROLL
        for (int r = 0; r < R; r++) isum_lo[r] = isum_hi[r] = _mm256_setzero_si256();
        for (int i = 0; i < 16; i++) {
            const uint8_t *sub = blk + CQ_Q6_K_SUBS_OFFSET + (size_t)i * CQ_Q6_K_SUB_BYTES;
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)sub);
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(sub + 32));
            const __m256i tb = _mm256_loadu_si256((const __m256i *)(sub + 64));
            /* the top 2 bits to bits 4-5 of each byte; what a 16-bit shift carries across bytes lands outside 0x30 */
            const __m256i a0 = _mm256_or_si256(_mm256_and_si256(w0, nib), _mm256_and_si256(_mm256_slli_epi16(tb, 4), top));
            const __m256i a1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(w0, 4), nib),
                                               _mm256_and_si256(_mm256_slli_epi16(tb, 2), top));
            const __m256i b0 = _mm256_or_si256(_mm256_and_si256(w1, nib), _mm256_and_si256(tb, top));
            const __m256i b1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(w1, 4), nib),
                                               _mm256_and_si256(_mm256_srli_epi16(tb, 2), top));
            const __m256i s8 = bcast_q8(scales + 8 * i);
            const __m256i sc_lo = _mm256_srai_epi16(_mm256_shuffle_epi8(s8, spread_lo(1)), 8);
            const __m256i sc_hi = _mm256_srai_epi16(_mm256_shuffle_epi8(s8, spread_hi(1)), 8);
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                const __m256i x0 = bcast_q8(xr[r][b].q + 16 * i), x1 = bcast_q8(xr[r][b].q + 16 * i + 8);
                __m256i lo = _mm256_add_epi16(_mm256_maddubs_epi16(a0, x0), _mm256_maddubs_epi16(b0, x1));
                __m256i hi = _mm256_add_epi16(_mm256_maddubs_epi16(a1, x0), _mm256_maddubs_epi16(b1, x1));
                keep(&lo, &hi);
                isum_lo[r] = _mm256_add_epi32(isum_lo[r], _mm256_madd_epi16(lo, sc_lo));
                isum_hi[r] = _mm256_add_epi32(isum_hi[r], _mm256_madd_epi16(hi, sc_hi));
            }
        }
        /* the −32: 32·Σ_i sc_i·bsum16_i per column, from (sc_i, sc_i+1) pairs against (bsum16_i, bsum16_i+1) */
        __m256i sp[8];
        CQ_UNROLL
        for (int p = 0; p < 8; p++) sp[p] = pair_rows(scales + 16 * p, 1, order);
        const __m256 dw = load_scales(blk, order);
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            __m256i off = _mm256_setzero_si256();
            CQ_UNROLL
            for (int p = 0; p < 8; p++) {
                int32_t bs;
                memcpy(&bs, &xr[r][b].bsum16[2 * p], 4);
                off = _mm256_add_epi32(off, _mm256_madd_epi16(sp[p], _mm256_set1_epi32(bs)));
            }
            const __m256i isum = _mm256_hadd_epi32(isum_lo[r], isum_hi[r]);
            const __m256i s = _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 5));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(xr[r][b].d)), acc[r]);
        }
    }
    const __m256 bias = load_bias(t);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(t, r, _mm256_permutevar8x32_ps(acc[r], order), bias);
}

CQ_AVX2 void cq_tile_q6_k_avx2(const cq_tile *t) {
    switch (t->rows) {
    case 1: q6_k_rows(t, 1); break;
    case 2: q6_k_rows(t, 2); break;
    case 3: q6_k_rows(t, 3); break;
    default: q6_k_rows(t, 4); break;
    }
}

#endif /* CQ_ARCH_X86 */
