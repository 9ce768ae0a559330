/* The melspec kernels (kernels/melspec/): the reference against a direct DFT in double, every implementation this
   CPU runs against the reference, and the lanes algorithm at 16 lanes (AVX-512's width) through portable vector
   extensions, so that it is checked on machines without AVX-512. Inputs: random frames, silence, impulses, DC,
   Nyquist, a bin-centred tone, full scale and denormal-sized samples; plans from n_fft = 4 (below every lanes
   threshold) to 4096 (odd and even numbers of radix-4 stages), with a per-bin filterbank (every power
   value), a mel-like one and sparse runs (bins the kernel may skip). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dispatch.h"

/* ---- the lanes algorithm on GCC/clang vector extensions, 16 lanes ---- */
#define ML_V 16
typedef float ml_vec __attribute__((vector_size(64))); /* by value only inside this file: no ABI concern */
static inline ml_vec ml_load(const float *p)
{
    ml_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
#define ml_loadu ml_load
static inline void ml_store(float *p, ml_vec v) { memcpy(p, &v, sizeof v); }
#define ml_storeu ml_store
static inline ml_vec ml_set1(float x) { return (ml_vec){0} + x; }
static inline ml_vec ml_add(ml_vec a, ml_vec b) { return a + b; }
static inline ml_vec ml_sub(ml_vec a, ml_vec b) { return a - b; }
static inline ml_vec ml_mul(ml_vec a, ml_vec b) { return a * b; }
static inline ml_vec ml_fmadd(ml_vec a, ml_vec b, ml_vec c) { return a * b + c; }
static inline ml_vec ml_fnmadd(ml_vec a, ml_vec b, ml_vec c) { return c - a * b; }
static inline ml_vec ml_reverse(ml_vec v)
{
    ml_vec r;
    for (int i = 0; i < ML_V; i++)
        r[i] = v[ML_V - 1 - i];
    return r;
}
static inline float ml_hsum(ml_vec v)
{
    float s = 0.0f;
    for (int i = 0; i < ML_V; i++)
        s += v[i];
    return s;
}
static inline void ml_deinterleave(const float *x, const float *w, ml_vec *re, ml_vec *im)
{
    for (int i = 0; i < ML_V; i++) {
        (*re)[i] = x[2 * i] * w[2 * i];
        (*im)[i] = x[2 * i + 1] * w[2 * i + 1];
    }
}
static inline void ml_transpose(ml_vec r[ML_V])
{
    ml_vec t[ML_V];
    for (int i = 0; i < ML_V; i++)
        for (int j = 0; j < ML_V; j++)
            t[j][i] = r[i][j];
    memcpy(r, t, sizeof t);
}
#define ML_FN melspec_lanes16
#include "melspec/melspec_lanes.h"

#define PI 3.14159265358979323846
#define MAX_N 4096

typedef struct {
    const char *name;
    bifsmn_melspec_fn fn;
    int lanes;
} impl;

/* Filterbanks over half + 1 bins. */
typedef struct {
    int n;
    int start[MAX_N / 2 + 1], len[MAX_N / 2 + 1];
    double w[2 * (MAX_N / 2 + 1)];
} bank;

static void per_bin_bank(int half, bank *b)
{
    b->n = half + 1;
    for (int k = 0; k <= half; k++) {
        b->start[k] = k;
        b->len[k] = 1;
        b->w[k] = 1.0;
    }
}

/* Triangles on a stretched scale (each bin in two filters, as a mel bank), then sparse runs with gaps. */
static void triangle_bank(int half, int n_filters, bank *b)
{
    b->n = n_filters;
    int total = 0;
    for (int j = 0; j < n_filters; j++) {
        const double lo = half * pow((double)j / (n_filters + 1), 1.7), hi = half * pow((j + 2.0) / (n_filters + 1), 1.7);
        const double mid = half * pow((j + 1.0) / (n_filters + 1), 1.7);
        const int s = (int)ceil(lo), e = (int)floor(hi);
        b->start[j] = s;
        b->len[j] = e >= s ? e - s + 1 : 0;
        for (int k = s; k <= e; k++)
            b->w[total++] = k <= mid ? (k - lo + 1) / (mid - lo + 1) : (hi - k + 1) / (hi - mid + 1);
    }
}

static void sparse_bank(int half, bank *b)
{
    const int starts[] = {0, half / 3, half / 3 + 1, half, half / 2, 1};
    const int lens[] = {1, half / 5 + 1, 0, 1, 1, half / 4 + 1};
    b->n = 6;
    int total = 0;
    for (int j = 0; j < 6; j++) {
        b->start[j] = starts[j];
        b->len[j] = starts[j] + lens[j] <= half + 1 ? lens[j] : half + 1 - starts[j];
        for (int i = 0; i < b->len[j]; i++)
            b->w[total++] = 0.25 + 0.5 * ((i * 7 + j) % 5) / 4.0;
    }
}

enum { IN_RANDOM, IN_ZERO, IN_IMPULSE0, IN_IMPULSE_LAST, IN_DC, IN_NYQUIST, IN_TONE, IN_FULL_SCALE, IN_TINY, N_INPUTS };
static const char *const input_names[] = {"random", "zero", "impulse at 0", "impulse at n-1", "DC", "Nyquist",
                                          "bin-centred tone", "full scale", "tiny"};

static void make_input(int kind, int n, float *x, unsigned long long *seed)
{
    for (int i = 0; i < n; i++) {
        switch (kind) {
        case IN_RANDOM: x[i] = rng_float(seed); break;
        case IN_ZERO: x[i] = 0.0f; break;
        case IN_IMPULSE0: x[i] = i == 0 ? 1.0f : 0.0f; break;
        case IN_IMPULSE_LAST: x[i] = i == n - 1 ? 1.0f : 0.0f; break;
        case IN_DC: x[i] = 0.5f; break;
        case IN_NYQUIST: x[i] = i % 2 ? -1.0f : 1.0f; break;
        case IN_TONE: x[i] = (float)cos(2 * PI * (n / 8 + 1) * i / n); break;
        case IN_FULL_SCALE: x[i] = rng_next(seed) % 2 ? 32767.0f : -32768.0f; break;
        default: x[i] = 1e-19f * rng_float(seed); break; /* power near 1e-36: denormals inside the FFT */
        }
    }
}

/* A Hann window, so that the window multiply is exercised too. */
static void hann(int n, double *w)
{
    for (int i = 0; i < n; i++)
        w[i] = 0.5 - 0.5 * cos(2 * PI * i / n);
}

/* The reference's power spectrum against sum_i w x e^(-2 pi i k i / n) in double. */
static void test_reference_against_dft(int n)
{
    const int half = n / 2;
    static bank b;
    static double w[MAX_N], exact[MAX_N / 2 + 1], cos_table[MAX_N], sin_table[MAX_N];
    static float x[MAX_N], got[MAX_N / 2 + 1];
    per_bin_bank(half, &b);
    hann(n, w);
    for (int a = 0; a < n; a++) {
        cos_table[a] = cos(2 * PI * a / n);
        sin_table[a] = sin(2 * PI * a / n);
    }
    bifsmn_melspec p;
    CHECK(bifsmn_melspec_init(&p, n, 1, w, 1.0, b.n, b.start, b.len, b.w) == 0, "init n=%d", n);
    unsigned long long seed = 77 + (unsigned)n;
    for (int kind = 0; kind < N_INPUTS; kind++) {
        make_input(kind, n, x, &seed);
        bifsmn_melspec_ref(&p, x, got);
        for (int k = 0; k <= half; k++) {
            double re = 0.0, im = 0.0;
            for (int i = 0, a = 0; i < n; i++, a = (a + k) % n) {
                re += w[i] * x[i] * cos_table[a];
                im -= w[i] * x[i] * sin_table[a];
            }
            exact[k] = re * re + im * im;
        }
        double scale = 0.0, worst = 0.0;
        for (int k = 0; k <= half; k++) {
            const double err = fabs(got[k] - exact[k]);
            scale = exact[k] > scale ? exact[k] : scale;
            worst = err > worst ? err : worst;
        }
        CHECK(worst <= 1e-5 * scale + 1e-37, "ref n=%d %s: power error %.3g of max %.3g", n, input_names[kind], worst,
              scale);
    }
    bifsmn_melspec_free(&p);
}

/* An implementation against the reference on one filterbank; tolerance relative to the largest output. */
static void compare(const impl *im, int n, const bank *b, const char *bank_name)
{
    static double w[MAX_N];
    static float x[MAX_N], want[MAX_N / 2 + 1], got[MAX_N / 2 + 1];
    hann(n, w);
    bifsmn_melspec ref, opt;
    CHECK(bifsmn_melspec_init(&ref, n, 1, w, 2.0, b->n, b->start, b->len, b->w) == 0, "init ref n=%d", n);
    CHECK(bifsmn_melspec_init(&opt, n, im->lanes, w, 2.0, b->n, b->start, b->len, b->w) == 0, "init %s n=%d",
          im->name, n);
    unsigned long long seed = 991 + (unsigned)n;
    for (int kind = 0; kind < N_INPUTS; kind++) {
        make_input(kind, n, x, &seed);
        bifsmn_melspec_ref(&ref, x, want);
        for (int j = 0; j < b->n; j++)
            got[j] = NAN;
        im->fn(&opt, x, got);
        double scale = 0.0, worst = 0.0;
        int nan = 0;
        for (int j = 0; j < b->n; j++) {
            const double err = fabs((double)got[j] - want[j]);
            scale = fabs(want[j]) > scale ? fabs(want[j]) : scale;
            worst = err > worst ? err : worst;
            if (!isfinite(got[j]))
                nan++;
        }
        CHECK(!nan && worst <= 1e-5 * scale + 1e-37, "%s n=%d %s bank, %s: error %.3g of max %.3g (%d not finite)",
              im->name, n, bank_name, input_names[kind], worst, scale, nan);
        if (kind == IN_ZERO)
            for (int j = 0; j < b->n; j++)
                CHECK(got[j] == 0.0f, "%s n=%d: silence gives %g in filter %d", im->name, n, got[j], j);
    }
    bifsmn_melspec_free(&ref);
    bifsmn_melspec_free(&opt);
}

static void test_implementation(const impl *im)
{
    static bank b;
    for (int n = 4; n <= MAX_N; n *= 2) {
        per_bin_bank(n / 2, &b);
        compare(im, n, &b, "per-bin");
        triangle_bank(n / 2, n >= 64 ? 32 : 2, &b);
        compare(im, n, &b, "triangle");
        sparse_bank(n / 2, &b);
        compare(im, n, &b, "sparse");
    }
    printf("melspec %s: checked against the reference\n", im->name);
}

static void test_bad_plans(void)
{
    bifsmn_melspec p;
    const int start[1] = {0}, len[1] = {3}, too_long[1] = {4};
    double w[256];
    for (int i = 0; i < 256; i++)
        w[i] = 1.0;
    CHECK(bifsmn_melspec_init(&p, 6, 1, w, 1.0, 1, start, len, w) == -1, "n_fft 6 accepted");
    CHECK(bifsmn_melspec_init(&p, 4, 3, w, 1.0, 1, start, len, w) == -1, "3 lanes accepted");
    CHECK(bifsmn_melspec_init(&p, 4, 1, w, 1.0, 1, start, too_long, w) == -1, "a run past the last bin accepted");
    CHECK(bifsmn_melspec_init(&p, 4, 1, w, 0.0, 1, start, len, w) == -1, "zero power scale accepted");
    CHECK(bifsmn_melspec_init(&p, 4, 1, w, 1.0, 1, start, len, w) == 0 && p.lanes == 1, "valid plan refused");
    bifsmn_melspec_free(&p);
    CHECK(bifsmn_melspec_init(&p, 256, 16, w, 1.0, 1, start, len, w) == 0 && p.lanes == 1,
          "256 points (half 128 < 16 x 16) must use the reference layout at 16 lanes");
    bifsmn_melspec_free(&p);
}

int main(void)
{
    for (int n = 4; n <= 2048; n *= 2)
        test_reference_against_dft(n);
    test_bad_plans();
    const impl emulated = {"lanes16 (vector extensions)", melspec_lanes16, 16};
    test_implementation(&emulated);
    const bifsmn_impl impls[] = {BIFSMN_IMPL_AVX2, BIFSMN_IMPL_AVX512, BIFSMN_IMPL_NEON};
    const char *const names[] = {"avx2", "avx512", "neon"};
    for (int i = 0; i < 3; i++) {
        bifsmn_kernels k;
        if (bifsmn_kernels_select(impls[i], &k, NULL, 0) != BIFSMN_OK) {
            printf("melspec %s: not available here, skipped\n", names[i]);
            continue;
        }
        const impl im = {k.name, k.melspec, k.melspec_lanes};
        test_implementation(&im);
    }
    return check_report("test_melspec");
}
