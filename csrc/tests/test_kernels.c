/* Every kernel implementation available here against the reference: bitpack and bgemm bit-exact, sgemm to
   float rounding, on random data and edge shapes (K = 1, K not a multiple of 64/128, M and N not multiples of
   any tile). The reference itself is checked against +-1 dot products computed from the floats.
   The fused binary kernels (bgemm_fused, bdwconv): floats and bits identical to the reference in every output
   form, no bit outside the outputs touched, the threshold form giving the float form's bits; the reference
   against the plain GEMM and the formula. The direct first-layer conv (sconv1) against a plain convolution. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dispatch.h"

static const int Ks[] = {1, 2, 31, 63, 64, 65, 127, 128, 129, 200, 256, 257, 400, 1000};
static const int Ms[] = {1, 2, 3, 5, 8, 9, 17, 40}; /* >= 16 rows take the sgemm outer-product path */
static const int Ns[] = {1, 3, 4, 7, 8, 9, 31, 33};
#define LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void fill_random(float *x, size_t n, unsigned long long *s)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = rng_float(s);
        if (rng_next(s) % 16 == 0)
            x[i] = 0.0f; /* sign(0) = +1 must hold everywhere */
    }
}

static void test_bitpack_special_values(const bifsmn_kernels *k)
{
    float x[70];
    for (int i = 0; i < 70; i++)
        x[i] = 1.0f;
    x[0] = -0.0f;      /* not < 0: +1 */
    x[1] = NAN;        /* not < 0: +1 */
    x[2] = -1e-40f;    /* negative denormal: -1 */
    x[3] = -INFINITY;  /* -1 */
    x[4] = INFINITY;   /* +1 */
    x[65] = -2.0f;     /* second word */
    uint64_t out[2] = {~0ULL, ~0ULL};
    k->bitpack(x, out, 1, 70);
    CHECK(out[0] == 0xcULL, "%s: bitpack word 0 = %llx", k->name, (unsigned long long)out[0]);
    CHECK(out[1] == 0x2ULL, "%s: bitpack word 1 = %llx (pad bits must be 0)", k->name, (unsigned long long)out[1]);
}

static void test_shapes(const bifsmn_kernels *k, const bifsmn_kernels *ref, int check_ref)
{
    unsigned long long seed = 0x9e3779b97f4a7c15ULL;
    for (int ik = 0; ik < LEN(Ks); ik++)
        for (int im = 0; im < LEN(Ms); im++)
            for (int in = 0; in < LEN(Ns); in++) {
                const int K = Ks[ik], M = Ms[im], N = Ns[in], kw = (K + 63) / 64;
                float *a = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K);
                float *bias = malloc(sizeof(float) * N), *c0 = malloc(sizeof(float) * M * N);
                float *c1 = malloc(sizeof(float) * M * N);
                uint64_t *pa0 = malloc(8 * M * kw), *pa1 = malloc(8 * M * kw), *pw = malloc(8 * N * kw);
                int32_t *o0 = malloc(4 * M * N), *o1 = malloc(4 * M * N);
                fill_random(a, (size_t)M * K, &seed);
                fill_random(w, (size_t)N * K, &seed);
                fill_random(bias, (size_t)N, &seed);
                memset(pa1, 0xab, 8 * M * kw); /* every word must be written */
                ref->bitpack(a, pa0, M, K);
                k->bitpack(a, pa1, M, K);
                CHECK(memcmp(pa0, pa1, 8 * M * kw) == 0, "%s bitpack differs at M=%d K=%d", k->name, M, K);
                ref->bitpack(w, pw, N, K);
                ref->bgemm(pa0, pw, o0, M, N, K);
                k->bgemm(pa0, pw, o1, M, N, K);
                CHECK(memcmp(o0, o1, 4 * M * N) == 0, "%s bgemm differs at M=%d N=%d K=%d", k->name, M, N, K);
                if (check_ref) {
                    int bad = 0;
                    for (int m = 0; m < M; m++)
                        for (int n = 0; n < N; n++) {
                            int dot = 0;
                            for (int i = 0; i < K; i++)
                                dot += (a[m * K + i] < 0 ? -1 : 1) * (w[n * K + i] < 0 ? -1 : 1);
                            bad += dot != o0[m * N + n];
                        }
                    CHECK(bad == 0, "ref bgemm: %d wrong dot products at M=%d N=%d K=%d", bad, M, N, K);
                }
                ref->sgemm(a, w, bias, c0, M, N, K);
                k->sgemm(a, w, bias, c1, M, N, K);
                double worst = 0.0;
                for (int i = 0; i < M * N; i++) {
                    /* error bound of a K-term float dot product of values in [-1, 1] */
                    const double err = fabs((double)c0[i] - c1[i]) / (1e-6 * K + 1e-6);
                    worst = err > worst ? err : worst;
                }
                CHECK(worst <= 1.0, "%s sgemm off by %.3g of its bound at M=%d N=%d K=%d", k->name, worst, M, N, K);
                k->sgemm(a, w, NULL, c1, M, N, K);
                CHECK(fabsf(c1[0] + bias[0] - c0[0]) <= 1e-5f * (K + 1), "%s sgemm NULL bias", k->name);
                free(a), free(w), free(bias), free(c0), free(c1), free(pa0), free(pa1), free(pw), free(o0), free(o1);
            }
}

