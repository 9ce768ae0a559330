/* The NEON kernels against the portable references, aimed at what is specific to them (test_kernels.c compares
   every kernel on random and edge shapes):
   - bgemm: the 8-bit (31 steps of 128 bits) and 16-bit (4092 steps) accumulator limits, hit with the worst
     case (every bit differs, so every byte and halfword lane grows as fast as it can), K far beyond 16 bits,
     odd word counts, and 2x4 tiles cut by M and N;
   - every kernel: operands placed right before an inaccessible page, so a load past the last row (the
     pipelined loops load ahead) or a store past the last output faults instead of passing silently; the fused
     kernels' activations, weights, transform arrays (their padding included) and outputs likewise. */
#define _DEFAULT_SOURCE /* mmap, MAP_ANONYMOUS */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bfuse/bfuse.h"
#include "bgemm/bgemm.h"
#include "bitpack/bitpack.h"
#include "check.h"
#include "sgemm/sgemm.h"

#define LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* `bytes` of memory ending exactly at a PROT_NONE page. */
static void *guarded(size_t bytes)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (bytes + page - 1) / page * page;
    char *base = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base + span, page, PROT_NONE) != 0) {
        fprintf(stderr, "guarded: cannot map %zu bytes\n", bytes);
        exit(2);
    }
    return base + span - bytes;
}

static void release(void *p, size_t bytes)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (bytes + page - 1) / page * page;
    munmap((char *)p + bytes - span, span + page);
}

enum { RANDOM, WORST, MIXED };

/* Packed rows with zero pad bits: RANDOM bits; WORST a = all -1, w = all +1 (dot = -K, every lane at its
   maximum); MIXED alternates worst-case and random rows. */
static void fill_bits(uint64_t *x, int rows, int K, int ones, int pattern, unsigned long long *seed)
{
    const int kw = (K + 63) / 64;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < kw; i++) {
            const int worst = pattern == WORST || (pattern == MIXED && r % 2 == 0);
            uint64_t v = worst ? (ones ? ~0ULL : 0ULL) : rng_next(seed);
            if (i == kw - 1 && K % 64)
                v &= (1ULL << (K % 64)) - 1;
            x[(size_t)r * kw + i] = v;
        }
}

static void check_bgemm(int M, int N, int K, int pattern, unsigned long long *seed)
{
    const size_t kw = (size_t)(K + 63) / 64, abytes = 8 * M * kw, wbytes = 8 * N * kw, obytes = 4 * (size_t)M * N;
    uint64_t *a = guarded(abytes), *w = guarded(wbytes);
    int32_t *out = guarded(obytes), *want = malloc(obytes);
    fill_bits(a, M, K, 1, pattern, seed);
    fill_bits(w, N, K, 0, pattern, seed);
    memset(out, 0x55, obytes);
    bifsmn_bgemm_ref(a, w, want, M, N, K);
    bifsmn_bgemm_neon(a, w, out, M, N, K);
    CHECK(memcmp(out, want, obytes) == 0, "bgemm_neon differs from ref at M=%d N=%d K=%d pattern=%d", M, N, K,
          pattern);
    if (pattern == WORST)
        CHECK(out[0] == -K && out[(size_t)M * N - 1] == -K, "bgemm_neon worst case: %d, %d, want %d", out[0],
              out[(size_t)M * N - 1], -K);
    release(a, abytes), release(w, wbytes), release(out, obytes), free(want);
}

static void test_bgemm(void)
{
    unsigned long long seed = 0x243f6a8885a308d3ULL;
    /* Word-count and tile edges. */
    const int small[] = {0, 1, 2, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257, 383, 384, 385};
    for (int ik = 0; ik < LEN(small); ik++)
        for (int M = 1; M <= 5; M++)
            for (int N = 1; N <= 9; N++)
                for (int p = RANDOM; p <= WORST; p++)
                    check_bgemm(M, N, small[ik], p, &seed);
    /* Byte-accumulator chunks (31 steps; shorter chunks are rounded down to odd): steps around 31 and 62. */
    const int chunk_steps[] = {29, 30, 31, 32, 33, 61, 62, 63, 64};
    for (int i = 0; i < LEN(chunk_steps); i++)
        for (int tail = 0; tail <= 64; tail += 64)
            for (int p = RANDOM; p <= MIXED; p++)
                check_bgemm(3, 5, 128 * chunk_steps[i] + tail, p, &seed);
    /* Halfword blocks (4092 steps plus the odd word): the 16-bit limit is 4095 steps, and K beyond 2^16. */
    const int block_steps[] = {4091, 4092, 4093, 4094, 4095, 4096, 8184, 8185};
    for (int i = 0; i < LEN(block_steps); i++)
        for (int tail = 0; tail <= 64; tail += 64)
            check_bgemm(3, 5, 128 * block_steps[i] + tail, WORST, &seed);
    /* Many blocks: 3,000,001 bits, all three patterns. */
    for (int p = RANDOM; p <= MIXED; p++)
        check_bgemm(2, 5, 3000001, p, &seed);
}

