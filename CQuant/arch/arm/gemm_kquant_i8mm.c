/*
 * gemm_kquant_i8mm.c — K-quant tiles with SMMLA (i8mm), chosen at run time. kquant_tile.h's tiles with SMMLA as the
 * dot step: two activation rows × 8 values against a column pair per instruction (gemm_i8mm.c), an odd last row
 * paired with itself (its twin's results are never stored).
 */
#include "../../internal.h"

#if CQ_ARCH_ARM

#include "neon_common.h"
#include "kquant_common.h"

CQ_TARGET_I8MM ARM_INLINE void kq_dots(int32x4_t dot[CQ_TILE_ROWS], int8x16_t w[KQ_MAX_GROUPS][2], const int groups,
                                       const cq_block_q8k *x[CQ_TILE_ROWS], int64_t b, int off, const int ROWS) {
    ARM_UNROLL for (int rp = 0; rp < (ROWS + 1) / 2; rp++) {
        int32x4_t m0 = vdupq_n_s32(0), m1 = vdupq_n_s32(0); /* [ra·c, ra·c', rb·c, rb·c'] per column pair */
        ARM_UNROLL for (int g = 0; g < groups; g++) {
            const int8x16_t a = vcombine_s8(vld1_s8(x[2 * rp][b].q + off + ARM_GROUP_K * g),
                                            vld1_s8(x[2 * rp + 1][b].q + off + ARM_GROUP_K * g));
            m0 = vmmlaq_s32(m0, a, w[g][0]);
            m1 = vmmlaq_s32(m1, a, w[g][1]);
        }
        const int64x2_t z0 = vreinterpretq_s64_s32(m0), z1 = vreinterpretq_s64_s32(m1);
        dot[2 * rp] = vreinterpretq_s32_s64(vzip1q_s64(z0, z1));
        if (2 * rp + 1 < ROWS) dot[2 * rp + 1] = vreinterpretq_s32_s64(vzip2q_s64(z0, z1));
    }
}

#define KQ_TARGET CQ_TARGET_I8MM
#define KQ_FN(name) name##_i8mm
#include "kquant_tile.h"

#endif /* CQ_ARCH_ARM */