/* ---- fused binary kernels ---- */

/* 64-byte aligned memory (aligned_alloc wants a multiple of the alignment). */
static void *aligned(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

/* A 64-byte aligned, zero-padded buffer of n floats with room for the padding the kernels may read. */
static float *padded_floats(int n, unsigned long long *s, float lo, float hi)
{
    const int np = (n + 15) / 16 * 16;
    float *p = aligned(sizeof(float) * (size_t)(np + 16));
    for (int i = 0; i < np + 16; i++)
        p[i] = i < n ? lo + (hi - lo) * (rng_float(s) + 1.0f) / 2.0f : 0.0f;
    return p;
}

static void fill_words(uint64_t *x, int rows, int K, unsigned long long *s)
{
    const int kw = (K + 63) / 64;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < kw; i++)
            x[(size_t)r * kw + i] = rng_next(s) & (i == kw - 1 && K % 64 ? (1ULL << (K % 64)) - 1 : ~0ULL);
}

static int floor_half(int x) { return x >= 0 ? x / 2 : -((1 - x) / 2); }

enum { FLOAT_ALL, FLOAT_BITS_ONLY, FLOAT_PLAIN, THRESHOLD };

/* One shape in one output form: impl k against the reference, bit for bit. */
static void check_fused_gemm(const bifsmn_kernels *k, int M, int N, int K, int form, int group,
                             unsigned long long *s)
{
    const int kw = (K + 63) / 64, stride = (group * N + 63) / 64, rows = (M + group - 1) / group;
    uint64_t *a = aligned(8 * (size_t)M * kw), *w = aligned(8 * (size_t)N * kw);
    fill_words(a, M, K, s);
    fill_words(w, N, K, s);
    float *scale = padded_floats(N, s, 0.0f, 0.05f), *shift = padded_floats(N, s, -1.0f, 1.0f);
    float *slope = padded_floats(N, s, -0.3f, 0.6f), *res = padded_floats(M * N, s, -1.0f, 1.0f);
    scale[0] = 0.0f; /* a constant output */
    int32_t *base = malloc(4 * (size_t)M * N), *t = malloc(4 * (size_t)N), *thr = malloc(4 * (size_t)M * N);
    for (int i = 0; i < M * N; i++)
        base[i] = K - (int)(rng_next(s) % 3); /* a padding correction of 0..2 */
    bifsmn_bout o = {.N = N, .scale = scale, .shift = shift, .slope = slope, .base = base, .res = res,
                     .group = group, .stride = stride};
    if (form == FLOAT_PLAIN)
        o.slope = NULL, o.base = NULL, o.res = NULL;
    if (form == FLOAT_BITS_ONLY || form == THRESHOLD)
        o.res = NULL;
    if (form == THRESHOLD) {
        CHECK(bifsmn_bout_thresholds(&o, K, t) == 0, "thresholds of non-negative scales must exist");
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                thr[m * N + n] = floor_half(base[m * N + n] - t[n]);
        o.thr = thr, o.thr_stride = N;
    }
    const size_t bits_words = (size_t)rows * stride + 1;
    uint64_t *want_bits = malloc(8 * bits_words), *got_bits = malloc(8 * bits_words);
    float *want = malloc(4 * (size_t)M * N), *got = malloc(4 * (size_t)M * N);
    for (size_t i = 0; i < bits_words; i++)
        want_bits[i] = got_bits[i] = rng_next(s); /* bits outside the outputs must survive */
    uint64_t *panel_ref = aligned(8 * (k->bpanel_words(N, K) > bifsmn_bpanel_words_ref(N, K)
                                                    ? k->bpanel_words(N, K) : bifsmn_bpanel_words_ref(N, K)));
    uint64_t *panel = aligned(8 * k->bpanel_words(N, K));
    void *scratch = aligned(BIFSMN_BGEMM_SCRATCH(K));
    bifsmn_bpanel_ref(w, N, K, panel_ref);
    k->bpanel(w, N, K, panel);
    bifsmn_bout ref = o, imp = o;
    ref.out = form == FLOAT_ALL || form == FLOAT_PLAIN ? want : NULL;
    imp.out = ref.out ? got : NULL;
    ref.bits = form == FLOAT_PLAIN ? NULL : want_bits;
    imp.bits = form == FLOAT_PLAIN ? NULL : got_bits;
    bifsmn_bgemm_fused_ref(a, panel_ref, M, K, &ref, scratch);
    k->bgemm_fused(a, panel, M, K, &imp, scratch);
    CHECK(!ref.out || memcmp(want, got, 4 * (size_t)M * N) == 0, "%s bgemm_fused floats differ at M=%d N=%d K=%d form %d",
          k->name, M, N, K, form);
    CHECK(memcmp(want_bits, got_bits, 8 * bits_words) == 0, "%s bgemm_fused bits differ at M=%d N=%d K=%d form %d group %d",
          k->name, M, N, K, form, group);
    if (form == FLOAT_ALL && k->impl == BIFSMN_IMPL_REF) {
        /* the reference against the plain GEMM, the formula, and the threshold form against the float form */
        int32_t *dots = malloc(4 * (size_t)M * N);
        bifsmn_bgemm_ref(a, w, dots, M, N, K);
        int bad = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                const int32_t dot = dots[m * N + n] - (K - base[m * N + n]);
                const float p = scale[n] * (float)dot;
                float v = p + shift[n];
                const float neg = slope[n] * (v < 0.0f ? v : 0.0f);
                v = (v > 0.0f ? v : 0.0f) + neg;
                v += res[m * N + n];
                const int bit = (int)(want_bits[(bifsmn_bout_bit(&o, m) + n) / 64] >> ((bifsmn_bout_bit(&o, m) + n) % 64)) & 1;
                bad += v != want[m * N + n] || bit != (v < 0.0f);
            }
        CHECK(bad == 0, "ref bgemm_fused: %d outputs off the formula at M=%d N=%d K=%d", bad, M, N, K);
        free(dots);
    }
    free(a), free(w), free(scale), free(shift), free(slope), free(res), free(base), free(t), free(thr);
    free(want_bits), free(got_bits), free(want), free(got), free(panel_ref), free(panel), free(scratch);
}

