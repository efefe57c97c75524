/*
 * gemm_neon.c — baseline Armv8-A Advanced SIMD kernels (Cortex-A72 / Raspberry Pi 4: no SDOT).
 *
 * Also the activation quantizer and the float tiles for every AArch64 kernel level: neither gains anything
 * from dotprod or i8mm. All of them reproduce gemm_scalar.c bit for bit (same operations in the same order,
 * vectorised across the panel's columns).
 */
#include "../../internal.h"

#if CQ_ARCH_ARM

#include "neon_common.h"

/* ------------------------------------------------------------------------------------------------------ */
/* Activation quantization                                                                                 */
/* ------------------------------------------------------------------------------------------------------ */

void cq_quantize_x_neon(const float *x, int64_t k, cq_block_q8x *out) {
    enum { V = CQ_QBLOCK / 4 }; /* float32x4 vectors per block */
    for (int64_t b = 0; b < k / CQ_QBLOCK; b++, x += CQ_QBLOCK, out++) {
        float32x4_t v[V];
        /* FMAXNM ignores a NaN operand like fmaxf; starting from 0 matches the reference's amax = 0. */
        float32x4_t vmax = vdupq_n_f32(0.0f);
        for (int i = 0; i < V; i++) {
            v[i] = vld1q_f32(x + 4 * i);
            vmax = vmaxnmq_f32(vmax, vabsq_f32(v[i]));
        }
        const float amax = vmaxnmvq_f32(vmax);
        float d = amax / 127.0f;
        if (d < CQ_MIN_ACT_SCALE) d = 0.0f; /* 1/d would overflow; such a block contributes nothing */
        const float id = d != 0.0f ? 1.0f / d : 0.0f;

        /* FCVTNS rounds half to even like nearbyintf, gives 0 for NaN and saturates ±inf; the clamp then
         * reproduces the reference's ±127 limits. */
        const int32x4_t lim = vdupq_n_s32(127), nlim = vdupq_n_s32(-127);
        int32x4_t q[V];
        int32x4_t sum = vdupq_n_s32(0);
        for (int i = 0; i < V; i++) {
            q[i] = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(v[i], id)), lim), nlim);
            sum = vaddq_s32(sum, q[i]);
        }
        for (int h = 0; h < 2; h++) { /* 16 values per int8x16 store */
            const int16x8_t a = vcombine_s16(vmovn_s32(q[4 * h + 0]), vmovn_s32(q[4 * h + 1]));
            const int16x8_t c = vcombine_s16(vmovn_s32(q[4 * h + 2]), vmovn_s32(q[4 * h + 3]));
            vst1q_s8(out->q + 16 * h, vcombine_s8(vmovn_s16(a), vmovn_s16(c)));
        }
        out->d = d;
        out->sum = vaddvq_s32(sum);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Quantized tiles                                                                                         */
/* ------------------------------------------------------------------------------------------------------ */

/* acc += one group of one column pair against the row's 8 activation bytes (duplicated into both halves of
 * xx, so the high half is a plain SMULL2), lanes [c0 k0-3, c0 k4-7, c1 k0-3, c1 k4-7] — the lanes SDOT would
 * give. Adding two products in int16 is safe: |qw·qx| ≤ 128·127, twice that < 32767; SADALP then widens
 * the pairs into the int32 lanes. */
ARM_INLINE int32x4_t dot_pair(int32x4_t acc, int8x16_t w, int8x16_t xx) {
    const int16x8_t c0 = vmull_s8(vget_low_s8(w), vget_low_s8(xx));
    const int16x8_t c1 = vmull_high_s8(w, xx);
    return vpadalq_s16(acc, vpaddq_s16(c0, c1));
}

