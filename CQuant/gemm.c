/*
 * gemm.c — the driver: owns packed matrices, quantizes activations, splits Y into tiles and runs them on
 * threads. OpenMP regions live only here, in baseline-ISA functions (an OpenMP region inside a
 * target("avx2") function does not compile); the micro-kernels they call carry the ISA attributes.
 */
#define _GNU_SOURCE /* posix_memalign, sysconf, getauxval under -std=c11 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct cq_matrix {
    int type;          /* the type the caller packed (BF16 stays BF16 here) */
    int packed_type;   /* the panels' type */
    int64_t n, k;
    cq_kernel kernel;
    cq_tile_fn tile;
    cq_tile_fn tile2;  /* NULL, or a tile over two adjacent panels (same results, more parallel work) */
    cq_act_kind act;
    size_t panel_bytes;
    int64_t panels;
    uint8_t *data;
};

static void *aligned_alloc_64(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

cq_status cq_matrix_pack(int type, const void *w, int64_t n, int64_t k, size_t row_stride, cq_kernel kernel,
                         cq_matrix **out) {
    if (!out) return CQ_ERR_INVALID_ARGUMENT;
    *out = NULL;
    const cq_type_traits *t = cq_traits(type);
    if (!t) return CQ_ERR_UNSUPPORTED_TYPE;
    if (!t->pack_panel) return CQ_ERR_UNSUPPORTED_TYPE;
    if (!w || n <= 0 || k <= 0) return CQ_ERR_INVALID_ARGUMENT;
    if (k % t->info.block_elems != 0) return CQ_ERR_BAD_SHAPE;
    if (t->act == CQ_ACT_Q8X && k % CQ_QBLOCK != 0) return CQ_ERR_BAD_SHAPE;
    if (kernel < 0 || kernel >= CQ_KERNEL_COUNT || !cq_kernel_supported(kernel) || !t->tile[kernel])
        return CQ_ERR_UNSUPPORTED_KERNEL;
    const size_t dense = cq_row_bytes(type, k);
    if (row_stride == 0) row_stride = dense;
    if (row_stride < dense) return CQ_ERR_INVALID_ARGUMENT;

    cq_matrix *m = calloc(1, sizeof *m);
    if (!m) return CQ_ERR_OUT_OF_MEMORY;
    m->type = type;
    m->packed_type = t->packed_type;
    m->n = n;
    m->k = k;
    m->kernel = kernel;
    m->tile = t->tile[kernel];
    m->tile2 = t->tile2[kernel];
    m->act = t->act;
    m->panel_bytes = t->panel_bytes(k);
    m->panels = ceil_div(n, CQ_PANEL_COLS);
    if ((size_t)m->panels > SIZE_MAX / m->panel_bytes) {
        free(m);
        return CQ_ERR_OUT_OF_MEMORY;
    }
    m->data = aligned_alloc_64((size_t)m->panels * m->panel_bytes);
    if (!m->data) {
        free(m);
        return CQ_ERR_OUT_OF_MEMORY;
    }
    const int64_t panels = m->panels;
    void (*const pack_panel)(const void *, size_t, int, int64_t, void *) =
        t->pack_panel_for[kernel] ? t->pack_panel_for[kernel] : t->pack_panel;
#pragma omp parallel for num_threads(cq_threads_for(panels)) schedule(static)
    for (int64_t p = 0; p < panels; p++) {
        const int64_t first = p * CQ_PANEL_COLS;
        const int rows = (int)(n - first < CQ_PANEL_COLS ? n - first : CQ_PANEL_COLS);
        pack_panel((const uint8_t *)w + (size_t)first * row_stride, row_stride, rows, k,
                      m->data + (size_t)p * m->panel_bytes);
    }
    *out = m;
    return CQ_OK;
}

void cq_matrix_free(cq_matrix *m) {
    if (!m) return;
    free(m->data);
    free(m);
}

int cq_matrix_type(const cq_matrix *m) { return m ? m->type : -1; }
int64_t cq_matrix_rows(const cq_matrix *m) { return m ? m->n : 0; }
int64_t cq_matrix_cols(const cq_matrix *m) { return m ? m->k : 0; }
cq_kernel cq_matrix_kernel(const cq_matrix *m) { return m ? m->kernel : CQ_KERNEL_SCALAR; }
size_t cq_matrix_bytes(const cq_matrix *m) { return m ? (size_t)m->panels * m->panel_bytes : 0; }

/* ------------------------------------------------------------------------------------------------------ */

_Static_assert(sizeof(cq_block_q8k) == 320, "cq_block_q8k: 5 cache lines, q first");

/* Activation blocks per row and bytes per block of each quantized activation format. */
static int64_t act_blocks(cq_act_kind act, int64_t k) { return act == CQ_ACT_Q8K ? k / CQ_KBLOCK : k / CQ_QBLOCK; }
static size_t act_block_bytes(cq_act_kind act) { return act == CQ_ACT_Q8K ? sizeof(cq_block_q8k) : sizeof(cq_block_q8x); }

size_t cq_gemm_workspace_bytes(const cq_matrix *w, int64_t m) {
    if (!w || m <= 0 || w->act == CQ_ACT_F32) return 0;
    return (size_t)m * (size_t)act_blocks(w->act, w->k) * act_block_bytes(w->act);
}

cq_status cq_quantize_activations(cq_kernel kernel, const float *x, int64_t m, int64_t k, int64_t ldx,
                                  cq_block_q8x *out) {
    cq_quantize_x_fn quantize = cq_quantize_x_for(kernel);
    if (!quantize || !cq_kernel_supported(kernel)) return CQ_ERR_UNSUPPORTED_KERNEL;
    if (m < 0 || k < 0 || ldx < k || (m > 0 && (!x || !out))) return CQ_ERR_INVALID_ARGUMENT;
    if (k % CQ_QBLOCK != 0) return CQ_ERR_BAD_SHAPE;
    const int64_t nb = k / CQ_QBLOCK;
#pragma omp parallel for num_threads(cq_threads_for(m * nb / 256 < m ? m * nb / 256 + 1 : m)) schedule(static)
    for (int64_t r = 0; r < m; r++) quantize(x + r * ldx, k, out + r * nb);
    return CQ_OK;
}

cq_status cq_quantize_activations_k(cq_kernel kernel, const float *x, int64_t m, int64_t k, int64_t ldx,
                                    cq_block_q8k *out) {
    cq_quantize_xk_fn quantize = cq_quantize_xk_for(kernel);
    if (!quantize || !cq_kernel_supported(kernel)) return CQ_ERR_UNSUPPORTED_KERNEL;
    if (m < 0 || k < 0 || ldx < k || (m > 0 && (!x || !out))) return CQ_ERR_INVALID_ARGUMENT;
    if (k % CQ_KBLOCK != 0) return CQ_ERR_BAD_SHAPE;
    const int64_t nb = k / CQ_KBLOCK;
#pragma omp parallel for num_threads(cq_threads_for(m * nb / 32 < m ? m * nb / 32 + 1 : m)) schedule(static)
    for (int64_t r = 0; r < m; r++) quantize(x + r * ldx, k, out + r * nb);
    return CQ_OK;
}

/* Quantizes activation row r of xf (ldx apart) into row r of x (x_stride blocks apart) in w's format. */
static void quantize_row_for(const cq_matrix *w, const float *xf, int64_t ldx, void *x, int64_t x_stride, int64_t r) {
    if (w->act == CQ_ACT_Q8K)
        cq_quantize_xk_for(w->kernel)(xf + r * ldx, w->k, (cq_block_q8k *)x + r * x_stride);
    else
        cq_quantize_x_for(w->kernel)(xf + r * ldx, w->k, (cq_block_q8x *)x + r * x_stride);
}

/* Panels per cache block: a block's weights stay in the core's L2 while row groups pass over them, and each
 * row group's activations stay in L1 while they pass over the block's panels. */
#define CQ_PANEL_BLOCK_BYTES (192 * 1024)
/* Multiply-adds worth one more thread (below it, waking a thread costs more than it saves). */
#define CQ_MACS_PER_THREAD (1 << 18)

static void run_tile(const cq_matrix *w, const void *x, int64_t x_stride, int64_t m, const float *bias, float *y,
                     int64_t ldy, int64_t p, int64_t g, int two) {
    const int64_t col = p * CQ_PANEL_COLS, row = g * CQ_TILE_ROWS, width = two ? 2 * CQ_PANEL_COLS : CQ_PANEL_COLS;
    cq_tile t = {
        .panel = w->data + (size_t)p * w->panel_bytes,
        .k = w->k,
        .x_stride = x_stride,
        .rows = (int)(m - row < CQ_TILE_ROWS ? m - row : CQ_TILE_ROWS),
        .cols = (int)(w->n - col < width ? w->n - col : width),
        .y = y + row * ldy + col,
        .ldy = ldy,
        .bias = bias ? bias + col : NULL,
    };
    t.x = w->act == CQ_ACT_Q8X   ? (const void *)((const cq_block_q8x *)x + row * x_stride)
        : w->act == CQ_ACT_Q8K ? (const void *)((const cq_block_q8k *)x + row * x_stride)
                               : (const void *)((const float *)x + row * x_stride);
    (two ? w->tile2 : w->tile)(&t);
}

/* One thread's part of run_tiles: claims chunks from the shared counter until none are left. */
static void run_chunks(const cq_matrix *w, const void *x, int64_t x_stride, int64_t m, const float *bias, float *y,
                       int64_t ldy, int64_t row_groups, int64_t pb, int64_t slices, int64_t slice_rows, int64_t chunks,
                       int64_t *next) {
    for (;;) {
        const int64_t c = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
        if (c >= chunks) break;
        const int64_t p0 = (c / slices) * pb, g0 = (c % slices) * slice_rows;
        const int64_t p1 = p0 + pb < w->panels ? p0 + pb : w->panels;
        const int64_t g1 = g0 + slice_rows < row_groups ? g0 + slice_rows : row_groups;
        for (int64_t g = g0; g < g1; g++)
            for (int64_t p = p0; p < p1;) {
                const int two = w->tile2 && p + 1 < p1;
                run_tile(w, x, x_stride, m, bias, y, ldy, p, g, two);
                p += two ? 2 : 1;
            }
    }
}

/* Runs every (panel, row-group) tile of Y. The panels are cut into cache blocks (CQ_PANEL_BLOCK_BYTES), the
 * row groups into as many slices as it takes to give every thread several chunks; a chunk is one block × one
 * slice, swept row group by row group. Chunks are handed out first come first served, so a thread slowed down
 * (another process on its core) takes fewer of them. Every tile is computed the same way whatever the order
 * or the thread that runs it, so results do not depend on either.
 * Chunks are claimed from a shared counter, not with schedule(dynamic): Swift's newer clang emits runtime calls
 * for it that the distribution's older libomp lacks.
 * Quantized W: `xf` (fp32 rows, ldx apart) is first quantized into `x` (the workspace) inside the same parallel
 * region, so one fork/join serves both steps. xf is NULL when `x` already is what the tiles read. */
static void run_tiles(const cq_matrix *w, const void *x, int64_t x_stride, int64_t m, const float *bias, float *y,
                      int64_t ldy, const float *xf, int64_t ldx) {
    const int64_t row_groups = ceil_div(m, CQ_TILE_ROWS);
    int64_t pb = (int64_t)(CQ_PANEL_BLOCK_BYTES / w->panel_bytes);
    if (pb < 1) pb = 1;
    if (w->tile2) pb = (pb + 1) & ~(int64_t)1; /* whole pairs */
    if (pb > w->panels) pb = w->panels;
    int64_t blocks = ceil_div(w->panels, pb);
    const int64_t tiles = w->panels * row_groups, macs = m * w->panels * CQ_PANEL_COLS * w->k;
    const int threads = cq_threads_for(macs / CQ_MACS_PER_THREAD < tiles ? macs / CQ_MACS_PER_THREAD : tiles);
    const int64_t want = 8 * (int64_t)threads; /* chunks that keep the threads balanced */
    int64_t slices = 1;
    if (threads > 1 && blocks < want) {
        slices = ceil_div(want, blocks) < row_groups ? ceil_div(want, blocks) : row_groups;
        if (blocks * slices < want) { /* few row groups (GEMV): smaller blocks instead */
            pb = w->panels * slices / want > 1 ? w->panels * slices / want : 1;
            if (w->tile2 && pb > 1) pb &= ~(int64_t)1;
            blocks = ceil_div(w->panels, pb);
        }
    }
    const int64_t slice_rows = ceil_div(row_groups, slices);
    const int64_t chunks = blocks * slices;
    int quantize = xf != NULL;
    void *xq = (void *)x;
    /* little to share (fewer than 8192 activation values): no barrier for it */
    if (quantize && (threads == 1 || m * w->k < 256 * CQ_QBLOCK)) {
        for (int64_t r = 0; r < m; r++) quantize_row_for(w, xf, ldx, xq, x_stride, r);
        quantize = 0;
    }
    int64_t next = 0;
#pragma omp parallel num_threads(threads)
    {
        if (quantize) {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < m; r++) quantize_row_for(w, xf, ldx, xq, x_stride, r);
            /* the implicit barrier here: every row is quantized before any tile reads it */
        }
        run_chunks(w, x, x_stride, m, bias, y, ldy, row_groups, pb, slices, slice_rows, chunks, &next);
    }
}

