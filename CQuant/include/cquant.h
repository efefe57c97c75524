/*
 * cquant.h — the whole C API of vzquant's kernel library.
 *
 * Three layers, each with one job:
 *   1. Types: one table knows every tensor type (block size, bytes, quantizer, dequantizer, kernels).
 *      Block layouts are bit-compatible with ggml/GGUF, so file bytes are used as they are.
 *   2. Packing: weights are repacked once, at load, into column panels that the micro-kernels stream.
 *   3. GEMM: Y[M×N] = X[M×K] · Wᵀ (+ bias). X is fp32; for quantized W it is quantized on the fly to
 *      int8 blocks of 32 (one scale each; 256 with sums per 16 and 32 for the K-quants), dot products are integer,
 *      block-scale products accumulate in fp32.
 *
 * Kernels (scalar reference, AVX2+FMA, AVX2 + AVX512-VNNI, NEON, NEON dotprod, NEON i8mm) are chosen at run time
 * from the CPU's features; VZQ_KERNEL=scalar|avx2|vnni|neon|dotprod|i8mm forces one. Threads: VZQ_THREADS or
 * cq_set_threads().
 *
 * Errors: functions that can fail return a cq_status (0 = CQ_OK); nothing here aborts on bad input.
 */
#ifndef CQUANT_H
#define CQUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------------------------------------- */
typedef enum {
    CQ_OK = 0,
    CQ_ERR_INVALID_ARGUMENT = -1, /* null pointer, negative size, stride too small */
    CQ_ERR_UNSUPPORTED_TYPE = -2, /* the type exists but this operation does not serve it */
    CQ_ERR_BAD_SHAPE = -3,        /* e.g. K not a multiple of the type's block size */
    CQ_ERR_OUT_OF_MEMORY = -4,
    CQ_ERR_UNSUPPORTED_KERNEL = -5, /* the CPU (or this build) cannot run the requested kernel */
} cq_status;

const char *cq_status_string(cq_status status);

/* ---------------------------------------------------------------------------------------------------------
 * Types. Values equal ggml's `enum ggml_type`, so a GGUF tensor's type field is a cq_type.
 *
 * Block layouts (little-endian, packed, fp16 = IEEE binary16):
 *   Q8_0 (34 B / 32 values): fp16 d; int8 qs[32];              value[j] = d·qs[j]
 *   Q4_0 (18 B / 32 values): fp16 d; uint8 qs[16];             value[j] = d·((qs[j] & 15) − 8),
 *                                                               value[j+16] = d·((qs[j] >> 4) − 8)
 *   Q4_1 (20 B): fp16 d, m; uint8 qs[16];                      value = d·q + m
 *   Q5_0 (22 B): fp16 d; uint32 qh; uint8 qs[16];              value = d·(q | hibit<<4) − 16·d
 *   Q5_1 (24 B): fp16 d, m; uint32 qh; uint8 qs[16];           value = d·(q | hibit<<4) + m
 *   Q4_K (144 B / 256 values): fp16 d, dmin; uint8 scales[12]; uint8 qs[128]
 *        8 sub-blocks of 32; sub-block j has a 6-bit scale sc_j and min m_j (j < 4: scales[j] & 63, scales[j+4] & 63;
 *        j ≥ 4: (scales[j+4] & 15) | (scales[j−4] >> 6) << 4, (scales[j+4] >> 4) | (scales[j] >> 6) << 4);
 *        value = d·sc_j·q − dmin·m_j, q the nibble: sub-blocks 2i and 2i+1 are the low and high nibbles of qs[32i…]
 *   Q5_K (176 B): fp16 d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]   as Q4_K with 5-bit q: bit 4 of
 *        value l of sub-block j is bit j of qh[l]
 *   Q6_K (210 B): uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d     16 sub-blocks of 16;
 *        value = d·scales[i/16]·(q − 32), q 6 bits (ggml's dequantize_row_q6_K says which bits are where)
 * ------------------------------------------------------------------------------------------------------- */
