/* Float32 GEMM in the Linear-weight layout, used by full-precision layers (first conv, classifier, teacher). */
#ifndef BIFSMN_SGEMM_H
#define BIFSMN_SGEMM_H

#ifdef __cplusplus
extern "C" {
#endif

/* c[m*N + n] = bias[n] + sum_k a[m*K + k] * w[n*K + k]   (C = A * W^T + bias)
   a: M x K row-major, w: N x K row-major (PyTorch Linear weight (out, in)), bias: N floats or NULL.
   Implementations may sum in different orders, so results agree to float rounding, not bit-exactly. */
void bifsmn_sgemm_ref(const float *a, const float *w, const float *bias, float *c, int M, int N, int K);
void bifsmn_sgemm_avx2(const float *a, const float *w, const float *bias, float *c, int M, int N, int K);
void bifsmn_sgemm_avx512(const float *a, const float *w, const float *bias, float *c, int M, int N, int K);
void bifsmn_sgemm_neon(const float *a, const float *w, const float *bias, float *c, int M, int N, int K);

typedef void (*bifsmn_sgemm_fn)(const float *a, const float *w, const float *bias, float *c, int M, int N, int K);

#ifdef __cplusplus
}
#endif
#endif
