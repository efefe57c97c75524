/*
 * pack.c — file-layout weight rows → column panels (layout documented in cquant.h), done once at load.
 *
 * Each packer takes `rows` (1…8) consecutive weight rows starting at `w`, `row_stride` bytes apart, and
 * writes one whole panel; missing rows (the last panel of an N that is not a multiple of 8) become zeros,
 * so micro-kernels never branch on them.
 */
#include "internal.h"

#include <string.h>

size_t cq_panel_bytes_q8_0(int64_t k) { return (size_t)(k / CQ_QBLOCK) * CQ_Q8_0_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_q4_0(int64_t k) { return (size_t)(k / CQ_QBLOCK) * CQ_Q4_0_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_f32(int64_t k) { return (size_t)k * CQ_PANEL_COLS * sizeof(float); }
size_t cq_panel_bytes_f16(int64_t k) { return (size_t)k * CQ_PANEL_COLS * sizeof(uint16_t); }

void cq_pack_panel_q8_0(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    const int64_t nb = k / CQ_QBLOCK;
    uint8_t *out = panel;
    memset(out, 0, cq_panel_bytes_q8_0(k));
    for (int64_t b = 0; b < nb; b++, out += CQ_Q8_0_PANEL_BLOCK_BYTES) {
        for (int c = 0; c < rows; c++) {
            const uint8_t *blk = (const uint8_t *)w + (size_t)c * row_stride + (size_t)b * 34;
            memcpy(out + 2 * c, blk, 2); /* fp16 scale */
            for (int g = 0; g < 4; g++) memcpy(out + 16 + 64 * g + 8 * c, blk + 2 + 8 * g, 8);
        }
    }
}

void cq_pack_panel_q4_0(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    const int64_t nb = k / CQ_QBLOCK;
    uint8_t *out = panel;
    for (int64_t b = 0; b < nb; b++, out += CQ_Q4_0_PANEL_BLOCK_BYTES) {
        uint8_t codes[CQ_PANEL_COLS][CQ_QBLOCK]; /* unsigned 4-bit codes; a missing row is all 8 (= zero) */
        memset(out, 0, 16);
        memset(codes, 8, sizeof codes);
        for (int c = 0; c < rows; c++) {
            const uint8_t *blk = (const uint8_t *)w + (size_t)c * row_stride + (size_t)b * 18;
            memcpy(out + 2 * c, blk, 2);
            for (int j = 0; j < 16; j++) {
                codes[c][j] = blk[2 + j] & 15;
                codes[c][j + 16] = blk[2 + j] >> 4;
            }
        }
        /* missing rows have scale 0, so their codes do not matter; 8 keeps them at value zero anyway */
        for (int g = 0; g < 4; g++)
            for (int c = 0; c < 4; c++)
                for (int j = 0; j < 8; j++)
                    out[16 + 32 * g + 8 * c + j] = (uint8_t)(codes[c][8 * g + j] | (codes[c + 4][8 * g + j] << 4));
    }
}

void cq_pack_panel_f32(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    float *out = panel;
    memset(out, 0, cq_panel_bytes_f32(k));
    for (int c = 0; c < rows; c++) {
        const float *row = (const float *)((const uint8_t *)w + (size_t)c * row_stride);
        for (int64_t i = 0; i < k; i++) out[i * CQ_PANEL_COLS + c] = row[i];
    }
}

void cq_pack_panel_f16(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    uint16_t *out = panel;
    memset(out, 0, cq_panel_bytes_f16(k));
    for (int c = 0; c < rows; c++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)c * row_stride;
        for (int64_t i = 0; i < k; i++) memcpy(&out[i * CQ_PANEL_COLS + c], row + 2 * i, 2);
    }
}

void cq_pack_panel_bf16(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    float *out = panel;
    memset(out, 0, cq_panel_bytes_f32(k));
    for (int c = 0; c < rows; c++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)c * row_stride;
        for (int64_t i = 0; i < k; i++) {
            uint16_t h;
            memcpy(&h, row + 2 * i, 2);
            out[i * CQ_PANEL_COLS + c] = cq_bf16_to_fp32(h);
        }
    }
}
