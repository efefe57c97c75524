/*
 * kquant_common.h — K-quant pieces the three AArch64 levels share (baseline Advanced SIMD only, so they inline into
 * the dotprod and i8mm functions too): activation rows, scale unpacking, code decoding. Private to CQuant/arch/arm;
 * include after internal.h and neon_common.h. Layouts: cquant.h.
 */
#ifndef CQUANT_ARCH_ARM_KQUANT_COMMON_H
#define CQUANT_ARCH_ARM_KQUANT_COMMON_H

typedef enum { KQ_Q4_K, KQ_Q5_K, KQ_Q6_K } kq_fmt;

#define KQ_MAX_GROUPS 4 /* groups of 8 values per sub-block: 4 (Q4_K, Q5_K) or 2 (Q6_K) */

/* Activation rows of a tile; rows past t->rows repeat the last one (row pairs for i8mm; never stored). */
ARM_INLINE void kq_rows(const cq_tile *t, const cq_block_q8k *x[CQ_TILE_ROWS]) {
    const cq_block_q8k *base = t->x;
    for (int r = 0; r < CQ_TILE_ROWS; r++) x[r] = base + (int64_t)(r < t->rows ? r : t->rows - 1) * t->x_stride;
}

/* The 6-bit scales S[j][c] (byte 8j + c) and mins M of a Q4_K/Q5_K panel block, from its 96-byte area. */
ARM_INLINE void kq_unpack_scales(const uint8_t *blk, uint8_t S[64], uint8_t M[64]) {
    const uint8x16_t m15 = vdupq_n_u8(15), m3 = vdupq_n_u8(3);
    for (int q = 0; q < 32; q += 16) {
        const uint8x16_t sl = vld1q_u8(blk + CQ_K_SCALES_OFFSET + q);
        const uint8x16_t ml = vld1q_u8(blk + CQ_K_SCALES_OFFSET + 32 + q);
        const uint8x16_t hb = vld1q_u8(blk + CQ_K_SCALES_OFFSET + 64 + q);
        vst1q_u8(S + q, vorrq_u8(vandq_u8(sl, m15), vshlq_n_u8(vandq_u8(hb, m3), 4)));
        vst1q_u8(S + 32 + q, vorrq_u8(vshrq_n_u8(sl, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m3), 4)));
        vst1q_u8(M + q, vorrq_u8(vandq_u8(ml, m15), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m3), 4)));
        vst1q_u8(M + 32 + q, vorrq_u8(vshrq_n_u8(ml, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4)));
    }
}

/* Bytes 4h … 4h+3 of 8 unsigned / signed per-column bytes, as int32x4. */
ARM_INLINE int32x4_t kq_widen_u8(const uint8_t *p, int h) {
    const uint16x8_t w = vmovl_u8(vld1_u8(p));
    return vreinterpretq_s32_u32(vmovl_u16(h ? vget_high_u16(w) : vget_low_u16(w)));
}
ARM_INLINE int32x4_t kq_widen_s8(const int8_t *p, int h) {
    const int16x8_t w = vmovl_s8(vld1_s8(p));
    return vmovl_s16(h ? vget_high_s16(w) : vget_low_s16(w));
}

/* Group g of sub-block `sub`, columns 4h … 4h+3, as two signed column pairs (bytes 0-7 column c, 8-15 column c+1,
 * k in order), the weight's integer up to its scale: Q4_K/Q5_K the code, Q6_K code − 32. */
ARM_INLINE void kq_load_group(const uint8_t *sub, int g, int h, kq_fmt fmt, int8x16_t w[2]) {
    const uint8_t *q = sub + (fmt == KQ_Q5_K ? 32 : 0) + 32 * g;
    const uint8x16_t a = vld1q_u8(q), b = vld1q_u8(q + 16);
    uint8x16_t ca = h == 0 ? vandq_u8(a, vdupq_n_u8(0x0f)) : vshrq_n_u8(a, 4);
    uint8x16_t cb = h == 0 ? vandq_u8(b, vdupq_n_u8(0x0f)) : vshrq_n_u8(b, 4);
    if (fmt == KQ_Q5_K) {
        const uint8x8_t qh = vld1_u8(sub + 8 * g);
        const uint8x16_t word = vcombine_u8(qh, qh);
        const uint8x16_t ha = arm_high_bits(word, 4 * h), hb = arm_high_bits(vshrq_n_u8(word, 2), 4 * h);
        ca = vorrq_u8(ca, vandq_u8(ha, vdupq_n_u8(0x10)));
        cb = vorrq_u8(cb, vandq_u8(hb, vdupq_n_u8(0x10)));
    } else if (fmt == KQ_Q6_K) {
        /* the top 2 bits of (row cc or cc+4 = half h, group g) sit at bit 2h + 4g of the byte at the same place */
        const int8x16_t down = vdupq_n_s8((int8_t)-(2 * h + 4 * g));
        const uint8x16_t three = vdupq_n_u8(3);
        const uint8x16_t ta = vandq_u8(vshlq_u8(vld1q_u8(sub + 64), down), three);
        const uint8x16_t tb = vandq_u8(vshlq_u8(vld1q_u8(sub + 80), down), three);
        ca = vsubq_u8(vorrq_u8(ca, vshlq_n_u8(ta, 4)), vdupq_n_u8(32));
        cb = vsubq_u8(vorrq_u8(cb, vshlq_n_u8(tb, 4)), vdupq_n_u8(32));
    }
    w[0] = vreinterpretq_s8_u8(ca);
    w[1] = vreinterpretq_s8_u8(cb);
}


#endif /* CQUANT_ARCH_ARM_KQUANT_COMMON_H */
