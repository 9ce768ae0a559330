#include "sconv.h"

#include <stddef.h>

#include "bfuse/bfuse.h"

void bifsmn_sconv1_ref(const float *x, const float *panel, const float *bias, const bifsmn_sconv_out *o)
{
    const int np = (o->N + 15) / 16 * 16;
    for (int ow = 0; ow < o->OW; ow++)
        for (int oh = 0; oh < o->OH; oh++)
            for (int n = 0; n < o->N; n++) {
                float v = bias[n];
                for (int kx = 0; kx < o->kw; kx++)
                    for (int ky = 0; ky < o->kh; ky++) {
                        const float xv = x[((size_t)(ow * o->sw + kx) * o->sh + ky % o->sh) * o->hq + oh + ky / o->sh];
                        const float p = panel[(size_t)(kx * o->kh + ky) * np + n] * xv;
                        v += p;
                    }
                if (o->slope) {
                    const float neg = o->slope[n] * (v < 0.0f ? v : 0.0f);
                    v = (v > 0.0f ? v : 0.0f) + neg;
                }
                if (o->out)
                    o->out[((size_t)ow * o->OH + oh) * o->N + n] = v;
                if (o->bits)
                    bifsmn_put_bits(o->bits + (size_t)ow * o->stride, (size_t)oh * o->N + n, v < 0.0f, 1);
            }
}
