/* Binary GEMM on packed sign bits: the +-1 dot products of every activation row with every weight row. */
#ifndef BIFSMN_BGEMM_H
#define BIFSMN_BGEMM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[m*N + n] = K - 2 * popcount(a[m] XOR w[n]) over kw = (K+63)/64 words: the +-1 dot product.
   a: M x kw words (activations), w: N x kw words (weights). Pad bits must be 0 in both operands.
   Every implementation returns identical integers. */
void bifsmn_bgemm_ref(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K);
void bifsmn_bgemm_avx2(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K);
void bifsmn_bgemm_avx512(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K);
void bifsmn_bgemm_neon(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K);

typedef void (*bifsmn_bgemm_fn)(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K);

#ifdef __cplusplus
}
#endif
#endif
