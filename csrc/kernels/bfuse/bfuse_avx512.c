/* AVX-512 fused binary GEMM with the VPOPCNTDQ popcount. Compiled with -mavx512f -mavx512vpopcntdq -mavx512bw
   -mavx2; called only after dispatch.c saw those features in cpuid and the OS saving zmm state (xgetbv).
   The panel holds word i of 8 channels side by side (one zmm load), so a 512-bit step is xor, popcount, add
   per activation row; the 8 64-bit sums narrow to the 8 int32 lanes of the shared output transform. */
#include <immintrin.h>

#include "bfuse.h"
#include "bfuse_x86.h"

#define TILE_M 8

size_t bifsmn_bpanel_words_avx512(int N, int K) { return (size_t)(N + 7) / 8 * (size_t)((K + 63) / 64) * 8; }

void bifsmn_bpanel_avx512(const uint64_t *w, int N, int K, uint64_t *panel)
{
    const int kw = (K + 63) / 64;
    for (int g = 0; g < (N + 7) / 8; g++)
        for (int i = 0; i < kw; i++)
            for (int j = 0; j < 8; j++) {
                const int n = 8 * g + j;
                panel[((size_t)g * kw + i) * 8 + j] = n < N ? w[(size_t)n * kw + i] : 0;
            }
}

static inline __attribute__((always_inline)) void tile(const uint64_t *a, const uint64_t *p, int kw, int K, int mt,
                                                       int m0, int n0, int nv, const size_t *bit0,
                                                       const bifsmn_bout *o)
{
    __m512i acc[TILE_M];
    for (int r = 0; r < mt; r++)
        acc[r] = _mm512_setzero_si512();
    for (int i = 0; i < kw; i++) {
        const __m512i wv = _mm512_load_si512((const void *)(p + (size_t)i * 8));
        for (int r = 0; r < mt; r++) {
            const __m512i x = _mm512_xor_si512(wv, _mm512_set1_epi64((long long)a[(size_t)(m0 + r) * kw + i]));
            acc[r] = _mm512_add_epi64(acc[r], _mm512_popcnt_epi64(x));
        }
    }
    for (int r = 0; r < mt; r++)
        bfuse_x86_finish(o, m0 + r, n0, nv, bit0[r], K, _mm512_cvtepi64_epi32(acc[r]));
}

void bifsmn_bgemm_fused_avx512(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *out,
                               void *scratch)
{
    (void)scratch;
    const bifsmn_bout o = *out;
    const int kw = (K + 63) / 64, N = o.N;
    for (int m0 = 0; m0 < M; m0 += TILE_M) {
        const int mt = M - m0 < TILE_M ? M - m0 : TILE_M;
        size_t bit0[TILE_M];
        bfuse_x86_rows(&o, m0, mt, bit0);
        for (int n0 = 0; n0 < N; n0 += 8) {
            const int nv = N - n0 < 8 ? N - n0 : 8;
            const uint64_t *p = panel + (size_t)n0 * kw;
            /* Constant row counts let the compiler keep the accumulators in registers. */
            switch (mt) {
            case 8: tile(a, p, kw, K, 8, m0, n0, nv, bit0, &o); break;
            case 7: tile(a, p, kw, K, 7, m0, n0, nv, bit0, &o); break;
            case 6: tile(a, p, kw, K, 6, m0, n0, nv, bit0, &o); break;
            case 5: tile(a, p, kw, K, 5, m0, n0, nv, bit0, &o); break;
            case 4: tile(a, p, kw, K, 4, m0, n0, nv, bit0, &o); break;
            case 3: tile(a, p, kw, K, 3, m0, n0, nv, bit0, &o); break;
            case 2: tile(a, p, kw, K, 2, m0, n0, nv, bit0, &o); break;
            default: tile(a, p, kw, K, 1, m0, n0, nv, bit0, &o); break;
            }
        }
    }
}
