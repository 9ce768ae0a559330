#include "fft.h"

#include <math.h>
#include <stdlib.h>

#define BIFSMN_PI 3.14159265358979323846

int bifsmn_rfft_init(bifsmn_rfft *plan, int n)
{
    *plan = (bifsmn_rfft){0};
    if (n < 4 || n > (1 << 20) || (n & (n - 1)) != 0)
        return -1;
    const int half = n / 2;
    const size_t h = (size_t)half;
    plan->n = n;
    plan->half = half;
    plan->bitrev = malloc(sizeof(int) * h);
    plan->stage_re = malloc(sizeof(double) * h);
    plan->stage_im = malloc(sizeof(double) * h);
    plan->split_re = malloc(sizeof(double) * h);
    plan->split_im = malloc(sizeof(double) * h);
    plan->re = malloc(sizeof(double) * h);
    plan->im = malloc(sizeof(double) * h);
    if (!plan->bitrev || !plan->stage_re || !plan->stage_im || !plan->split_re || !plan->split_im || !plan->re ||
        !plan->im) {
        bifsmn_rfft_free(plan);
        return -2;
    }
    int bits = 0;
    while ((1 << bits) < half)
        bits++;
    for (int i = 0; i < half; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            r |= ((i >> b) & 1) << (bits - 1 - b);
        plan->bitrev[i] = r;
    }
    for (int len = 2; len <= half; len <<= 1)
        for (int j = 0; j < len / 2; j++) {
            plan->stage_re[len / 2 - 1 + j] = cos(-2.0 * BIFSMN_PI * j / len);
            plan->stage_im[len / 2 - 1 + j] = sin(-2.0 * BIFSMN_PI * j / len);
        }
    for (int k = 0; k < half; k++) {
        plan->split_re[k] = cos(-2.0 * BIFSMN_PI * k / n);
        plan->split_im[k] = sin(-2.0 * BIFSMN_PI * k / n);
    }
    return 0;
}

void bifsmn_rfft_free(bifsmn_rfft *plan)
{
    free(plan->bitrev);
    free(plan->stage_re);
    free(plan->stage_im);
    free(plan->split_re);
    free(plan->split_im);
    free(plan->re);
    free(plan->im);
    *plan = (bifsmn_rfft){0};
}

static void butterflies(double *restrict pr, double *restrict pi, double *restrict qr, double *restrict qi,
                        const double *restrict wr, const double *restrict wi, int n)
{
    for (int j = 0; j < n; j++) {
        const double tr = qr[j] * wr[j] - qi[j] * wi[j], ti = qr[j] * wi[j] + qi[j] * wr[j];
        qr[j] = pr[j] - tr;
        qi[j] = pi[j] - ti;
        pr[j] += tr;
        pi[j] += ti;
    }
}

void bifsmn_rfft_power(bifsmn_rfft *plan, const double *x, double *power)
{
    const int h = plan->half;
    double *re = plan->re, *im = plan->im;
    /* Even samples as real parts, odd as imaginary, stored in bit-reversed order for the in-place DIT. */
    for (int i = 0; i < h; i++) {
        re[plan->bitrev[i]] = x[2 * i];
        im[plan->bitrev[i]] = x[2 * i + 1];
    }
    /* The two first stages (twiddles 1 and -i) fused as one radix-4 pass: their loops would be 1-2 long. */
    int len = 2;
    if (h >= 4) {
        for (int s0 = 0; s0 < h; s0 += 4) {
            double *r = re + s0, *i = im + s0;
            const double ar = r[0] + r[1], ai = i[0] + i[1], br = r[0] - r[1], bi = i[0] - i[1];
            const double cr = r[2] + r[3], ci = i[2] + i[3], dr = r[2] - r[3], di = i[2] - i[3];
            r[0] = ar + cr, i[0] = ai + ci, r[2] = ar - cr, i[2] = ai - ci;
            r[1] = br + di, i[1] = bi - dr, r[3] = br - di, i[3] = bi + dr;
        }
        len = 8;
    }
    /* Split real/imaginary arrays and contiguous per-stage twiddles make the butterflies vectorisable. */
    for (; len <= h; len <<= 1) {
        const int hl = len / 2;
        for (int start = 0; start < h; start += len)
            butterflies(re + start, im + start, re + start + hl, im + start + hl, plan->stage_re + hl - 1,
                        plan->stage_im + hl - 1, hl);
    }
    /* Split: X[k] = E[k] + W^k O[k] with E = (Z[k] + conj Z[h-k]) / 2, O = (Z[k] - conj Z[h-k]) / 2i. */
    power[0] = (re[0] + im[0]) * (re[0] + im[0]);
    power[h] = (re[0] - im[0]) * (re[0] - im[0]);
    for (int k = 1; k < h; k++) {
        const double ar = re[k], ai = im[k], br = re[h - k], bi = -im[h - k];
        const double er = 0.5 * (ar + br), ei = 0.5 * (ai + bi);
        const double orr = 0.5 * (ai - bi), oi = -0.5 * (ar - br); /* (Z[k] - conj Z[h-k]) / 2i */
        const double wr = plan->split_re[k], wi = plan->split_im[k];
        const double xr = er + orr * wr - oi * wi, xi = ei + orr * wi + oi * wr;
        power[k] = xr * xr + xi * xi;
    }
}
