/*
 * gemm_kquant_vnni.c — the vnni level's micro-kernels of the K-quants (Q4_K, Q5_K, Q6_K): AVX2 + FMA + F16C +
 * AVX512-VNNI + AVX512-VL, on the AVX2 level's panels (pack.c) and activation blocks (cq_quantize_xk_avx2).
 *
 * Numerics follow arch/scalar/gemm_kquant_scalar.c bit for bit: per super-block and column the same exact integers
 * isum (and msum), then acc = fma(float(isum), dx·d, acc) and, for Q4_K/Q5_K, acc = fma(−float(msum), dx·dmin, acc),
 * vectorised across the 8 columns (lanes in gemm_avx2.c's hadd order [c0 c1 c4 c5 | c2 c3 c6 c7], put back in column
 * order at the store).
 *
 * The codes are unsigned (Q4_K 0…15, Q5_K 0…31, Q6_K 0…63, its −32 taken out afterwards as AVX2 does), so they are
 * VPDPBUSD's unsigned operand as they are: decoded as in gemm_kquant_avx2.c (one register of 4 columns × 8 bytes per
 * nibble half and group), each times the activation's 8 bytes broadcast to every 64-bit lane, accumulates per (row,
 * half) an i32 register [c0 c0 c1 c1 | c2 c2 c3 c3] (a column's 8 values are two 4-byte lanes) — one instruction per
 * 32 products where AVX2 needs maddubs and an add. What differs per type is how a sub-block's per-column scale
 * enters (it differs per column, so it cannot be folded into the activations):
 *   Q4_K  a lane holds 16 products of a sub-block, ≤ 16·15·127 < 2^15: packs_epi32 of the two halves is exact and
 *         is already in hadd order as int16 pairs, so one VPDPWSSD against the scales (spread to [S S] pairs) adds
 *         the pair and multiplies by S into isum — 2 operations per row and sub-block (AVX2: hadd, madd, add); that
 *         one is written as inline asm on the accumulator's own register (dpwssd_in_place: +5 % on the two-panel tile).
 *   Q5_K  lanes reach 16·31·127 (no int16): the halves' lanes added pairwise (pair_add, hadd order), then vpmulld by
 *         the scales as int32 and add.
 *   Q6_K  a sub-block is 16 values, two groups, both accumulated into the same lanes (≤ 8·63·127, no int16); each
 *         half is multiplied lane by lane (vpmulld) by its columns' scales as int32 [s s] pairs, summed over the
 *         super-block, and the halves folded by one hadd after it. The −32: 32·Σ_i sc_i·bsum16_i, 8 VPDPWSSD per
 *         row and super-block. Scales are signed (int8).
 * The mins of Q4_K/Q5_K (msum = Σ_j M_j·bsum32_j) take 4 VPDPWSSD per row and super-block, (M_j, M_j+1) per column
 * against (bsum32_j, bsum32_j+1). The 6-bit scales and mins are unpacked once per panel block for all rows.
 * Q4_K and Q5_K also have two-panel tiles (each activation broadcast serves 16 columns).
 *
 * Why Q6_K stays well below the others (Zen 4, one thread, the tile alone: Q4_K ≈ 70 % of the vpdpbusd peak, Q6_K
 * ≈ 44 %, its AVX2 tile ≈ 38 %): VPDPBUSD, VPDPWSSD, vpmulld, vpmaddwd and vpsignb share the same two pipes, and a
 * 16-value sub-block leaves 2 of them per 4 VPDPBUSD for the scales whatever the form (vpmulld per half, or packs and
 * VPDPWSSD per group), on top of the heaviest decode (3 loads, ~12 operations per panel and sub-block). Tried, no
 * better: two panels per tile (decode dominates, not broadcasts); a running sum over the sub-blocks multiplied by
 * scale differences s_i − s_i+1 (exact modulo 2^32), which saves the per-sub-block zeroing but chains every
 * sub-block's VPDPBUSD to the previous one (latency-bound, 5 % slower); signed codes with the sign trick (vpsignb
 * takes the same pipes). A 55 % Q6_K would need codes that decode in fewer operations (a layout change).
 *
 * Not built where the compiler lacks the target attributes (internal.h: CQ_HAVE_VNNI). Nothing here opens an
 * OpenMP region.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "../../internal.h"

#if CQ_HAVE_VNNI

#include "vnni_common.h"

/* The 6-bit scales S[j][c] (byte 8j + c) and mins M of one Q4_K/Q5_K panel block, from its 96-byte area
 * (cquant.h): low 4 bits from sl/ml (sub-blocks j and j+4 in the two nibbles), top 2 bits from hb. */
