/* Direct float convolution of a single-channel input, the first layer of a spectrogram model: no im2col (a 25-wide
   im2col of a 5x5 kernel costs more than the convolution), the output's PReLU and sign bits applied as each tile is
   written.

   The input is the zero-padded image (time x height, height fastest) split by height into sh phases, so that the
   inputs of consecutive output rows along the height are consecutive floats:
       x[(iw * sh + p) * hq + j] = padded[iw][j * sh + p]
   with padded[iw][ih] the input at (iw - pw, ih - ph) or 0 outside, and rows readable up to 16 floats past
   oh + (kh - 1) / sh (the caller pads them with zeros). The weights come as a panel of (kw * kh) rows of np floats
   (np = N rounded up to 16): panel[(kx * kh + ky) * np + n] = w[n][kx][ky], zeros past N; bias is padded likewise.
       v = bias[n] + sum over kx, ky of panel[kx * kh + ky][n] * padded[ow * sw + kx][oh * sh + ky]
       v = PReLU(v) (max(0, v) + slope * min(0, v)) when slope is not NULL
   out[(ow * OH + oh) * N + n] = v (when out is not NULL) and, when bits is not NULL, sign bit (v < 0) at bit
   oh * N + n of packed row ow (row stride `stride` words), the layout binary layers read.
   Implementations sum in different orders: results agree to float rounding, not bit-exactly. */
#ifndef BIFSMN_SCONV_H
#define BIFSMN_SCONV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int N;                  /* output channels */
    int OH, OW;             /* output positions along the height (mel) and the width (time) */
    int kh, kw, sh, sw;     /* kernel and strides */
    int hq;                 /* floats per phase row of x */
    const float *slope;     /* np PReLU slopes or NULL */
    float *out;             /* OW x OH x N, or NULL */
    uint64_t *bits;         /* OW packed rows of OH * N sign bits, or NULL */
    int stride;             /* words per packed row */
} bifsmn_sconv_out;

/* Byte offsets in x, relative to the first input of an output tile, of the kw * kh taps in panel order; 0 when
   there are more than SCONV_MAX_TAPS (the optimised kernels then run the reference). */
#define SCONV_MAX_TAPS 64
static inline int bifsmn_sconv_offsets(const bifsmn_sconv_out *o, ptrdiff_t *off)
{
    if (o->kw * o->kh > SCONV_MAX_TAPS)
        return 0;
    for (int kx = 0; kx < o->kw; kx++)
        for (int ky = 0; ky < o->kh; ky++)
            off[kx * o->kh + ky] = (ptrdiff_t)sizeof(float) * ((kx * o->sh + ky % o->sh) * o->hq + ky / o->sh);
    return 1;
}

void bifsmn_sconv1_ref(const float *x, const float *panel, const float *bias, const bifsmn_sconv_out *o);
void bifsmn_sconv1_avx2(const float *x, const float *panel, const float *bias, const bifsmn_sconv_out *o);
void bifsmn_sconv1_neon(const float *x, const float *panel, const float *bias, const bifsmn_sconv_out *o);

typedef void (*bifsmn_sconv1_fn)(const float *x, const float *panel, const float *bias, const bifsmn_sconv_out *o);

#ifdef __cplusplus
}
#endif
#endif