static void test_fused_gemm(const bifsmn_kernels *k)
{
    unsigned long long seed = 0x452821e638d01377ULL;
    static const int fKs[] = {1, 31, 63, 64, 65, 127, 128, 129, 200, 255, 256, 257, 400, 511, 512, 513, 1000};
    static const int fMs[] = {1, 2, 3, 4, 5, 8, 9};
    static const int fNs[] = {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48};
    for (int ik = 0; ik < LEN(fKs); ik++)
        for (int im = 0; im < LEN(fMs); im++)
            for (int in = 0; in < LEN(fNs); in++)
                for (int form = FLOAT_ALL; form <= THRESHOLD; form++)
                    check_fused_gemm(k, fMs[im], fNs[in], fKs[ik], form, 1, &seed);
    /* conv-like packed rows (several output rows per packed row, not on word boundaries); deep layers (the
       byte-count chunks: 31 32-bit steps on AVX2, 31 128-bit steps on NEON) */
    for (int form = FLOAT_ALL; form <= THRESHOLD; form++) {
        check_fused_gemm(k, 64, 32, 400, form, 8, &seed);
        check_fused_gemm(k, 9, 12, 150, form, 3, &seed);
        check_fused_gemm(k, 5, 20, 70, form, 5, &seed);
        check_fused_gemm(k, 6, 17, 2000, form, 1, &seed);
        check_fused_gemm(k, 3, 9, 4100, form, 1, &seed);
    }
    check_fused_gemm(k, 2, 5, 70000, FLOAT_ALL, 1, &seed); /* popcounts past 16 bits */
}