typedef enum {
    CQ_TYPE_F32 = 0,
    CQ_TYPE_F16 = 1,
    CQ_TYPE_Q4_0 = 2,
    CQ_TYPE_Q4_1 = 3,
    CQ_TYPE_Q5_0 = 6,
    CQ_TYPE_Q5_1 = 7,
    CQ_TYPE_Q8_0 = 8,
    CQ_TYPE_Q4_K = 12,
    CQ_TYPE_Q5_K = 13,
    CQ_TYPE_Q6_K = 14,
    CQ_TYPE_BF16 = 30,
    CQ_TYPE_COUNT = 31, /* one past the largest value; not every value below it is a known type */
} cq_type;

typedef struct {
    const char *name;     /* "q4_0", as GGUF tools print it */
    int64_t block_elems;  /* values per block (1 for F32/F16/BF16) */
    size_t block_bytes;   /* bytes per block */
    int can_quantize;     /* 1 if cq_quantize_row serves this type (every type above) */
    int can_gemm;         /* 1 if cq_matrix_pack / cq_gemm serve this type directly */
} cq_type_info;

/* NULL when `type` is not a known type. */
const cq_type_info *cq_type_get(int type);

/* Bytes of a row of n values; 0 if the type is unknown, n is not a multiple of its block size, or the size
 * does not fit in size_t. */
size_t cq_row_bytes(int type, int64_t n);

/* fp32 → `type` for one row of n values (n a multiple of the block size). Types: those with
 * cq_type_info.can_quantize — F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
 *
 * The 32-value types follow ggml's reference C (quantize_row_<type>_ref) fp32 operation for operation, 1/d being 0
 * where d = 0, d and m stored as fp16 (round to nearest even):
 *   Q8_0  d = max|x| / 127                      q = roundf(x·(1/d))                  (ties away from zero)
 *   Q4_0  d = v / −8                            code = min(15, trunc(x·(1/d) + 8.5))
 *   Q5_0  d = v / −16                           code = min(31, trunc(x·(1/d) + 16.5))
 *   Q4_1  d = (max − min) / 15, m = min         code = min(15, trunc((x − min)·(1/d) + 0.5))
 *   Q5_1  d = (max − min) / 31, m = min         code = min(31, trunc((x − min)·(1/d) + 0.5))
 * (v: the value of largest |x|, sign kept, the first of equal ones; +0.0 in a block of zeros.)
 * So the bytes equal gguf-py's `gguf.quants.quantize`, except in these blocks, where we give ggml's bytes (the
 * fixtures of tools/make_quant_fixtures.py list such blocks with ggml's bytes, and the tests demand those):
 *   - Q4_0/Q5_0, a block of zeros led by −0.0: ggml's max starts at +0.0 and only a larger |x| replaces it, so
 *     d = +0/−8 = −0.0; gguf-py's argmax takes the first value, d = +0.0. Both decode to zeros.
 *   - Q4_1/Q5_1, a block whose min (or max) is a zero and that holds zeros of both signs: ggml's strict comparisons
 *     keep the first zero met, numpy's min/max reductions may return another, so the sign of m (or of d) differs.
 *   - Q4_1/Q5_1, a block of +inf only (or −inf only): ggml's min (max) keeps its start, FLT_MAX (−FLT_MAX), so
 *     d = +inf; gguf-py computes inf − inf, a NaN d.
 *   - NaN inputs, every type: ggml's comparisons are false for NaN, so NaNs are skipped when d (and min, max) are
 *     found and get code 0 themselves; gguf-py's numpy max/argmax/min return the NaN, so its d (and m) are NaN and
 *     every code of the block 0.
 * Where ggml's C is undefined — a NaN or ±inf scaled value converted to an integer: an infinite input (times
 * 1/d = 0), every value of a Q4_1/Q5_1 block whose min is −inf, every value of a block of fp32 subnormals whose 1/d
 * overflows, a NaN — the code is 0, which is what ggml and gguf-py give on x86-64; so our bytes are the same on
 * every host.
 *
 * The K-quants follow ggml's reference quantizers (quantize_row_q4_K_ref, _q5_K_ref, _q6_K_ref: what llama-quantize
 * writes without an importance matrix) fp32 operation for operation, including their rounding helper (x + 1.5·2^23,
 * the low 22 bits of the sum: round half to even for |x| < 2^22, and a defined integer for every other float, NaN
 * included) and the casts of its results to 8 bits (modulo 256). In outline:
 *   Q4_K/Q5_K  per sub-block of 32: weights w = sqrt(Σx²/32) + |x|, a min ≤ 0 and a scale fitted by ggml's search
 *              (codes 0…15 / 0…31 rounded at 21 / 16 trial scales (n + rmin + 0.1·i)/(max − min), the weighted
 *              least-squares scale and min of each, the least weighted squared error kept); then d = max scale/63,
 *              dmin = max min/63 (fp16), 6-bit sc = round(63·scale/max scale), m likewise, and the codes again:
 *              round((x + dmin·m)/(d·sc)) clamped (a sub-block with d·sc = 0 keeps the search's codes)
 *   Q6_K       per sub-block of 16: the scale of make_qx_quants (rmse_type 1: x²-weighted, 18 trial scales
 *              −(32 + 0.1·i)/max), then with S the scale of largest |·|: d = −S/128 (fp16), sc = min(127,
 *              round(−128·scale/S)) as int8, codes round(x/(d·sc)) clamped to −32…31; a super-block whose scales
 *              are all < 1e-15 is all zero.
 * So the bytes equal llama.cpp's: the C tests hold them to the fixture of tools/make_kquant_fixtures.py (made by
 * llama.cpp's own ggml_quantize_chunk on x86-64, where ggml is built without FMA contraction; 36 super-blocks per type
 * with ties, zeros of both signs, fp16 overflow, fp32 subnormals, NaN and ±inf), with no divergence, on x86-64 and on
 * AArch64. An AArch64 build of llama.cpp itself may contract products into FMAs and then differ from both in the last
 * bit of a search sum, so a different choice of scale now and then. */