cq_status cq_gemm(const cq_matrix *w, const float *x, int64_t m, int64_t ldx, const float *bias, float *y,
                  int64_t ldy, void *workspace) {
    if (!w || m < 0) return CQ_ERR_INVALID_ARGUMENT;
    if (m == 0) return CQ_OK;
    if (!x || !y || ldx < w->k || ldy < w->n) return CQ_ERR_INVALID_ARGUMENT;
    if (w->act == CQ_ACT_F32) {
        run_tiles(w, x, ldx, m, bias, y, ldy, NULL, 0);
        return CQ_OK;
    }
    if (w->act == CQ_ACT_Q8K ? !cq_quantize_xk_for(w->kernel) : !cq_quantize_x_for(w->kernel))
        return CQ_ERR_UNSUPPORTED_KERNEL;
    void *owned = NULL;
    if (!workspace) {
        owned = workspace = aligned_alloc_64(cq_gemm_workspace_bytes(w, m));
        if (!owned) return CQ_ERR_OUT_OF_MEMORY;
    }
    run_tiles(w, workspace, act_blocks(w->act, w->k), m, bias, y, ldy, x, ldx);
    free(owned);
    return CQ_OK;
}

/* ------------------------------------------------------------------------------------------------------ */
/* fp32 GEMM: op(B) is packed into f32 panels per call, then the same f32 tiles run; alpha/beta are applied  */
/* per tile from a small stack buffer, so the micro-kernels keep one job.                                    */
/* ------------------------------------------------------------------------------------------------------ */

