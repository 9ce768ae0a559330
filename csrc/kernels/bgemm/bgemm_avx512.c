/* AVX-512 binary GEMM with the VPOPCNTDQ popcount. Compiled with -mavx512f -mavx512vpopcntdq -mavx512bw;
   called only after dispatch.c saw those features in cpuid and the OS saving zmm state (xgetbv).
   Same scheme as the AVX2 kernel with 8 weight rows per gather and up to 8 activation rows per tile. */
#include "bgemm.h"

#include <immintrin.h>
#include <stddef.h>

#define BGEMM_AVX512_MT 8

static inline __attribute__((always_inline)) void tile(const uint64_t *a, const uint64_t *w, int32_t *out,
                                                       int mt, int n_valid, int N, int K, int kw)
{
    const long long s = kw;
    const __m512i idx = _mm512_setr_epi64(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
    const __mmask8 valid = (__mmask8)((1u << n_valid) - 1u);
    const __m512i kv = _mm512_set1_epi64(K);
    __m512i acc[BGEMM_AVX512_MT];
    for (int r = 0; r < mt; r++)
        acc[r] = _mm512_setzero_si512();
    for (int i = 0; i < kw; i++) {
        const __m512i wv = _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), valid, idx, w + i, 8);
        for (int r = 0; r < mt; r++) {
            const __m512i x = _mm512_xor_si512(wv, _mm512_set1_epi64((long long)a[(size_t)r * kw + i]));
            acc[r] = _mm512_add_epi64(acc[r], _mm512_popcnt_epi64(x));
        }
    }
    for (int r = 0; r < mt; r++) {
        const __m512i dot = _mm512_sub_epi64(kv, _mm512_slli_epi64(acc[r], 1));
        _mm512_mask_cvtepi64_storeu_epi32(out + (size_t)r * N, valid, dot);
    }
}

void bifsmn_bgemm_avx512(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K)
{
    const int kw = (K + 63) / 64;
    for (int m0 = 0; m0 < M; m0 += BGEMM_AVX512_MT) {
        const int mt = M - m0 < BGEMM_AVX512_MT ? M - m0 : BGEMM_AVX512_MT;
        const uint64_t *am = a + (size_t)m0 * kw;
        int32_t *om = out + (size_t)m0 * N;
        for (int n0 = 0; n0 < N; n0 += 8) {
            const int nv = N - n0 < 8 ? N - n0 : 8;
            const uint64_t *wn = w + (size_t)n0 * kw;
            /* Constant row counts let the compiler keep the accumulators in registers. */
            switch (mt) {
            case 8: tile(am, wn, om + n0, 8, nv, N, K, kw); break;
            case 7: tile(am, wn, om + n0, 7, nv, N, K, kw); break;
            case 6: tile(am, wn, om + n0, 6, nv, N, K, kw); break;
            case 5: tile(am, wn, om + n0, 5, nv, N, K, kw); break;
            case 4: tile(am, wn, om + n0, 4, nv, N, K, kw); break;
            case 3: tile(am, wn, om + n0, 3, nv, N, K, kw); break;
            case 2: tile(am, wn, om + n0, 2, nv, N, K, kw); break;
            default: tile(am, wn, om + n0, 1, nv, N, K, kw); break;
            }
        }
    }
}