cq_status cq_quantize_row(int type, const float *src, void *dst, int64_t n);

/* `type` → fp32 for one row of n values. */
cq_status cq_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* Scalar conversions, IEEE round-to-nearest-even (bf16: as ggml, NaN kept quiet). */
float cq_fp16_to_fp32(uint16_t h);
uint16_t cq_fp32_to_fp16(float f);
float cq_bf16_to_fp32(uint16_t h);
uint16_t cq_fp32_to_bf16(float f);

/* ---------------------------------------------------------------------------------------------------------
 * Kernels and threads
 * ------------------------------------------------------------------------------------------------------- */
typedef enum {
    CQ_KERNEL_SCALAR = 0, /* portable C, the reference for every other kernel */
    CQ_KERNEL_AVX2 = 1,   /* x86-64 AVX2 + FMA + F16C */
    CQ_KERNEL_NEON = 2,   /* AArch64 Advanced SIMD (Cortex-A72, Raspberry Pi 4) */
    CQ_KERNEL_DOTPROD = 3,/* + SDOT (Cortex-A76/Neoverse-N1, Raspberry Pi 5) */
    CQ_KERNEL_I8MM = 4,   /* + SMMLA (Armv8.6+) */
    CQ_KERNEL_VNNI = 5,   /* x86-64 AVX2 level + AVX512-VNNI/VL (VPDPBUSD on 256-bit registers: Zen 4, Ice Lake+);
                           * Q8_0 panels hold w + 128 (same size, own order); the other quantized types read the
                           * AVX2 panels with VPDPBUSD tiles of their own, F32/F16 run the AVX2 tiles */
    CQ_KERNEL_COUNT = 6,
} cq_kernel;