CQ_VNNI_INLINE void vk_scales(const uint8_t *blk, uint8_t S[64], uint8_t M[64]) {
    const __m256i low4 = _mm256_set1_epi8(15), top2 = _mm256_set1_epi8(0x30);
    const __m256i sl = _mm256_loadu_si256((const __m256i *)(blk + CQ_K_SCALES_OFFSET));
    const __m256i ml = _mm256_loadu_si256((const __m256i *)(blk + CQ_K_SCALES_OFFSET + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)(blk + CQ_K_SCALES_OFFSET + 64));
    /* hb bits 2i, 2i+1 to bits 4-5 of the same byte: the 16-bit shifts move other bytes' bits only outside 0x30 */
    const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(hb, 4), top2);
    const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(hb, 2), top2);
    const __m256i h2 = _mm256_and_si256(hb, top2);
    const __m256i h3 = _mm256_and_si256(_mm256_srli_epi16(hb, 2), top2);
    _mm256_store_si256((__m256i *)S, _mm256_or_si256(_mm256_and_si256(sl, low4), h0));
    _mm256_store_si256((__m256i *)(S + 32), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(sl, 4), low4), h1));
    _mm256_store_si256((__m256i *)M, _mm256_or_si256(_mm256_and_si256(ml, low4), h2));
    _mm256_store_si256((__m256i *)(M + 32), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ml, 4), low4), h3));
}

/* Rows a (at p) and b (at p + 8) of 8 per-column bytes as int16 pairs (a, b) per int32 lane, lanes in hadd order;
 * signed or unsigned bytes. */
CQ_VNNI_INLINE __m256i vk_pairs(const uint8_t *p, const int is_signed, const __m256i order) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    const __m128i ab = _mm_unpacklo_epi8(v, _mm_unpackhi_epi64(v, v));
    return _mm256_permutevar8x32_epi32(is_signed ? _mm256_cvtepi8_epi16(ab) : _mm256_cvtepu8_epi16(ab), order);
}

/* *acc = _mm256_dpwssd_epi32(*acc, a, b), the accumulator's register updated in place: gcc otherwise copies each
 * loop-carried accumulator out and back around the instruction (2 moves per row and sub-block). */
CQ_VNNI_INLINE void dpwssd_in_place(__m256i *acc, __m256i a, __m256i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(*acc) : "v"(a), "v"(b));
}

/* 8 per-column bytes at p as int32 lanes in hadd order (signed or unsigned). */
CQ_VNNI_INLINE __m256i vk_scales32(const uint8_t *p, const int is_signed, const __m256i order) {
    const __m128i v = _mm_loadl_epi64((const __m128i *)p);
    return _mm256_permutevar8x32_epi32(is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v), order);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Q4_K and Q5_K                                                                                           */
/* ------------------------------------------------------------------------------------------------------ */

