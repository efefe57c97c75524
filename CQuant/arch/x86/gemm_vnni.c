/*
 * gemm_vnni.c — the vnni level: AVX2 + FMA + F16C + AVX512-VNNI + AVX512-VL micro-kernels (types.c gives every
 * other type this level's AVX2 tiles).
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
 * Not built where the compiler lacks the target attributes (internal.h: CQ_HAVE_VNNI); chosen at run time
 * (cpu.c: cq_cpu_has_vnni). Nothing here opens an OpenMP region.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "../../internal.h"

#if CQ_HAVE_VNNI

#include "avx2_common.h"

#define CQ_VNNI_TARGET "avx2,fma,f16c,avx512vnni,avx512vl"
#define CQ_VNNI __attribute__((target(CQ_VNNI_TARGET)))
#define CQ_VNNI_INLINE static inline __attribute__((always_inline, target(CQ_VNNI_TARGET)))

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

#endif /* CQ_HAVE_VNNI */
