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
 * Layout as the AVX2 tile: a group (8 k-values × 8 columns) is two registers of 4 columns × 8 bytes, the
 * activation's 8 bytes broadcast to the four 64-bit lanes; vpdpbusd leaves i32 lanes [c0 c0 c1 c1 | c2 c2 c3 c3]
 * (and the same for c4..c7), accumulated over the block's 4 groups in place, then one hadd gives
 * [c0 c1 c4 c5 | c2 c3 c6 c7] and the scales are permuted the same way. fp32 steps as the scalar reference:
 * acc = fma(float(isum), dx·dw, acc), block after block.
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

CQ_VNNI_INLINE void q8_0_rows_vnni(const cq_tile *t, const int R) {
    const int64_t nb = t->k / CQ_QBLOCK;
    const cq_block_q8x *xr[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) xr[r] = (const cq_block_q8x *)t->x + (int64_t)r * t->x_stride;
    const __m256i order = hadd_order();
    __m256 acc[CQ_TILE_ROWS];
    CQ_UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += CQ_Q8_0_PANEL_BLOCK_BYTES) {
        __m256i lo[CQ_TILE_ROWS], hi[CQ_TILE_ROWS]; /* i32 [c0 c0 c1 c1 | c2 c2 c3 c3], same for c4..c7 */
        CQ_UNROLL
        for (int r = 0; r < R; r++) lo[r] = hi[r] = _mm256_setzero_si256();
        CQ_UNROLL
        for (int g = 0; g < 4; g++) {
            const __m256i u0 = _mm256_loadu_si256((const __m256i *)(blk + 16 + 64 * g));
            const __m256i u1 = _mm256_loadu_si256((const __m256i *)(blk + 48 + 64 * g));
            CQ_UNROLL
            for (int r = 0; r < R; r++) {
                const __m256i xb = bcast_q8(xr[r][b].q + 8 * g);
                lo[r] = _mm256_dpbusd_epi32(lo[r], u0, xb);
                hi[r] = _mm256_dpbusd_epi32(hi[r], u1, xb);
            }
        }
        const __m256 dw = load_scales(blk, order);
        CQ_UNROLL
        for (int r = 0; r < R; r++) {
            /* Σ (w + 128)·x − 128·Σx, exact */
            const __m256i isum =
                _mm256_sub_epi32(_mm256_hadd_epi32(lo[r], hi[r]), _mm256_slli_epi32(_mm256_set1_epi32(xr[r][b].sum), 7));
            const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(xr[r][b].d));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc[r]);
        }
    }
    const __m256 bias = load_bias(t);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(t, r, _mm256_permutevar8x32_ps(acc[r], order), bias);
}

CQ_VNNI void cq_tile_q8_0_vnni(const cq_tile *t) {
    switch (t->rows) {
    case 1: q8_0_rows_vnni(t, 1); break;
    case 2: q8_0_rows_vnni(t, 2); break;
    case 3: q8_0_rows_vnni(t, 3); break;
    default: q8_0_rows_vnni(t, 4); break;
    }
}

#endif /* CQ_HAVE_VNNI */