static void test_thresholds(void)
{
    /* "value < 0" as "dot < T" for every dot in [-K, K], including constant outputs and PReLU slopes <= 0 */
    const float scale[16] = {0.25f, 0.0f, 1.0f, 0.5f, 3.0f, 0.01f};
    const float shift[16] = {-2.0f, -1.0f, 0.0f, 7.5f, -1e-3f, 0.0f};
    const float slope[16] = {0.1f, 0.2f, 0.0f, -0.5f, 1.0f, 0.3f};
    const int K = 64;
    bifsmn_bout o = {.N = 6, .scale = scale, .shift = shift, .slope = slope};
    int32_t t[6];
    CHECK(bifsmn_bout_thresholds(&o, K, t) == 0, "thresholds exist");
    for (int n = 0; n < 6; n++)
        for (int d = -K; d <= K; d++)
            CHECK((bifsmn_bout_value(&o, n, d) < 0.0f) == (d < t[n]), "threshold of output %d at dot %d", n, d);
    CHECK(t[0] == 8 && t[1] == K + 1 && t[2] == -K, "thresholds %d %d %d", t[0], t[1], t[2]);
    const float negative[16] = {-0.5f};
    o.scale = negative, o.N = 1;
    CHECK(bifsmn_bout_thresholds(&o, K, t) == -1, "a negative scale has no threshold of the form dot < T");
}

static void check_fused_dwconv(const bifsmn_kernels *k, int T, int C, int taps, int dil, int pad,
                               unsigned long long *s)
{
    const int cw = (C + 63) / 64, wstride = cw * 64;
    uint64_t *x = aligned(8 * (size_t)T * cw);
    fill_words(x, T, C, s);
    uint8_t *wneg = aligned((size_t)taps * wstride);
    for (int i = 0; i < taps * wstride; i++)
        wneg[i] = i % wstride < C && rng_next(s) % 2 ? 0xff : 0;
    float *scale = padded_floats(C, s, 0.0f, 0.5f), *shift = padded_floats(C, s, -1.0f, 1.0f);
    float *slope = padded_floats(C, s, -0.3f, 0.6f), *res = padded_floats(T * C, s, -1.0f, 1.0f);
    uint64_t *bits[2] = {malloc(8 * ((size_t)T * cw + 1)), malloc(8 * ((size_t)T * cw + 1))};
    float *out[2] = {malloc(4 * (size_t)T * C), malloc(4 * (size_t)T * C)};
    void *scratch = aligned(BIFSMN_BDWCONV_SCRATCH(T, C, taps, dil));
    for (int with_res = 0; with_res <= 1; with_res++) {
        for (size_t i = 0; i < (size_t)T * cw + 1; i++)
            bits[0][i] = bits[1][i] = rng_next(s);
        for (int j = 0; j < 2; j++) {
            const bifsmn_bout o = {.N = C, .scale = scale, .shift = shift, .slope = slope, .res = with_res ? res : NULL,
                                   .out = out[j], .bits = bits[j], .group = 1, .stride = cw};
            (j ? k->bdwconv : bifsmn_bdwconv_ref)(x, wneg, T, taps, dil, pad, &o, scratch);
        }
        CHECK(memcmp(out[0], out[1], 4 * (size_t)T * C) == 0 && memcmp(bits[0], bits[1], 8 * ((size_t)T * cw + 1)) == 0,
              "%s bdwconv differs at T=%d C=%d taps=%d dilation=%d pad=%d res=%d", k->name, T, C, taps, dil, pad, with_res);
    }
    if (k->impl == BIFSMN_IMPL_REF) { /* the reference against the definition (res on, the last run) */
        const bifsmn_bout o = {.N = C, .scale = scale, .shift = shift, .slope = slope};
        int bad = 0;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                int dot = 0;
                for (int kk = 0; kk < taps; kk++) {
                    const int ti = t + kk * dil - pad;
                    if (ti >= 0 && ti < T)
                        dot += (int)((x[ti * cw + c / 64] >> (c % 64)) & 1) == (wneg[kk * wstride + c] & 1) ? 1 : -1;
                }
                bad += bifsmn_bout_value(&o, c, dot) + res[t * C + c] != out[0][t * C + c];
            }
        CHECK(bad == 0, "ref bdwconv: %d outputs off the definition at T=%d C=%d taps=%d", bad, T, C, taps);
    }
    free(x), free(wneg), free(scale), free(shift), free(slope), free(res), free(bits[0]), free(bits[1]);
    free(out[0]), free(out[1]), free(scratch);
}