const char *cq_kernel_name(cq_kernel kernel);
/* Parses "scalar", "avx2", "neon", "dotprod", "i8mm", "vnni"; returns -1 for anything else. */
int cq_kernel_parse(const char *name);
/* 1 if this build and this CPU can run the kernel. */
int cq_kernel_supported(cq_kernel kernel);
/* The best kernel this CPU supports. */
cq_kernel cq_kernel_best(void);
/* The kernel new packs use: VZQ_KERNEL if set (and supported), else the best. */
cq_kernel cq_kernel_default(void);
/* Overrides the default for this process; CQ_ERR_UNSUPPORTED_KERNEL if the CPU cannot run it. */
cq_status cq_kernel_set_default(cq_kernel kernel);

/* Threads used by every parallel region: VZQ_THREADS if set, else the number of cores. n ≤ 0 restores that. */
void cq_set_threads(int n);
int cq_get_threads(void);
/* 1 when compiled with OpenMP. */
int cq_has_openmp(void);

/* ---------------------------------------------------------------------------------------------------------
 * Packed weights
 *
 * A weight matrix W has N rows (output features) of K values, in the file's row-major layout. Packing
 * regroups it into panels of CQ_PANEL_COLS consecutive rows of W (= columns of Y); the last panel is padded
 * with zero rows. Panels are stored one after the other. Inside a panel, per type:
 *
 *   Q8_0  per k-block b (32 values), 272 bytes:
 *           fp16 d[8]                          the 8 rows' block scales, row order
 *           int8 q[4][8][8]                    q[g][c][j] = W[c][32b + 8g + j]      (g: 8-value group)
 *         vnni kernel, same 272 bytes: fp16 d[8], then
 *           uint8 u[8][8][4]                   u[j][c][i] = W[c][32b + 4j + i] + 128 (4-value runs per column)
 *   Q4_0  per k-block b, 144 bytes:
 *           fp16 d[8]
 *           uint8 q[4][4][8]                   low nibble  of q[g][c][j] = Wq[c][32b + 8g + j]
 *                                              high nibble of q[g][c][j] = Wq[c+4][32b + 8g + j]
 *                                              (Wq = the unsigned 4-bit code, value = d·(Wq − 8))
 *   Q4_1  per k-block b, 160 bytes:
 *           fp16 d[8], fp16 m[8]               the 8 rows' scales, then their mins, row order
 *           uint8 q[4][4][8]                   as Q4_0 (value = d·Wq + m)
 *   Q5_0  per k-block b, 176 bytes (Wq = the 5-bit code, value = d·(Wq − 16)):
 *           fp16 d[8]
 *           uint8 hi[4][8]                     bits 2g, 2g+1 of hi[c][j] = bits 3-4 of Wq[c+4][32b + 8g + j]
 *           uint8 q[4][4][8]                   bits 0-4 of q[g][c][j] = Wq[c][32b + 8g + j],
 *                                              bits 5-7 = bits 0-2 of Wq[c+4][32b + 8g + j]     (c = 0…3)
 *   Q5_1  per k-block b, 192 bytes:
 *           fp16 d[8], fp16 m[8]
 *           uint8 hi[4][8], uint8 q[4][4][8]   as Q5_0 (value = d·Wq + m)
 *   Q4_K  per super-block s (256 values), 1152 bytes:
 *           fp16 d[8], fp16 dmin[8]            the 8 rows' super-block scales and min scales, row order
 *           uint8 sl[32]                       6-bit sub-block scales S[j][c] (j: sub-block 0…7, c: row), index
 *                                              i = 8j + c for j < 4: low nibble S[j][c] & 15, high S[j+4][c] & 15
 *           uint8 ml[32]                       the same for the mins M[j][c]
 *           uint8 hb[32]                       byte i: bits 0-1 S[j][c] >> 4, 2-3 S[j+4][c] >> 4, 4-5 M[j][c] >> 4,
 *                                              6-7 M[j+4][c] >> 4
 *           8 × uint8 q[4][4][8]               sub-block j (k = 256s + 32j + 8g + jj) in Q4_0's nibble layout
 *   Q5_K  per super-block, 1408 bytes: d[8], dmin[8], sl, ml, hb as Q4_K, then per sub-block j (160 bytes)
 *           uint8 qh[4][8]                     bit c of qh[g][jj] = bit 4 of row c's code (a byte per k)
 *           uint8 q[4][4][8]                   the low 4 bits of the codes, in Q4_0's nibble layout
 *   Q6_K  per super-block, 1680 bytes:
 *           fp16 d[8]
 *           int8 sc[16][8]                     sc[i][c] = row c's scale of sub-block i (16 values)
 *           16 × 96 bytes, sub-block i (k = 256s + 16i + 8g + jj, g = 0, 1):
 *             uint8 q[2][4][8]                 the low 4 bits of the 6-bit codes, in Q4_0's nibble layout
 *             uint8 qt[4][8]                   the top 2 bits: byte (cc, jj) bits 0-1 row cc g 0, 2-3 row cc+4 g 0,
 *                                              4-5 row cc g 1, 6-7 row cc+4 g 1 (value = d·sc·(code − 32))
 *   F32   per k, 8 floats: W[0][k] … W[7][k]
 *   F16   per k, 8 halves: W[0][k] … W[7][k]
 *
 * Why this shape: an 8-row × 8-value group is 64 bytes, which every ISA consumes whole — AVX2 as two
 * registers of 4 rows × 8 values (madd pairs then one hadd per block), NEON dotprod as four 2-row × 8-value
 * SDOTs, i8mm as four 2×8 SMMLA operands. A Q4 group is 32 bytes of nibbles (Q5: 32 bytes of codes, + 8 bytes of
 * top bits), one AVX2 register or two NEON column pairs per half after decoding. The Q5 bytes are arranged so that
 * rows 0…3 decode with one and, rows 4…7 with two shifts, two ands and an or per register (a plane of 5th bits, a
 * bit per row, cost 3 more operations and a broadcast per group: AVX2 GEMV from cache went 29 → 36 GB/s on one
 * Zen 4 thread, as fast as Q4_0). Every packed quantized block is exactly 8 × the file's
 * block (Q8_0 34, Q4_0 18, Q4_1 20, Q5_0 22, Q5_1 24, Q4_K 144, Q5_K 176, Q6_K 210 bytes): no growth; only the last
 * panel's padding rows add. The K-quants keep their 6-bit scales at 6 bits, only regrouped so that one vector
 * operation unpacks a whole panel's (nibbles, then the 2 top bits); their codes use the 32-value types' shapes
 * per sub-block, so the kernels share the decoding. F32/F16 panels are K rows of 8 values each, K not padded.
 * ------------------------------------------------------------------------------------------------------- */