CQ_VNNI_INLINE void vk_affine_rows(const cq_tile *t, const int R, const int P, const int five) {
    const int64_t nb = t->k / CQ_KBLOCK;
    const size_t block_bytes = five ? CQ_Q5_K_PANEL_BLOCK_BYTES : CQ_Q4_K_PANEL_BLOCK_BYTES;
    const size_t sub_bytes = five ? CQ_Q5_K_SUB_BYTES : CQ_Q4_K_SUB_BYTES, codes_at = five ? 32 : 0;
    const size_t panel_bytes = (size_t)nb * block_bytes;
    const cq_block_q8k *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8k *)t->x + (int64_t)r * t->x_stride;
    const __m256i nib = _mm256_set1_epi8(15), bit4 = _mm256_set1_epi8(16);
    const __m256i order = hadd_order();
    const __m256i shl = _mm256_setr_epi64x(4, 3, 2, 1), shr = _mm256_setr_epi64x(0, 1, 2, 3);
    /* a byte per column → int16 pairs [S S] per int32 lane, lanes in hadd order (−1: zero) */
    const __m256i spread = _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 4, -1, 4, -1, 5, -1, 5, -1,
                                            2, -1, 2, -1, 3, -1, 3, -1, 6, -1, 6, -1, 7, -1, 7, -1);
    __m256 acc[2][CQ_TILE_ROWS];
    CQ_UNROLL
    for (int p = 0; p < P; p++) {
        CQ_UNROLL
        for (int r = 0; r < R; r++) acc[p][r] = _mm256_setzero_ps();
    }
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += block_bytes) {
        _Alignas(32) uint8_t S[2][64], M[2][64];
        CQ_UNROLL
        for (int p = 0; p < P; p++) vk_scales(blk + p * panel_bytes, S[p], M[p]);
        __m256i isum[2][CQ_TILE_ROWS];
        CQ_UNROLL
        for (int p = 0; p < P; p++) {
            CQ_UNROLL
            for (int r = 0; r < R; r++) isum[p][r] = _mm256_setzero_si256();
        }
        for (int j = 0; j < 8; j++) {
            __m256i lo[2][CQ_TILE_ROWS], hi[2][CQ_TILE_ROWS]; /* the sub-block's dots, columns 0-3 and 4-7 */
            CQ_UNROLL
            for (int p = 0; p < P; p++) {
                CQ_UNROLL
                for (int r = 0; r < R; r++) lo[p][r] = hi[p][r] = _mm256_setzero_si256();
            }
            CQ_UNROLL
            for (int g = 0; g < 4; g++) {
                __m256i c0[2], c1[2];
                CQ_UNROLL
                for (int p = 0; p < P; p++) {
                    const uint8_t *sub = blk + p * panel_bytes + CQ_K_SUBS_OFFSET + (size_t)j * sub_bytes;
                    const __m256i w = _mm256_loadu_si256((const __m256i *)(sub + codes_at + 32 * g));
                    c0[p] = _mm256_and_si256(w, nib);
                    c1[p] = _mm256_and_si256(_mm256_srli_epi16(w, 4), nib);
                    if (five) { /* bit c of qh byte jj → bit 4 of column c's byte: lane cc by 4 − cc, or by cc */
                        const __m256i h = bcast_q8(sub + 8 * g);
                        c0[p] = _mm256_or_si256(c0[p], _mm256_and_si256(_mm256_sllv_epi64(h, shl), bit4));
                        c1[p] = _mm256_or_si256(c1[p], _mm256_and_si256(_mm256_srlv_epi64(h, shr), bit4));
                    }
                }
                CQ_UNROLL
                for (int r = 0; r < R; r++) {
                    const __m256i xb = bcast_q8(xr[r][b].q + 32 * j + 8 * g);
                    CQ_UNROLL
                    for (int p = 0; p < P; p++) {
                        lo[p][r] = _mm256_dpbusd_epi32(lo[p][r], c0[p], xb);
                        hi[p][r] = _mm256_dpbusd_epi32(hi[p][r], c1[p], xb);
                    }
                }
            }
            CQ_UNROLL
            for (int p = 0; p < P; p++) {
                if (five) {
                    const __m256i sc = vk_scales32(S[p] + 8 * j, 0, order);
                    CQ_UNROLL
                    for (int r = 0; r < R; r++)
                        isum[p][r] = _mm256_add_epi32(isum[p][r],
                                                      _mm256_mullo_epi32(pair_add(lo[p][r], hi[p][r]), sc));
                } else {
                    const __m256i sc = _mm256_shuffle_epi8(bcast_q8(S[p] + 8 * j), spread);
                    CQ_UNROLL
                    for (int r = 0; r < R; r++)
                        dpwssd_in_place(&isum[p][r], _mm256_packs_epi32(lo[p][r], hi[p][r]), sc);
                }
            }
        }
        CQ_UNROLL
        for (int p = 0; p < P; p++) {
            __m256i mp[4]; /* (M_2q, M_2q+1) per column */
            CQ_UNROLL
            for (int q = 0; q < 4; q++) mp[q] = vk_pairs(M[p] + 16 * q, 0, order);
            const __m256 dw = load_scales(blk + p * panel_bytes, order);
            const __m256 mw = load_scales(blk + p * panel_bytes + CQ_K_DMIN_OFFSET, order);
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                __m256i msum = _mm256_setzero_si256();
                CQ_UNROLL
                for (int q = 0; q < 4; q++) {
                    int32_t bs;
                    memcpy(&bs, &xr[r][b].bsum32[2 * q], 4);
                    msum = _mm256_dpwssd_epi32(msum, mp[q], _mm256_set1_epi32(bs));
                }
                const __m256 dx = _mm256_set1_ps(xr[r][b].d);
                acc[p][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[p][r]), _mm256_mul_ps(dw, dx), acc[p][r]);
                acc[p][r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(mw, dx), acc[p][r]);
            }
        }
    }
    store_panels(t, acc, R, P, order, 1);
}

