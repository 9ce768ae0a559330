#include "sgemm.h"

#include <stddef.h>

void bifsmn_sgemm_ref(const float *a, const float *w, const float *bias, float *c, int M, int N, int K)
{
    for (int m = 0; m < M; m++) {
        const float *am = a + (size_t)m * (size_t)K;
        for (int n = 0; n < N; n++) {
            const float *wn = w + (size_t)n * (size_t)K;
            float acc = 0.0f;
            for (int k = 0; k < K; k++)
                acc += am[k] * wn[k];
            c[(size_t)m * (size_t)N + (size_t)n] = acc + (bias ? bias[n] : 0.0f);
        }
    }
}