#define CQ_PANEL_COLS 8
#define CQ_QBLOCK 32 /* values per quantization block of activations and of Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 weights */
#define CQ_KBLOCK 256 /* values per super-block of the K-quants and of their activation blocks */

typedef struct cq_matrix cq_matrix;

/* Packs W (type `type`, N rows × K values, rows `row_stride` bytes apart; row_stride 0 means dense) for
 * `kernel` (use cq_kernel_default()). Types: those with cq_type_info.can_gemm — F32, F16, BF16 (stored as F32),
 * Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K. K must be a multiple of the type's block size (32 for the
 * 32-value types, 256 for the K-quants).
 * On success *out owns a new matrix. */
cq_status cq_matrix_pack(int type, const void *w, int64_t n, int64_t k, size_t row_stride, cq_kernel kernel,
                         cq_matrix **out);
void cq_matrix_free(cq_matrix *m);
int cq_matrix_type(const cq_matrix *m);
int64_t cq_matrix_rows(const cq_matrix *m);   /* N */
int64_t cq_matrix_cols(const cq_matrix *m);   /* K */
cq_kernel cq_matrix_kernel(const cq_matrix *m);
size_t cq_matrix_bytes(const cq_matrix *m);   /* bytes of packed data */

/* ---------------------------------------------------------------------------------------------------------
 * GEMM: Y[M×N] = X[M×K] · Wᵀ (+ bias[N])
 *
 * X rows are `ldx` floats apart, Y rows `ldy` floats apart; bias may be NULL. `workspace` must hold
 * cq_gemm_workspace_bytes(w, m) bytes (the runtime plans these once); NULL allocates and frees internally.
 * M = 1 takes the GEMV path (weight streaming, parallel over panels).
 *
 * Numerics for quantized W: each X row is cut into 32-value blocks, each block quantized to int8 in
 * [−127, 127] with d = max|x|/127 and q = round-half-even(x·(1/d)) (a block with d < 2^-100 becomes zero,
 * so 1/d cannot overflow); then
 *   Y[m][n] = Σ_b (dx[m][b]·dw[n][b]) · Σ_j qx[m][32b+j]·qw[n][32b+j]      (integers exact, fp32 sum over b)
 * with qw the weight's integer up to its scale (Q8_0 q, Q4_0 code − 8, Q5_0 code − 16, Q4_1/Q5_1 code); the types
 * with a min add, right after each block's term, (dx[m][b]·mw[n][b]) · Σ_j qx[m][32b+j].
 * Every kernel gives the same integer dot products as the scalar reference and does its fp32 steps in the same
 * order (arch/scalar/gemm_scalar.c), so its results are bit-identical to the reference's (the C tests check this
 * for every kernel, type and shape); they differ from an exact sum by rounding, about 1e-5 · Σ_b |dx·dw·isum|
 * (plus Σ_b |dx·mw·Σqx| for the types with a min) at most.
 *
 * K-quant W: X rows are quantized into cq_block_q8k (256 values, one scale dx each, below), and per super-block s
 * the integers are exact — isum = Σ_j sc_j · Σ_{l in j} qx·q (Q4_K/Q5_K: q the unsigned code; Q6_K: code − 32)
 * and, for Q4_K/Q5_K, msum = Σ_j m_j · bsum32_j — then
 *   acc ← fma(float(isum), dx·d, acc);  acc ← fma(−float(msum), dx·dmin, acc)   (Q6_K: the first step only)
 * super-block after super-block, + bias. float(isum) may round (|isum| < 2^31), identically in every kernel.
 * ------------------------------------------------------------------------------------------------------- */