static void test_fused_dwconv(const bifsmn_kernels *k)
{
    unsigned long long seed = 0xbe5466cf34e90c6cULL;
    static const int Ts[] = {1, 2, 5, 8, 13}, Cs[] = {1, 7, 16, 31, 64, 65, 128, 130};
    static const int taps_[] = {1, 3, 5, 9};
    for (int it = 0; it < LEN(Ts); it++)
        for (int ic = 0; ic < LEN(Cs); ic++)
            for (int ik = 0; ik < LEN(taps_); ik++)
                for (int dil = 1; dil <= 2; dil++) {
                    const int span = (taps_[ik] - 1) * dil;
                    check_fused_dwconv(k, Ts[it], Cs[ic], taps_[ik], dil, 0, &seed);
                    check_fused_dwconv(k, Ts[it], Cs[ic], taps_[ik], dil, span / 2, &seed);
                    check_fused_dwconv(k, Ts[it], Cs[ic], taps_[ik], dil, span, &seed);
                }
    check_fused_dwconv(k, 6, 20, 130, 1, 64, &seed); /* beyond the byte counters: the reference path */
    check_fused_dwconv(k, 6, 20, 3, 40, 40, &seed);  /* a span beyond the padded rows: likewise */
    check_fused_dwconv(k, 9, 33, 3, 32, 32, &seed);  /* the longest span with padded rows */
}

/* ---- direct first-layer convolution ---- */

static void check_sconv(const bifsmn_kernels *k, int N, int w_in, int h_in, int kw, int kh, int sw, int sh, int pw,
                        int ph, unsigned long long *s)
{
    const int OW = (w_in + 2 * pw - kw) / sw + 1, OH = (h_in + 2 * ph - kh) / sh + 1, np = (N + 15) / 16 * 16;
    const int hq = (h_in + 2 * ph + sh - 1) / sh + 16, stride = (OH * N + 63) / 64;
    float *img = malloc(sizeof(float) * (size_t)w_in * h_in);
    for (int i = 0; i < w_in * h_in; i++)
        img[i] = rng_float(s);
    float *x = calloc((size_t)(w_in + 2 * pw) * sh * hq, sizeof(float));
    for (int iw = 0; iw < w_in; iw++)
        for (int ih = 0; ih < h_in; ih++)
            x[((size_t)(iw + pw) * sh + (ih + ph) % sh) * hq + (ih + ph) / sh] = img[iw * h_in + ih];
    float *panel = padded_floats(kw * kh * np, s, -1.0f, 1.0f), *bias = padded_floats(N, s, -1.0f, 1.0f);
    float *slope = padded_floats(N, s, -0.3f, 0.6f);
    for (int t = 0; t < kw * kh; t++)
        for (int n = N; n < np; n++)
            panel[t * np + n] = 0.0f;
    float *out[2] = {malloc(4 * (size_t)OW * OH * N), malloc(4 * (size_t)OW * OH * N)};
    uint64_t *bits[2] = {calloc((size_t)OW * stride, 8), calloc((size_t)OW * stride, 8)};
    for (int j = 0; j < 2; j++) {
        const bifsmn_sconv_out o = {.N = N, .OH = OH, .OW = OW, .kh = kh, .kw = kw, .sh = sh, .sw = sw, .hq = hq,
                                    .slope = slope, .out = out[j], .bits = bits[j], .stride = stride};
        (j ? k->sconv1 : bifsmn_sconv1_ref)(x, panel, bias, &o);
    }
    int bad = 0, bad_bits = 0;
    for (int ow = 0; ow < OW; ow++)
        for (int oh = 0; oh < OH; oh++)
            for (int n = 0; n < N; n++) {
                double v = bias[n];
                for (int tx = 0; tx < kw; tx++)
                    for (int ty = 0; ty < kh; ty++) {
                        const int iw = ow * sw - pw + tx, ih = oh * sh - ph + ty;
                        if (iw >= 0 && iw < w_in && ih >= 0 && ih < h_in)
                            v += (double)panel[(tx * kh + ty) * np + n] * img[iw * h_in + ih];
                    }
                v = v > 0 ? v : slope[n] * v;
                const size_t i = ((size_t)ow * OH + oh) * N + n;
                for (int j = 0; j < 2; j++) {
                    bad += !(fabs(out[j][i] - v) <= 1e-5 * (kw * kh + 1));
                    bad_bits += (int)((bits[j][ow * stride + (oh * N + n) / 64] >> ((oh * N + n) % 64)) & 1) != (out[j][i] < 0.0f);
                }
            }
    CHECK(bad == 0 && bad_bits == 0, "%s sconv1: %d values, %d bits off at N=%d in %dx%d k %dx%d s %dx%d p %dx%d",
          k->name, bad, bad_bits, N, w_in, h_in, kw, kh, sw, sh, pw, ph);
    free(img), free(x), free(panel), free(bias), free(slope), free(out[0]), free(out[1]), free(bits[0]), free(bits[1]);
}

