#include "bitpack.h"

#include <stddef.h>

void bifsmn_bitpack_ref(const float *x, uint64_t *out, int rows, int K)
{
    const int kw = (K + 63) / 64;
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * (size_t)K;
        uint64_t *dst = out + (size_t)r * (size_t)kw;
        for (int w = 0; w < kw; w++) {
            uint64_t word = 0;
            const int base = w * 64;
            const int n = K - base < 64 ? K - base : 64;
            for (int j = 0; j < n; j++)
                word |= (uint64_t)(row[base + j] < 0.0f) << j;
            dst[w] = word;
        }
    }
}
