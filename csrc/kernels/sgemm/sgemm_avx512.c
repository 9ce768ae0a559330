/* AVX-512F float GEMM, C = A * W^T + bias. Compiled with -mavx512f (-mfma); called only after dispatch.c saw
   AVX-512F and the OS saving zmm state. Same two schemes as the AVX2 kernel (sgemm_avx2.c) with 16-float
   vectors and mask-register tails. */
#include "sgemm.h"

#include <immintrin.h>
#include <stddef.h>

#define SGEMM_AVX512_MT 4
#define SGEMM_AVX512_NT 4

static inline __attribute__((always_inline)) void tile(const float *a, const float *const wr[SGEMM_AVX512_NT],
                                                       const float *bias, float *c, int mt, int n0, int nv, int N,
                                                       int K, __mmask16 tail)
{
    __m512 acc[SGEMM_AVX512_MT][SGEMM_AVX512_NT];
    for (int r = 0; r < mt; r++)
        for (int j = 0; j < SGEMM_AVX512_NT; j++)
            acc[r][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 av[SGEMM_AVX512_MT];
        for (int r = 0; r < mt; r++)
            av[r] = _mm512_loadu_ps(a + (size_t)r * K + k);
        for (int j = 0; j < SGEMM_AVX512_NT; j++) {
            const __m512 wv = _mm512_loadu_ps(wr[j] + k);
            for (int r = 0; r < mt; r++)
                acc[r][j] = _mm512_fmadd_ps(av[r], wv, acc[r][j]);
        }
    }
    if (k < K) {
        __m512 av[SGEMM_AVX512_MT];
        for (int r = 0; r < mt; r++)
            av[r] = _mm512_maskz_loadu_ps(tail, a + (size_t)r * K + k);
        for (int j = 0; j < SGEMM_AVX512_NT; j++) {
            const __m512 wv = _mm512_maskz_loadu_ps(tail, wr[j] + k);
            for (int r = 0; r < mt; r++)
                acc[r][j] = _mm512_fmadd_ps(av[r], wv, acc[r][j]);
        }
    }
    for (int r = 0; r < mt; r++)
        for (int j = 0; j < nv; j++)
            c[(size_t)r * N + n0 + j] = _mm512_reduce_add_ps(acc[r][j]) + (bias ? bias[n0 + j] : 0.0f);
}

#define PANEL_K 256
#define PANEL_N 16
#define OUTER_MT 8

static inline __attribute__((always_inline)) void outer_tile(const float *a, const float *panel, float *c, int mt,
                                                             int kc, int K, int N, __mmask16 nmask, __m512 init[])
{
    __m512 acc[OUTER_MT];
    for (int r = 0; r < mt; r++)
        acc[r] = init[r];
    for (int k = 0; k < kc; k++) {
        const __m512 p = _mm512_load_ps(panel + (size_t)k * PANEL_N);
        for (int r = 0; r < mt; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[(size_t)r * K + k]), p, acc[r]);
    }
    for (int r = 0; r < mt; r++)
        _mm512_mask_storeu_ps(c + (size_t)r * N, nmask, acc[r]);
}

/* Tall A (im2col of a convolution): broadcast A, 16 outputs per vector, W^T packed into a stack panel. */
static void sgemm_outer(const float *a, const float *w, const float *bias, float *c, int M, int N, int K)
{
    _Alignas(64) float panel[PANEL_K * PANEL_N];
    for (int n0 = 0; n0 < N; n0 += PANEL_N) {
        const int nv = N - n0 < PANEL_N ? N - n0 : PANEL_N;
        const __mmask16 nmask = (__mmask16)((1u << nv) - 1u);
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
                __m512 init[OUTER_MT];
                for (int r = 0; r < mt; r++)
                    init[r] = k0 ? _mm512_maskz_loadu_ps(nmask, cm + (size_t)r * N)
                                 : bias ? _mm512_maskz_loadu_ps(nmask, bias + n0) : _mm512_setzero_ps();
                const float *am = a + (size_t)m0 * K + k0;
                if (mt == OUTER_MT)
                    outer_tile(am, panel, cm, OUTER_MT, kc, K, N, nmask, init);
                else
                    for (int r = 0; r < mt; r++)
                        outer_tile(am + (size_t)r * K, panel, cm + (size_t)r * N, 1, kc, K, N, nmask, init + r);
            }
        }
    }
}

void bifsmn_sgemm_avx512(const float *a, const float *w, const float *bias, float *c, int M, int N, int K)
{
    if (M >= 2 * OUTER_MT) {
        sgemm_outer(a, w, bias, c, M, N, K);
        return;
    }
    const __mmask16 tail = (__mmask16)((1u << (K % 16)) - 1u);
    for (int n0 = 0; n0 < N; n0 += SGEMM_AVX512_NT) {
        const int nv = N - n0 < SGEMM_AVX512_NT ? N - n0 : SGEMM_AVX512_NT;
        /* Missing rows of a partial tile re-read row n0; their sums are computed but never stored. */
        const float *wr[SGEMM_AVX512_NT];
        for (int j = 0; j < SGEMM_AVX512_NT; j++)
            wr[j] = w + (size_t)(n0 + (j < nv ? j : 0)) * K;
        int m0 = 0;
        for (; m0 + SGEMM_AVX512_MT <= M; m0 += SGEMM_AVX512_MT)
            tile(a + (size_t)m0 * K, wr, bias, c + (size_t)m0 * N, SGEMM_AVX512_MT, n0, nv, N, K, tail);
        switch (M - m0) {
        case 3: tile(a + (size_t)m0 * K, wr, bias, c + (size_t)m0 * N, 3, n0, nv, N, K, tail); break;
        case 2: tile(a + (size_t)m0 * K, wr, bias, c + (size_t)m0 * N, 2, n0, nv, N, K, tail); break;
        case 1: tile(a + (size_t)m0 * K, wr, bias, c + (size_t)m0 * N, 1, n0, nv, N, K, tail); break;
        default: break;
        }
    }
}
