/*
 * bench.c — what the machine can do at best, so GEMM numbers can be read as a fraction of it:
 *   - int8 multiply-add peak (the instruction sequence the quantized kernels are built from),
 *   - streaming copy bandwidth and streaming read bandwidth (GEMV only reads weights).
 *
 * These functions measure; they never decide anything. Every figure is the best of several repeats, because
 * on a small shared machine anything else running only ever makes a run slower, never faster.
 *
 * OpenMP regions stay in baseline-ISA functions; the workers they call carry the ISA target attributes
 * (an OpenMP region inside a target("avx2") function does not compile).
 */
#define _GNU_SOURCE /* clock_gettime, posix_memalign under -std=c11 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#if CQ_ARCH_X86
#include <immintrin.h>
#endif
#if CQ_ARCH_ARM
#include <arm_neon.h>
#endif

double cq_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cq_release_free_memory(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    malloc_trim(0);
#endif
}

static int resolve_threads(int threads) { return threads > 0 ? threads : cq_get_threads(); }

/* Keeps results alive so the compiler cannot drop the work that produced them. */
static volatile int64_t g_sink;

/* ------------------------------------------------------------------------------------------------------ */
/* int8 peak                                                                                               */
/*                                                                                                         */
/* Each worker runs CHAINS independent dependency chains; one step of a chain feeds the chain's own        */
/* accumulator back in as the next step's byte operand, so nothing can be hoisted out of the loop and each  */
/* step waits for the previous one of the same chain only. CHAINS is well above latency × issue width of   */
/* the multiply pipes, so the measured rate is the throughput limit, not the latency one.                  */
/* The return value is the number of int8 operations (1 multiply-add = 2 ops) the worker performed.        */
/* ------------------------------------------------------------------------------------------------------ */

#define PEAK_CHAINS 12

#if CQ_ARCH_X86
/* AVX2 step: vpmaddubsw (32 u8×s8 products, adjacent pairs summed into 16 × s16)
 *          → vpmaddwd with ones (pairs of s16 summed into 8 × s32)
 *          → vpaddd into the accumulator.
 * That is 32 multiply-adds = 64 int8 ops per 256-bit step: exactly what a Q8_0/Q4_0 kernel spends per 32
 * weight bytes of one column × one row. */
__attribute__((target("avx2,fma"))) static int64_t peak_worker_avx2(int64_t iters, int seed) {
    const __m256i w = _mm256_set1_epi8((char)(3 + seed));
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm256_set1_epi32(seed * 131 + c);
    for (int64_t i = 0; i < iters; i++) {
        /* written out so every chain lives in its own register (16 ymm: 12 chains + w + ones) */
#define STEP(c) acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(acc[c], w), ones))
        STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5);
        STEP(6); STEP(7); STEP(8); STEP(9); STEP(10); STEP(11);
#undef STEP
    }
    __m256i s = acc[0];
    for (int c = 1; c < PEAK_CHAINS; c++) s = _mm256_xor_si256(s, acc[c]);
    g_sink = _mm256_extract_epi64(s, 0) ^ _mm256_extract_epi64(s, 3);
    return iters * PEAK_CHAINS * 64;
}
#endif

#if CQ_HAVE_VNNI
/* VNNI step: vpdpbusd (32 u8×s8 products, each 4 summed into the 8 × s32 accumulator, no saturation) = 64 int8
 * ops per 256-bit instruction: what the vnni Q8_0 kernel spends per 32 weight bytes of one column × one row. */
__attribute__((target("avx2,fma,avx512vnni,avx512vl"))) static int64_t peak_worker_vnni(int64_t iters, int seed) {
    const __m256i w = _mm256_set1_epi8((char)(3 + seed));
    __m256i acc[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = _mm256_set1_epi32(seed * 131 + c);
    for (int64_t i = 0; i < iters; i++) {
#define STEP(c) acc[c] = _mm256_dpbusd_epi32(acc[c], acc[c], w)
        STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5);
        STEP(6); STEP(7); STEP(8); STEP(9); STEP(10); STEP(11);
#undef STEP
    }
    __m256i s = acc[0];
    for (int c = 1; c < PEAK_CHAINS; c++) s = _mm256_xor_si256(s, acc[c]);
    g_sink = _mm256_extract_epi64(s, 0) ^ _mm256_extract_epi64(s, 3);
    return iters * PEAK_CHAINS * 64;
}
#endif

#if CQ_ARCH_ARM
/* SDOT step: 4 lanes × (4 s8×s8 products summed into an s32) = 16 multiply-adds = 32 int8 ops per 128-bit
 * instruction. The per-function target attribute spelling "arch=armv8.2-a+dotprod" is accepted by both gcc
 * (≥ 10) and clang. */
