/* Fused binary kernels: a binary layer's +-1 products with its output transform applied where each tile is
   written (FORMAT.md, "Binary op"), so that no epilogue, padding-correction or bit-packing pass walks memory
   again:
       dot = base - 2 * popcount(a XOR w)      base = K, or K minus the zero-padding correction of a conv
       v = scale[n] * (float)dot + shift[n]    (a multiply then an add, never fused: every implementation and
       v = PReLU(v) + res                       the reference give the same floats)
       out = v,  sign bit = v < 0              (the next binary layer's packed input, written in the same pass)
   and, when a layer's output is only ever binarised and has no residual, the "threshold" form: the sign bit
   is popcount > thr, a per-output integer computed once at load (bifsmn_bout_thresholds) that gives exactly
   the bits of the float form.

   Two kernels per implementation, each with its weight layout ("panel", built once at load by
   bifsmn_bpanel_*; the reference's panel is the plain N x kw rows):
   - bgemm_fused: a (M x kw packed rows, kw = (K + 63) / 64, pad bits 0) against the panel of N rows;
   - bdwconv: the depthwise time convolution of a dwconv1d op on the packed sign bits of its input.
   Bits are packed like every activation (FORMAT.md): bit 1 = -1. */
#ifndef BIFSMN_BFUSE_H
#define BIFSMN_BFUSE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int N;                /* outputs per row */
    const float *scale;   /* N, padded with zeros to a multiple of 16 */
    const float *shift;   /* N, padded likewise */
    const float *slope;   /* N PReLU slopes, padded likewise; NULL: no activation */
    const int32_t *base;  /* M x N (K minus the padding correction); NULL: K for every output */
    const float *res;     /* M x N residual added after the activation; NULL: none */
    float *out;           /* M x N floats; NULL: not stored */
    const int32_t *thr;   /* threshold form (out and res NULL): sign bit = popcount > thr[m * thr_stride + n] */
    int thr_stride;       /* 0 (one row of N for all rows) or N */
    uint64_t *bits;       /* sign bits of the output; NULL: none. Only the N * M output bits are written */
    int group;            /* output rows per packed row: row m is bit (m % group) * N + n of packed row m / group */
    int stride;           /* words per packed row */
} bifsmn_bout;

/* Scratch bytes the fused kernels may use (caller-provided, 64-byte aligned). */
#define BIFSMN_BGEMM_SCRATCH(K) (1024 * (((size_t)(K) + 63) / 64))
/* The depthwise conv's input signs as bytes, with zero rows around them when the taps span at most
   BIFSMN_BDWCONV_PAD_SPAN time steps (longer spans run without them). */
#define BIFSMN_BDWCONV_PAD_SPAN 64
#define BIFSMN_BDWCONV_SCRATCH(T, C, taps, dilation)                                                              \
    (((size_t)(T) + (((size_t)(taps) - 1) * (size_t)(dilation) <= BIFSMN_BDWCONV_PAD_SPAN                          \
                         ? ((size_t)(taps) - 1) * (size_t)(dilation) : 0)) *                                        \
     (((size_t)(C) + 63) / 64 * 64))

/* Panel size in words and the panel of N packed weight rows (N x kw words, pad bits 0). */
typedef size_t (*bifsmn_bpanel_words_fn)(int N, int K);
typedef void (*bifsmn_bpanel_fn)(const uint64_t *w, int N, int K, uint64_t *panel);
/* The fused GEMM of a (M x kw words) with a panel; o->N outputs per row. */
typedef void (*bifsmn_bgemm_fused_fn)(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *o,
                                      void *scratch);
/* out[t][c] = transform(sum over in-range taps k of x[t + k * dilation - pad_left][c] * w[k][c]) with x the
   packed input signs (T rows of (C + 63) / 64 words) and wneg[k * ((C + 63) / 64 * 64) + c] = 0xff where
   w[k][c] = -1, else 0 (rows padded with 0). Out-of-range taps contribute 0; no base or threshold form. */
typedef void (*bifsmn_bdwconv_fn)(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation,
                                  int pad_left, const bifsmn_bout *o, void *scratch);

size_t bifsmn_bpanel_words_ref(int N, int K);
void bifsmn_bpanel_ref(const uint64_t *w, int N, int K, uint64_t *panel);
void bifsmn_bgemm_fused_ref(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *o,
                            void *scratch);
void bifsmn_bdwconv_ref(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation, int pad_left,
                        const bifsmn_bout *o, void *scratch);

size_t bifsmn_bpanel_words_avx2(int N, int K);
void bifsmn_bpanel_avx2(const uint64_t *w, int N, int K, uint64_t *panel);
void bifsmn_bgemm_fused_avx2(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *o,
                             void *scratch);
void bifsmn_bdwconv_avx2(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation, int pad_left,
                         const bifsmn_bout *o, void *scratch);

size_t bifsmn_bpanel_words_avx512(int N, int K);
void bifsmn_bpanel_avx512(const uint64_t *w, int N, int K, uint64_t *panel);
void bifsmn_bgemm_fused_avx512(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *o,
                               void *scratch);

size_t bifsmn_bpanel_words_neon(int N, int K);
void bifsmn_bpanel_neon(const uint64_t *w, int N, int K, uint64_t *panel);
void bifsmn_bgemm_fused_neon(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *o,
                             void *scratch);
void bifsmn_bdwconv_neon(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation, int pad_left,
                         const bifsmn_bout *o, void *scratch);

/* The reference output transform of one output (no residual): what every kernel computes before `+ res`. */
float bifsmn_bout_value(const bifsmn_bout *o, int n, int32_t dot);

/* The threshold form of o (scale, shift, slope; o->thr unused) for dot products in [-K, K]: fills t[n] with the
   T such that "the transformed value is < 0" is exactly "dot < T" (T in [-K, K + 1]), found by evaluating
   bifsmn_bout_value on every dot product. Returns 0, or -1 when some output's negative set is not of that form
   (a negative scale: its sign set is dot > T; callers negate the weights and scale of such outputs first). */
int bifsmn_bout_thresholds(const bifsmn_bout *o, int K, int32_t *t);

/* Writes the low n <= 32 bits of v at bit `off` of a packed row, leaving every other bit alone. */
static inline void bifsmn_put_bits(uint64_t *row, size_t off, uint64_t v, int n)
{
    uint64_t *w = row + (off >> 6);
    const int sh = (int)(off & 63);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if ((n == 8 && (sh & 7) == 0) || (n == 16 && (sh & 15) == 0)) { /* whole bytes: a plain store */
        unsigned char *p = (unsigned char *)w + (sh >> 3);
        if (n == 16) {
            const uint16_t h = (uint16_t)v; /* a constant-size memcpy: one store, never a call */
            memcpy(p, &h, 2);
        } else {
            *p = (unsigned char)v;
        }
        return;
    }
#endif
    const uint64_t mask = (UINT64_C(1) << n) - 1;
    w[0] = (w[0] & ~(mask << sh)) | (v << sh);
    if (sh + n > 64)
        w[1] = (w[1] & ~(mask >> (64 - sh))) | (v >> (64 - sh));
}

/* Where row m's output bits start: packed row m / group, at bit (m % group) * N. */
static inline size_t bifsmn_bout_bit(const bifsmn_bout *o, int m)
{
    return (size_t)(m / o->group) * (size_t)o->stride * 64 + (size_t)(m % o->group) * (size_t)o->N;
}

#ifdef __cplusplus
}
#endif
#endif