static void test_sconv(const bifsmn_kernels *k)
{
    unsigned long long seed = 0x3f84d5b5b5470917ULL;
    static const int sNs[] = {1, 5, 16, 17, 33};
    for (int in = 0; in < LEN(sNs); in++) {
        check_sconv(k, sNs[in], 32, 32, 5, 5, 2, 2, 2, 2, &seed); /* the D-FSMN's conv1 */
        check_sconv(k, sNs[in], 1, 1, 1, 1, 1, 1, 0, 0, &seed);
        check_sconv(k, sNs[in], 7, 9, 3, 3, 1, 1, 1, 1, &seed);
        check_sconv(k, sNs[in], 9, 7, 5, 3, 1, 2, 0, 1, &seed);
        check_sconv(k, sNs[in], 11, 13, 3, 5, 3, 3, 2, 0, &seed);
        check_sconv(k, sNs[in], 6, 6, 9, 9, 1, 1, 4, 4, &seed); /* 81 taps: beyond the tap table, the reference */
    }
}

int main(void)
{
    bifsmn_kernels ref;
    CHECK(bifsmn_kernels_select(BIFSMN_IMPL_REF, &ref, NULL, 0) == BIFSMN_OK, "ref must always be available");
    const bifsmn_impl impls[] = {BIFSMN_IMPL_REF, BIFSMN_IMPL_AVX2, BIFSMN_IMPL_AVX512, BIFSMN_IMPL_NEON};
    for (int i = 0; i < LEN(impls); i++) {
        bifsmn_kernels k;
        if (bifsmn_kernels_select(impls[i], &k, NULL, 0) != BIFSMN_OK) {
            printf("kernel impl %d not available here: skipped\n", (int)impls[i]);
            continue;
        }
        printf("testing %s\n", k.name);
        test_bitpack_special_values(&k);
        test_shapes(&k, &ref, impls[i] == BIFSMN_IMPL_REF);
        test_fused_gemm(&k);
        test_fused_dwconv(&k);
        test_sconv(&k);
    }
    test_thresholds();
    bifsmn_kernels k;
    CHECK(bifsmn_kernels_select(BIFSMN_IMPL_AUTO, &k, NULL, 0) == BIFSMN_OK, "auto must pick something");
    CHECK(bifsmn_kernels_select((bifsmn_impl)42, &k, NULL, 0) == BIFSMN_ERR_KERNEL, "unknown impl must fail");
    return check_report("test_kernels");
}
