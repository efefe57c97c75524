/*
 * neon_common.h — pieces the three AArch64 kernel files share (baseline Advanced SIMD only, so they inline
 * into the dotprod and i8mm functions too). Private to CQuant/arch/arm; include after internal.h.
 *
 * How the quantized tiles walk a panel: in two sweeps over K, one per half-panel of 4 columns (one float32x4
 * of Y per row). A whole panel at once needs 4 rows × 4 column pairs of int32 block sums plus 8 fp32
 * accumulators, weights and activations — more than the 32 vector registers, and both gcc and clang spilled
 * in the inner loop; a half-panel needs about 16, and clang (SwiftPM's compiler) keeps it in registers (gcc 12's
 * pre-RA scheduler still spills a little in the 3-4-row baseline NEON loop). The second sweep re-reads the
 * panel from cache (one K=4096 Q8_0 panel is 34 KiB) and is skipped when the panel has ≤ 4 valid columns.
 *
 * Per 8-value group g of a k-block, a half-panel is two "column pairs": int8x16 with bytes 0-7 = column c,
 * bytes 8-15 = column c+1, both over k = 8g … 8g+7, as signed values. A column pair is exactly one SDOT
 * operand (against the row's 8 activation bytes duplicated), one SMMLA B operand, and two SMULLs on the
 * baseline ISA. Q4_0/Q4_1/Q5_0/Q5_1 nibbles (and 5th bits) are decoded into the same shape, so nothing below the
 * decoding step knows the weight format — except the min term of Q4_1/Q5_1 (arm_accumulate_block).
 */
#ifndef CQUANT_ARCH_ARM_NEON_COMMON_H
#define CQUANT_ARCH_ARM_NEON_COMMON_H

#include <arm_neon.h>

/* The vector shapes below (two half-panels of one float32x4, two column pairs each) hard-code 8 columns. */
_Static_assert(CQ_PANEL_COLS == 8, "AArch64 kernels assume 8-column panels");
_Static_assert(CQ_QBLOCK == 32, "AArch64 kernels assume 32-value blocks");

#define ARM_GROUP_K 8                          /* k-values per group: one 8-byte row of a column pair */
#define ARM_GROUPS (CQ_QBLOCK / ARM_GROUP_K)   /* 4 groups per k-block */
#define ARM_HALVES 2                           /* half-panels of 4 columns = one float32x4 of Y */
#define ARM_SCALE_BYTES (CQ_PANEL_COLS * 2)    /* fp16 scales at the start of each packed k-block */

/* Per-function ISA extensions on a baseline armv8-a build. gcc 12's arm_neon.h guards SDOT/SMMLA with
 * "arch=armv8.2-a+…", and a caller must enable a superset of that ("+dotprod" alone is refused); both
 * extensions only exist on Armv8.2+ cores, so naming 8.2 promises nothing extra. clang takes feature names. */
#if defined(__clang__)
#define CQ_TARGET_DOTPROD __attribute__((target("dotprod")))
#define CQ_TARGET_I8MM __attribute__((target("dotprod,i8mm")))
#else
#define CQ_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define CQ_TARGET_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#endif

/* Row loops have a compile-time trip count (1…4) once the row-count switch has inlined a body; unrolling them
 * turns the per-row accumulator arrays into registers. Both gcc and clang honour this spelling. */
#define ARM_UNROLL _Pragma("GCC unroll 4")
#define ARM_INLINE static inline __attribute__((always_inline))

/* Runs BODY(t, rows) with `rows` a literal, so each row count gets its own fully unrolled kernel. */
#define ARM_DISPATCH_ROWS(BODY, t, ...)                                                                      \
    do {                                                                                                     \
        switch ((t)->rows) {                                                                                 \
        case 1: BODY(t, 1, __VA_ARGS__); break;                                                              \
        case 2: BODY(t, 2, __VA_ARGS__); break;                                                              \
        case 3: BODY(t, 3, __VA_ARGS__); break;                                                              \
        default: BODY(t, 4, __VA_ARGS__); break;                                                             \
        }                                                                                                    \
    } while (0)

typedef enum { ARM_Q8_0, ARM_Q4_0, ARM_Q4_1, ARM_Q5_0, ARM_Q5_1 } arm_qfmt;

