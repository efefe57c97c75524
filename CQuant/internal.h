/*
 * internal.h — what the driver, the packer and the per-ISA micro-kernels share. Not installed.
 *
 * The contract of a micro-kernel ("tile"): compute up to CQ_TILE_ROWS rows × CQ_PANEL_COLS columns of Y
 * from one packed weight panel and the matching activation rows, over the whole K, and store them
 * (adding bias when given). Packing and threading belong to the driver (gemm.c), never to a tile.
 */
#ifndef CQUANT_INTERNAL_H
#define CQUANT_INTERNAL_H

#include "include/cquant.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CQ_SCALAR_ONLY builds the portable reference alone (any CPU, any compiler). */
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(CQ_SCALAR_ONLY)
#define CQ_ARCH_X86 1
#else
#define CQ_ARCH_X86 0
#endif
/* The vnni level needs a compiler that takes target("avx512vnni,avx512vl") (gcc ≥ 9, clang ≥ 8). */
#if CQ_ARCH_X86 && ((defined(__clang__) && __clang_major__ >= 8) || (!defined(__clang__) && __GNUC__ >= 9))
#define CQ_HAVE_VNNI 1
#else
#define CQ_HAVE_VNNI 0
#endif
#if defined(__aarch64__) && !defined(CQ_SCALAR_ONLY)
#define CQ_ARCH_ARM 1
#else
#define CQ_ARCH_ARM 0
#endif

/* Activation blocks whose scale max|x|/127 is below this quantize to zero (their 1/d would overflow). */
#define CQ_MIN_ACT_SCALE 0x1p-100f

/* Rows of X (and Y) one tile call covers at most. */
#define CQ_TILE_ROWS 4

/* Packed bytes of one 32-value k-block of one panel (8 weight rows) = 8 × the file's block (layouts: cquant.h). */
#define CQ_Q8_0_PANEL_BLOCK_BYTES (CQ_PANEL_COLS * 2 + CQ_PANEL_COLS * CQ_QBLOCK)     /* 272 */
#define CQ_Q4_0_PANEL_BLOCK_BYTES (CQ_PANEL_COLS * 2 + CQ_PANEL_COLS * CQ_QBLOCK / 2) /* 144 */
#define CQ_Q4_1_PANEL_BLOCK_BYTES (CQ_PANEL_COLS * 4 + CQ_PANEL_COLS * CQ_QBLOCK / 2) /* 160 */
#define CQ_Q5_0_PANEL_BLOCK_BYTES (CQ_PANEL_COLS * 2 + CQ_PANEL_COLS * (CQ_QBLOCK / 8 + CQ_QBLOCK / 2)) /* 176 */
#define CQ_Q5_1_PANEL_BLOCK_BYTES (CQ_PANEL_COLS * 4 + CQ_PANEL_COLS * (CQ_QBLOCK / 8 + CQ_QBLOCK / 2)) /* 192 */
/* Where the parts of a packed k-block start (the scales d are always at 0). */
#define CQ_PANEL_MIN_OFFSET 16        /* Q4_1, Q5_1: fp16 m[8] */
#define CQ_Q8_0_CODES_OFFSET 16       /* int8 q[4][8][8] (vnni: uint8 u[8][8][4]) */
#define CQ_Q4_0_CODES_OFFSET 16       /* nibbles */
#define CQ_Q4_1_CODES_OFFSET 32       /* nibbles */
#define CQ_Q5_0_QH_OFFSET 16          /* Q5_0, Q5_1: top bits hi[4][8] of rows 4…7 (cquant.h) */
#define CQ_Q5_0_CODES_OFFSET 48
#define CQ_Q5_1_QH_OFFSET 32
#define CQ_Q5_1_CODES_OFFSET 64

