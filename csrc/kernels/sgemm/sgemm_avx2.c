/* AVX2 + FMA float GEMM, C = A * W^T + bias. Compiled with -mavx2 -mfma; called only after dispatch.c saw both.
   Two schemes:
   - few rows (the per-frame linears, M = time steps; the classifier, M = 1): both operands are K-contiguous,
     so the tile runs along K (2 rows of A x 4 rows of W) and reduces each accumulator horizontally once;
     the K tail uses masked loads, which never touch memory past the row;
   - many rows (a convolution's im2col, M = output positions): horizontal reductions would dominate, so A is
     broadcast against 8 outputs per vector, with W^T packed per call into a stack panel of 256 k-steps. */
#include "sgemm.h"

#include <immintrin.h>
#include <stddef.h>

#define SGEMM_AVX2_MT 2
#define SGEMM_AVX2_NT 4

/* [sum(v0), sum(v1), sum(v2), sum(v3)] */
static inline __m128 hsum4(__m256 v0, __m256 v1, __m256 v2, __m256 v3)
{
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

static inline __attribute__((always_inline)) void tile(const float *a, const float *const wr[SGEMM_AVX2_NT],
                                                       const float *bias, float *c, int mt, int n0, int nv, int N,
                                                       int K, __m256i tail_mask)
{
    __m256 acc[SGEMM_AVX2_MT][SGEMM_AVX2_NT];
    for (int r = 0; r < mt; r++)
        for (int j = 0; j < SGEMM_AVX2_NT; j++)
            acc[r][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 av[SGEMM_AVX2_MT];
        for (int r = 0; r < mt; r++)
            av[r] = _mm256_loadu_ps(a + (size_t)r * K + k);
        for (int j = 0; j < SGEMM_AVX2_NT; j++) {
            const __m256 wv = _mm256_loadu_ps(wr[j] + k);
            for (int r = 0; r < mt; r++)
                acc[r][j] = _mm256_fmadd_ps(av[r], wv, acc[r][j]);
        }
    }
    if (k < K) {
        __m256 av[SGEMM_AVX2_MT];
        for (int r = 0; r < mt; r++)
            av[r] = _mm256_maskload_ps(a + (size_t)r * K + k, tail_mask);
        for (int j = 0; j < SGEMM_AVX2_NT; j++) {
            const __m256 wv = _mm256_maskload_ps(wr[j] + k, tail_mask);
            for (int r = 0; r < mt; r++)
                acc[r][j] = _mm256_fmadd_ps(av[r], wv, acc[r][j]);
        }
    }
    for (int r = 0; r < mt; r++) {
        float s[4];
        _mm_storeu_ps(s, hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
        for (int j = 0; j < nv; j++)
            c[(size_t)r * N + n0 + j] = s[j] + (bias ? bias[n0 + j] : 0.0f);
    }
}

#define PANEL_K 256
#define PANEL_N 8
#define OUTER_MT 8

static inline __attribute__((always_inline)) void outer_tile(const float *a, const float *panel, float *c, int mt,
                                                             int kc, int K, int N, int nv, __m256 init[])
{
    __m256 acc[OUTER_MT];
    for (int r = 0; r < mt; r++)
        acc[r] = init[r];
    for (int k = 0; k < kc; k++) {
        const __m256 p = _mm256_load_ps(panel + (size_t)k * PANEL_N);
        for (int r = 0; r < mt; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + (size_t)r * K + k), p, acc[r]);
    }
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nv), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int r = 0; r < mt; r++)
        _mm256_maskstore_ps(c + (size_t)r * N, mask, acc[r]);
}

static void sgemm_outer(const float *a, const float *w, const float *bias, float *c, int M, int N, int K)
{
    _Alignas(32) float panel[PANEL_K * PANEL_N];
    for (int n0 = 0; n0 < N; n0 += PANEL_N) {
        const int nv = N - n0 < PANEL_N ? N - n0 : PANEL_N;
        const __m256i nmask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nv), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int k0 = 0; k0 < K; k0 += PANEL_K) {
            const int kc = K - k0 < PANEL_K ? K - k0 : PANEL_K;
            for (int j = 0; j < PANEL_N; j++) {
                const float *src = j < nv ? w + (size_t)(n0 + j) * K + k0 : NULL;
                for (int k = 0; k < kc; k++)
                    panel[k * PANEL_N + j] = src ? src[k] : 0.0f;
            }
            for (int m0 = 0; m0 < M; m0 += OUTER_MT) {
                const int mt = M - m0 < OUTER_MT ? M - m0 : OUTER_MT;
                float *cm = c + (size_t)m0 * N + n0;
                __m256 init[OUTER_MT];
                for (int r = 0; r < mt; r++)
                    init[r] = k0 ? _mm256_maskload_ps(cm + (size_t)r * N, nmask)
                                 : bias ? _mm256_maskload_ps(bias + n0, nmask) : _mm256_setzero_ps();
                const float *am = a + (size_t)m0 * K + k0;
                if (mt == OUTER_MT)
                    outer_tile(am, panel, cm, OUTER_MT, kc, K, N, nv, init);
                else
                    for (int r = 0; r < mt; r++)
                        outer_tile(am + (size_t)r * K, panel, cm + (size_t)r * N, 1, kc, K, N, nv, init + r);
            }
        }
    }
}

void bifsmn_sgemm_avx2(const float *a, const float *w, const float *bias, float *c, int M, int N, int K)
{
    if (M >= 2 * OUTER_MT) {
        sgemm_outer(a, w, bias, c, M, N, K);
        return;
    }
    const __m256i tail_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(K % 8), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int n0 = 0; n0 < N; n0 += SGEMM_AVX2_NT) {
        const int nv = N - n0 < SGEMM_AVX2_NT ? N - n0 : SGEMM_AVX2_NT;
        /* Missing rows of a partial tile re-read row n0; their sums are computed but never stored. */
        const float *wr[SGEMM_AVX2_NT];
        for (int j = 0; j < SGEMM_AVX2_NT; j++)
            wr[j] = w + (size_t)(n0 + (j < nv ? j : 0)) * K;
        int m0 = 0;
        for (; m0 + SGEMM_AVX2_MT <= M; m0 += SGEMM_AVX2_MT)
            tile(a + (size_t)m0 * K, wr, bias, c + (size_t)m0 * N, SGEMM_AVX2_MT, n0, nv, N, K, tail_mask);
        if (m0 < M)
            tile(a + (size_t)m0 * K, wr, bias, c + (size_t)m0 * N, 1, n0, nv, N, K, tail_mask);
    }
}
