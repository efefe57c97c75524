/*
 * gemm_kquant_neon.c — baseline Armv8-A K-quant tiles (no SDOT: smull/sadalp) and the 256-value activation
 * quantizer for every AArch64 level. The tiles themselves are kquant_tile.h's; this file gives them their dot step.
 */
#include "../../internal.h"

#if CQ_ARCH_ARM

#include "neon_common.h"
#include "kquant_common.h"

/* As cq_quantize_x_neon (gemm_neon.c), over 256 values: FMAXNM ignores NaN like fmaxf, FCVTNS rounds half to even,
 * gives 0 for NaN and saturates ±inf, the clamp gives the reference's ±127. */
void cq_quantize_xk_neon(const float *x, int64_t k, cq_block_q8k *out) {
    for (int64_t b = 0; b < k / CQ_KBLOCK; b++, x += CQ_KBLOCK, out++) {
        float32x4_t vmax = vdupq_n_f32(0.0f);
        for (int i = 0; i < CQ_KBLOCK / 4; i++) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(x + 4 * i)));
        float d = vmaxnmvq_f32(vmax) / 127.0f;
        if (d < CQ_MIN_ACT_SCALE) d = 0.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const int32x4_t lim = vdupq_n_s32(127), nlim = vdupq_n_s32(-127);
        for (int i = 0; i < CQ_KBLOCK / 16; i++) {
            int32x4_t q[4];
            for (int v = 0; v < 4; v++)
                q[v] = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 16 * i + 4 * v), id)), lim), nlim);
            const int16x8_t a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            const int16x8_t c = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            vst1q_s8(out->q + 16 * i, vcombine_s8(vmovn_s16(a), vmovn_s16(c)));
            out->bsum16[i] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
        }
        for (int j = 0; j < CQ_KBLOCK / 32; j++) out->bsum32[j] = (int16_t)(out->bsum16[2 * j] + out->bsum16[2 * j + 1]);
        out->d = d;
        for (int i = 0; i < (int)sizeof out->reserved; i++) out->reserved[i] = 0;
    }
}

/* acc += one column pair against 8 activation bytes duplicated in xx, lanes as SDOT's (gemm_neon.c's dot_pair). */
ARM_INLINE int32x4_t kq_dot_pair(int32x4_t acc, int8x16_t w, int8x16_t xx) {
    const int16x8_t c0 = vmull_s8(vget_low_s8(w), vget_low_s8(xx));
    const int16x8_t c1 = vmull_high_s8(w, xx);
    return vpadalq_s16(acc, vpaddq_s16(c0, c1));
}

ARM_INLINE void kq_dots(int32x4_t dot[CQ_TILE_ROWS], int8x16_t w[KQ_MAX_GROUPS][2], const int groups,
                        const cq_block_q8k *x[CQ_TILE_ROWS], int64_t b, int off, const int ROWS) {
    ARM_UNROLL for (int r = 0; r < ROWS; r++) {
        int32x4_t p0 = vdupq_n_s32(0), p1 = vdupq_n_s32(0);
        ARM_UNROLL for (int g = 0; g < groups; g++) {
            const int8x16_t xg = arm_dup_group(x[r][b].q + off + ARM_GROUP_K * g);
            p0 = kq_dot_pair(p0, w[g][0], xg);
            p1 = kq_dot_pair(p1, w[g][1], xg);
        }
        dot[r] = vpaddq_s32(p0, p1);
    }
}

#define KQ_TARGET
#define KQ_FN(name) name##_neon
#include "kquant_tile.h"

#endif /* CQ_ARCH_ARM */
