/*
 * gemm_vnni.c — the vnni level: AVX2 + FMA + F16C + AVX512-VNNI + AVX512-VL micro-kernels of the 32-value types
 * (the K-quants: gemm_kquant_vnni.c; F32/F16 run this level's AVX2 tiles).
 *
 * Q8_0: VPDPBUSD multiplies unsigned bytes by signed bytes and adds each 4 adjacent products into an int32 lane
 * of the accumulator, without saturation. AVX2 has no int8 × int8 product, so its Q8_0 tile spends a vpsignb per
 * 32 products on top of maddubs → madd → add (gemm_avx2.c). Here the panel holds u = w + 128 (pack.c:
 * cq_pack_panel_q8_0_u8, the same 272 bytes per block) and one vpdpbusd per 32 products computes
 *     Σ u·x = Σ w·x + 128·Σ x,
 * from which 128·Σx (the activation block's `sum`) is subtracted: the same integer as the scalar reference,
 * exactly (|Σ u·x| ≤ 32·255·127 < 2^31). A −128 weight code is u = 0, still exact.
 *
 * Panel (cquant.h): per block fp16 d[8], then u[j][c][i] = W[c][32b + 4j + i] + 128, j = 0…7: one 32-byte
 * register holds 4 values of each of the 8 columns, so vpdpbusd against the activation's 4 bytes broadcast to
 * every lane leaves one column per i32 lane (no hadd, no permutes). Each (row, panel) accumulator starts the block
 * at −128·Σx and takes the 8 vpdpbusd of the block; fp32 steps as the scalar reference:
 * acc = fma(float(isum), dx·dw, acc), block after block.
 * Two-panel tiles (cq_tile2_q8_0_vnni) share each activation broadcast between 16 columns: with 4 rows that is 8
 * independent chains and, per 8 vpdpbusd, 2 weight loads and 4 broadcasts. The front end, not the two multiply
 * pipes, is what still limits (Zen 4: per block of 4 rows × 2 panels, 64 vpdpbusd and about as many other operations);
 * folding the broadcast into vpdpbusd as an EVEX {1to8} memory operand (inline asm) measured slower.
 *
 * Q4_0, Q4_1, Q5_0, Q5_1: the AVX2 level's panels and decoding as they are (gemm_avx2.c: per 8-value group one
 * register of 4 columns × 8 bytes of unsigned codes for columns 0-3, one for 4-7). Codes are VPDPBUSD's unsigned
 * operand without any change; against the activation's 8 bytes broadcast to every 64-bit lane, one vpdpbusd per
 * group and half accumulates [c0 c0 c1 c1 | c2 c2 c3 c3] (a column's 8 values are two 4-byte lanes) in int32, where
 * AVX2 spends maddubs + add and widens the int16 sums after the block. The offset of Q4_0/Q5_0 (8·Σx, 16·Σx) is
 * the accumulators' starting value, half per lane; after the block one pair add (vnni_common.h: pair_add, the hadd
 * without vphaddd) gives [c0 c1 c4 c5 | c2 c3 c6 c7], the AVX2 tiles' hadd order, and the fp32 steps are theirs.
 * Two-panel tiles share each broadcast between 16 columns. Tried: for the 4-bit types, packs of the two halves (a
 * lane holds ≤ 16·15·127 < 2^15) and one vpdpwssd against ones instead of the pair add: 15 % slower, vpdpwssd takes
 * the vpdpbusd pipes. What limits (Zen 4, one thread, the tile alone: Q4_0 ≈ 68 % of the vpdpbusd peak, Q5_0 ≈ 64 %,
 * Q8_0 ≈ 79 %) is the number of operations per vpdpbusd: decoding, the zeroed accumulators, broadcasts, fp32 steps.
 *
 * Not built where the compiler lacks the target attributes (internal.h: CQ_HAVE_VNNI); chosen at run time
 * (cpu.c: cq_cpu_has_vnni). Nothing here opens an OpenMP region.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "../../internal.h"

#if CQ_HAVE_VNNI

#include "vnni_common.h"

/* P panels (1, or 2 adjacent ones: twice the columns per activation broadcast) × R rows. Each (panel, row) sums a
 * block in its own i32 register, lanes = columns; one panel alone splits it by even/odd quads, so that there are
 * 8 independent vpdpbusd chains either way. */
