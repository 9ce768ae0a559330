/* One analysis frame to mel-band power in float32: window, real FFT, power spectrum, triangular mel filters.
 *
 * The real FFT of n = n_fft points is a complex FFT of half = n / 2 points on z[p] = x[2p] + i x[2p + 1] followed
 * by the split X[k] = E[k] + W^k O[k] (E, O: the DFTs of the even and odd samples, recovered from Z[k] and
 * conj Z[half - k]). Twiddles are computed in double at plan time and rounded once.
 *
 * - melspec_ref.c: the portable reference, a scalar radix-2 transform in bit-reversed order.
 * - melspec_lanes.h, included by melspec_avx2.c / _avx512.c / _neon.c: a vector of V lanes holds V complex values
 *   that are transformed independently, so that every butterfly is a vertical vector operation (no shuffles).
 *   The half-length transform is split four-step fashion as half = V x rows: z[V a + b] is row a, lane b; each
 *   lane is transformed over its rows (radix-4 Stockham stages, natural order, ping-pong between two buffers),
 *   multiplied by W_half^(b k), and the V-point DFT across lanes runs on V x V transposed blocks. Plans whose
 *   half is below V * V (tiny n_fft) use the reference layout and code.
 *
 * Only the bins some filter uses are turned into power, and each filter is a run of consecutive bins; a lanes
 * plan pads every run to whole vectors with zero weights. A plan holds its own scratch: one frame at a time.
 */
#ifndef BIFSMN_MELSPEC_H
#define BIFSMN_MELSPEC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_fft, half, n_mels;
    int lanes;          /* V of the layout: 1 for the reference */
    int rows;           /* half / lanes */
    int bin_lo, bin_hi; /* the bins some filter uses */
    float *window;      /* n_fft: window * sqrt(power scale) / 2 (the split then needs no halving) */
    int *mel_start;     /* n_mels: first bin of each filter's run (a multiple of lanes) */
    int *mel_len;       /* n_mels: bins in the run (a multiple of lanes) */
    int *mel_off;       /* n_mels: offset of the run in mel_w */
    float *mel_w;
    float *split_re, *split_im; /* W_n^k = exp(-2 pi i k / n), k <= half / 2 (+ padding) */
    /* reference */
    int *bitrev;                /* half */
    float *stage_re, *stage_im; /* twiddles of the radix-2 stage of length len at offset len / 2 - 1 */
    /* lanes */
    float *stage_tw; /* radix-4 stages of rows, n = rows, rows / 4, ...: for each p < n / 4, W_n^p, W_n^2p, W_n^3p */
    float *step_tw;  /* rows x [lanes re | lanes im]: W_half^(b k) for row k, lane b */
    /* scratch */
    float *re, *im;     /* half (+ lanes): the work buffer (reference), the transform in natural order (lanes) */
    float *buf_a, *buf_b; /* lanes: rows x [lanes re | lanes im] */
    float *power;       /* half + 1, padded: zero outside the computed bins */
    void *block;        /* every array above lives in this one allocation */
} bifsmn_melspec;

/* A plan for implementation width `lanes` (1, 4, 8 or 16). window: n_fft values; filters: n_mels runs of
   len[j] weights starting at bin start[j], concatenated in weights; power_scale multiplies every power.
   0 on success, -1 on bad arguments, -2 on allocation failure. */
int bifsmn_melspec_init(bifsmn_melspec *plan, int n_fft, int lanes, const double *window, double power_scale,
                        int n_mels, const int *start, const int *len, const double *weights);
void bifsmn_melspec_free(bifsmn_melspec *plan);

/* mel[j] = power_scale * sum_k weight[j][k] |DFT(window * frame)[k]|^2 for j < n_mels; frame: n_fft floats.
   Implementations sum in different orders: they agree to float rounding, not bit-exactly. */
void bifsmn_melspec_ref(bifsmn_melspec *plan, const float *frame, float *mel);
void bifsmn_melspec_avx2(bifsmn_melspec *plan, const float *frame, float *mel);
void bifsmn_melspec_avx512(bifsmn_melspec *plan, const float *frame, float *mel);
void bifsmn_melspec_neon(bifsmn_melspec *plan, const float *frame, float *mel);

typedef void (*bifsmn_melspec_fn)(bifsmn_melspec *plan, const float *frame, float *mel);

#ifdef __cplusplus
}
#endif
#endif