/* K-quant panels: one 256-value super-block of 8 rows = 8 × the file's super-block (layouts: cquant.h). */
#define CQ_Q4_K_PANEL_BLOCK_BYTES (8 * 144) /* 1152 */
#define CQ_Q5_K_PANEL_BLOCK_BYTES (8 * 176) /* 1408 */
#define CQ_Q6_K_PANEL_BLOCK_BYTES (8 * 210) /* 1680 */
#define CQ_K_DMIN_OFFSET 16        /* Q4_K, Q5_K: fp16 dmin[8] */
#define CQ_K_SCALES_OFFSET 32      /* Q4_K, Q5_K: 6-bit scales and mins, 96 bytes (sl[32], ml[32], hb[32]) */
#define CQ_K_SUBS_OFFSET 128       /* Q4_K, Q5_K: the 8 sub-blocks of 32 values */
#define CQ_Q4_K_SUB_BYTES 128      /*   Q4_K sub-block: nibbles q[4][4][8] */
#define CQ_Q5_K_SUB_BYTES 160      /*   Q5_K sub-block: qh[4][8], then nibbles q[4][4][8] */
#define CQ_Q6_K_SCALES_OFFSET 16   /* Q6_K: int8 sc[16][8] */
#define CQ_Q6_K_SUBS_OFFSET 144    /* Q6_K: the 16 sub-blocks of 16 values */
#define CQ_Q6_K_SUB_BYTES 96       /*   Q6_K sub-block: nibbles of groups 0 and 1 (32 B each), then 2-bit tops (32 B) */

typedef struct {
    const void *panel;   /* packed weights of this panel, from k = 0 */
    int64_t k;           /* values along K (quantized types: k/32 blocks) */
    const void *x;       /* first activation row: cq_block_q8x* (32-value types), cq_block_q8k* (K-quants) or
                          * float* (F32/F16 W) */
    int64_t x_stride;    /* distance between activation rows: in blocks (quantized) or floats */
    int rows;            /* 1 … CQ_TILE_ROWS */
    int cols;            /* 1 … CQ_PANEL_COLS valid columns (the rest of the panel is padding) */
    float *y;            /* Y[0][0] of this tile */
    int64_t ldy;         /* floats between Y rows */
    const float *bias;   /* NULL, or `cols` values for these columns */
} cq_tile;

typedef void (*cq_tile_fn)(const cq_tile *t);
/* Quantizes one row of k values (k a multiple of 32) into k/32 blocks. */
typedef void (*cq_quantize_x_fn)(const float *x, int64_t k, cq_block_q8x *out);

/* How activations are fed to a type's tiles. */
typedef enum {
    CQ_ACT_F32 = 0, /* fp32 rows as given */
    CQ_ACT_Q8X = 1, /* quantized to cq_block_q8x per 32 values */
    CQ_ACT_Q8K = 2, /* quantized to cq_block_q8k per 256 values (the K-quants) */
} cq_act_kind;
/* Quantizes one row of k values (k a multiple of 256) into k/256 blocks. */
typedef void (*cq_quantize_xk_fn)(const float *x, int64_t k, cq_block_q8k *out);

