/* Every kernel implementation available here against the reference: bitpack and bgemm bit-exact, sgemm to
   float rounding, on random data and edge shapes (K = 1, K not a multiple of 64/128, M and N not multiples of
   any tile). The reference itself is checked against +-1 dot products computed from the floats. */
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
    }
    bifsmn_kernels k;
    CHECK(bifsmn_kernels_select(BIFSMN_IMPL_AUTO, &k, NULL, 0) == BIFSMN_OK, "auto must pick something");
    CHECK(bifsmn_kernels_select((bifsmn_impl)42, &k, NULL, 0) == BIFSMN_ERR_KERNEL, "unknown impl must fail");
    return check_report("test_kernels");
}
