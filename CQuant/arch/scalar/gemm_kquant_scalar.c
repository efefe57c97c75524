/*
 * gemm_kquant_scalar.c — the reference micro-kernels of the K-quants (Q4_K, Q5_K, Q6_K) and their activation
 * quantizer: plain C that every SIMD kernel is tested against.
 *
 * These define the numerics exactly (cquant.h, cq_gemm):
 *   activations: per 256 values d = max|x|/127 (0 when below CQ_MIN_ACT_SCALE), id = 1/d (0 when d = 0),
 *                q = round-half-even(x·id) clamped to ±127, bsum16/bsum32 the sums of each 16 / 32 codes
 *   per super-block s, in order, and per column: the exact integers
 *                Q4_K/Q5_K  isum = Σ_j S_j · Σ_l qx_l·code_l (j: sub-block of 32, code unsigned), msum = Σ_j M_j·bsum32_j
 *                Q6_K       isum = Σ_i sc_i · Σ_l qx_l·(code_l − 32) (i: sub-block of 16)
 *                then acc ← fma(float(isum), dx·d, acc) and, for Q4_K/Q5_K, acc ← fma(−float(msum), dx·dmin, acc)
 *                (value = d·S·code − dmin·M, so Σ value·dx·qx = dx·d·isum − dx·dmin·msum); after the last, + bias.
 * Integer sums cannot overflow: |isum| ≤ 8·63·32·31·127 (Q5_K) or 16·128·16·32·127 (Q6_K), both < 2^31.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* gcc: -std=c11 already means -ffp-contract=off; the build scripts say it too */
#endif

#include "../../internal.h"

#include <math.h>

void cq_quantize_xk_scalar(const float *x, int64_t k, cq_block_q8k *out) {
    for (int64_t b = 0; b < k / CQ_KBLOCK; b++, x += CQ_KBLOCK, out++) {
        float amax = 0.0f;
        for (int j = 0; j < CQ_KBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        if (d < CQ_MIN_ACT_SCALE) d = 0.0f; /* 1/d would overflow; such a block contributes nothing */
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int i = 0; i < CQ_KBLOCK / 16; i++) {
            int32_t sum = 0;
            for (int j = 16 * i; j < 16 * i + 16; j++) {
                const float v = nearbyintf(x[j] * id);
                /* |v| ≤ 127 for finite input; NaN/inf inputs are clamped instead of being undefined behaviour */
                const int8_t q = v >= 127.0f ? 127 : (v <= -127.0f ? -127 : (v == v ? (int8_t)v : 0));
                out->q[j] = q;
                sum += q;
            }
            out->bsum16[i] = (int16_t)sum;
        }
        for (int j = 0; j < CQ_KBLOCK / 32; j++) out->bsum32[j] = (int16_t)(out->bsum16[2 * j] + out->bsum16[2 * j + 1]);
        out->d = d;
        for (int i = 0; i < (int)sizeof out->reserved; i++) out->reserved[i] = 0;
    }
}

static inline void store_row(const cq_tile *t, int r, const float *acc) {
    float *y = t->y + (int64_t)r * t->ldy;
    for (int c = 0; c < t->cols; c++) y[c] = t->bias ? acc[c] + t->bias[c] : acc[c];
}

/* The 6-bit scales S[j][c] and mins M[j][c] of one Q4_K/Q5_K panel block (the 96-byte area, cquant.h). */
static void k_scales(const uint8_t *blk, uint8_t S[8][CQ_PANEL_COLS], uint8_t M[8][CQ_PANEL_COLS]) {
    const uint8_t *sl = blk + CQ_K_SCALES_OFFSET, *ml = sl + 32, *hb = sl + 64;
    for (int j = 0; j < 4; j++)
        for (int c = 0; c < CQ_PANEL_COLS; c++) {
            const int i = 8 * j + c;
            S[j][c] = (uint8_t)((sl[i] & 15) | (hb[i] & 3) << 4);
            S[j + 4][c] = (uint8_t)((sl[i] >> 4) | ((hb[i] >> 2) & 3) << 4);
            M[j][c] = (uint8_t)((ml[i] & 15) | ((hb[i] >> 4) & 3) << 4);
            M[j + 4][c] = (uint8_t)((ml[i] >> 4) | ((hb[i] >> 6) & 3) << 4);
        }
}