/* Columns 4h … 4h+3 of ROWS rows over the whole K. */
ARM_INLINE void half_q_neon(const cq_tile *t, const int ROWS, const arm_qfmt fmt, const int h) {
    const int64_t nb = t->k / CQ_QBLOCK;
    const cq_block_q8x *x[CQ_TILE_ROWS];
    arm_q8x_rows(t, x);
    float32x4_t acc[CQ_TILE_ROWS];
    ARM_UNROLL for (int r = 0; r < ROWS; r++) acc[r] = vdupq_n_f32(0.0f);

    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += arm_block_bytes(fmt)) {
        int32x4_t pair[CQ_TILE_ROWS][2]; /* this block's integer dot products, per column pair */
        ARM_UNROLL for (int r = 0; r < ROWS; r++) pair[r][0] = pair[r][1] = vdupq_n_s32(0);
        ARM_UNROLL for (int g = 0; g < ARM_GROUPS; g++) {
            int8x16_t w[2];
            arm_load_half_group(blk, g, h, fmt, w);
            ARM_UNROLL for (int r = 0; r < ROWS; r++) {
                const int8x16_t xg = arm_dup_group(x[r][b].q + ARM_GROUP_K * g);
                pair[r][0] = dot_pair(pair[r][0], w[0], xg);
                pair[r][1] = dot_pair(pair[r][1], w[1], xg);
            }
        }
        const float32x4_t dw = arm_load_half_scales(blk, h), mw = arm_load_half_mins(blk, h, fmt);
        /* a pairwise add finishes the four columns */
        ARM_UNROLL for (int r = 0; r < ROWS; r++)
            acc[r] = arm_accumulate_block(acc[r], vpaddq_s32(pair[r][0], pair[r][1]), &x[r][b], dw, mw, fmt);
    }
    ARM_UNROLL for (int r = 0; r < ROWS; r++) arm_store_half(t, r, h, acc[r]);
}

ARM_INLINE void tile_q_neon(const cq_tile *t, const int ROWS, const arm_qfmt fmt) {
    half_q_neon(t, ROWS, fmt, 0);
    if (t->cols > 4) half_q_neon(t, ROWS, fmt, 1);
}

void cq_tile_q8_0_neon(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_neon, t, ARM_Q8_0); }
void cq_tile_q4_0_neon(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_neon, t, ARM_Q4_0); }
void cq_tile_q4_1_neon(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_neon, t, ARM_Q4_1); }
void cq_tile_q5_0_neon(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_neon, t, ARM_Q5_0); }
void cq_tile_q5_1_neon(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_neon, t, ARM_Q5_1); }

/* ------------------------------------------------------------------------------------------------------ */
/* Float tiles (F32 and F16 panels: K rows of 8 weights)                                                   */
/* ------------------------------------------------------------------------------------------------------ */

/* acc ← fma(x[k], w[k], acc) for k in order, as the reference: vfmaq_n_f32 is that fused step per column.
 * Whole panel at once: 4 rows × 2 fp32 accumulators and 2 weight vectors fit the registers easily. */
ARM_INLINE void tile_float_neon(const cq_tile *t, const int ROWS, const int f16) {
    const float *x[CQ_TILE_ROWS];
    ARM_UNROLL for (int r = 0; r < ROWS; r++) x[r] = (const float *)t->x + (int64_t)r * t->x_stride;
    float32x4_t acc[CQ_TILE_ROWS][ARM_HALVES];
    ARM_UNROLL for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = vdupq_n_f32(0.0f);

    for (int64_t i = 0; i < t->k; i++) {
        float32x4_t w[ARM_HALVES];
        if (f16) {
            const uint16_t *wp = (const uint16_t *)t->panel + i * CQ_PANEL_COLS;
            const float16x8_t hw = vreinterpretq_f16_u16(vld1q_u16(wp));
            w[0] = vcvt_f32_f16(vget_low_f16(hw)); /* exact widening */
            w[1] = vcvt_high_f32_f16(hw);
        } else {
            const float *wp = (const float *)t->panel + i * CQ_PANEL_COLS;
            w[0] = vld1q_f32(wp);
            w[1] = vld1q_f32(wp + 4);
        }
        ARM_UNROLL for (int r = 0; r < ROWS; r++) {
            acc[r][0] = vfmaq_n_f32(acc[r][0], w[0], x[r][i]);
            acc[r][1] = vfmaq_n_f32(acc[r][1], w[1], x[r][i]);
        }
    }
    ARM_UNROLL for (int r = 0; r < ROWS; r++) {
        arm_store_half(t, r, 0, acc[r][0]);
        if (t->cols > 4) arm_store_half(t, r, 1, acc[r][1]);
    }
}

void cq_tile_f32_neon(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_float_neon, t, 0); }
void cq_tile_f16_neon(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_float_neon, t, 1); }

#endif /* CQ_ARCH_ARM */
