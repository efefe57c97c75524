/*
 * avx2_common.h — pieces the AVX2 kernel files share (gemm_avx2.c, gemm_kquant_avx2.c). Private to CQuant/arch/x86;
 * include after internal.h, inside CQ_ARCH_X86. Every function carries the AVX2 target itself.
 */
#ifndef CQUANT_ARCH_X86_AVX2_COMMON_H
#define CQUANT_ARCH_X86_AVX2_COMMON_H

#include <immintrin.h>
#include <string.h>

#define CQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define CQ_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
/* the row and group loops must unroll fully, so their arrays of vectors live in registers */
#define CQ_UNROLL _Pragma("GCC unroll 8")

/* [c0 c1 c2 c3 c4 c5 c6 c7] ↔ [c0 c1 c4 c5 c2 c3 c6 c7] (the hadd order); the permutation is its own inverse. */
CQ_AVX2_INLINE __m256i hadd_order(void) { return _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7); }

/* An empty asm that claims to change v: the compiler must keep the running sum in a register at this point,
 * instead of reassociating the whole block's sums into a tree whose partial results spill to the stack. */
CQ_AVX2_INLINE void keep(__m256i *a, __m256i *b) { __asm__("" : "+x"(*a), "+x"(*b)); }

/* 8 bytes at q broadcast to every 64-bit lane. */
CQ_AVX2_INLINE __m256i bcast_q8(const void *q) {
    int64_t v;
    memcpy(&v, q, 8);
    return _mm256_set1_epi64x(v);
}

CQ_AVX2_INLINE __m256 load_bias(const cq_tile *t) {
    if (!t->bias) return _mm256_setzero_ps();
    if (t->cols == CQ_PANEL_COLS) return _mm256_loadu_ps(t->bias);
    float b[CQ_PANEL_COLS] = {0};
    for (int c = 0; c < t->cols; c++) b[c] = t->bias[c];
    return _mm256_loadu_ps(b);
}

/* Stores row r (natural column order), adding the bias when there is one (acc + bias, as the reference). */
CQ_AVX2_INLINE void store_row(const cq_tile *t, int r, __m256 v, __m256 bias) {
    if (t->bias) v = _mm256_add_ps(v, bias);
    float *y = t->y + (int64_t)r * t->ldy;
    if (t->cols == CQ_PANEL_COLS) {
        _mm256_storeu_ps(y, v);
    } else {
        float tmp[CQ_PANEL_COLS];
        _mm256_storeu_ps(tmp, v);
        for (int c = 0; c < t->cols; c++) y[c] = tmp[c];
    }
}

/* The 8 fp16 values at p (one per column: scales or mins) in hadd order, as fp32. */
CQ_AVX2_INLINE __m256 load_scales(const uint8_t *p, __m256i order) {
    return _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)), order);
}

#endif /* CQUANT_ARCH_X86_AVX2_COMMON_H */