ARM_INLINE size_t arm_block_bytes(arm_qfmt fmt) {
    switch (fmt) {
    case ARM_Q8_0: return CQ_Q8_0_PANEL_BLOCK_BYTES;
    case ARM_Q4_0: return CQ_Q4_0_PANEL_BLOCK_BYTES;
    case ARM_Q4_1: return CQ_Q4_1_PANEL_BLOCK_BYTES;
    case ARM_Q5_0: return CQ_Q5_0_PANEL_BLOCK_BYTES;
    default: return CQ_Q5_1_PANEL_BLOCK_BYTES;
    }
}

/* Types whose value is d·code + m: each block adds dx·m·Σqx after the dx·d·isum step. */
ARM_INLINE int arm_has_min(arm_qfmt fmt) { return fmt == ARM_Q4_1 || fmt == ARM_Q5_1; }

/* Weight scales of columns 4h … 4h+3 of one packed k-block, as fp32 (fp16 → fp32 is exact, as cq_h2f). */
ARM_INLINE float32x4_t arm_load_half_scales(const uint8_t *blk, int h) {
    const uint16_t *d = (const uint16_t *)(const void *)blk;
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d + 4 * h)));
}

/* The same for the mins of Q4_1/Q5_1 (zeros for the other types, whose kernels never use them). */
ARM_INLINE float32x4_t arm_load_half_mins(const uint8_t *blk, int h, arm_qfmt fmt) {
    return arm_has_min(fmt) ? arm_load_half_scales(blk + CQ_PANEL_MIN_OFFSET, h) : vdupq_n_f32(0.0f);
}

/* 0xff in byte i where column (c + i / 8)'s 5th bit at k = 8g + i % 8 is set: `word` is the group's qh[g][0…7] in
 * both halves (bit c of byte j = column c at k = 8g + j, cquant.h), c the pair's first column. */
ARM_INLINE uint8x16_t arm_high_bits(uint8x16_t word, int c) {
    return vtstq_u8(word, vcombine_u8(vdup_n_u8((uint8_t)(1u << c)), vdup_n_u8((uint8_t)(2u << c))));
}

/* Group g of one packed k-block, columns 4h … 4h+3, as two signed column pairs (4h, 4h+1 and 4h+2, 4h+3), each
 * byte the weight's integer value up to the block's scale: Q8_0 q, Q4_0 code − 8, Q5_0 code5 − 16, Q4_1/Q5_1
 * the code itself (0…15 / 0…31; the min is a separate term). */
ARM_INLINE void arm_load_half_group(const uint8_t *blk, int g, int h, arm_qfmt fmt, int8x16_t w[2]) {
    if (fmt == ARM_Q8_0) {
        /* q[g][c][j]: 64 bytes per group, 16 per column pair */
        const int8_t *q = (const int8_t *)blk + ARM_SCALE_BYTES;
        w[0] = vld1q_s8(q + 64 * g + 32 * h);
        w[1] = vld1q_s8(q + 64 * g + 32 * h + 16);
        return;
    }
    /* 32 bytes per group, columns 0,1 | 2,3 in the low nibbles and 4,5 | 6,7 in the high ones */
    const size_t codes = fmt == ARM_Q4_0 ? CQ_Q4_0_CODES_OFFSET
                       : fmt == ARM_Q4_1 ? CQ_Q4_1_CODES_OFFSET
                       : fmt == ARM_Q5_0 ? CQ_Q5_0_CODES_OFFSET
                                         : CQ_Q5_1_CODES_OFFSET;
    const uint8_t *q = blk + codes;
    const uint8x16_t a = vld1q_u8(q + 32 * g), b = vld1q_u8(q + 32 * g + 16);
    uint8x16_t ca, cb;
    if (fmt == ARM_Q5_0 || fmt == ARM_Q5_1) {
        /* columns 0…3: bits 0-4 of each byte; columns 4…7: bits 5-7, and bits 3-4 from the block's top-bit bytes
         * (group g in bits 2g, 2g+1), shifted by 3 − 2g (a negative count shifts right) */
        if (h == 0) {
            ca = vandq_u8(a, vdupq_n_u8(0x1f));
            cb = vandq_u8(b, vdupq_n_u8(0x1f));
        } else {
            const uint8_t *top = blk + (fmt == ARM_Q5_0 ? CQ_Q5_0_QH_OFFSET : CQ_Q5_1_QH_OFFSET);
            const int8x16_t shift = vdupq_n_s8((int8_t)(3 - 2 * g));
            const uint8x16_t mask = vdupq_n_u8(0x18);
            ca = vorrq_u8(vshrq_n_u8(a, 5), vandq_u8(vshlq_u8(vld1q_u8(top), shift), mask));
            cb = vorrq_u8(vshrq_n_u8(b, 5), vandq_u8(vshlq_u8(vld1q_u8(top + 16), shift), mask));
        }
        if (fmt == ARM_Q5_0) { /* value code5 − 16, exact in int8; spares the kernels the −16·Σx correction */
            ca = vsubq_u8(ca, vdupq_n_u8(16));
            cb = vsubq_u8(cb, vdupq_n_u8(16));
        }
    } else {
        ca = h == 0 ? vandq_u8(a, vdupq_n_u8(0x0f)) : vshrq_n_u8(a, 4);
        cb = h == 0 ? vandq_u8(b, vdupq_n_u8(0x0f)) : vshrq_n_u8(b, 4);
        if (fmt == ARM_Q4_0) {
            /* codes 0…15 with value code − 8; subtracting 8 here (exact) spares the kernels the −8·Σx
             * correction */
            ca = vsubq_u8(ca, vdupq_n_u8(8));
            cb = vsubq_u8(cb, vdupq_n_u8(8));
        }
    }
    w[0] = vreinterpretq_s8_u8(ca);
    w[1] = vreinterpretq_s8_u8(cb);
}

