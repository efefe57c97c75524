/*
 * gemm_i8mm.c — quantized tiles with SMMLA (i8mm: Armv8.6, optional from Armv8.2; Neoverse-V1/N2, Cortex-A710+).
 *
 * SMMLA multiplies a 2×8 int8 matrix by the transpose of another and adds the 2×2 int32 result:
 *   A = two activation rows × 8 k-values, B = one packed column pair (2 columns × 8 k-values, as stored),
 *   acc += [ra·c, ra·c', rb·c, rb·c'].
 * So rows go in pairs; with an odd row count the last row is paired with itself and the twin's results are
 * dropped. Four SMMLAs (one per group) complete a block's dot products: no pairwise reduction. Only these
 * functions carry the i8mm target; the driver picks them at run time. Structure as in neon_common.h: two
 * half-panel sweeps over K.
 */
#include "../../internal.h"

#if CQ_ARCH_ARM

#include "neon_common.h"

#define ROW_PAIRS_MAX (CQ_TILE_ROWS / 2)

/* Columns 4h … 4h+3 of ROWS rows over the whole K. */
CQ_TARGET_I8MM ARM_INLINE void half_q_i8mm(const cq_tile *t, const int ROWS, const arm_qfmt fmt, const int h) {
    const int pairs = (ROWS + 1) / 2;
    const int64_t nb = t->k / CQ_QBLOCK;
    const cq_block_q8x *x[CQ_TILE_ROWS]; /* rows past ROWS repeat the last row */
    arm_q8x_rows(t, x);
    float32x4_t acc[CQ_TILE_ROWS];
    ARM_UNROLL for (int r = 0; r < ROWS; r++) acc[r] = vdupq_n_f32(0.0f);

    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += arm_block_bytes(fmt)) {
        int32x4_t mm[ROW_PAIRS_MAX][2]; /* [row pair][column pair] = [ra·c, ra·c', rb·c, rb·c'] */
        ARM_UNROLL for (int rp = 0; rp < pairs; rp++) mm[rp][0] = mm[rp][1] = vdupq_n_s32(0);
        ARM_UNROLL for (int g = 0; g < ARM_GROUPS; g++) {
            int8x16_t w[2];
            arm_load_half_group(blk, g, h, fmt, w);
            ARM_UNROLL for (int rp = 0; rp < pairs; rp++) {
                const int8x16_t a = vcombine_s8(vld1_s8(x[2 * rp][b].q + ARM_GROUP_K * g),
                                                vld1_s8(x[2 * rp + 1][b].q + ARM_GROUP_K * g));
                mm[rp][0] = vmmlaq_s32(mm[rp][0], a, w[0]);
                mm[rp][1] = vmmlaq_s32(mm[rp][1], a, w[1]);
            }
        }
        const float32x4_t dw = arm_load_half_scales(blk, h), mw = arm_load_half_mins(blk, h, fmt);
        ARM_UNROLL for (int rp = 0; rp < pairs; rp++) {
            /* 64-bit zips regroup the two 2×2 results into rows: [ra·c0 … ra·c3], [rb·c0 … rb·c3] */
            const int64x2_t m0 = vreinterpretq_s64_s32(mm[rp][0]), m1 = vreinterpretq_s64_s32(mm[rp][1]);
            const int ra = 2 * rp, rb = 2 * rp + 1;
            const int32x4_t sa = vreinterpretq_s32_s64(vzip1q_s64(m0, m1));
            const int32x4_t sb = vreinterpretq_s32_s64(vzip2q_s64(m0, m1));
            acc[ra] = arm_accumulate_block(acc[ra], sa, &x[ra][b], dw, mw, fmt);
            if (rb < ROWS) acc[rb] = arm_accumulate_block(acc[rb], sb, &x[rb][b], dw, mw, fmt);
        }
    }
    ARM_UNROLL for (int r = 0; r < ROWS; r++) arm_store_half(t, r, h, acc[r]);
}

CQ_TARGET_I8MM ARM_INLINE void tile_q_i8mm(const cq_tile *t, const int ROWS, const arm_qfmt fmt) {
    half_q_i8mm(t, ROWS, fmt, 0);
    if (t->cols > 4) half_q_i8mm(t, ROWS, fmt, 1);
}

CQ_TARGET_I8MM void cq_tile_q8_0_i8mm(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_i8mm, t, ARM_Q8_0); }
CQ_TARGET_I8MM void cq_tile_q4_0_i8mm(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_i8mm, t, ARM_Q4_0); }
CQ_TARGET_I8MM void cq_tile_q4_1_i8mm(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_i8mm, t, ARM_Q4_1); }
CQ_TARGET_I8MM void cq_tile_q5_0_i8mm(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_i8mm, t, ARM_Q5_0); }
CQ_TARGET_I8MM void cq_tile_q5_1_i8mm(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_i8mm, t, ARM_Q5_1); }

#endif /* CQ_ARCH_ARM */