static void test_sgemm(void)
{
    unsigned long long seed = 0x13198a2e03707344ULL;
    const int Ks[] = {0, 1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 100, 257};
    for (int ik = 0; ik < LEN(Ks); ik++)
        for (int M = 1; M <= 6; M++)
            for (int N = 1; N <= 6; N++) {
                const int K = Ks[ik];
                const size_t ab = sizeof(float) * M * K, wb = sizeof(float) * N * K, cb = sizeof(float) * M * N;
                float *a = guarded(ab), *w = guarded(wb), *bias = guarded(sizeof(float) * N), *c = guarded(cb);
                float *want = malloc(cb);
                for (int i = 0; i < M * K; i++)
                    a[i] = rng_float(&seed);
                for (int i = 0; i < N * K; i++)
                    w[i] = rng_float(&seed);
                for (int i = 0; i < N; i++)
                    bias[i] = rng_float(&seed);
                for (int with_bias = 0; with_bias <= 1; with_bias++) {
                    bifsmn_sgemm_ref(a, w, with_bias ? bias : NULL, want, M, N, K);
                    bifsmn_sgemm_neon(a, w, with_bias ? bias : NULL, c, M, N, K);
                    int bad = 0;
                    for (int i = 0; i < M * N; i++) /* a K-term float dot of values in [-1, 1] */
                        bad += !(fabsf(c[i] - want[i]) <= 1e-6f * (K + 1));
                    CHECK(bad == 0, "sgemm_neon: %d outputs off at M=%d N=%d K=%d bias=%d", bad, M, N, K, with_bias);
                }
                release(a, ab), release(w, wb), release(bias, sizeof(float) * N), release(c, cb), free(want);
            }
}

static void test_bitpack(void)
{
    unsigned long long seed = 0xa4093822299f31d0ULL;
    const float specials[] = {0.0f, -0.0f, NAN, -NAN, INFINITY, -INFINITY, -1e-40f, 1e-40f};
    const int Ks[] = {1, 2, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129, 1000};
    for (int ik = 0; ik < LEN(Ks); ik++)
        for (int rows = 1; rows <= 3; rows++) {
            const int K = Ks[ik], kw = (K + 63) / 64;
            const size_t xb = sizeof(float) * rows * K, ob = 8 * (size_t)rows * kw;
            float *x = guarded(xb);
            uint64_t *out = guarded(ob), *want = malloc(ob);
            for (int i = 0; i < rows * K; i++) {
                const unsigned long long r = rng_next(&seed);
                x[i] = r % 4 == 0 ? specials[(r >> 8) % LEN(specials)] : rng_float(&seed);
            }
            memset(out, 0xab, ob);
            bifsmn_bitpack_ref(x, want, rows, K);
            bifsmn_bitpack_neon(x, out, rows, K);
            CHECK(memcmp(out, want, ob) == 0, "bitpack_neon differs from ref at rows=%d K=%d", rows, K);
            release(x, xb), release(out, ob), free(want);
        }
}

/* n floats (padded to a multiple of 16 with zeros, as the fused kernels' contract says) ending at a guard page. */
static float *guarded_floats(int n, unsigned long long *seed)
{
    const int np = (n + 15) / 16 * 16;
    float *p = guarded(sizeof(float) * (size_t)np);
    for (int i = 0; i < np; i++)
        p[i] = i < n ? rng_float(seed) : 0.0f;
    return p;
}