CQ_VNNI_INLINE void q8_0_rows_vnni(const cq_tile *t, const int R, const int P) {
    const int S = P == 1 ? 2 : 1;
    const int64_t nb = t->k / CQ_QBLOCK;
    const size_t panel_bytes = (size_t)nb * CQ_Q8_0_PANEL_BLOCK_BYTES;
    const cq_block_q8x *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8x *)t->x + (int64_t)r * t->x_stride;
    __m256 acc[2][CQ_TILE_ROWS];
    CQ_UNROLL
    for (int p = 0; p < P; p++) {
        CQ_UNROLL
        for (int r = 0; r < R; r++) acc[p][r] = _mm256_setzero_ps();
    }
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += CQ_Q8_0_PANEL_BLOCK_BYTES) {
        /* [panel][row][even/odd quad]: −128·Σx + Σ (w + 128)·x = Σ w·x per column, exact (|·| < 2^31) */
        __m256i sum[2][CQ_TILE_ROWS][2];
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            const __m256i offset = _mm256_set1_epi32(-128 * xr[r][b].sum); /* |sum| ≤ 32·127 */
            CQ_UNROLL
            for (int p = 0; p < P; p++) {
                sum[p][r][0] = offset;
                sum[p][r][1] = _mm256_setzero_si256();
            }
        }
        CQ_UNROLL
        for (int j = 0; j < CQ_QBLOCK / 4; j++) {
            __m256i u[2];
            CQ_UNROLL
            for (int p = 0; p < P; p++)
                u[p] = _mm256_loadu_si256((const __m256i *)(blk + p * panel_bytes + CQ_Q8_0_CODES_OFFSET + 32 * j));
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                int32_t q4;
                memcpy(&q4, xr[r][b].q + 4 * j, 4);
                const __m256i xb = _mm256_set1_epi32(q4);
                CQ_UNROLL
                for (int p = 0; p < P; p++) {
                    const int h = S == 2 ? (j & 1) : 0;
                    sum[p][r][h] = _mm256_dpbusd_epi32(sum[p][r][h], u[p], xb);
                }
            }
        }
        __m256 dw[2];
        CQ_UNROLL
        for (int p = 0; p < P; p++) dw[p] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + p * panel_bytes)));
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            const __m256 dx = _mm256_set1_ps(xr[r][b].d);
            CQ_UNROLL
            for (int p = 0; p < P; p++) {
                __m256i isum = sum[p][r][0];
                if (S == 2) isum = _mm256_add_epi32(isum, sum[p][r][1]);
                acc[p][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw[p], dx), acc[p][r]);
            }
        }
    }
    cq_tile lo = *t; /* the first panel's columns */
    lo.cols = t->cols < CQ_PANEL_COLS ? t->cols : CQ_PANEL_COLS;
    const __m256 b0 = load_bias(&lo);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(&lo, r, acc[0][r], b0);
    if (P == 2 && t->cols > CQ_PANEL_COLS) {
        cq_tile hi = *t;
        hi.cols = t->cols - CQ_PANEL_COLS;
        hi.y = t->y + CQ_PANEL_COLS;
        hi.bias = t->bias ? t->bias + CQ_PANEL_COLS : NULL;
        const __m256 b1 = load_bias(&hi);
        CQ_UNROLL
        for (int r = 0; r < R; r++) store_row(&hi, r, acc[1][r], b1);
    }
}

CQ_VNNI void cq_tile_q8_0_vnni(const cq_tile *t) {
    switch (t->rows) {
    case 1: q8_0_rows_vnni(t, 1, 1); break;
    case 2: q8_0_rows_vnni(t, 2, 1); break;
    case 3: q8_0_rows_vnni(t, 3, 1); break;
    default: q8_0_rows_vnni(t, 4, 1); break;
    }
}

