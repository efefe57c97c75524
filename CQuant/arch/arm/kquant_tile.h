/*
 * kquant_tile.h — the K-quant tiles (Q4_K, Q5_K, Q6_K) of one AArch64 level, included once by each of
 * gemm_kquant_neon.c, gemm_kquant_dotprod.c and gemm_kquant_i8mm.c after kquant_common.h and their definitions of
 *   KQ_TARGET        the level's function attribute (empty for baseline NEON)
 *   KQ_FN(name)      name with the level's suffix (cq_tile_q4_k → cq_tile_q4_k_neon …)
 *   kq_dots(dot, w, groups, x, b, off, ROWS)   each row's int32x4 of the 4 columns' dot products of one sub-block:
 *                    w[g][pair] the decoded groups, activations x[r][b].q[off …]
 * Private to CQuant/arch/arm.
 *
 * Numerics as arch/scalar/gemm_kquant_scalar.c, bit for bit. Structure as the 32-value tiles (neon_common.h): two
 * sweeps over K, one per half-panel of 4 columns. Per sub-block (Q4_K/Q5_K: 32 values = 4 groups of 8; Q6_K: 16
 * values = 2 groups) the codes are decoded into signed column pairs (Q4_K/Q5_K the unsigned code, which fits int8;
 * Q6_K code − 32), kq_dots gives each row's int32x4 of the 4 columns' dot products, and the scales enter as integers:
 * isum += dot·sc_j (vmla), for Q4_K/Q5_K msum += M_j·bsum32_j. After the super-block the two fp32 steps of the
 * reference: acc = fma(float(isum), dx·d, acc), acc = acc − float(msum)·(dx·dmin) fused (= fma(−float(msum), …)).
 */


/* Columns 4h … 4h+3 of ROWS rows over the whole K. */
KQ_TARGET ARM_INLINE void KQ_FN(kq_half)(const cq_tile *t, const int ROWS, const kq_fmt fmt, const int h) {
    const int64_t nb = t->k / CQ_KBLOCK;
    const size_t block_bytes = fmt == KQ_Q4_K ? CQ_Q4_K_PANEL_BLOCK_BYTES
                             : fmt == KQ_Q5_K ? CQ_Q5_K_PANEL_BLOCK_BYTES
                                              : CQ_Q6_K_PANEL_BLOCK_BYTES;
    const int subs = fmt == KQ_Q6_K ? 16 : 8, groups = fmt == KQ_Q6_K ? 2 : 4;
    const size_t subs_at = fmt == KQ_Q6_K ? CQ_Q6_K_SUBS_OFFSET : CQ_K_SUBS_OFFSET;
    const size_t sub_bytes = fmt == KQ_Q4_K ? CQ_Q4_K_SUB_BYTES : fmt == KQ_Q5_K ? CQ_Q5_K_SUB_BYTES : CQ_Q6_K_SUB_BYTES;
    const cq_block_q8k *x[CQ_TILE_ROWS];
    kq_rows(t, x);
    float32x4_t acc[CQ_TILE_ROWS];
    ARM_UNROLL for (int r = 0; r < ROWS; r++) acc[r] = vdupq_n_f32(0.0f);

    const uint8_t *blk = t->panel;
    for (int64_t b = 0; b < nb; b++, blk += block_bytes) {
        uint8_t S[64], M[64];
        if (fmt != KQ_Q6_K) kq_unpack_scales(blk, S, M);
        int32x4_t isum[CQ_TILE_ROWS], msum[CQ_TILE_ROWS];
        ARM_UNROLL for (int r = 0; r < ROWS; r++) isum[r] = msum[r] = vdupq_n_s32(0);
        for (int j = 0; j < subs; j++) {
            const uint8_t *sub = blk + subs_at + (size_t)j * sub_bytes;
            int8x16_t w[KQ_MAX_GROUPS][2];
            ARM_UNROLL for (int g = 0; g < groups; g++) kq_load_group(sub, g, h, fmt, w[g]);
            int32x4_t dot[CQ_TILE_ROWS];
            kq_dots(dot, w, groups, x, b, (fmt == KQ_Q6_K ? 16 : 32) * j, ROWS);
            const int32x4_t sc = fmt == KQ_Q6_K ? kq_widen_s8((const int8_t *)blk + CQ_Q6_K_SCALES_OFFSET + 8 * j, h)
                                                : kq_widen_u8(S + 8 * j, h);
            ARM_UNROLL for (int r = 0; r < ROWS; r++) isum[r] = vmlaq_s32(isum[r], dot[r], sc);
            if (fmt != KQ_Q6_K) {
                const int32x4_t mn = kq_widen_u8(M + 8 * j, h);
                ARM_UNROLL for (int r = 0; r < ROWS; r++) msum[r] = vmlaq_n_s32(msum[r], mn, x[r][b].bsum32[j]);
            }
        }
        const float32x4_t dw = arm_load_half_scales(blk, h);
        ARM_UNROLL for (int r = 0; r < ROWS; r++) {
            acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(isum[r]), vmulq_n_f32(dw, x[r][b].d));
            if (fmt != KQ_Q6_K) {
                const float32x4_t mw = arm_load_half_scales(blk + CQ_K_DMIN_OFFSET, h);
                acc[r] = vfmsq_f32(acc[r], vcvtq_f32_s32(msum[r]), vmulq_n_f32(mw, x[r][b].d));
            }
        }
    }
    ARM_UNROLL for (int r = 0; r < ROWS; r++) arm_store_half(t, r, h, acc[r]);
}

KQ_TARGET ARM_INLINE void KQ_FN(kq_tile)(const cq_tile *t, const int ROWS, const kq_fmt fmt) {
    KQ_FN(kq_half)(t, ROWS, fmt, 0);
    if (t->cols > 4) KQ_FN(kq_half)(t, ROWS, fmt, 1);
}

KQ_TARGET void KQ_FN(cq_tile_q4_k)(const cq_tile *t) { ARM_DISPATCH_ROWS(KQ_FN(kq_tile), t, KQ_Q4_K); }
KQ_TARGET void KQ_FN(cq_tile_q5_k)(const cq_tile *t) { ARM_DISPATCH_ROWS(KQ_FN(kq_tile), t, KQ_Q5_K); }
KQ_TARGET void KQ_FN(cq_tile_q6_k)(const cq_tile *t) { ARM_DISPATCH_ROWS(KQ_FN(kq_tile), t, KQ_Q6_K); }