#define VK_TILE(name, P, five)                                                                               \
    CQ_VNNI void name(const cq_tile *t) {                                                                    \
        switch (t->rows) {                                                                                   \
        case 1: vk_affine_rows(t, 1, P, five); break;                                                        \
        case 2: vk_affine_rows(t, 2, P, five); break;                                                        \
        case 3: vk_affine_rows(t, 3, P, five); break;                                                        \
        default: vk_affine_rows(t, 4, P, five); break;                                                       \
        }                                                                                                    \
    }
VK_TILE(cq_tile_q4_k_vnni, 1, 0)
VK_TILE(cq_tile2_q4_k_vnni, 2, 0)
VK_TILE(cq_tile_q5_k_vnni, 1, 1)
VK_TILE(cq_tile2_q5_k_vnni, 2, 1)

/* ------------------------------------------------------------------------------------------------------ */
/* Q6_K                                                                                                    */
/* ------------------------------------------------------------------------------------------------------ */

CQ_VNNI_INLINE void vq6_k_rows(const cq_tile *t, const int R, const int P) {
    const int64_t nb = t->k / CQ_KBLOCK;
    const size_t panel_bytes = (size_t)nb * CQ_Q6_K_PANEL_BLOCK_BYTES;
    const cq_block_q8k *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8k *)t->x + (int64_t)r * t->x_stride;
    const __m256i nib = _mm256_set1_epi8(15), top = _mm256_set1_epi8(0x30);
    const __m256i order = hadd_order();
    const __m128i dup_lo = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128i dup_hi = _mm_setr_epi8(4, 4, 5, 5, 6, 6, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0);
    __m256 acc[2][CQ_TILE_ROWS];
    CQ_UNROLL
    for (int p = 0; p < P; p++) {
        CQ_UNROLL
        for (int r = 0; r < R; r++) acc[p][r] = _mm256_setzero_ps();
    }
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += CQ_Q6_K_PANEL_BLOCK_BYTES) {
        __m256i isum_lo[2][CQ_TILE_ROWS], isum_hi[2][CQ_TILE_ROWS]; /* columns 0-3 / 4-7, two lanes per column */
        CQ_UNROLL
        for (int p = 0; p < P; p++) {
            CQ_UNROLL
            for (int r = 0; r < R; r++) isum_lo[p][r] = isum_hi[p][r] = _mm256_setzero_si256();
        }
        for (int i = 0; i < 16; i++) {
            __m256i a0[2], a1[2], b0[2], b1[2], sc_lo[2], sc_hi[2]; /* group 0 columns 0-3 / 4-7, group 1 the same */
            CQ_UNROLL
            for (int p = 0; p < P; p++) {
                const uint8_t *sub = blk + p * panel_bytes + CQ_Q6_K_SUBS_OFFSET + (size_t)i * CQ_Q6_K_SUB_BYTES;
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)sub);
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(sub + 32));
                const __m256i tb = _mm256_loadu_si256((const __m256i *)(sub + 64));
                /* the 2 top bits to bits 4-5; what the 16-bit shifts carry across bytes lands outside 0x30 */
                a0[p] = _mm256_or_si256(_mm256_and_si256(w0, nib), _mm256_and_si256(_mm256_slli_epi16(tb, 4), top));
                a1[p] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(w0, 4), nib),
                                        _mm256_and_si256(_mm256_slli_epi16(tb, 2), top));
                b0[p] = _mm256_or_si256(_mm256_and_si256(w1, nib), _mm256_and_si256(tb, top));
                b1[p] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(w1, 4), nib),
                                        _mm256_and_si256(_mm256_srli_epi16(tb, 2), top));
                /* the sub-block's scales as int32 [s0 s0 s1 s1 | s2 s2 s3 s3] and the same for s4…s7 */
                const __m128i s8 = _mm_loadl_epi64((const __m128i *)(blk + p * panel_bytes + CQ_Q6_K_SCALES_OFFSET + 8 * i));
                sc_lo[p] = _mm256_cvtepi8_epi32(_mm_shuffle_epi8(s8, dup_lo));
                sc_hi[p] = _mm256_cvtepi8_epi32(_mm_shuffle_epi8(s8, dup_hi));
            }
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                const __m256i x0 = bcast_q8(xr[r][b].q + 16 * i), x1 = bcast_q8(xr[r][b].q + 16 * i + 8);
                CQ_UNROLL
                for (int p = 0; p < P; p++) {
                    /* lanes ≤ 8·63·127, times |sc| ≤ 128, summed over 16 sub-blocks: int32 */
                    const __m256i lo = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a0[p], x0), b0[p], x1);
                    const __m256i hi = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a1[p], x0), b1[p], x1);
                    isum_lo[p][r] = _mm256_add_epi32(isum_lo[p][r], _mm256_mullo_epi32(lo, sc_lo[p]));
                    isum_hi[p][r] = _mm256_add_epi32(isum_hi[p][r], _mm256_mullo_epi32(hi, sc_hi[p]));
                }
            }
        }
        CQ_UNROLL
        for (int p = 0; p < P; p++) {
            /* the −32: 32·Σ_i sc_i·bsum16_i per column, (sc_i, sc_i+1) pairs against (bsum16_i, bsum16_i+1) */
            __m256i sp[8];
            CQ_UNROLL
            for (int q = 0; q < 8; q++) sp[q] = vk_pairs(blk + p * panel_bytes + CQ_Q6_K_SCALES_OFFSET + 16 * q, 1, order);
            const __m256 dw = load_scales(blk + p * panel_bytes, order);
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                __m256i off = _mm256_setzero_si256();
                CQ_UNROLL
                for (int q = 0; q < 8; q++) {
                    int32_t bs;
                    memcpy(&bs, &xr[r][b].bsum16[2 * q], 4);
                    off = _mm256_dpwssd_epi32(off, sp[q], _mm256_set1_epi32(bs));
                }
                const __m256i isum = _mm256_hadd_epi32(isum_lo[p][r], isum_hi[p][r]);
                const __m256i s = _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 5));
                acc[p][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(xr[r][b].d)),
                                            acc[p][r]);
            }
        }
    }
    store_panels(t, acc, R, P, order, 1);
}

#define VQ6_TILE(name, P)                                                                                    \
    CQ_VNNI void name(const cq_tile *t) {                                                                    \
        switch (t->rows) {                                                                                   \
        case 1: vq6_k_rows(t, 1, P); break;                                                                  \
        case 2: vq6_k_rows(t, 2, P); break;                                                                  \
        case 3: vq6_k_rows(t, 3, P); break;                                                                  \
        default: vq6_k_rows(t, 4, P); break;                                                                 \
        }                                                                                                    \
    }
VQ6_TILE(cq_tile_q6_k_vnni, 1)

#endif /* CQ_HAVE_VNNI */
