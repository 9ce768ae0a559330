#include "bgemm.h"

#include <stddef.h>

/* Portable popcount: the reference is built without -mpopcnt so that it runs on any CPU. */
static int popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}

void bifsmn_bgemm_ref(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K)
{
    const int kw = (K + 63) / 64;
    for (int m = 0; m < M; m++) {
        const uint64_t *am = a + (size_t)m * (size_t)kw;
        for (int n = 0; n < N; n++) {
            const uint64_t *wn = w + (size_t)n * (size_t)kw;
            int pc = 0;
            for (int i = 0; i < kw; i++)
                pc += popcount64(am[i] ^ wn[i]);
            out[(size_t)m * (size_t)N + (size_t)n] = K - 2 * pc;
        }
    }
}