static void test_fused_guards(void)
{
    unsigned long long seed = 0x082efa98ec4e6c89ULL;
    static const int shapes[][3] = {{1, 16, 128}, {4, 16, 64}, {5, 33, 200}, {8, 48, 256}, {3, 7, 400}, {2, 20, 70}};
    for (int i = 0; i < LEN(shapes); i++)
        for (int thr = 0; thr <= 1; thr++) {
            const int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2], kw = (K + 63) / 64;
            const size_t ab = 8 * (size_t)M * kw, pb = 8 * bifsmn_bpanel_words_neon(N, K), wb = 8 * (size_t)N * kw;
            const size_t ob = 4 * (size_t)M * N, bb = 8 * (size_t)M * ((N + 63) / 64);
            uint64_t *a = guarded(ab), *w = malloc(wb), *panel = guarded(pb), *bits = guarded(bb);
            float *out = guarded(ob), *res = guarded(ob), *want = malloc(ob);
            int32_t *t = guarded(4 * (size_t)N);
            uint64_t *want_bits = malloc(bb), *ref_panel = malloc(wb);
            fill_bits(a, M, K, 0, RANDOM, &seed);
            fill_bits(w, N, K, 0, RANDOM, &seed);
            for (int j = 0; j < M * N; j++)
                res[j] = rng_float(&seed);
            for (int j = 0; j < N; j++)
                t[j] = (int)(rng_next(&seed) % (unsigned)(K + 1));
            float *scale = guarded_floats(N, &seed), *shift = guarded_floats(N, &seed), *slope = guarded_floats(N, &seed);
            bifsmn_bout o = {.N = N, .scale = scale, .shift = shift, .slope = slope, .res = thr ? NULL : res,
                             .out = thr ? NULL : out, .thr = thr ? t : NULL, .bits = bits, .group = 1,
                             .stride = (N + 63) / 64};
            bifsmn_bpanel_neon(w, N, K, panel);
            bifsmn_bpanel_ref(w, N, K, ref_panel);
            memset(bits, 0, bb);
            memset(want_bits, 0, bb);
            void *scratch = malloc(BIFSMN_BGEMM_SCRATCH(K));
            bifsmn_bgemm_fused_neon(a, panel, M, K, &o, scratch);
            bifsmn_bout r = o;
            r.out = thr ? NULL : want, r.bits = want_bits;
            bifsmn_bgemm_fused_ref(a, ref_panel, M, K, &r, scratch);
            CHECK(memcmp(bits, want_bits, bb) == 0 && (thr || memcmp(out, want, ob) == 0),
                  "guarded bgemm_fused_neon differs at M=%d N=%d K=%d thr=%d", M, N, K, thr);
            release(a, ab), release(panel, pb), release(bits, bb), release(out, ob), release(res, ob);
            release(t, 4 * (size_t)N), free(w), free(want), free(want_bits), free(ref_panel), free(scratch);
            const size_t fb = sizeof(float) * (size_t)(N + 15) / 16 * 16;
            release(scale, fb), release(shift, fb), release(slope, fb);
        }
    /* depthwise: input rows, weight bytes, residual and outputs at guard pages */
    static const int dw[][3] = {{8, 128, 5}, {5, 16, 3}, {3, 33, 5}, {1, 64, 1}};
    for (int i = 0; i < LEN(dw); i++) {
        const int T = dw[i][0], C = dw[i][1], taps = dw[i][2], cw = (C + 63) / 64, stride = cw * 64;
        const size_t xb = 8 * (size_t)T * cw, wnb = (size_t)taps * stride, ob = 4 * (size_t)T * C, bb = xb;
        uint64_t *x = guarded(xb), *bits = guarded(bb), *want_bits = malloc(bb);
        uint8_t *wneg = guarded(wnb);
        float *res = guarded(ob), *out = guarded(ob), *want = malloc(ob);
        fill_bits(x, T, C, 0, RANDOM, &seed);
        for (size_t j = 0; j < wnb; j++)
            wneg[j] = (int)(j % stride) < C && rng_next(&seed) % 2 ? 0xff : 0;
        for (int j = 0; j < T * C; j++)
            res[j] = rng_float(&seed);
        float *scale = guarded_floats(C, &seed), *shift = guarded_floats(C, &seed), *slope = guarded_floats(C, &seed);
        const bifsmn_bout o = {.N = C, .scale = scale, .shift = shift, .slope = slope, .res = res, .out = out,
                               .bits = bits, .group = 1, .stride = cw};
        bifsmn_bout r = o;
        r.out = want, r.bits = want_bits;
        memset(bits, 0, bb);
        memset(want_bits, 0, bb);
        void *scratch = malloc(BIFSMN_BDWCONV_SCRATCH(T, C, taps, 1));
        bifsmn_bdwconv_neon(x, wneg, T, taps, 1, (taps - 1) / 2, &o, scratch);
        bifsmn_bdwconv_ref(x, wneg, T, taps, 1, (taps - 1) / 2, &r, scratch);
        CHECK(memcmp(bits, want_bits, bb) == 0 && memcmp(out, want, ob) == 0,
              "guarded bdwconv_neon differs at T=%d C=%d taps=%d", T, C, taps);
        release(x, xb), release(bits, bb), release(wneg, wnb), release(res, ob), release(out, ob);
        free(want_bits), free(want), free(scratch);
        const size_t fb = sizeof(float) * (size_t)(C + 15) / 16 * 16;
        release(scale, fb), release(shift, fb), release(slope, fb);
    }
}

int main(void)
{
    test_fused_guards();
    test_bgemm();
    test_sgemm();
    test_bitpack();
    return check_report("test_neon_kernels");
}
