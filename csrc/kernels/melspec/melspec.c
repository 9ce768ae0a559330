/* Plans of the melspec kernels (melspec.h): every table in double, rounded once to float, in the layout of the
   implementation width; all arrays carved from one 64-byte aligned allocation. Portable code, called at
   front-end creation only. */
#include "melspec.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MELSPEC_PI 3.14159265358979323846

/* Carves arrays from one block: a first pass with base NULL only adds up the sizes. */
typedef struct {
    char *base;
    size_t used;
} arena;

static void *carve(arena *a, size_t bytes)
{
    void *p = a->base ? a->base + a->used : NULL;
    a->used += (bytes + 63) / 64 * 64;
    return p;
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

static void layout(bifsmn_melspec *p, arena *a, int total_w)
{
    const size_t n = (size_t)p->n_fft, h = (size_t)p->half, V = (size_t)p->lanes, nm = (size_t)p->n_mels;
    p->window = carve(a, sizeof(float) * n);
    p->mel_start = carve(a, sizeof(int) * nm);
    p->mel_len = carve(a, sizeof(int) * nm);
    p->mel_off = carve(a, sizeof(int) * nm);
    p->mel_w = carve(a, sizeof(float) * (size_t)(total_w > 0 ? total_w : 1));
    const size_t n_split = (size_t)round_up(p->half / 2, p->lanes) + V;
    p->split_re = carve(a, sizeof(float) * n_split);
    p->split_im = carve(a, sizeof(float) * n_split);
    p->power = carve(a, sizeof(float) * ((size_t)round_up(p->half + 1, p->lanes) + V));
    p->re = carve(a, sizeof(float) * (h + V));
    p->im = carve(a, sizeof(float) * (h + V));
    if (p->lanes == 1) {
        p->bitrev = carve(a, sizeof(int) * h);
        p->stage_re = carve(a, sizeof(float) * h);
        p->stage_im = carve(a, sizeof(float) * h);
    } else {
        size_t n_stage = 0;
        for (int len = p->rows; len >= 4; len /= 4)
            n_stage += 6 * (size_t)(len / 4);
        p->stage_tw = carve(a, sizeof(float) * (n_stage ? n_stage : 1));
        p->step_tw = carve(a, sizeof(float) * 2 * h);
        p->buf_a = carve(a, sizeof(float) * 2 * h);
        p->buf_b = carve(a, sizeof(float) * 2 * h);
    }
}

static void fill_reference_tables(bifsmn_melspec *p)
{
    const int h = p->half;
    int bits = 0;
    while ((1 << bits) < h)
        bits++;
    for (int i = 0; i < h; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            r |= ((i >> b) & 1) << (bits - 1 - b);
        p->bitrev[i] = r;
    }
    for (int len = 2; len <= h; len <<= 1)
        for (int j = 0; j < len / 2; j++) {
            p->stage_re[len / 2 - 1 + j] = (float)cos(-2.0 * MELSPEC_PI * j / len);
            p->stage_im[len / 2 - 1 + j] = (float)sin(-2.0 * MELSPEC_PI * j / len);
        }
}

static void fill_lanes_tables(bifsmn_melspec *p)
{
    const int V = p->lanes, R = p->rows;
    float *tw = p->stage_tw;
    for (int len = R; len >= 4; len /= 4)
        for (int q = 0; q < len / 4; q++)
            for (int t = 1; t <= 3; t++) {
                *tw++ = (float)cos(-2.0 * MELSPEC_PI * t * q / len);
                *tw++ = (float)sin(-2.0 * MELSPEC_PI * t * q / len);
            }
    for (int k = 0; k < R; k++)
        for (int b = 0; b < V; b++) {
            /* b * k < half, so the angle is exact in double */
            const double angle = -2.0 * MELSPEC_PI * (double)(b * k) / p->half;
            p->step_tw[(size_t)k * 2 * V + b] = (float)cos(angle);
            p->step_tw[(size_t)k * 2 * V + V + b] = (float)sin(angle);
        }
}

int bifsmn_melspec_init(bifsmn_melspec *p, int n_fft, int lanes, const double *window, double power_scale,
                        int n_mels, const int *start, const int *len, const double *weights)
{
    memset(p, 0, sizeof *p);
    if (n_fft < 4 || n_fft > (1 << 20) || (n_fft & (n_fft - 1)) != 0 || n_mels < 1 || !window || !start || !len ||
        !weights || (lanes != 1 && lanes != 4 && lanes != 8 && lanes != 16) || !(power_scale > 0.0))
        return -1;
    const int half = n_fft / 2;
    for (int j = 0; j < n_mels; j++)
        if (start[j] < 0 || len[j] < 0 || start[j] + len[j] > half + 1)
            return -1;
    p->n_fft = n_fft;
    p->half = half;
    p->n_mels = n_mels;
    p->lanes = half >= lanes * lanes ? lanes : 1; /* the four-step split needs rows >= lanes */
    p->rows = half / p->lanes;
    const int V = p->lanes;
    int total_w = 0;
    p->bin_lo = half + 1;
    p->bin_hi = -1;
    for (int j = 0; j < n_mels; j++) {
        if (len[j] == 0)
            continue;
        const int s0 = start[j] / V * V;
        total_w += round_up(start[j] + len[j] - s0, V);
        p->bin_lo = start[j] < p->bin_lo ? start[j] : p->bin_lo;
        p->bin_hi = start[j] + len[j] - 1 > p->bin_hi ? start[j] + len[j] - 1 : p->bin_hi;
    }
    arena a = {NULL, 0};
    layout(p, &a, total_w);
    if (!(p->block = aligned_alloc(64, a.used)))
        return -2;
    memset(p->block, 0, a.used);
    a = (arena){p->block, 0};
    layout(p, &a, total_w);

    const double amplitude = sqrt(power_scale) / 2.0;
    for (int i = 0; i < n_fft; i++)
        p->window[i] = (float)(window[i] * amplitude);
    for (int j = 0, off = 0, src = 0; j < n_mels; j++) {
        const int s0 = len[j] ? start[j] / V * V : 0;
        p->mel_start[j] = s0;
        p->mel_len[j] = len[j] ? round_up(start[j] + len[j] - s0, V) : 0;
        p->mel_off[j] = off;
        for (int i = 0; i < len[j]; i++)
            p->mel_w[off + start[j] - s0 + i] = (float)weights[src + i];
        off += p->mel_len[j];
        src += len[j];
    }
    for (int k = 0; k <= half / 2; k++) {
        p->split_re[k] = (float)cos(-2.0 * MELSPEC_PI * k / n_fft);
        p->split_im[k] = (float)sin(-2.0 * MELSPEC_PI * k / n_fft);
    }
    if (V == 1)
        fill_reference_tables(p);
    else
        fill_lanes_tables(p);
    return 0;
}

void bifsmn_melspec_free(bifsmn_melspec *p)
{
    free(p->block);
    memset(p, 0, sizeof *p);
}