size_t cq_gemm_workspace_bytes(const cq_matrix *w, int64_t m);
cq_status cq_gemm(const cq_matrix *w, const float *x, int64_t m, int64_t ldx, const float *bias, float *y,
                  int64_t ldy, void *workspace);

/* Plain fp32 GEMM for attention and unquantized layers:
 *   C[M×N] = alpha · A[M×K] · op(B) + beta · C,   op(B) = B (K×N, b_trans = 0) or Bᵀ (B is N×K, b_trans = 1).
 * beta = 0 ignores C's prior contents (NaN in C does not leak). workspace: cq_sgemm_workspace_bytes(n, k)
 * bytes, or NULL. Uses the default kernel. */
size_t cq_sgemm_workspace_bytes(int64_t n, int64_t k);
cq_status cq_sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                   int64_t ldb, int b_trans, float beta, float *c, int64_t ldc, void *workspace);

/* ---------------------------------------------------------------------------------------------------------
 * Activation quantization, exposed so tests can compare kernels and the runtime can reuse quantized rows.
 * One block: { float d; int32 sum; int8 q[32]; } — sum = Σ q (Q4_0/Q5_0 kernels subtract 8·sum / 16·sum,
 * Q4_1/Q5_1 kernels add dx·m·sum).
 * ------------------------------------------------------------------------------------------------------- */
typedef struct {
    float d;
    int32_t sum;
    int8_t q[CQ_QBLOCK];
} cq_block_q8x;

/* Quantizes M rows of K values (K a multiple of 32) into m·(k/32) blocks, row-major, with `kernel`'s code. */
cq_status cq_quantize_activations(cq_kernel kernel, const float *x, int64_t m, int64_t k, int64_t ldx,
                                  cq_block_q8x *out);