CQ_VNNI void cq_tile2_q8_0_vnni(const cq_tile *t) {
    switch (t->rows) {
    case 1: q8_0_rows_vnni(t, 1, 2); break;
    case 2: q8_0_rows_vnni(t, 2, 2); break;
    case 3: q8_0_rows_vnni(t, 3, 2); break;
    default: q8_0_rows_vnni(t, 4, 2); break;
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Q4_0, Q4_1, Q5_0, Q5_1: one routine, the format a compile-time constant                                 */
/* ------------------------------------------------------------------------------------------------------ */

typedef enum { VNIB_Q4_0, VNIB_Q4_1, VNIB_Q5_0, VNIB_Q5_1 } vnib_fmt;

CQ_VNNI_INLINE size_t vnib_block_bytes(vnib_fmt f) {
    return f == VNIB_Q4_0 ? CQ_Q4_0_PANEL_BLOCK_BYTES
         : f == VNIB_Q4_1 ? CQ_Q4_1_PANEL_BLOCK_BYTES
         : f == VNIB_Q5_0 ? CQ_Q5_0_PANEL_BLOCK_BYTES
                          : CQ_Q5_1_PANEL_BLOCK_BYTES;
}
CQ_VNNI_INLINE size_t vnib_codes_offset(vnib_fmt f) {
    return f == VNIB_Q4_0 ? CQ_Q4_0_CODES_OFFSET
         : f == VNIB_Q4_1 ? CQ_Q4_1_CODES_OFFSET
         : f == VNIB_Q5_0 ? CQ_Q5_0_CODES_OFFSET
                          : CQ_Q5_1_CODES_OFFSET;
}
CQ_VNNI_INLINE size_t vnib_qh_offset(vnib_fmt f) { return f == VNIB_Q5_0 ? CQ_Q5_0_QH_OFFSET : CQ_Q5_1_QH_OFFSET; }
CQ_VNNI_INLINE int vnib_five(vnib_fmt f) { return f == VNIB_Q5_0 || f == VNIB_Q5_1; }
CQ_VNNI_INLINE int vnib_has_min(vnib_fmt f) { return f == VNIB_Q4_1 || f == VNIB_Q5_1; }
/* what is subtracted from the unsigned code (Q4_0: 8, Q5_0: 16), 0 for none */
CQ_VNNI_INLINE int vnib_offset(vnib_fmt f) { return f == VNIB_Q4_0 ? 8 : f == VNIB_Q5_0 ? 16 : 0; }

/* P panels (1, or 2 adjacent ones sharing each activation broadcast) × R rows. Per block and (panel, row) two i32
 * accumulators, lo (columns 0-3) and hi (4-7), lanes [c0 c0 c1 c1 | c2 c2 c3 c3] (each column's 8 values of a group
 * are two 4-byte lanes); each takes one vpdpbusd per group. */
CQ_VNNI_INLINE void vnib_rows(const cq_tile *t, const int R, const int P, const vnib_fmt fmt) {
    const int64_t nb = t->k / CQ_QBLOCK;
    const int five = vnib_five(fmt), offset = vnib_offset(fmt);
    const size_t bb = vnib_block_bytes(fmt), panel_bytes = (size_t)nb * bb;
    const cq_block_q8x *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8x *)t->x + (int64_t)r * t->x_stride;
    const __m256i nib = _mm256_set1_epi8(15);
    const __m256i five_bits = _mm256_set1_epi8(31), three_bits = _mm256_set1_epi8(7), top_bits = _mm256_set1_epi8(24);
    const __m256i order = hadd_order();
    __m256 acc[2][CQ_TILE_ROWS];
    CQ_UNROLL
    for (int p = 0; p < P; p++) {
        CQ_UNROLL
        for (int r = 0; r < R; r++) acc[p][r] = _mm256_setzero_ps();
    }
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += bb) {
        __m256i lo[2][CQ_TILE_ROWS], hi[2][CQ_TILE_ROWS];
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            /* the offset·Σx enters here, half in each of a column's two lanes (|·| ≤ 8·32·127) */
            const __m256i init = offset ? _mm256_set1_epi32(-(offset / 2) * xr[r][b].sum) : _mm256_setzero_si256();
            CQ_UNROLL
            for (int p = 0; p < P; p++) lo[p][r] = hi[p][r] = init;
        }
        __m256i top[2];
        CQ_UNROLL
        for (int p = 0; p < P; p++)
            top[p] = five ? _mm256_loadu_si256((const __m256i *)(blk + p * panel_bytes + vnib_qh_offset(fmt)))
                          : _mm256_setzero_si256();
        CQ_UNROLL
        for (int g = 0; g < 4; g++) {
            __m256i c0[2], c1[2];
            CQ_UNROLL
            for (int p = 0; p < P; p++) {
                const __m256i w =
                    _mm256_loadu_si256((const __m256i *)(blk + p * panel_bytes + vnib_codes_offset(fmt) + 32 * g));
                if (five) { /* as gemm_avx2.c: columns 0-3 bits 0-4; columns 4-7 bits 5-7, bits 3-4 from `top` */
                    c0[p] = _mm256_and_si256(w, five_bits);
                    const __m256i tp = g == 0 ? _mm256_slli_epi16(top[p], 3)
                                     : g == 1 ? _mm256_slli_epi16(top[p], 1)
                                     : g == 2 ? _mm256_srli_epi16(top[p], 1)
                                              : _mm256_srli_epi16(top[p], 3);
                    c1[p] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(w, 5), three_bits),
                                            _mm256_and_si256(tp, top_bits));
                } else {
                    c0[p] = _mm256_and_si256(w, nib);
                    c1[p] = _mm256_and_si256(_mm256_srli_epi16(w, 4), nib);
                }
            }
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                const __m256i xb = bcast_q8(xr[r][b].q + 8 * g);
                CQ_UNROLL
                for (int p = 0; p < P; p++) {
                    lo[p][r] = _mm256_dpbusd_epi32(lo[p][r], c0[p], xb);
                    hi[p][r] = _mm256_dpbusd_epi32(hi[p][r], c1[p], xb);
                }
            }
        }
        __m256 dw[2], mw[2];
        CQ_UNROLL
        for (int p = 0; p < P; p++) {
            dw[p] = load_scales(blk + p * panel_bytes, order);
            mw[p] = vnib_has_min(fmt) ? load_scales(blk + p * panel_bytes + CQ_PANEL_MIN_OFFSET, order)
                                      : _mm256_setzero_ps();
        }
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            const __m256 dx = _mm256_set1_ps(xr[r][b].d);
            CQ_UNROLL
            for (int p = 0; p < P; p++) {
                /* a column's two lanes added: [c0 c1 c4 c5 | c2 c3 c6 c7] */
                const __m256i isum = pair_add(lo[p][r], hi[p][r]);
                acc[p][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw[p], dx), acc[p][r]);
                if (vnib_has_min(fmt))
                    acc[p][r] = _mm256_fmadd_ps(_mm256_set1_ps((float)xr[r][b].sum), _mm256_mul_ps(mw[p], dx), acc[p][r]);
            }
        }
    }
    store_panels(t, acc, R, P, order, 1);
}

