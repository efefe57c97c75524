/*
 * gemm_dotprod.c — quantized tiles with SDOT (Armv8.2 dotprod: Cortex-A76 / Raspberry Pi 5, Neoverse-N1).
 *
 * Compiled into a baseline armv8-a program: only these functions carry the dotprod target, and the driver
 * calls them only when cq_cpu_has_dotprod() said so. Activation quantization and the float tiles are the
 * NEON ones (gemm_neon.c). Structure as there (neon_common.h): two half-panel sweeps over K. SDOT of a
 * column pair against the row's duplicated group gives [c0 k0-3, c0 k4-7, c1 k0-3, c1 k4-7]; a pairwise add
 * at the end of the block finishes the columns.
 */
#include "../../internal.h"

#if CQ_ARCH_ARM

#include "neon_common.h"

/* Columns 4h … 4h+3 of ROWS rows over the whole K. */
CQ_TARGET_DOTPROD ARM_INLINE void half_q_dotprod(const cq_tile *t, const int ROWS, const arm_qfmt fmt, const int h) {
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
                pair[r][0] = vdotq_s32(pair[r][0], w[0], xg);
                pair[r][1] = vdotq_s32(pair[r][1], w[1], xg);
            }
        }
        const float32x4_t dw = arm_load_half_scales(blk, h), mw = arm_load_half_mins(blk, h, fmt);
        /* a pairwise add finishes the four columns */
        ARM_UNROLL for (int r = 0; r < ROWS; r++)
            acc[r] = arm_accumulate_block(acc[r], vpaddq_s32(pair[r][0], pair[r][1]), &x[r][b], dw, mw, fmt);
    }
    ARM_UNROLL for (int r = 0; r < ROWS; r++) arm_store_half(t, r, h, acc[r]);
}

CQ_TARGET_DOTPROD ARM_INLINE void tile_q_dotprod(const cq_tile *t, const int ROWS, const arm_qfmt fmt) {
    half_q_dotprod(t, ROWS, fmt, 0);
    if (t->cols > 4) half_q_dotprod(t, ROWS, fmt, 1);
}

CQ_TARGET_DOTPROD void cq_tile_q8_0_dotprod(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_dotprod, t, ARM_Q8_0); }
CQ_TARGET_DOTPROD void cq_tile_q4_0_dotprod(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_dotprod, t, ARM_Q4_0); }
CQ_TARGET_DOTPROD void cq_tile_q4_1_dotprod(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_dotprod, t, ARM_Q4_1); }
CQ_TARGET_DOTPROD void cq_tile_q5_0_dotprod(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_dotprod, t, ARM_Q5_0); }
CQ_TARGET_DOTPROD void cq_tile_q5_1_dotprod(const cq_tile *t) { ARM_DISPATCH_ROWS(tile_q_dotprod, t, ARM_Q5_1); }

#endif /* CQ_ARCH_ARM */
