/* Sign-bit packing of float activations/weights into 64-bit words (see ARCHITECTURE.md, "Binary conventions"). */
#ifndef BIFSMN_BITPACK_H
#define BIFSMN_BITPACK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Packs rows x K floats (row-major, K contiguous) into rows x kw uint64 words, kw = (K + 63) / 64.
   bit = 1 encodes -1 (x < 0), bit = 0 encodes +1 (x >= 0, so sign(0) = +1); LSB first; pad bits are 0.
   NaN packs as +1 (it is not < 0). Every implementation returns identical words. */
void bifsmn_bitpack_ref(const float *x, uint64_t *out, int rows, int K);
void bifsmn_bitpack_avx2(const float *x, uint64_t *out, int rows, int K);
void bifsmn_bitpack_neon(const float *x, uint64_t *out, int rows, int K);

typedef void (*bifsmn_bitpack_fn)(const float *x, uint64_t *out, int rows, int K);

#ifdef __cplusplus
}
#endif
#endif
