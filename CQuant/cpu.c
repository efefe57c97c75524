/*
 * cpu.c — which kernels this CPU can run, which one is the default, and how many threads to use.
 */
#define _GNU_SOURCE /* posix_memalign, sysconf, getauxval under -std=c11 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if CQ_ARCH_ARM && defined(__linux__)
#include <sys/auxv.h>
#endif
#include <unistd.h>

static const char *const k_kernel_names[CQ_KERNEL_COUNT] = {"scalar", "avx2", "neon", "dotprod", "i8mm",
                                                                   "vnni"};

const char *cq_kernel_name(cq_kernel kernel) {
    return (kernel >= 0 && kernel < CQ_KERNEL_COUNT) ? k_kernel_names[kernel] : "unknown";
}

int cq_kernel_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < CQ_KERNEL_COUNT; i++)
        if (strcmp(name, k_kernel_names[i]) == 0) return i;
    return -1;
}

#if CQ_ARCH_X86
int cq_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif
#if CQ_HAVE_VNNI
/* VPDPBUSD on ymm registers needs AVX512-VNNI and AVX512-VL (AVX-VNNI alone, the VEX form, is not used); the OS
 * must save the AVX-512 state, which __builtin_cpu_supports checks through XCR0 for the avx512 features. */
int cq_cpu_has_vnni(void) {
    __builtin_cpu_init();
    return cq_cpu_has_avx2() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
}
#endif

#if CQ_ARCH_ARM
/* HWCAP bits from the Linux UAPI (asm/hwcap.h), spelled out so old headers still build. */
#define CQ_HWCAP_ASIMDDP (1UL << 20)
#define CQ_HWCAP2_I8MM (1UL << 13)
int cq_cpu_has_dotprod(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & CQ_HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}
int cq_cpu_has_i8mm(void) {
#if defined(__linux__)
    return cq_cpu_has_dotprod() && (getauxval(AT_HWCAP2) & CQ_HWCAP2_I8MM) != 0;
#else
    return 0;
#endif
}
#endif

int cq_kernel_supported(cq_kernel kernel) {
    switch (kernel) {
    case CQ_KERNEL_SCALAR: return 1;
#if CQ_ARCH_X86
    case CQ_KERNEL_AVX2: return cq_cpu_has_avx2();
#endif
#if CQ_HAVE_VNNI
    case CQ_KERNEL_VNNI: return cq_cpu_has_vnni();
#endif
#if CQ_ARCH_ARM
    case CQ_KERNEL_NEON: return 1; /* Advanced SIMD is mandatory on AArch64 */
    case CQ_KERNEL_DOTPROD: return cq_cpu_has_dotprod();
    case CQ_KERNEL_I8MM: return cq_cpu_has_i8mm();
#endif
    default: return 0;
    }
}

cq_kernel cq_kernel_best(void) {
    /* the enum grows by appending, so its order is not the preference order on every CPU: vnni > avx2, and
     * i8mm > dotprod > neon (a CPU supports kernels of one architecture only) */
    static const cq_kernel preferred[] = {CQ_KERNEL_VNNI, CQ_KERNEL_I8MM, CQ_KERNEL_DOTPROD, CQ_KERNEL_NEON,
                                          CQ_KERNEL_AVX2};
    for (size_t i = 0; i < sizeof preferred / sizeof preferred[0]; i++)
        if (cq_kernel_supported(preferred[i])) return preferred[i];
    return CQ_KERNEL_SCALAR;
}

/* -1: not decided yet. Set once from the environment, or by cq_kernel_set_default. */
static int g_default_kernel = -1;

cq_kernel cq_kernel_default(void) {
    int k = __atomic_load_n(&g_default_kernel, __ATOMIC_ACQUIRE);
    if (k >= 0) return (cq_kernel)k;
    k = cq_kernel_best();
    const char *env = getenv("VZQ_KERNEL");
    if (env && *env) {
        int forced = cq_kernel_parse(env);
        /* An unknown or unsupported request falls back to the best kernel; the CLI validates and reports it. */
        if (forced >= 0 && cq_kernel_supported((cq_kernel)forced)) k = forced;
    }
    __atomic_store_n(&g_default_kernel, k, __ATOMIC_RELEASE);
    return (cq_kernel)k;
}

cq_status cq_kernel_set_default(cq_kernel kernel) {
    if (kernel < 0 || kernel >= CQ_KERNEL_COUNT || !cq_kernel_supported(kernel)) return CQ_ERR_UNSUPPORTED_KERNEL;
    __atomic_store_n(&g_default_kernel, (int)kernel, __ATOMIC_RELEASE);
    return CQ_OK;
}

/* ------------------------------------------------------------------------------------------------------ */

static int g_threads = 0; /* 0: not decided yet */

static int cores(void) {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}

static int threads_from_env(void) {
    const char *env = getenv("VZQ_THREADS");
    if (env && *env) {
        char *end = NULL;
        long n = strtol(env, &end, 10);
        if (end && *end == '\0' && n > 0 && n <= 4096) return (int)n;
    }
    return cores();
}

void cq_set_threads(int n) { __atomic_store_n(&g_threads, n > 0 ? n : threads_from_env(), __ATOMIC_RELEASE); }

int cq_get_threads(void) {
    int n = __atomic_load_n(&g_threads, __ATOMIC_ACQUIRE);
    if (n > 0) return n;
    n = threads_from_env();
    __atomic_store_n(&g_threads, n, __ATOMIC_RELEASE);
    return n;
}

int cq_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Threads worth starting for this many independent work items (tiles). */
int cq_threads_for(int64_t work_items) {
    int n = cq_get_threads();
    if (work_items < n) n = work_items > 0 ? (int)work_items : 1;
    return n;
}

cq_quantize_x_fn cq_quantize_x_for(cq_kernel kernel) {
    switch (kernel) {
    case CQ_KERNEL_SCALAR: return cq_quantize_x_scalar;
#if CQ_ARCH_X86
    case CQ_KERNEL_AVX2:
    case CQ_KERNEL_VNNI: return cq_quantize_x_avx2;
#endif
#if CQ_ARCH_ARM
    case CQ_KERNEL_NEON:
    case CQ_KERNEL_DOTPROD:
    case CQ_KERNEL_I8MM: return cq_quantize_x_neon;
#endif
    default: return NULL;
    }
}

cq_quantize_xk_fn cq_quantize_xk_for(cq_kernel kernel) {
    switch (kernel) {
    case CQ_KERNEL_SCALAR: return cq_quantize_xk_scalar;
#if CQ_ARCH_X86
    case CQ_KERNEL_AVX2:
    case CQ_KERNEL_VNNI: return cq_quantize_xk_avx2;
#endif
#if CQ_ARCH_ARM
    case CQ_KERNEL_NEON:
    case CQ_KERNEL_DOTPROD:
    case CQ_KERNEL_I8MM: return cq_quantize_xk_neon;
#endif
    default: return NULL;
    }
}