__attribute__((target("arch=armv8.2-a+dotprod"))) static int64_t peak_worker_dotprod(int64_t iters, int seed) {
    const int8x16_t w = vdupq_n_s8((int8_t)(3 + seed));
    int32x4_t acc[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = vdupq_n_s32(seed * 131 + c);
    for (int64_t i = 0; i < iters; i++) {
#define STEP(c) acc[c] = vdotq_s32(acc[c], vreinterpretq_s8_s32(acc[c]), w)
        STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5);
        STEP(6); STEP(7); STEP(8); STEP(9); STEP(10); STEP(11);
#undef STEP
    }
    int32x4_t s = acc[0];
    for (int c = 1; c < PEAK_CHAINS; c++) s = veorq_s32(s, acc[c]);
    g_sink = vgetq_lane_s32(s, 0) ^ vgetq_lane_s32(s, 3);
    return iters * PEAK_CHAINS * 32;
}

/* Plain NEON step (no dotprod): smull (8 s8×s8 → s16) + smlal2 (8 more, added) → sadalp (pairs of s16
 * accumulated into 4 × s32): 16 multiply-adds = 32 int8 ops per 128-bit step. */
static int64_t peak_worker_neon(int64_t iters, int seed) {
    const int8x16_t w = vdupq_n_s8((int8_t)(3 + seed));
    int32x4_t acc[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++) acc[c] = vdupq_n_s32(seed * 131 + c);
    for (int64_t i = 0; i < iters; i++) {
#define STEP(c)                                                                                              \
    do {                                                                                                     \
        const int8x16_t a = vreinterpretq_s8_s32(acc[c]);                                                    \
        int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(w));                                              \
        p = vmlal_high_s8(p, a, w);                                                                          \
        acc[c] = vpadalq_s16(acc[c], p);                                                                     \
    } while (0)
        STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5);
        STEP(6); STEP(7); STEP(8); STEP(9); STEP(10); STEP(11);
#undef STEP
    }
    int32x4_t s = acc[0];
    for (int c = 1; c < PEAK_CHAINS; c++) s = veorq_s32(s, acc[c]);
    g_sink = vgetq_lane_s32(s, 0) ^ vgetq_lane_s32(s, 3);
    return iters * PEAK_CHAINS * 32;
}
#endif

/* 0 when this build has no vector int8 worker for this CPU. */
static int64_t peak_worker(int64_t iters, int seed) {
#if CQ_HAVE_VNNI
    /* the default kernel's own sequence: vpdpbusd for vnni (also when only forced), maddubs for avx2 */
    if (cq_kernel_default() == CQ_KERNEL_VNNI) return peak_worker_vnni(iters, seed);
#endif
#if CQ_ARCH_X86
    if (cq_cpu_has_avx2()) return peak_worker_avx2(iters, seed);
#endif
#if CQ_ARCH_ARM
    if (cq_cpu_has_dotprod()) return peak_worker_dotprod(iters, seed);
    return peak_worker_neon(iters, seed);
#endif
    (void)iters;
    (void)seed;
    return 0;
}

/* One timed run of `iters` steps per thread on every thread at once; returns int8 ops per second. */
static double peak_run(int threads, int64_t iters) {
    int64_t ops = 0;
    const double t0 = cq_now_seconds();
#pragma omp parallel num_threads(threads) reduction(+ : ops)
    {
        int id = 0;
#ifdef _OPENMP
        id = omp_get_thread_num();
#endif
        ops += peak_worker(iters, id);
    }
    const double dt = cq_now_seconds() - t0;
    return dt > 0 ? (double)ops / dt : 0.0;
}

double cq_measure_int8_peak_gops(int threads, double seconds) {
    threads = resolve_threads(threads);
    if (peak_worker(1, 0) == 0) return 0.0; /* scalar build or no vector unit: unknown */
    if (seconds <= 0) seconds = 0.5;
    /* Calibrate on one thread: grow until a run takes ≥ 5 ms, then size runs for ~1/8 of the budget each. */
    int64_t iters = 1024;
    double rate = 0.0; /* steps per second, one thread */
    for (;;) {
        const double t0 = cq_now_seconds();
        peak_worker(iters, 0);
        const double dt = cq_now_seconds() - t0;
        if (dt >= 0.005 || iters > ((int64_t)1 << 40)) {
            rate = (double)iters / (dt > 0 ? dt : 1e-9);
            break;
        }
        iters *= 4;
    }
    const int repeats = 8;
    iters = (int64_t)(rate * seconds / repeats);
    if (iters < 1024) iters = 1024;
    double best = 0.0;
    peak_run(threads, iters / 4); /* wake every thread and let clocks settle */
    for (int r = 0; r < repeats; r++) {
        const double v = peak_run(threads, iters);
        if (v > best) best = v;
    }
    return best * 1e-9;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Bandwidth                                                                                               */
/* ------------------------------------------------------------------------------------------------------ */

/* Both buffers are first touched by the thread that later streams that part of them (same static split). */
static void *alloc_touched(size_t bytes, int threads) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, bytes) != 0) return NULL;
    uint8_t *b = p;