/* Everything vzquant knows about one type: the single place to extend when a type is added. */
typedef struct {
    cq_type_info info;
    void (*quantize_row)(const float *src, void *dst, int64_t n);    /* NULL: not a quantization target */
    void (*dequantize_row)(const void *src, float *dst, int64_t n);  /* NULL: unknown type */
    /* Packing into panels (NULL: GEMM does not take this type). `packed_type` is the type the panels hold
     * (BF16 packs into F32 panels). */
    int packed_type;
    size_t (*panel_bytes)(int64_t k);
    void (*pack_panel)(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
    /* Optional packer for one kernel (same panel_bytes): NULL where that kernel reads `pack_panel`'s panels. */
    void (*pack_panel_for[CQ_KERNEL_COUNT])(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
    cq_act_kind act;
    cq_tile_fn tile[CQ_KERNEL_COUNT]; /* NULL where that ISA has no kernel for the type */
    /* Optional tiles over two adjacent panels (t->cols up to 2·CQ_PANEL_COLS, same results bit for bit as two
     * one-panel tiles): more independent chains where one panel leaves the FMA units idle. */
    cq_tile_fn tile2[CQ_KERNEL_COUNT];
} cq_type_traits;

/* NULL when the type is unknown. */
const cq_type_traits *cq_traits(int type);

/* Per-ISA activation quantizers (NULL where not built). */
cq_quantize_x_fn cq_quantize_x_for(cq_kernel kernel);
cq_quantize_xk_fn cq_quantize_xk_for(cq_kernel kernel);

/* ------------- fp16 / bf16 helpers for kernels ------------- */
static inline float cq_h2f(const void *p) {
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return cq_fp16_to_fp32(h);
}

/* ------------- Packing (pack.c) ------------- */
size_t cq_panel_bytes_q8_0(int64_t k);
size_t cq_panel_bytes_q4_0(int64_t k);
size_t cq_panel_bytes_q4_1(int64_t k);
size_t cq_panel_bytes_q5_0(int64_t k);
size_t cq_panel_bytes_q5_1(int64_t k);
size_t cq_panel_bytes_q4_k(int64_t k);
size_t cq_panel_bytes_q5_k(int64_t k);
size_t cq_panel_bytes_q6_k(int64_t k);
size_t cq_panel_bytes_f32(int64_t k);
size_t cq_panel_bytes_f16(int64_t k);
void cq_pack_panel_q8_0(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
/* The vnni kernel's Q8_0 panels (cquant.h): the same 272 bytes per block, codes as the unsigned byte q + 128 in
 * 4-value runs per column, u[j][c][i] = W[c][32b + 4j + i] + 128, at CQ_Q8_0_CODES_OFFSET. */
void cq_pack_panel_q8_0_u8(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_q4_0(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_q4_1(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_q5_0(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_q5_1(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_q4_k(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_q5_k(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_q6_k(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_f32(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_f16(const void *w, size_t row_stride, int rows, int64_t k, void *panel);
void cq_pack_panel_bf16(const void *w, size_t row_stride, int rows, int64_t k, void *panel);

/* ------------- Micro-kernels, per ISA (arch/...) ------------- */
void cq_quantize_x_scalar(const float *x, int64_t k, cq_block_q8x *out);
void cq_tile_q8_0_scalar(const cq_tile *t);
void cq_tile_q4_0_scalar(const cq_tile *t);
void cq_tile_q4_1_scalar(const cq_tile *t);
void cq_tile_q5_0_scalar(const cq_tile *t);
void cq_tile_q5_1_scalar(const cq_tile *t);
void cq_tile_f32_scalar(const cq_tile *t);
void cq_tile_f16_scalar(const cq_tile *t);
void cq_quantize_xk_scalar(const float *x, int64_t k, cq_block_q8k *out);
void cq_tile_q4_k_scalar(const cq_tile *t);
void cq_tile_q5_k_scalar(const cq_tile *t);
void cq_tile_q6_k_scalar(const cq_tile *t);

#if CQ_ARCH_X86
int cq_cpu_has_avx2(void);
void cq_quantize_x_avx2(const float *x, int64_t k, cq_block_q8x *out);
void cq_tile_q8_0_avx2(const cq_tile *t);
void cq_tile_q4_0_avx2(const cq_tile *t);
void cq_tile_q4_1_avx2(const cq_tile *t);
void cq_tile_q5_0_avx2(const cq_tile *t);
void cq_tile_q5_1_avx2(const cq_tile *t);
void cq_tile_f32_avx2(const cq_tile *t);
void cq_tile_f16_avx2(const cq_tile *t);
/* Two adjacent panels at once (t->panel, then the next panel right after it; t->cols 1 … 2·CQ_PANEL_COLS):
 * twice the independent fma chains of the one-panel float tiles, same results bit for bit. */
void cq_tile2_f32_avx2(const cq_tile *t);
void cq_tile2_f16_avx2(const cq_tile *t);
void cq_quantize_xk_avx2(const float *x, int64_t k, cq_block_q8k *out);
void cq_tile_q4_k_avx2(const cq_tile *t);
void cq_tile_q5_k_avx2(const cq_tile *t);
void cq_tile_q6_k_avx2(const cq_tile *t);
#define CQ_X86_FN(f) f
#else
#define CQ_X86_FN(f) NULL
#endif

#if CQ_HAVE_VNNI
/* AVX2 + FMA + F16C + AVX512-VNNI + AVX512-VL: the vnni level (every AVX2 tile, plus VPDPBUSD ones). */
int cq_cpu_has_vnni(void);
void cq_tile_q8_0_vnni(const cq_tile *t);
void cq_tile2_q8_0_vnni(const cq_tile *t); /* two adjacent panels, as cq_tile2_f32_avx2 */
void cq_tile_q4_0_vnni(const cq_tile *t);  /* the nibble and K-quant types read the AVX2 level's panels */
void cq_tile2_q4_0_vnni(const cq_tile *t);
void cq_tile_q4_1_vnni(const cq_tile *t);
void cq_tile2_q4_1_vnni(const cq_tile *t);
void cq_tile_q5_0_vnni(const cq_tile *t);
void cq_tile2_q5_0_vnni(const cq_tile *t);
void cq_tile_q5_1_vnni(const cq_tile *t);
void cq_tile2_q5_1_vnni(const cq_tile *t);
void cq_tile_q4_k_vnni(const cq_tile *t);
void cq_tile2_q4_k_vnni(const cq_tile *t);
void cq_tile_q5_k_vnni(const cq_tile *t);
void cq_tile2_q5_k_vnni(const cq_tile *t);
void cq_tile_q6_k_vnni(const cq_tile *t);
#define CQ_VNNI_FN(f) f
#else
#define CQ_VNNI_FN(f) NULL
#endif

/* 1 for the kernels that run AVX2 code (avx2 and vnni): the element-wise copies, quantizers and benches. */
static inline int cq_kernel_is_avx2_level(cq_kernel k) { return k == CQ_KERNEL_AVX2 || k == CQ_KERNEL_VNNI; }

#if CQ_ARCH_ARM
int cq_cpu_has_dotprod(void);
int cq_cpu_has_i8mm(void);
void cq_quantize_x_neon(const float *x, int64_t k, cq_block_q8x *out);
void cq_tile_q8_0_neon(const cq_tile *t);
void cq_tile_q4_0_neon(const cq_tile *t);
void cq_tile_q4_1_neon(const cq_tile *t);
void cq_tile_q5_0_neon(const cq_tile *t);
void cq_tile_q5_1_neon(const cq_tile *t);
void cq_tile_f32_neon(const cq_tile *t);
void cq_tile_f16_neon(const cq_tile *t);
void cq_tile_q8_0_dotprod(const cq_tile *t);
void cq_tile_q4_0_dotprod(const cq_tile *t);
void cq_tile_q4_1_dotprod(const cq_tile *t);
void cq_tile_q5_0_dotprod(const cq_tile *t);
void cq_tile_q5_1_dotprod(const cq_tile *t);
void cq_tile_q8_0_i8mm(const cq_tile *t);
void cq_tile_q4_0_i8mm(const cq_tile *t);
void cq_tile_q4_1_i8mm(const cq_tile *t);
void cq_tile_q5_0_i8mm(const cq_tile *t);
void cq_tile_q5_1_i8mm(const cq_tile *t);
void cq_quantize_xk_neon(const float *x, int64_t k, cq_block_q8k *out);
void cq_tile_q4_k_neon(const cq_tile *t);
void cq_tile_q5_k_neon(const cq_tile *t);
void cq_tile_q6_k_neon(const cq_tile *t);
void cq_tile_q4_k_dotprod(const cq_tile *t);
void cq_tile_q5_k_dotprod(const cq_tile *t);
void cq_tile_q6_k_dotprod(const cq_tile *t);
void cq_tile_q4_k_i8mm(const cq_tile *t);
void cq_tile_q5_k_i8mm(const cq_tile *t);
void cq_tile_q6_k_i8mm(const cq_tile *t);
#define CQ_ARM_FN(f) f
#else
#define CQ_ARM_FN(f) NULL
#endif

/* ------------- Threads (cpu.c) ------------- */
int cq_threads_for(int64_t work_items);

#endif /* CQUANT_INTERNAL_H */
