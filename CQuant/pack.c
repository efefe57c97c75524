/*
 * pack.c — file-layout weight rows → column panels (layout documented in cquant.h), done once at load.
 *
 * Each packer takes `rows` (1…8) consecutive weight rows starting at `w`, `row_stride` bytes apart, and
 * writes one whole panel; missing rows (the last panel of an N that is not a multiple of 8) become zeros,
 * so micro-kernels never branch on them.
 */
#include "internal.h"

#include <string.h>

/* Panel blocks hold exactly the 8 rows' file blocks (no growth), and the parts of each follow one another. */
_Static_assert(CQ_Q8_0_PANEL_BLOCK_BYTES == 8 * 34 && CQ_Q4_0_PANEL_BLOCK_BYTES == 8 * 18, "Q8_0/Q4_0 panel size");
_Static_assert(CQ_Q4_1_PANEL_BLOCK_BYTES == 8 * 20 && CQ_Q5_0_PANEL_BLOCK_BYTES == 8 * 22 &&
                   CQ_Q5_1_PANEL_BLOCK_BYTES == 8 * 24,
               "Q4_1/Q5_0/Q5_1 panel size");
_Static_assert(CQ_Q4_0_CODES_OFFSET + 128 == CQ_Q4_0_PANEL_BLOCK_BYTES &&
                   CQ_Q4_1_CODES_OFFSET == CQ_PANEL_MIN_OFFSET + 16 &&
                   CQ_Q4_1_CODES_OFFSET + 128 == CQ_Q4_1_PANEL_BLOCK_BYTES,
               "Q4 panel parts");
_Static_assert(CQ_Q5_0_CODES_OFFSET == CQ_Q5_0_QH_OFFSET + 32 &&
                   CQ_Q5_0_CODES_OFFSET + 128 == CQ_Q5_0_PANEL_BLOCK_BYTES &&
                   CQ_Q5_1_QH_OFFSET == CQ_PANEL_MIN_OFFSET + 16 && CQ_Q5_1_CODES_OFFSET == CQ_Q5_1_QH_OFFSET + 32 &&
                   CQ_Q5_1_CODES_OFFSET + 128 == CQ_Q5_1_PANEL_BLOCK_BYTES,
               "Q5 panel parts");