/* The K-quants' activations: 256 values per block with one scale, quantized as the 32-value blocks are (d =
 * max|x|/127 over the 256, zero below 2^-100; q = round-half-even(x·(1/d)) in [−127, 127]), with the sums of each
 * 16 and each 32 codes (bsum16[i] = Σ q[16i…16i+15], bsum32[j] = Σ q[32j…32j+31]). 320 bytes, so blocks in a
 * 64-byte aligned buffer keep q aligned. */
typedef struct {
    int8_t q[CQ_KBLOCK];
    int16_t bsum16[CQ_KBLOCK / 16];
    int16_t bsum32[CQ_KBLOCK / 32];
    float d;
    uint8_t reserved[12];
} cq_block_q8k;

/* Quantizes M rows of K values (K a multiple of 256) into m·(k/256) blocks, row-major, with `kernel`'s code. */
cq_status cq_quantize_activations_k(cq_kernel kernel, const float *x, int64_t m, int64_t k, int64_t ldx,
                                    cq_block_q8k *out);

/* ---------------------------------------------------------------------------------------------------------
 * Attention over a KV cache (decode and short chunks)
 *
 * t query rows against the first s rows of a key/value cache kept in F32, F16 or Q8_0 (kv_type), read in that
 * type: nothing is widened or repacked. q and out are [t][heads·hd] (row strides ldq, ldo floats), k and v are
 * [s][kv_heads·hd] (row strides ldk, ldv elements; Q8_0: hd, ldk and ldv multiples of 32, else CQ_ERR_BAD_SHAPE). Query row i sits at position causal_offset + i and sees keys
 * 0 … causal_offset + i (causal_offset < 0: all s). Per head h of KV group g = h / (heads / kv_heads):
 *   S = scale · q_h · k_gᵀ,  P = softmax(S) (cq_softmax_rows' exp and sums),  out_h = P · v_g.
 * The heads of one group share every key and value row they read (one pass over the cache per group, when there
 * are groups enough for the threads). scores: t·heads·s floats of scratch (it holds P afterwards).
 * ------------------------------------------------------------------------------------------------------- */
cq_status cq_attention_cached(int64_t t, int64_t s, int64_t heads, int64_t kv_heads, int64_t hd, float scale,
                              const float *q, int64_t ldq, int kv_type, const void *k, int64_t ldk, const void *v,
                              int64_t ldv, int64_t causal_offset, float *scores, float *out, int64_t ldo);

/* ---------------------------------------------------------------------------------------------------------
 * Element-wise and row kernels (elementwise.c): the work between the GEMMs of a transformer layer.
 *
 * Portable C that the compiler vectorizes for the baseline ISA (NEON on AArch64); on x86-64 the same source is
 * also compiled as an AVX2+FMA copy, used when the default kernel is avx2 or vnni (so VZQ_KERNEL=scalar selects
 * the baseline code, and the two may differ in the last bits). Large calls are shared by the threads (by rows, or by
 * 4096-value chunks), small ones run on the calling thread. Results do not depend on the thread count.
 * exp is our own (range reduction to ±ln2/2, degree-6 polynomial, 2^n from exponent bits): within 2e-7 relative
 * of exp for results that are normal floats, correctly 0 below about −104 and +inf above 88.72; NaN stays NaN.
 * The activations follow PyTorch's formulas (so x = −∞ gives NaN where PyTorch's does) and are accurate to
 * about 1e-6 relative wherever the result is a normal float:
 *   gelu          x·Φ(x) = x/2·(1 + erf(x/√2))         (erf/erfc built on exp; no cancellation for x < 0)
 *   gelu_tanh     x/2·(1 + tanh(√(2/π)(x + 0.044715x³))), evaluated as x·σ(2u)
 *   quick_gelu    x·σ(1.702x)       (CLIP)
 *   silu          x·σ(x)
 * y = x (in place) or a buffer that does not overlap x. All return CQ_ERR_INVALID_ARGUMENT for n < 0 or NULL
 * pointers with n > 0.
 * ------------------------------------------------------------------------------------------------------- */