/* One 8-value group of an activation row in both halves of a vector, to meet a column pair. */
ARM_INLINE int8x16_t arm_dup_group(const int8_t *q8) {
    const int8x8_t v = vld1_s8(q8);
    return vcombine_s8(v, v);
}

/* One k-block's contribution to one Y row, exactly as the reference: acc ← fma(float(isum), dx·dw, acc).
 * |isum| ≤ 32·128·127 < 2^24, so the conversion is exact; dx·dw is one rounded product, as in C. */
ARM_INLINE float32x4_t arm_accumulate(float32x4_t acc, int32x4_t isum, float dx, float32x4_t dw) {
    return vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_n_f32(dw, dx));
}

/* The whole of one k-block for one Y row: the step above, then for Q4_1/Q5_1, as the reference,
 * acc ← fma(float(Σqx), dx·mw, acc) (|Σqx| ≤ 32·127, exact). */
ARM_INLINE float32x4_t arm_accumulate_block(float32x4_t acc, int32x4_t isum, const cq_block_q8x *xb, float32x4_t dw,
                                            float32x4_t mw, arm_qfmt fmt) {
    acc = arm_accumulate(acc, isum, xb->d, dw);
    if (arm_has_min(fmt)) acc = vfmaq_f32(acc, vdupq_n_f32((float)xb->sum), vmulq_n_f32(mw, xb->d));
    return acc;
}

/* Stores columns 4h … 4h+3 of row r: only those below t->cols (the rest of Y is not this tile's), plus bias. */
ARM_INLINE void arm_store_half(const cq_tile *t, int r, int h, float32x4_t v) {
    const int c0 = 4 * h, n = t->cols - c0 < 4 ? t->cols - c0 : 4;
    float *y = t->y + (int64_t)r * t->ldy + c0;
    if (n == 4) {
        if (t->bias) v = vaddq_f32(v, vld1q_f32(t->bias + c0));
        vst1q_f32(y, v);
        return;
    }
    float tmp[4];
    vst1q_f32(tmp, v);
    for (int c = 0; c < n; c++) y[c] = t->bias ? tmp[c] + t->bias[c0 + c] : tmp[c];
}

/* Activation rows of a quantized tile; rows past t->rows repeat the last one, so kernels that work on row
 * pairs (i8mm) can always load two (the duplicate's results are never stored). */
ARM_INLINE void arm_q8x_rows(const cq_tile *t, const cq_block_q8x *x[CQ_TILE_ROWS]) {
    const cq_block_q8x *base = t->x;
    for (int r = 0; r < CQ_TILE_ROWS; r++) x[r] = base + (int64_t)(r < t->rows ? r : t->rows - 1) * t->x_stride;
}

#endif /* CQUANT_ARCH_ARM_NEON_COMMON_H */
