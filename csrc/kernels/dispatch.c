/* Kernel selection. x86: cpuid/xgetbv at each call (cheap, and the engine calls it once per model load, so no
   global state is needed); the AVX files are compiled with their own -m flags and only ever called from here.
   aarch64: NEON is part of the base ISA, so the choice is made at build time from the NEON files that exist
   (CMake defines BIFSMN_HAVE_<FAMILY>_NEON for each one); families without a NEON file use the reference. */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define BIFSMN_X86 1
#include <cpuid.h>

typedef struct {
    int avx2_fma;
    int avx512;
} x86_features;

static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static x86_features detect_x86(void)
{
    x86_features f = {0, 0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return f;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, popcnt = (c >> 23) & 1;
    if (!osxsave || !avx)
        return f;
    const unsigned long long xcr0 = xgetbv0();
    const int os_ymm = (xcr0 & 0x6) == 0x6;
    const int os_zmm = (xcr0 & 0xe6) == 0xe6; /* xmm, ymm, opmask, zmm_hi256, hi16_zmm */
    if (__get_cpuid_max(0, NULL) < 7)
        return f;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1;
    const int vpopcntdq = (c >> 14) & 1;
    f.avx2_fma = os_ymm && avx2 && fma && popcnt;
    f.avx512 = f.avx2_fma && os_zmm && avx512f && avx512bw && vpopcntdq;
    return f;
}
#endif

int bifsmn_kernels_available(bifsmn_impl impl)
{
#if defined(BIFSMN_X86)
    const x86_features f = impl == BIFSMN_IMPL_AVX2 || impl == BIFSMN_IMPL_AVX512 ? detect_x86() : (x86_features){0, 0};
#endif
    switch (impl) {
    case BIFSMN_IMPL_REF: return 1;
#if defined(BIFSMN_X86)
    case BIFSMN_IMPL_AVX2: return f.avx2_fma;
    case BIFSMN_IMPL_AVX512: return f.avx512;
#elif defined(__aarch64__)
#if defined(BIFSMN_HAVE_BGEMM_NEON) || defined(BIFSMN_HAVE_BITPACK_NEON) || defined(BIFSMN_HAVE_SGEMM_NEON) || \
    defined(BIFSMN_HAVE_MELSPEC_NEON) || defined(BIFSMN_HAVE_BFUSE_NEON) || defined(BIFSMN_HAVE_SCONV_NEON)
    case BIFSMN_IMPL_NEON: return 1;
#endif
#endif
    default: return 0;
    }
}

static void fill(bifsmn_impl impl, bifsmn_kernels *k)
{
    k->impl = BIFSMN_IMPL_REF;
    k->name = "ref";
    k->bitpack = bifsmn_bitpack_ref;
    k->bgemm = bifsmn_bgemm_ref;
    k->sgemm = bifsmn_sgemm_ref;
    k->melspec = bifsmn_melspec_ref;
    k->melspec_lanes = 1;
    k->bpanel_words = bifsmn_bpanel_words_ref;
    k->bpanel = bifsmn_bpanel_ref;
    k->bgemm_fused = bifsmn_bgemm_fused_ref;
    k->bdwconv = bifsmn_bdwconv_ref;
    k->sconv1 = bifsmn_sconv1_ref;
#if defined(BIFSMN_X86)
    if (impl == BIFSMN_IMPL_AVX2) {
        *k = (bifsmn_kernels){.impl = impl, .name = "avx2", .bitpack = bifsmn_bitpack_avx2,
                              .bgemm = bifsmn_bgemm_avx2, .sgemm = bifsmn_sgemm_avx2,
                              .melspec = bifsmn_melspec_avx2, .melspec_lanes = 8,
                              .bpanel_words = bifsmn_bpanel_words_avx2, .bpanel = bifsmn_bpanel_avx2,
                              .bgemm_fused = bifsmn_bgemm_fused_avx2, .bdwconv = bifsmn_bdwconv_avx2,
                              .sconv1 = bifsmn_sconv1_avx2};
    } else if (impl == BIFSMN_IMPL_AVX512) {
        /* A 512-bit bitpack, depthwise or first-layer conv would only save a few ns per layer: the AVX2 ones
           are used. */
        *k = (bifsmn_kernels){.impl = impl, .name = "avx512", .bitpack = bifsmn_bitpack_avx2,
                              .bgemm = bifsmn_bgemm_avx512, .sgemm = bifsmn_sgemm_avx512,
                              .melspec = bifsmn_melspec_avx512, .melspec_lanes = 16,
                              .bpanel_words = bifsmn_bpanel_words_avx512, .bpanel = bifsmn_bpanel_avx512,
                              .bgemm_fused = bifsmn_bgemm_fused_avx512, .bdwconv = bifsmn_bdwconv_avx2,
                              .sconv1 = bifsmn_sconv1_avx2};
    }
#elif defined(__aarch64__)
    if (impl == BIFSMN_IMPL_NEON) {
        k->impl = impl;
        k->name = "neon";
#if defined(BIFSMN_HAVE_BITPACK_NEON)
        k->bitpack = bifsmn_bitpack_neon;
#endif
#if defined(BIFSMN_HAVE_BGEMM_NEON)
        k->bgemm = bifsmn_bgemm_neon;
#endif
#if defined(BIFSMN_HAVE_SGEMM_NEON)
        k->sgemm = bifsmn_sgemm_neon;
#endif
#if defined(BIFSMN_HAVE_MELSPEC_NEON)
        k->melspec = bifsmn_melspec_neon;
        k->melspec_lanes = 4;
#endif
#if defined(BIFSMN_HAVE_BFUSE_NEON)
        k->bpanel_words = bifsmn_bpanel_words_neon;
        k->bpanel = bifsmn_bpanel_neon;
        k->bgemm_fused = bifsmn_bgemm_fused_neon;
        k->bdwconv = bifsmn_bdwconv_neon;
#endif
#if defined(BIFSMN_HAVE_SCONV_NEON)
        k->sconv1 = bifsmn_sconv1_neon;
#endif
    }
#else
    (void)impl;
#endif
}

static const char *impl_name(bifsmn_impl impl)
{
    static const char *const names[] = {"auto", "ref", "avx2", "avx512", "neon"};
    return (unsigned)impl < sizeof names / sizeof names[0] ? names[impl] : "unknown";
}

int bifsmn_kernels_select(bifsmn_impl want, bifsmn_kernels *k, char *msg, size_t msg_len)
{
    if (want == BIFSMN_IMPL_AUTO) {
        const char *env = getenv("BIFSMN_KERNEL");
        if (env && *env && strcmp(env, "auto") != 0) {
            bifsmn_impl forced = BIFSMN_IMPL_AUTO;
            for (int i = BIFSMN_IMPL_REF; i <= BIFSMN_IMPL_NEON; i++)
                if (strcmp(env, impl_name((bifsmn_impl)i)) == 0)
                    forced = (bifsmn_impl)i;
            if (forced == BIFSMN_IMPL_AUTO) {
                if (msg)
                    snprintf(msg, msg_len, "BIFSMN_KERNEL=%s: expected one of auto, ref, avx2, avx512, neon", env);
                return BIFSMN_ERR_KERNEL;
            }
            want = forced;
        } else {
            const bifsmn_impl order[] = {BIFSMN_IMPL_AVX512, BIFSMN_IMPL_AVX2, BIFSMN_IMPL_NEON, BIFSMN_IMPL_REF};
            for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
                if (bifsmn_kernels_available(order[i])) {
                    want = order[i];
                    break;
                }
        }
    }
    if (!bifsmn_kernels_available(want)) {
        if (msg)
            snprintf(msg, msg_len, "kernel implementation '%s' is not available on this CPU or build",
                     impl_name(want));
        return BIFSMN_ERR_KERNEL;
    }
    fill(want, k);
    return BIFSMN_OK;
}
