/* Portable reference of the melspec kernel (melspec.h): radix-2 decimation in time on the bit-reversed
   half-length complex sequence, then the real-input split and the mel runs, all scalar float32. */
#include "melspec.h"

static float bin_power(const bifsmn_melspec *p, int k)
{
    const int h = p->half;
    const float *re = p->re, *im = p->im;
    if (k == 0 || k == h) { /* Z[h] is Z[0]: X[0] = E + O, X[h] = E - O with E, O real */
        const float x = 2.0f * (k == 0 ? re[0] + im[0] : re[0] - im[0]);
        return x * x;
    }
    /* 2E = Z[k] + conj Z[h-k], 2O = (Z[k] - conj Z[h-k]) / i, X = 2E + W^k 2O (the window carries the 1/2) */
    const float ar = re[k], ai = im[k], br = re[h - k], bi = -im[h - k];
    const float er = ar + br, ei = ai + bi, orr = ai - bi, oi = br - ar;
    const int kk = k < h / 2 ? k : h - k; /* W^k = -conj W^(h-k) for k > h/2 */
    const float wr = k <= h / 2 ? p->split_re[kk] : -p->split_re[kk];
    const float wi = k <= h / 2 ? p->split_im[kk] : p->split_im[kk];
    const float xr = er + orr * wr - oi * wi, xi = ei + orr * wi + oi * wr;
    return xr * xr + xi * xi;
}

void bifsmn_melspec_ref(bifsmn_melspec *p, const float *x, float *mel)
{
    const int h = p->half;
    float *re = p->re, *im = p->im;
    for (int i = 0; i < h; i++) {
        re[p->bitrev[i]] = x[2 * i] * p->window[2 * i];
        im[p->bitrev[i]] = x[2 * i + 1] * p->window[2 * i + 1];
    }
    for (int len = 2; len <= h; len <<= 1) {
        const int hl = len / 2;
        const float *wr = p->stage_re + hl - 1, *wi = p->stage_im + hl - 1;
        for (int s = 0; s < h; s += len)
            for (int j = 0; j < hl; j++) {
                float *pr = re + s + j, *pi = im + s + j, *qr = pr + hl, *qi = pi + hl;
                const float tr = *qr * wr[j] - *qi * wi[j], ti = *qr * wi[j] + *qi * wr[j];
                *qr = *pr - tr;
                *qi = *pi - ti;
                *pr += tr;
                *pi += ti;
            }
    }
    for (int k = p->bin_lo; k <= p->bin_hi; k++)
        p->power[k] = bin_power(p, k);
    for (int j = 0; j < p->n_mels; j++) {
        const float *w = p->mel_w + p->mel_off[j], *pw = p->power + p->mel_start[j];
        float acc = 0.0f;
        for (int i = 0; i < p->mel_len[j]; i++)
            acc += w[i] * pw[i];
        mel[j] = acc;
    }
}
