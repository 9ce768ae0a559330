/* Real FFT of a power-of-two length, as half-length complex radix-2 FFT plus a split step.
   Double precision: the dB features must match torchaudio within 0.01 dB down to -80 dB, where float32
   rounding of a 2048-point transform is already visible. */
#ifndef BIFSMN_FFT_H
#define BIFSMN_FFT_H

#include <stddef.h>

typedef struct {
    int n;             /* real length, power of two >= 4 */
    int half;          /* n / 2: complex FFT length */
    int *bitrev;       /* half entries */
    double *stage_re;  /* twiddles exp(-2 pi i j / len) of every butterfly stage, stage of length len at */
    double *stage_im;  /* offset len / 2 - 1, so that each stage reads them contiguously */
    double *split_re;  /* half twiddles exp(-2 pi i k / n) of the real-input split */
    double *split_im;
    double *re, *im;   /* half complex values, split real/imaginary: the work buffer */
} bifsmn_rfft;

/* 0 on success, -1 when n is not a power of two in [4, 1 << 20], -2 on allocation failure. */
int bifsmn_rfft_init(bifsmn_rfft *plan, int n);
void bifsmn_rfft_free(bifsmn_rfft *plan);

/* power[k] = |X[k]|^2 for k = 0 .. n/2 where X = DFT(x), x real of length n. */
void bifsmn_rfft_power(bifsmn_rfft *plan, const double *x, double *power);

#endif
