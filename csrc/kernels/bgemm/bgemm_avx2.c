/* AVX2 binary GEMM. Compiled with -mavx2 only; called only after dispatch.c saw AVX2 in cpuid.
   Vectorised along N: one gather brings the same word of 4 weight rows, which is then XORed with a broadcast
   activation word for up to 4 activation rows at once (no horizontal reductions, and weights are read once
   per 4 rows). Popcount per 64-bit lane: nibble lookup table (pshufb) then a sum of absolute differences. */
#include "bgemm.h"

#include <immintrin.h>
#include <stddef.h>

#define BGEMM_AVX2_MT 4

static inline __m256i popcount_epi64(__m256i v, __m256i lut, __m256i low_mask)
{
    const __m256i lo = _mm256_and_si256(v, low_mask);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_mask);
    const __m256i bytes = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
    return _mm256_sad_epu8(bytes, _mm256_setzero_si256());
}

static inline __attribute__((always_inline)) void tile(const uint64_t *a, const uint64_t *w, int32_t *out,
                                                       int mt, int n_valid, int N, int K, int kw)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i low_mask = _mm256_set1_epi8(0x0f);
    const __m256i idx = _mm256_setr_epi64x(0, kw, 2 * (long long)kw, 3 * (long long)kw);
    /* Lanes past the last weight row are never loaded: masked gather with a zero source. */
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i valid = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n_valid), lane);
    __m256i acc[BGEMM_AVX2_MT];
    for (int r = 0; r < mt; r++)
        acc[r] = _mm256_setzero_si256();
    for (int i = 0; i < kw; i++) {
        const __m256i wv =
            _mm256_mask_i64gather_epi64(_mm256_setzero_si256(), (const long long *)(w + i), idx, valid, 8);
        for (int r = 0; r < mt; r++) {
            const __m256i x = _mm256_xor_si256(wv, _mm256_set1_epi64x((long long)a[(size_t)r * kw + i]));
            acc[r] = _mm256_add_epi64(acc[r], popcount_epi64(x, lut, low_mask));
        }
    }
    for (int r = 0; r < mt; r++) {
        long long pc[4];
        _mm256_storeu_si256((__m256i *)pc, acc[r]);
        for (int j = 0; j < n_valid; j++)
            out[(size_t)r * N + j] = K - 2 * (int32_t)pc[j];
    }
}

void bifsmn_bgemm_avx2(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K)
{
    const int kw = (K + 63) / 64;
    for (int m0 = 0; m0 < M; m0 += BGEMM_AVX2_MT) {
        const int mt = M - m0 < BGEMM_AVX2_MT ? M - m0 : BGEMM_AVX2_MT;
        const uint64_t *am = a + (size_t)m0 * kw;
        int32_t *om = out + (size_t)m0 * N;
        for (int n0 = 0; n0 < N; n0 += 4) {
            const int nv = N - n0 < 4 ? N - n0 : 4;
            const uint64_t *wn = w + (size_t)n0 * kw;
            /* Constant row counts let the compiler keep the accumulators in registers. */
            switch (mt) {
            case 4: tile(am, wn, om + n0, 4, nv, N, K, kw); break;
            case 3: tile(am, wn, om + n0, 3, nv, N, K, kw); break;
            case 2: tile(am, wn, om + n0, 2, nv, N, K, kw); break;
            default: tile(am, wn, om + n0, 1, nv, N, K, kw); break;
            }
        }
    }
}
