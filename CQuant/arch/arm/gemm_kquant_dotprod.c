/*
 * gemm_kquant_dotprod.c — K-quant tiles with SDOT (Armv8.2 dotprod), chosen at run time. kquant_tile.h's tiles with
 * SDOT as the dot step: a column pair against the row's duplicated group, a pairwise add per sub-block.
 */
#include "../../internal.h"

#if CQ_ARCH_ARM

#include "neon_common.h"
#include "kquant_common.h"

CQ_TARGET_DOTPROD ARM_INLINE void kq_dots(int32x4_t dot[CQ_TILE_ROWS], int8x16_t w[KQ_MAX_GROUPS][2],
                                          const int groups, const cq_block_q8k *x[CQ_TILE_ROWS], int64_t b, int off,
                                          const int ROWS) {
    ARM_UNROLL for (int r = 0; r < ROWS; r++) {
        int32x4_t p0 = vdupq_n_s32(0), p1 = vdupq_n_s32(0);
        ARM_UNROLL for (int g = 0; g < groups; g++) {
            const int8x16_t xg = arm_dup_group(x[r][b].q + off + ARM_GROUP_K * g);
            p0 = vdotq_s32(p0, w[g][0], xg);
            p1 = vdotq_s32(p1, w[g][1], xg);
        }
        dot[r] = vpaddq_s32(p0, p1);
    }
}

#define KQ_TARGET CQ_TARGET_DOTPROD
#define KQ_FN(name) name##_dotprod
#include "kquant_tile.h"

#endif /* CQ_ARCH_ARM */