cq_status cq_exp(const float *x, float *y, int64_t n);
cq_status cq_gelu(const float *x, float *y, int64_t n);
cq_status cq_gelu_tanh(const float *x, float *y, int64_t n);
cq_status cq_quick_gelu(const float *x, float *y, int64_t n);
cq_status cq_silu(const float *x, float *y, int64_t n);

/* Softmax of each of `rows` rows of `cols` values, rows `ld` floats apart, in place, in fp32: the row maximum is
 * subtracted first, sums use 16 partial sums. causal_offset ≥ 0 masks like a causal attention: row r keeps its
 * first min(cols, causal_offset + r + 1) values and sets the rest to 0 (exactly what −∞ scores would give);
 * causal_offset < 0 keeps every value. −∞ entries become 0; a row that is all −∞, or holds NaN or +∞, becomes
 * NaN (as in PyTorch). */
cq_status cq_softmax_rows(float *x, int64_t rows, int64_t cols, int64_t ld, int64_t causal_offset);

/* y[r] = (x[r] − mean) / sqrt(var + eps) · weight + bias (bias may be NULL), statistics of each row of `dim`
 * values in double; rows dense; y = x allowed. */
cq_status cq_layer_norm_rows(const float *x, int64_t rows, int64_t dim, const float *weight, const float *bias,
                             float eps, float *y);
/* y[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight, the mean in double; rows dense; y = x allowed. */
cq_status cq_rms_norm_rows(const float *x, int64_t rows, int64_t dim, const float *weight, float eps, float *y);

/* ---------------------------------------------------------------------------------------------------------
 * Measurement (bench.c): what this machine can do at best, to read GEMM numbers against. Each figure is the
 * best of several repeats on all `threads` at once (threads ≤ 0: cq_get_threads()). Nothing here asserts.
 * ------------------------------------------------------------------------------------------------------- */

/* Seconds on a monotonic clock (CLOCK_MONOTONIC), for timing. */
double cq_now_seconds(void);

/* Gives freed heap memory back to the system (glibc: malloc_trim) and makes allocations of ≥ 1 MiB come from
 * mmap from now on (glibc otherwise raises that threshold as big blocks are freed, and keeps them resident), so
 * memory measured after a model is freed is what the next one really uses. No-op elsewhere. */
void cq_release_free_memory(void);

/* int8 multiply-add peak in GOPS (1 multiply-add = 2 ops), from ≥ 8 independent dependency chains per thread
 * of the default kernel's own instruction sequence: AVX2 maddubs → madd → add (64 ops per 256-bit step), VNNI
 * vpdpbusd (64 ops per 256-bit instruction; used when the default kernel is vnni), NEON SDOT
 * (32 ops per 128-bit instruction) or, without dotprod, smull/smlal2 → sadalp (32 ops per 128-bit step).
 * `seconds` is the rough time budget (≤ 0: 0.5 s). Returns 0 (unknown) where this build has no vector
 * worker for the CPU, e.g. CQ_SCALAR_ONLY builds. */
double cq_measure_int8_peak_gops(int threads, double seconds);

/* Streaming copy bandwidth in GB/s (10^9 bytes), counting bytes read + bytes written, over two buffers of
 * `bytes` each (use far more than the last-level cache, e.g. 256 MB). `repeats` ≤ 0: 5. 0 if out of memory. */
double cq_measure_copy_gbps(size_t bytes, int threads, int repeats);

/* Streaming read bandwidth in GB/s (a sum over one buffer of `bytes`) — the traffic of a GEMV, which only
 * reads weights. `repeats` ≤ 0: 5. 0 if out of memory. */
double cq_measure_read_gbps(size_t bytes, int threads, int repeats);

#ifdef __cplusplus
}
#endif
#endif /* CQUANT_H */
