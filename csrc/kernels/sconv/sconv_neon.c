/* ARMv8 NEON direct single-channel convolution. A tile is 4 output rows along the height x 16 channels: 16
   accumulators; per kernel tap one LD1 of the 16 weights (4 registers), one load of the 4 consecutive inputs and
   16 FMLAs by element (each input lane against the 4 weight vectors), so no broadcast is needed. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <stddef.h>

#include "bfuse/bfuse.h"
#include "bfuse/bfuse_neon.h"
#include "sconv.h"

/* PReLU, store and sign bits of the 16 outputs n0.. (nv valid) of position (ow, oh). */
static inline __attribute__((always_inline)) void finish(const bifsmn_sconv_out *o, const float32x4_t acc[4],
                                                         float32x4x4_t slope, int ow, int oh, int n0, int nv,
                                                         uint8x16_t weights)
{
    const float32x4_t zero = vdupq_n_f32(0.0f);
    uint32x4_t neg[4];
    float *dst = o->out ? o->out + ((size_t)ow * o->OH + oh) * o->N + n0 : NULL;
    for (int g = 0; g < 4; g++) {
        float32x4_t v = acc[g];
        if (o->slope) /* FMAXNM/FMINNM: 0 for NaN, like the reference's comparisons */
            v = vaddq_f32(vmaxnmq_f32(v, zero), vmulq_f32(slope.val[g], vminnmq_f32(v, zero)));
        neg[g] = vcltzq_f32(v);
        if (dst && nv == 16) {
            vst1q_f32(dst + 4 * g, v);
        } else if (dst) {
            float lanes[4];
            vst1q_f32(lanes, v);
            for (int j = 0; j < 4 && 4 * g + j < nv; j++)
                dst[4 * g + j] = lanes[j];
        }
    }
    if (o->bits)
        bifsmn_put_bits(o->bits + (size_t)ow * o->stride, (size_t)oh * o->N + n0,
                        bifsmn_neon_signs16(neg, weights) & ((1u << nv) - 1), nv);
}

void bifsmn_sconv1_neon(const float *x, const float *panel, const float *bias, const bifsmn_sconv_out *out)
{
    const bifsmn_sconv_out o = *out;
    const int np = (o.N + 15) / 16 * 16, taps = o.kw * o.kh;
    ptrdiff_t off[SCONV_MAX_TAPS];
    if (!bifsmn_sconv_offsets(&o, off)) {
        bifsmn_sconv1_ref(x, panel, bias, out);
        return;
    }
    const uint8x16_t weights = bifsmn_neon_bit_weights();
    for (int n0 = 0; n0 < o.N; n0 += 16) {
        const int nv = o.N - n0 < 16 ? o.N - n0 : 16;
        const float32x4x4_t b = vld1q_f32_x4(bias + n0);
        const float32x4x4_t s = o.slope ? vld1q_f32_x4(o.slope + n0) : b;
        for (int ow = 0; ow < o.OW; ow++)
            for (int oh0 = 0; oh0 < o.OH; oh0 += 4) {
                float32x4_t acc[4][4];
                for (int p = 0; p < 4; p++)
                    for (int g = 0; g < 4; g++)
                        acc[p][g] = b.val[g];
                const float *xt = x + (size_t)ow * o.sw * o.sh * o.hq + oh0;
                const float *w = panel + n0;
#pragma GCC unroll 2
                for (int t = 0; t < taps; t++, w += np) {
                    const float32x4_t xv = vld1q_f32((const float *)((const char *)xt + off[t]));
                    const float32x4x4_t wv = vld1q_f32_x4(w);
                    for (int g = 0; g < 4; g++) {
                        acc[0][g] = vfmaq_laneq_f32(acc[0][g], wv.val[g], xv, 0);
                        acc[1][g] = vfmaq_laneq_f32(acc[1][g], wv.val[g], xv, 1);
                        acc[2][g] = vfmaq_laneq_f32(acc[2][g], wv.val[g], xv, 2);
                        acc[3][g] = vfmaq_laneq_f32(acc[3][g], wv.val[g], xv, 3);
                    }
                }
                /* Rows one by one with constant indices (a loop over acc would keep it in memory). */
                const int pv = o.OH - oh0;
                finish(&o, acc[0], s, ow, oh0, n0, nv, weights);
                if (pv > 1)
                    finish(&o, acc[1], s, ow, oh0 + 1, n0, nv, weights);
                if (pv > 2)
                    finish(&o, acc[2], s, ow, oh0 + 2, n0, nv, weights);
                if (pv > 3)
                    finish(&o, acc[3], s, ow, oh0 + 3, n0, nv, weights);
            }
    }
}

#endif /* __aarch64__ */