size_t cq_sgemm_workspace_bytes(int64_t n, int64_t k) {
    if (n <= 0 || k <= 0) return 0;
    return (size_t)ceil_div(n, CQ_PANEL_COLS) * cq_panel_bytes_f32(k);
}

/* B is K×N row-major: panel p holds columns p·8 … p·8+7 of B for every k. */
static void pack_panel_f32_from_columns(const float *b, int64_t ldb, int cols, int64_t k, float *panel) {
    for (int64_t i = 0; i < k; i++) {
        int c = 0;
        for (; c < cols; c++) panel[i * CQ_PANEL_COLS + c] = b[i * ldb + c];
        for (; c < CQ_PANEL_COLS; c++) panel[i * CQ_PANEL_COLS + c] = 0.0f;
    }
}

cq_status cq_sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                   int64_t ldb, int b_trans, float beta, float *c, int64_t ldc, void *workspace) {
    if (m < 0 || n < 0 || k < 0) return CQ_ERR_INVALID_ARGUMENT;
    if (m == 0 || n == 0) return CQ_OK;
    if (!c || ldc < n) return CQ_ERR_INVALID_ARGUMENT;
    if (k > 0 && (!a || !b || lda < k || ldb < (b_trans ? k : n))) return CQ_ERR_INVALID_ARGUMENT;
    const cq_kernel kernel = cq_kernel_default();
    const cq_tile_fn tile = cq_traits(CQ_TYPE_F32)->tile[kernel];
    if (k == 0) { /* A·op(B) is all zeros */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return CQ_OK;
    }
    void *owned = NULL;
    if (!workspace) {
        owned = workspace = aligned_alloc_64(cq_sgemm_workspace_bytes(n, k));
        if (!owned) return CQ_ERR_OUT_OF_MEMORY;
    }
    float *panels = workspace;
    const int64_t np = ceil_div(n, CQ_PANEL_COLS);
    const size_t panel_floats = cq_panel_bytes_f32(k) / sizeof(float);
#pragma omp parallel for num_threads(cq_threads_for(np * k / 4096 + 1)) schedule(static)
    for (int64_t p = 0; p < np; p++) {
        const int64_t col = p * CQ_PANEL_COLS;
        const int cols = (int)(n - col < CQ_PANEL_COLS ? n - col : CQ_PANEL_COLS);
        if (b_trans)
            cq_pack_panel_f32(b + col * ldb, (size_t)ldb * sizeof(float), cols, k, panels + p * panel_floats);
        else
            pack_panel_f32_from_columns(b + col, ldb, cols, k, panels + p * panel_floats);
    }
    /* panels go by pairs when the kernel has a two-panel tile (a lone last panel takes the one-panel tile) */
    const cq_tile_fn tile2 = cq_traits(CQ_TYPE_F32)->tile2[kernel];
    const int64_t step = tile2 ? 2 : 1, units = ceil_div(np, step);
    const int64_t row_groups = ceil_div(m, CQ_TILE_ROWS);
    const int64_t tiles = units * row_groups;
#pragma omp parallel for num_threads(cq_threads_for(tiles)) schedule(static)
    for (int64_t i = 0; i < tiles; i++) {
        const int64_t p = i / row_groups * step, g = i % row_groups;
        const int two = tile2 && p + 1 < np;
        const int64_t col = p * CQ_PANEL_COLS, row = g * CQ_TILE_ROWS, width = (two ? 2 : 1) * CQ_PANEL_COLS;
        float acc[CQ_TILE_ROWS * 2 * CQ_PANEL_COLS];
        cq_tile t = {
            .panel = panels + p * panel_floats,
            .k = k,
            .x = a + row * lda,
            .x_stride = lda,
            .rows = (int)(m - row < CQ_TILE_ROWS ? m - row : CQ_TILE_ROWS),
            .cols = (int)(n - col < width ? n - col : width),
            .y = acc,
            .ldy = 2 * CQ_PANEL_COLS,
            .bias = NULL,
        };
        (two ? tile2 : tile)(&t);
        for (int r = 0; r < t.rows; r++) {
            float *out = c + (row + r) * ldc + col;
            for (int j = 0; j < t.cols; j++) {
                const float v = alpha * acc[r * 2 * CQ_PANEL_COLS + j];
                out[j] = beta == 0.0f ? v : v + beta * out[j];
            }
        }
    }
    free(owned);
    return CQ_OK;
}
