/* Compiled with -mavx2 only; called only after dispatch.c saw AVX2 in cpuid. */
#include "bitpack.h"

#include <immintrin.h>
#include <stddef.h>

void bifsmn_bitpack_avx2(const float *x, uint64_t *out, int rows, int K)
{
    const int kw = (K + 63) / 64;
    const __m256 zero = _mm256_setzero_ps();
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * (size_t)K;
        uint64_t *dst = out + (size_t)r * (size_t)kw;
        int k = 0;
        for (int w = 0; w < kw; w++) {
            uint64_t word = 0;
            int j = 0;
            /* Ordered less-than, not the raw sign bit: -0.0f and NaN must pack as +1 like the reference. */
            for (; j + 8 <= 64 && k + 8 <= K; j += 8, k += 8) {
                const __m256 lt = _mm256_cmp_ps(_mm256_loadu_ps(row + k), zero, _CMP_LT_OQ);
                word |= (uint64_t)(unsigned)_mm256_movemask_ps(lt) << j;
            }
            for (; j < 64 && k < K; j++, k++)
                word |= (uint64_t)(row[k] < 0.0f) << j;
            dst[w] = word;
        }
    }
}