static inline void tile_k_affine_scalar(const cq_tile *t, int five) {
    const int64_t nb = t->k / CQ_KBLOCK;
    const size_t block_bytes = five ? CQ_Q5_K_PANEL_BLOCK_BYTES : CQ_Q4_K_PANEL_BLOCK_BYTES;
    const size_t sub_bytes = five ? CQ_Q5_K_SUB_BYTES : CQ_Q4_K_SUB_BYTES, codes_at = five ? 32 : 0;
    for (int r = 0; r < t->rows; r++) {
        const cq_block_q8k *x = (const cq_block_q8k *)t->x + (int64_t)r * t->x_stride;
        float acc[CQ_PANEL_COLS] = {0};
        const uint8_t *blk = t->panel;
        for (int64_t b = 0; b < nb; b++, blk += block_bytes) {
            uint8_t S[8][CQ_PANEL_COLS], M[8][CQ_PANEL_COLS];
            k_scales(blk, S, M);
            for (int c = 0; c < CQ_PANEL_COLS; c++) {
                const int shift = c < 4 ? 0 : 4, cc = c & 3;
                int32_t isum = 0, msum = 0;
                for (int j = 0; j < 8; j++) {
                    const uint8_t *sub = blk + CQ_K_SUBS_OFFSET + (size_t)j * sub_bytes;
                    int32_t dot = 0;
                    for (int g = 0; g < 4; g++)
                        for (int jj = 0; jj < 8; jj++) {
                            int32_t code = (sub[codes_at + 32 * g + 8 * cc + jj] >> shift) & 15;
                            if (five) code |= ((sub[8 * g + jj] >> c) & 1) << 4;
                            dot += code * x[b].q[32 * j + 8 * g + jj];
                        }
                    isum += S[j][c] * dot;
                    msum += M[j][c] * x[b].bsum32[j];
                }
                acc[c] = fmaf((float)isum, x[b].d * cq_h2f(blk + 2 * c), acc[c]);
                acc[c] = fmaf(-(float)msum, x[b].d * cq_h2f(blk + CQ_K_DMIN_OFFSET + 2 * c), acc[c]);
            }
        }
        store_row(t, r, acc);
    }
}

void cq_tile_q4_k_scalar(const cq_tile *t) { tile_k_affine_scalar(t, 0); }
void cq_tile_q5_k_scalar(const cq_tile *t) { tile_k_affine_scalar(t, 1); }

void cq_tile_q6_k_scalar(const cq_tile *t) {
    const int64_t nb = t->k / CQ_KBLOCK;
    for (int r = 0; r < t->rows; r++) {
        const cq_block_q8k *x = (const cq_block_q8k *)t->x + (int64_t)r * t->x_stride;
        float acc[CQ_PANEL_COLS] = {0};
        const uint8_t *blk = t->panel;
        for (int64_t b = 0; b < nb; b++, blk += CQ_Q6_K_PANEL_BLOCK_BYTES) {
            const int8_t *sc = (const int8_t *)(blk + CQ_Q6_K_SCALES_OFFSET);
            for (int c = 0; c < CQ_PANEL_COLS; c++) {
                const int shift = c < 4 ? 0 : 4, cc = c & 3;
                int32_t isum = 0;
                for (int i = 0; i < 16; i++) {
                    const uint8_t *sub = blk + CQ_Q6_K_SUBS_OFFSET + (size_t)i * CQ_Q6_K_SUB_BYTES;
                    int32_t dot = 0;
                    for (int g = 0; g < 2; g++)
                        for (int jj = 0; jj < 8; jj++) {
                            const int low = (sub[32 * g + 8 * cc + jj] >> shift) & 15;
                            const int top = (sub[64 + 8 * cc + jj] >> (4 * g + (c < 4 ? 0 : 2))) & 3;
                            dot += ((low | top << 4) - 32) * x[b].q[16 * i + 8 * g + jj];
                        }
                    isum += sc[8 * i + c] * dot;
                }
                acc[c] = fmaf((float)isum, x[b].d * cq_h2f(blk + 2 * c), acc[c]);
            }
        }
        store_row(t, r, acc);
    }
}