#pragma omp parallel num_threads(threads)
    {
        int id = 0, nt = 1;
#ifdef _OPENMP
        id = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const size_t lo = bytes * (size_t)id / (size_t)nt, hi = bytes * (size_t)(id + 1) / (size_t)nt;
        memset(b + lo, 1 + id, hi - lo);
    }
    return p;
}

/* Sum of 64-bit words with independent accumulators: the loop is trivially vectorized and never waits for
 * an add, so memory is the only limit. */
static int64_t sum_words(const uint64_t *p, size_t words) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= words; i += 8) {
        s0 += p[i + 0]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3];
        s4 += p[i + 4]; s5 += p[i + 5]; s6 += p[i + 6]; s7 += p[i + 7];
    }
    for (; i < words; i++) s0 += p[i];
    return (int64_t)(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
}

#if CQ_ARCH_X86
/* The same with 256-bit loads, as the AVX2 kernels stream weights: one core's read rate is then not limited by
 * the baseline (SSE2) loop's issue rate. */
__attribute__((target("avx2,fma"))) static int64_t sum_words_avx2(const uint64_t *p, size_t words) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= words; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    int64_t r = _mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 1) + _mm256_extract_epi64(s, 2) +
                _mm256_extract_epi64(s, 3);
    return r + sum_words(p + i, words - i);
}
#endif

static int64_t sum_words_best(const uint64_t *p, size_t words) {
#if CQ_ARCH_X86
    if (cq_cpu_has_avx2()) return sum_words_avx2(p, words);
#endif
    return sum_words(p, words);
}

/* mode 0: copy src → dst; mode 1: read src. Returns seconds for one pass over `bytes` on all threads. */
static double stream_pass(int mode, uint8_t *dst, const uint8_t *src, size_t bytes, int threads) {
    int64_t sink = 0;
    const double t0 = cq_now_seconds();
#pragma omp parallel num_threads(threads) reduction(^ : sink)
    {
        int id = 0, nt = 1;
#ifdef _OPENMP
        id = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        size_t lo = bytes * (size_t)id / (size_t)nt, hi = bytes * (size_t)(id + 1) / (size_t)nt;
        lo &= ~(size_t)63;
        hi = id == nt - 1 ? bytes : hi & ~(size_t)63;
        if (mode == 0) {
            memcpy(dst + lo, src + lo, hi - lo);
            sink ^= dst[lo];
        } else {
            sink ^= sum_words_best((const uint64_t *)(src + lo), (hi - lo) / 8);
        }
    }
    const double dt = cq_now_seconds() - t0;
    g_sink = sink;
    return dt;
}

static double stream_best(int mode, size_t bytes, int threads, int repeats) {
    threads = resolve_threads(threads);
    if (bytes < 4096) bytes = 4096;
    bytes &= ~(size_t)63;
    if (repeats <= 0) repeats = 5;
    uint8_t *src = alloc_touched(bytes, threads);
    uint8_t *dst = mode == 0 ? alloc_touched(bytes, threads) : NULL;
    if (!src || (mode == 0 && !dst)) {
        free(src);
        free(dst);
        return 0.0;
    }
    stream_pass(mode, dst, src, bytes, threads); /* warm: page tables, TLB, thread pool */
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        const double dt = stream_pass(mode, dst, src, bytes, threads);
        if (dt <= 0) continue;
        /* copy counts bytes read + bytes written (the write-allocate read of dst is not counted) */
        const double gbps = (double)bytes * (mode == 0 ? 2.0 : 1.0) / dt * 1e-9;
        if (gbps > best) best = gbps;
    }
    free(src);
    free(dst);
    return best;
}

double cq_measure_copy_gbps(size_t bytes, int threads, int repeats) { return stream_best(0, bytes, threads, repeats); }

double cq_measure_read_gbps(size_t bytes, int threads, int repeats) { return stream_best(1, bytes, threads, repeats); }
