/*
 * gemm_scalar.c — the reference micro-kernels: plain C that every SIMD kernel is tested against.
 *
 * These define the numerics exactly:
 *   activations: d = max|x|/127 (0 when below CQ_MIN_ACT_SCALE), id = 1/d (0 when d = 0),
 *                q = round-half-even(x·id), sum = Σq
 *   quantized:   per k-block b, in order, and per column: the exact integer isum_b = Σ_j qx_j·c_j, with c the
 *                weight's integer code up to its scale — Q8_0 q; Q4_0 code − 8 and Q5_0 code5 − 16 (computed as
 *                Σ qx·code − offset·Σqx); Q4_1 and Q5_1 the unsigned code (0…15, 0…31) — then
 *                  acc ← fma(float(isum_b), dx_b·dw_b, acc)
 *                and, for the types with a min (Q4_1, Q5_1: value = d·code + m), right after it in the same block
 *                  acc ← fma(float(Σqx_b), dx_b·mw_b, acc)
 *                (Σ_j (d·code_j + m)·dx·qx_j = dx·d·isum + dx·m·Σqx); after the last block, + bias
 *   float:       acc ← fma(x[k], w[k], acc) for k in order, then + bias
 * A SIMD kernel that follows the same order (vectorising across columns) reproduces them bit for bit.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* gcc: -std=c11 already means -ffp-contract=off; the build scripts say it too */
#endif

#include "../../internal.h"

#include <math.h>

void cq_quantize_x_scalar(const float *x, int64_t k, cq_block_q8x *out) {
    for (int64_t b = 0; b < k / CQ_QBLOCK; b++, x += CQ_QBLOCK, out++) {
        float amax = 0.0f;
        for (int j = 0; j < CQ_QBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        if (d < CQ_MIN_ACT_SCALE) d = 0.0f; /* 1/d would overflow; such a block contributes nothing */
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < CQ_QBLOCK; j++) {
            const float v = nearbyintf(x[j] * id);
            /* |v| ≤ 127 for finite input; NaN/inf inputs are clamped instead of being undefined behaviour */
            const int8_t q = v >= 127.0f ? 127 : (v <= -127.0f ? -127 : (v == v ? (int8_t)v : 0));
            out->q[j] = q;
            sum += q;
        }
        out->d = d;
        out->sum = sum;
    }
}

static inline void store_row(const cq_tile *t, int r, const float *acc) {
    float *y = t->y + (int64_t)r * t->ldy;
    for (int c = 0; c < t->cols; c++) y[c] = t->bias ? acc[c] + t->bias[c] : acc[c];
}

void cq_tile_q8_0_scalar(const cq_tile *t) {
    const int64_t nb = t->k / CQ_QBLOCK;
    for (int r = 0; r < t->rows; r++) {
        const cq_block_q8x *x = (const cq_block_q8x *)t->x + (int64_t)r * t->x_stride;
        float acc[CQ_PANEL_COLS] = {0};
        const uint8_t *blk = t->panel;
        for (int64_t b = 0; b < nb; b++, blk += CQ_Q8_0_PANEL_BLOCK_BYTES) {
            const int8_t *q = (const int8_t *)(blk + 16);
            for (int c = 0; c < CQ_PANEL_COLS; c++) {
                int32_t isum = 0;
                for (int g = 0; g < 4; g++)
                    for (int j = 0; j < 8; j++) isum += (int32_t)q[64 * g + 8 * c + j] * x[b].q[8 * g + j];
                acc[c] = fmaf((float)isum, x[b].d * cq_h2f(blk + 2 * c), acc[c]);
            }
        }
        store_row(t, r, acc);
    }
}

/* The 4- and 5-bit types share one panel shape (cquant.h): fp16 d[8] at 0, fp16 m[8] at `min_off`, the 5-bit
 * types' top bits hi[4][8] at `qh_off`, codes q[4][4][8] at `codes_off` (offset 0: the type has no such part).
 * `offset` is what the unsigned code is shifted by (value = d·(code − offset) [+ m]). */
