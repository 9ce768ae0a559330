/* AVX2 + FMA direct single-channel convolution. Compiled with -mavx2 -mfma; called only after dispatch.c saw both.
   A tile is 6 output rows along the height x 16 channels: 12 accumulators, and per kernel tap two weight loads,
   6 broadcasts of consecutive inputs (the phase split makes them consecutive) and 12 FMAs. */
#include "sconv.h"

#include <immintrin.h>
#include <stddef.h>

#include "bfuse/bfuse.h"

#define TILE_P 4

static inline __m256 prelu(__m256 v, __m256 slope)
{
    const __m256 zero = _mm256_setzero_ps();
    return _mm256_add_ps(_mm256_max_ps(v, zero), _mm256_mul_ps(slope, _mm256_min_ps(v, zero)));
}

void bifsmn_sconv1_avx2(const float *x, const float *panel, const float *bias, const bifsmn_sconv_out *out)
{
    const bifsmn_sconv_out o = *out;
    const int np = (o.N + 15) / 16 * 16, taps = o.kw * o.kh;
    ptrdiff_t off[SCONV_MAX_TAPS];
    if (!bifsmn_sconv_offsets(&o, off)) {
        bifsmn_sconv1_ref(x, panel, bias, out);
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int n0 = 0; n0 < o.N; n0 += 16) {
        const int nv = o.N - n0 < 16 ? o.N - n0 : 16;
        const __m256 b0 = _mm256_loadu_ps(bias + n0), b1 = _mm256_loadu_ps(bias + n0 + 8);
        const __m256 s0 = o.slope ? _mm256_loadu_ps(o.slope + n0) : b0;
        const __m256 s1 = o.slope ? _mm256_loadu_ps(o.slope + n0 + 8) : b1;
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nv), lane);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nv - 8), lane);
        for (int ow = 0; ow < o.OW; ow++)
            for (int oh0 = 0; oh0 < o.OH; oh0 += TILE_P) {
                __m256 acc[TILE_P][2];
                for (int p = 0; p < TILE_P; p++)
                    acc[p][0] = b0, acc[p][1] = b1;
                const float *xt = x + (size_t)ow * o.sw * o.sh * o.hq + oh0;
                const float *w = panel + n0;
                for (int t = 0; t < taps; t++, w += np) {
                    const float *xr = (const float *)((const char *)xt + off[t]);
                    const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
                    for (int p = 0; p < TILE_P; p++) {
                        const __m256 xb = _mm256_broadcast_ss(xr + p);
                        acc[p][0] = _mm256_fmadd_ps(xb, w0, acc[p][0]);
                        acc[p][1] = _mm256_fmadd_ps(xb, w1, acc[p][1]);
                    }
                }
                const int pv = o.OH - oh0 < TILE_P ? o.OH - oh0 : TILE_P;
                for (int p = 0; p < TILE_P; p++) { /* a constant bound: acc stays in registers */
                    if (p >= pv)
                        break;
                    __m256 v0 = acc[p][0], v1 = acc[p][1];
                    if (o.slope) {
                        v0 = prelu(v0, s0);
                        v1 = prelu(v1, s1);
                    }
                    const size_t pos = (size_t)ow * o.OH + oh0 + p;
                    if (o.out) {
                        float *dst = o.out + pos * o.N + n0;
                        if (nv == 16) {
                            _mm256_storeu_ps(dst, v0);
                            _mm256_storeu_ps(dst + 8, v1);
                        } else {
                            _mm256_maskstore_ps(dst, m0, v0);
                            _mm256_maskstore_ps(dst + 8, m1, v1);
                        }
                    }
                    if (o.bits) {
                        const __m256 zero = _mm256_setzero_ps();
                        const unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v0, zero, _CMP_LT_OQ)) |
                                              (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v1, zero, _CMP_LT_OQ)) << 8;
                        bifsmn_put_bits(o.bits + (size_t)ow * o.stride, (size_t)(oh0 + p) * o.N + n0,
                                        bits & ((1u << nv) - 1), nv);
                    }
                }
            }
    }
}