size_t cq_panel_bytes_q8_0(int64_t k) { return (size_t)(k / CQ_QBLOCK) * CQ_Q8_0_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_q4_0(int64_t k) { return (size_t)(k / CQ_QBLOCK) * CQ_Q4_0_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_q4_1(int64_t k) { return (size_t)(k / CQ_QBLOCK) * CQ_Q4_1_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_q5_0(int64_t k) { return (size_t)(k / CQ_QBLOCK) * CQ_Q5_0_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_q5_1(int64_t k) { return (size_t)(k / CQ_QBLOCK) * CQ_Q5_1_PANEL_BLOCK_BYTES; }
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

/* vnni: per block fp16 d[8], then u[j][c][i] = q[c][4j + i] + 128 (xor 0x80): a register of 8 columns × 4
 * values is one vpdpbusd operand. Missing rows: d = 0 and u = 128 (code 0). */
void cq_pack_panel_q8_0_u8(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    const int64_t nb = k / CQ_QBLOCK;
    uint8_t *out = panel;
    for (int64_t b = 0; b < nb; b++, out += CQ_Q8_0_PANEL_BLOCK_BYTES) {
        memset(out, 0, CQ_Q8_0_CODES_OFFSET);
        memset(out + CQ_Q8_0_CODES_OFFSET, 0x80, CQ_Q8_0_PANEL_BLOCK_BYTES - CQ_Q8_0_CODES_OFFSET);
        for (int c = 0; c < rows; c++) {
            const uint8_t *blk = (const uint8_t *)w + (size_t)c * row_stride + (size_t)b * 34;
            memcpy(out + 2 * c, blk, 2); /* fp16 scale */
            for (int j = 0; j < CQ_QBLOCK / 4; j++)
                for (int i = 0; i < 4; i++)
                    out[CQ_Q8_0_CODES_OFFSET + 32 * j + 4 * c + i] = (uint8_t)(blk[2 + 4 * j + i] ^ 0x80);
        }
    }
}

/* The nibble area shared by Q4_0, Q4_1, Q5_0 and Q5_1 panels: q[g][cc][j] holds the low 4 bits of column
 * cc's code in its low nibble and those of column cc+4 in its high nibble, k = 8g + j. */
static void pack_nibbles(const uint8_t codes[CQ_PANEL_COLS][CQ_QBLOCK], uint8_t *q) {
    for (int g = 0; g < 4; g++)
        for (int c = 0; c < 4; c++)
            for (int j = 0; j < 8; j++)
                q[32 * g + 8 * c + j] = (uint8_t)((codes[c][8 * g + j] & 15) | ((codes[c + 4][8 * g + j] & 15) << 4));
}

/* The 5th bits of Q5_K codes, transposed: bit c of qh[g][j] = bit 4 of column c's code at k = 8g + j. */
static void pack_high_bits(const uint8_t codes[CQ_PANEL_COLS][CQ_QBLOCK], uint8_t *qh) {
    for (int i = 0; i < CQ_QBLOCK; i++) { /* i = 8g + j */
        uint8_t bits = 0;
        for (int c = 0; c < CQ_PANEL_COLS; c++) bits |= (uint8_t)(((codes[c][i] >> 4) & 1) << c);
        qh[i] = bits;
    }
}

/* Q5_0/Q5_1 panel codes (cquant.h): q[g][cc][j] = column cc's 5-bit code in bits 0-4 and bits 0-2 of column
 * cc+4's code in bits 5-7; bits 2g and 2g+1 of hi[cc][j] = bits 3-4 of column cc+4's code; k = 8g + j. */
static void pack_codes5(const uint8_t codes[CQ_PANEL_COLS][CQ_QBLOCK], uint8_t *hi, uint8_t *q) {
    for (int cc = 0; cc < 4; cc++)
        for (int j = 0; j < 8; j++) {
            uint8_t e = 0;
            for (int g = 0; g < 4; g++) {
                const uint8_t a = codes[cc][8 * g + j], b = codes[cc + 4][8 * g + j];
                q[32 * g + 8 * cc + j] = (uint8_t)((a & 31) | ((b & 7) << 5));
                e |= (uint8_t)(((b >> 3) & 3) << (2 * g));
            }
            hi[8 * cc + j] = e;
        }
}

static inline uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* One file block's codes in k order: the 16 nibble bytes at `qs` (low nibbles are values 0…15, high nibbles
 * 16…31, as ggml), plus bit j of `qh` as the 5th bit of value j when qh is given. */
static void block_codes(const uint8_t *qs, const uint8_t *qh, uint8_t code[CQ_QBLOCK]) {
    const uint32_t h = qh ? load_u32(qh) : 0;
    for (int j = 0; j < 16; j++) {
        code[j] = (uint8_t)((qs[j] & 15) | (((h >> j) & 1u) << 4));
        code[j + 16] = (uint8_t)((qs[j] >> 4) | (((h >> (j + 16)) & 1u) << 4));
    }
}

/* The four nibble types, from the file block (fp16 d, [fp16 m], [uint32 qh], uint8 qs[16]) to the panel block
 * (fp16 d[8], then fp16 m[8] at `min_off`, the 5-bit types' hi[4][8] at `qh_off`, q[4][4][8] at `codes_off`; an
 * offset of 0 means the type has no such part). Missing rows get scale 0, min 0, and the code whose value is zero
 * (`zero_code`), so they are zero whatever a kernel does with them. */
static void pack_panel_nibbles(const void *w, size_t row_stride, int rows, int64_t k, void *panel, size_t file_bytes,
                               size_t block_bytes, size_t min_off, size_t qh_off, size_t codes_off, uint8_t zero_code) {
    const int64_t nb = k / CQ_QBLOCK;
    const size_t file_qh = min_off ? 4 : 2, file_qs = file_qh + (qh_off ? 4 : 0);
    uint8_t *out = panel;
    for (int64_t b = 0; b < nb; b++, out += block_bytes) {
        uint8_t codes[CQ_PANEL_COLS][CQ_QBLOCK];
        memset(out, 0, codes_off); /* scales, mins and 5th bits of missing rows */
        memset(codes, zero_code, sizeof codes);
        for (int c = 0; c < rows; c++) {
            const uint8_t *blk = (const uint8_t *)w + (size_t)c * row_stride + (size_t)b * file_bytes;
            memcpy(out + 2 * c, blk, 2); /* fp16 d */
            if (min_off) memcpy(out + min_off + 2 * c, blk + 2, 2); /* fp16 m */
            block_codes(blk + file_qs, qh_off ? blk + file_qh : NULL, codes[c]);
        }
        if (qh_off)
            pack_codes5(codes, out + qh_off, out + codes_off);
        else
            pack_nibbles(codes, out + codes_off);
    }
}

void cq_pack_panel_q4_0(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    pack_panel_nibbles(w, row_stride, rows, k, panel, 18, CQ_Q4_0_PANEL_BLOCK_BYTES, 0, 0, CQ_Q4_0_CODES_OFFSET, 8);
}
void cq_pack_panel_q4_1(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    pack_panel_nibbles(w, row_stride, rows, k, panel, 20, CQ_Q4_1_PANEL_BLOCK_BYTES, CQ_PANEL_MIN_OFFSET, 0,
                       CQ_Q4_1_CODES_OFFSET, 0);
}
void cq_pack_panel_q5_0(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    pack_panel_nibbles(w, row_stride, rows, k, panel, 22, CQ_Q5_0_PANEL_BLOCK_BYTES, 0, CQ_Q5_0_QH_OFFSET,
                       CQ_Q5_0_CODES_OFFSET, 16);
}
void cq_pack_panel_q5_1(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    pack_panel_nibbles(w, row_stride, rows, k, panel, 24, CQ_Q5_1_PANEL_BLOCK_BYTES, CQ_PANEL_MIN_OFFSET,
                       CQ_Q5_1_QH_OFFSET, CQ_Q5_1_CODES_OFFSET, 0);
}

/* ------------------------------------------------------------------------------------------------------ */
/* K-quants: the file's super-blocks regrouped (cquant.h); scales stay 6-bit, codes take the 32-value shapes */

_Static_assert(CQ_K_SUBS_OFFSET + 8 * CQ_Q4_K_SUB_BYTES == CQ_Q4_K_PANEL_BLOCK_BYTES &&
                   CQ_K_SUBS_OFFSET + 8 * CQ_Q5_K_SUB_BYTES == CQ_Q5_K_PANEL_BLOCK_BYTES &&
                   CQ_Q6_K_SUBS_OFFSET + 16 * CQ_Q6_K_SUB_BYTES == CQ_Q6_K_PANEL_BLOCK_BYTES &&
                   CQ_K_SCALES_OFFSET + 96 == CQ_K_SUBS_OFFSET && CQ_Q6_K_SCALES_OFFSET + 128 == CQ_Q6_K_SUBS_OFFSET,
               "K-quant panel parts");

size_t cq_panel_bytes_q4_k(int64_t k) { return (size_t)(k / CQ_KBLOCK) * CQ_Q4_K_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_q5_k(int64_t k) { return (size_t)(k / CQ_KBLOCK) * CQ_Q5_K_PANEL_BLOCK_BYTES; }
size_t cq_panel_bytes_q6_k(int64_t k) { return (size_t)(k / CQ_KBLOCK) * CQ_Q6_K_PANEL_BLOCK_BYTES; }

/* Sub-block j's 6-bit scale and min from a Q4_K/Q5_K file block's 12 scale bytes (ggml's packing, cquant.h). */
static void k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *mn = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* The 96-byte scale area of a Q4_K/Q5_K panel block from S[j][c], M[j][c] (6-bit). */
static void pack_k_scales(const uint8_t S[8][CQ_PANEL_COLS], const uint8_t M[8][CQ_PANEL_COLS], uint8_t *out) {
    for (int j = 0; j < 4; j++)
        for (int c = 0; c < CQ_PANEL_COLS; c++) {
            const int i = 8 * j + c;
            out[i] = (uint8_t)((S[j][c] & 15) | (S[j + 4][c] & 15) << 4);
            out[32 + i] = (uint8_t)((M[j][c] & 15) | (M[j + 4][c] & 15) << 4);
            out[64 + i] = (uint8_t)((S[j][c] >> 4) | (S[j + 4][c] >> 4) << 2 | (M[j][c] >> 4) << 4 |
                                    (M[j + 4][c] >> 4) << 6);
        }
}

/* Q4_K (qh = 0) and Q5_K (qh = 1): file block fp16 d, dmin, scales[12], [qh[32]], qs[128]. */
static void pack_panel_k_affine(const void *w, size_t row_stride, int rows, int64_t k, void *panel, int five) {
    const size_t file_bytes = five ? 176 : 144, block_bytes = five ? CQ_Q5_K_PANEL_BLOCK_BYTES : CQ_Q4_K_PANEL_BLOCK_BYTES;
    const size_t sub_bytes = five ? CQ_Q5_K_SUB_BYTES : CQ_Q4_K_SUB_BYTES, codes_at = five ? 32 : 0;
    uint8_t *out = panel;
    for (int64_t b = 0; b < k / CQ_KBLOCK; b++, out += block_bytes) {
        uint8_t S[8][CQ_PANEL_COLS] = {{0}}, M[8][CQ_PANEL_COLS] = {{0}};
        uint8_t codes[8][CQ_PANEL_COLS][CQ_QBLOCK]; /* [sub-block][row][value] */
        memset(out, 0, CQ_K_SUBS_OFFSET);
        memset(codes, 0, sizeof codes); /* missing rows: d = dmin = 0, every code 0 */
        for (int c = 0; c < rows; c++) {
            const uint8_t *blk = (const uint8_t *)w + (size_t)c * row_stride + (size_t)b * file_bytes;
            memcpy(out + 2 * c, blk, 2);
            memcpy(out + CQ_K_DMIN_OFFSET + 2 * c, blk + 2, 2);
            for (int j = 0; j < 8; j++) k_scale_min(j, blk + 4, &S[j][c], &M[j][c]);
            const uint8_t *qh = blk + 16, *qs = blk + (five ? 48 : 16);
            for (int j = 0; j < 8; j++)
                for (int l = 0; l < CQ_QBLOCK; l++) {
                    const uint8_t byte = qs[32 * (j / 2) + l];
                    uint8_t q = (uint8_t)(j % 2 ? byte >> 4 : byte & 15);
                    if (five) q |= (uint8_t)(((qh[l] >> j) & 1) << 4);
                    codes[j][c][l] = q;
                }
        }
        pack_k_scales((const uint8_t (*)[CQ_PANEL_COLS])S, (const uint8_t (*)[CQ_PANEL_COLS])M,
                      out + CQ_K_SCALES_OFFSET);
        for (int j = 0; j < 8; j++) {
            uint8_t *sub = out + CQ_K_SUBS_OFFSET + (size_t)j * sub_bytes;
            if (five) pack_high_bits((const uint8_t (*)[CQ_QBLOCK])codes[j], sub);
            pack_nibbles((const uint8_t (*)[CQ_QBLOCK])codes[j], sub + codes_at);
        }
    }
}

void cq_pack_panel_q4_k(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    pack_panel_k_affine(w, row_stride, rows, k, panel, 0);
}
void cq_pack_panel_q5_k(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    pack_panel_k_affine(w, row_stride, rows, k, panel, 1);
}

/* Q6_K: file block ql[128], qh[64], int8 scales[16], fp16 d. Its 256 6-bit codes in k order (ggml's layout: per
 * half of 128, values i, i+32, i+64, i+96 are the low nibbles of ql[i], ql[i+32], then their high nibbles, with bits
 * 0-1, 2-3, 4-5, 6-7 of qh[i] on top). */
static void q6_codes(const uint8_t *blk, uint8_t code[CQ_KBLOCK]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
        uint8_t *out = code + 128 * h;
        for (int i = 0; i < 32; i++) {
            out[i] = (uint8_t)((ql[i] & 15) | (qh[i] & 3) << 4);
            out[i + 32] = (uint8_t)((ql[i + 32] & 15) | ((qh[i] >> 2) & 3) << 4);
            out[i + 64] = (uint8_t)((ql[i] >> 4) | ((qh[i] >> 4) & 3) << 4);
            out[i + 96] = (uint8_t)((ql[i + 32] >> 4) | ((qh[i] >> 6) & 3) << 4);
        }
    }
}

void cq_pack_panel_q6_k(const void *w, size_t row_stride, int rows, int64_t k, void *panel) {
    uint8_t *out = panel;
    for (int64_t b = 0; b < k / CQ_KBLOCK; b++, out += CQ_Q6_K_PANEL_BLOCK_BYTES) {
        uint8_t codes[CQ_PANEL_COLS][CQ_KBLOCK];
        memset(out, 0, CQ_Q6_K_SUBS_OFFSET); /* missing rows: d = 0, scales 0, codes 0 */
        memset(codes, 0, sizeof codes);
        for (int c = 0; c < rows; c++) {
            const uint8_t *blk = (const uint8_t *)w + (size_t)c * row_stride + (size_t)b * 210;
            memcpy(out + 2 * c, blk + 208, 2);
            for (int i = 0; i < 16; i++) out[CQ_Q6_K_SCALES_OFFSET + 8 * i + c] = blk[192 + i];
            q6_codes(blk, codes[c]);
        }
        for (int i = 0; i < 16; i++) {
            uint8_t *sub = out + CQ_Q6_K_SUBS_OFFSET + (size_t)i * CQ_Q6_K_SUB_BYTES;
            for (int g = 0; g < 2; g++)
                for (int cc = 0; cc < 4; cc++)
                    for (int jj = 0; jj < 8; jj++) {
                        const int l = 16 * i + 8 * g + jj;
                        sub[32 * g + 8 * cc + jj] = (uint8_t)((codes[cc][l] & 15) | (codes[cc + 4][l] & 15) << 4);
                    }
            for (int cc = 0; cc < 4; cc++)
                for (int jj = 0; jj < 8; jj++) {
                    const int l0 = 16 * i + jj, l1 = l0 + 8;
                    sub[64 + 8 * cc + jj] = (uint8_t)((codes[cc][l0] >> 4) | (codes[cc + 4][l0] >> 4) << 2 |
                                                      (codes[cc][l1] >> 4) << 4 | (codes[cc + 4][l1] >> 4) << 6);
                }
        }
    }
}

/* ------------------------------------------------------------------------------------------------------ */

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
