/*
 * vnni_common.h — what the vnni kernel files share (gemm_vnni.c, gemm_kquant_vnni.c). Private to CQuant/arch/x86;
 * include after internal.h, inside CQ_HAVE_VNNI. The AVX2 helpers of avx2_common.h inline into these functions
 * (their target is a subset of this one).
 */
#ifndef CQUANT_ARCH_X86_VNNI_COMMON_H
#define CQUANT_ARCH_X86_VNNI_COMMON_H

#include "avx2_common.h"

#define CQ_VNNI_TARGET "avx2,fma,f16c,avx512vnni,avx512vl"
#define CQ_VNNI __attribute__((target(CQ_VNNI_TARGET)))
#define CQ_VNNI_INLINE static inline __attribute__((always_inline, target(CQ_VNNI_TARGET)))

/* _mm256_hadd_epi32(a, b) = [a0+a1 a2+a3 b0+b1 b2+b3 | a4+a5 a6+a7 b4+b5 b6+b7] in three one-µop operations: vphaddd
 * ymm is slower on Zen 4 (one per two cycles on the shuffle pipes; next to 8 vpdpbusd, 4 vphaddd cost 0.85 of their
 * time, 4 of these 0.17). The float shuffles only move bits. */
CQ_VNNI_INLINE __m256i pair_add(__m256i a, __m256i b) {
    const __m256 fa = _mm256_castsi256_ps(a), fb = _mm256_castsi256_ps(b);
    return _mm256_add_epi32(_mm256_castps_si256(_mm256_shuffle_ps(fa, fb, 0x88)),
                            _mm256_castps_si256(_mm256_shuffle_ps(fa, fb, 0xDD)));
}

/* Stores the P (1 or 2) panels' accumulators of R rows: panel 0's columns, then, when t->cols says the second panel
 * is there, panel 1's. `order` is applied to each accumulator first (the hadd order is its own inverse). */
CQ_VNNI_INLINE void store_panels(const cq_tile *t, __m256 acc[2][CQ_TILE_ROWS], const int R, const int P,
                                 const __m256i order, const int permute) {
    cq_tile lo = *t; /* the first panel's columns */
    lo.cols = t->cols < CQ_PANEL_COLS ? t->cols : CQ_PANEL_COLS;
    const __m256 b0 = load_bias(&lo);
    CQ_UNROLL
    for (int r = 0; r < R; r++) store_row(&lo, r, permute ? _mm256_permutevar8x32_ps(acc[0][r], order) : acc[0][r], b0);
    if (P == 2 && t->cols > CQ_PANEL_COLS) {
        cq_tile hi = *t;
        hi.cols = t->cols - CQ_PANEL_COLS;
        hi.y = t->y + CQ_PANEL_COLS;
        hi.bias = t->bias ? t->bias + CQ_PANEL_COLS : NULL;
        const __m256 b1 = load_bias(&hi);
        CQ_UNROLL
        for (int r = 0; r < R; r++)
            store_row(&hi, r, permute ? _mm256_permutevar8x32_ps(acc[1][r], order) : acc[1][r], b1);
    }
}

#endif /* CQUANT_ARCH_X86_VNNI_COMMON_H */