#define VNIB_TILES(name, name2, fmt)                                                                         \
    CQ_VNNI void name(const cq_tile *t) {                                                                    \
        switch (t->rows) {                                                                                   \
        case 1: vnib_rows(t, 1, 1, fmt); break;                                                              \
        case 2: vnib_rows(t, 2, 1, fmt); break;                                                              \
        case 3: vnib_rows(t, 3, 1, fmt); break;                                                              \
        default: vnib_rows(t, 4, 1, fmt); break;                                                             \
        }                                                                                                    \
    }                                                                                                        \
    CQ_VNNI void name2(const cq_tile *t) {                                                                   \
        switch (t->rows) {                                                                                   \
        case 1: vnib_rows(t, 1, 2, fmt); break;                                                              \
        case 2: vnib_rows(t, 2, 2, fmt); break;                                                              \
        case 3: vnib_rows(t, 3, 2, fmt); break;                                                              \
        default: vnib_rows(t, 4, 2, fmt); break;                                                             \
        }                                                                                                    \
    }
VNIB_TILES(cq_tile_q4_0_vnni, cq_tile2_q4_0_vnni, VNIB_Q4_0)
VNIB_TILES(cq_tile_q4_1_vnni, cq_tile2_q4_1_vnni, VNIB_Q4_1)
VNIB_TILES(cq_tile_q5_0_vnni, cq_tile2_q5_0_vnni, VNIB_Q5_0)
VNIB_TILES(cq_tile_q5_1_vnni, cq_tile2_q5_1_vnni, VNIB_Q5_1)

#endif /* CQ_HAVE_VNNI */