static inline void tile_nibbles_scalar(const cq_tile *t, size_t block_bytes, size_t min_off, size_t qh_off,
                                       size_t codes_off, int offset) {
    const int64_t nb = t->k / CQ_QBLOCK;
    for (int r = 0; r < t->rows; r++) {
        const cq_block_q8x *x = (const cq_block_q8x *)t->x + (int64_t)r * t->x_stride;
        float acc[CQ_PANEL_COLS] = {0};
        const uint8_t *blk = t->panel;
        for (int64_t b = 0; b < nb; b++, blk += block_bytes) {
            const uint8_t *q = blk + codes_off;
            for (int c = 0; c < CQ_PANEL_COLS; c++) {
                const int shift = c < 4 ? 0 : 4;
                const int cc = c & 3;
                int32_t isum = 0; /* Σ qx·code, then − offset·Σqx gives Σ qx·(code − offset) */
                for (int g = 0; g < 4; g++)
                    for (int j = 0; j < 8; j++) {
                        const int32_t byte = q[32 * g + 8 * cc + j];
                        int32_t code = (byte >> shift) & 15;
                        if (qh_off) /* 5 bits: column cc in bits 0-4; column cc+4: bits 5-7, then 2 bits of hi */
                            code = c < 4 ? byte & 31 : (byte >> 5) | ((blk[qh_off + 8 * cc + j] >> (2 * g)) & 3) << 3;
                        isum += code * x[b].q[8 * g + j];
                    }
                isum -= offset * x[b].sum;
                acc[c] = fmaf((float)isum, x[b].d * cq_h2f(blk + 2 * c), acc[c]);
                if (min_off) acc[c] = fmaf((float)x[b].sum, x[b].d * cq_h2f(blk + min_off + 2 * c), acc[c]);
            }
        }
        store_row(t, r, acc);
    }
}

void cq_tile_q4_0_scalar(const cq_tile *t) {
    tile_nibbles_scalar(t, CQ_Q4_0_PANEL_BLOCK_BYTES, 0, 0, CQ_Q4_0_CODES_OFFSET, 8);
}
void cq_tile_q4_1_scalar(const cq_tile *t) {
    tile_nibbles_scalar(t, CQ_Q4_1_PANEL_BLOCK_BYTES, CQ_PANEL_MIN_OFFSET, 0, CQ_Q4_1_CODES_OFFSET, 0);
}
void cq_tile_q5_0_scalar(const cq_tile *t) {
    tile_nibbles_scalar(t, CQ_Q5_0_PANEL_BLOCK_BYTES, 0, CQ_Q5_0_QH_OFFSET, CQ_Q5_0_CODES_OFFSET, 16);
}
void cq_tile_q5_1_scalar(const cq_tile *t) {
    tile_nibbles_scalar(t, CQ_Q5_1_PANEL_BLOCK_BYTES, CQ_PANEL_MIN_OFFSET, CQ_Q5_1_QH_OFFSET, CQ_Q5_1_CODES_OFFSET, 0);
}

void cq_tile_f32_scalar(const cq_tile *t) {
    const float *w = t->panel;
    for (int r = 0; r < t->rows; r++) {
        const float *x = (const float *)t->x + (int64_t)r * t->x_stride;
        float acc[CQ_PANEL_COLS] = {0};
        for (int64_t i = 0; i < t->k; i++)
            for (int c = 0; c < CQ_PANEL_COLS; c++) acc[c] = fmaf(x[i], w[i * CQ_PANEL_COLS + c], acc[c]);
        store_row(t, r, acc);
    }
}

void cq_tile_f16_scalar(const cq_tile *t) {
    const uint16_t *w = t->panel;
    for (int r = 0; r < t->rows; r++) {
        const float *x = (const float *)t->x + (int64_t)r * t->x_stride;
        float acc[CQ_PANEL_COLS] = {0};
        for (int64_t i = 0; i < t->k; i++)
            for (int c = 0; c < CQ_PANEL_COLS; c++)
                acc[c] = fmaf(x[i], cq_fp16_to_fp32(w[i * CQ_PANEL_COLS + c]), acc[c]);
        store_row(t, r, acc);
    }
}
