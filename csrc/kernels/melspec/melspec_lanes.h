/* The lanes algorithm of the melspec kernel (melspec.h), written once over a small vector interface. A file
   including it defines the interface for one instruction set, then ML_FN, the kernel's name:

     ML_V                          lanes per vector (4, 8 or 16)
     ml_vec                        the vector type
     ml_load, ml_store             aligned; ml_loadu, ml_storeu unaligned
     ml_set1, ml_add, ml_sub, ml_mul
     ml_fmadd(a, b, c)  = a * b + c;  ml_fnmadd(a, b, c) = c - a * b
     ml_reverse(v)                 the lanes in reverse order
     ml_hsum(v)                    the sum of the lanes, a float
     ml_deinterleave(x, w, &re, &im)   re = (x * w)[0, 2, .., 2V - 2], im = (x * w)[1, 3, .., 2V - 1];
                                   x unaligned, w aligned
     ml_transpose(ml_vec r[ML_V])  in place, as a V x V matrix of rows

   Buffers hold rows of [V real parts | V imaginary parts]; row k of a buffer is lane-parallel complex data. */
#include <stddef.h>

#include "melspec.h"

#define ML_RE(buf, row) ((buf) + (size_t)(row) * 2 * ML_V)
#define ML_IM(buf, row) (ML_RE(buf, row) + ML_V)
#define ML_INLINE static inline __attribute__((always_inline))
#if defined(__OPTIMIZE__) /* GCC warns that it ignores the pragma at -O0 */
#define ML_UNROLL _Pragma("GCC unroll 16")
#else
#define ML_UNROLL
#endif

ML_INLINE void ml_cmul(ml_vec *re, ml_vec *im, ml_vec wr, ml_vec wi)
{
    const ml_vec xr = *re, xi = *im;
    *re = ml_fnmadd(xi, wi, ml_mul(xr, wr));
    *im = ml_fmadd(xi, wr, ml_mul(xr, wi));
}

/* Radix-4 decimation-in-frequency butterfly of Stockham stage n: inputs a, b, c, d (re, im pairs in v) at
   p + r n/4, outputs DFT4 bin r' times W_n^(p r') (w: W_n^p, W_n^2p, W_n^3p as re, im; NULL when p = 0). */
ML_INLINE void ml_butterfly4(const ml_vec v[8], const ml_vec *w, float *const out[4])
{
    const ml_vec apc_r = ml_add(v[0], v[4]), apc_i = ml_add(v[1], v[5]);
    const ml_vec amc_r = ml_sub(v[0], v[4]), amc_i = ml_sub(v[1], v[5]);
    const ml_vec bpd_r = ml_add(v[2], v[6]), bpd_i = ml_add(v[3], v[7]);
    const ml_vec bmd_r = ml_sub(v[2], v[6]), bmd_i = ml_sub(v[3], v[7]);
    ml_vec yr[4] = {ml_add(apc_r, bpd_r), ml_add(amc_r, bmd_i), ml_sub(apc_r, bpd_r), ml_sub(amc_r, bmd_i)};
    ml_vec yi[4] = {ml_add(apc_i, bpd_i), ml_sub(amc_i, bmd_r), ml_sub(apc_i, bpd_i), ml_add(amc_i, bmd_r)};
    if (w)
        for (int r = 1; r < 4; r++)
            ml_cmul(&yr[r], &yi[r], w[2 * r - 2], w[2 * r - 1]);
    for (int r = 0; r < 4; r++) {
        ml_store(out[r], yr[r]);
        ml_store(out[r] + ML_V, yi[r]);
    }
}

ML_INLINE void ml_twiddles(const float *tw, ml_vec w[6])
{
    for (int i = 0; i < 6; i++)
        w[i] = ml_set1(tw[i]);
}

/* The first stage (n = rows, stride 1), reading the windowed frame: row j is z[V j .. V j + V). */
ML_INLINE void ml_input_butterfly(const bifsmn_melspec *p, const float *frame, float *y, int q, const ml_vec *w)
{
    const int n4 = p->rows / 4;
    ml_vec v[8];
    float *out[4];
    for (int r = 0; r < 4; r++) {
        const size_t j = (size_t)(q + r * n4) * 2 * ML_V;
        ml_deinterleave(frame + j, p->window + j, &v[2 * r], &v[2 * r + 1]);
        out[r] = ML_RE(y, 4 * q + r);
    }
    ml_butterfly4(v, w, out);
}

static void ml_stage_input(const bifsmn_melspec *p, const float *frame, float *y)
{
    ml_input_butterfly(p, frame, y, 0, NULL);
    for (int q = 1; q < p->rows / 4; q++) {
        ml_vec w[6];
        ml_twiddles(p->stage_tw + 6 * q, w);
        ml_input_butterfly(p, frame, y, q, w);
    }
}

/* A later radix-4 stage: sub-transforms of length n at stride s, x -> y. */
ML_INLINE void ml_stage4_column(const float *x, float *y, const ml_vec *w, int n, int s, int q)
{
    const int n4 = n / 4;
    for (int t = 0; t < s; t++) {
        ml_vec v[8];
        float *out[4];
        for (int r = 0; r < 4; r++) {
            const int row = t + s * (q + r * n4);
            v[2 * r] = ml_load(ML_RE(x, row));
            v[2 * r + 1] = ml_load(ML_IM(x, row));
            out[r] = ML_RE(y, t + s * (4 * q + r));
        }
        ml_butterfly4(v, w, out);
    }
}

static void ml_stage4(const float *x, float *y, const float *tw, int n, int s)
{
    ml_stage4_column(x, y, NULL, n, s, 0);
    for (int q = 1; q < n / 4; q++) {
        ml_vec w[6];
        ml_twiddles(tw + 6 * q, w);
        ml_stage4_column(x, y, w, n, s, q);
    }
}

/* The last stage when log2(rows) is odd: length 2 at stride s. */
static void ml_stage2(const float *x, float *y, int s)
{
    for (int t = 0; t < s; t++) {
        const ml_vec ar = ml_load(ML_RE(x, t)), ai = ml_load(ML_IM(x, t));
        const ml_vec br = ml_load(ML_RE(x, t + s)), bi = ml_load(ML_IM(x, t + s));
        ml_store(ML_RE(y, t), ml_add(ar, br));
        ml_store(ML_IM(y, t), ml_add(ai, bi));
        ml_store(ML_RE(y, t + s), ml_sub(ar, br));
        ml_store(ML_IM(y, t + s), ml_sub(ai, bi));
    }
}

/* W_16^j = exp(-2 pi i j / 16), j < 8: the twiddles of every DFT across lanes (V <= 16). */
static const float ml_w16_re[8] = {1.0f, 0.92387953251128674f, 0.70710678118654752f, 0.38268343236508977f,
                                   0.0f, -0.38268343236508977f, -0.70710678118654752f, -0.92387953251128674f};
static const float ml_w16_im[8] = {0.0f, -0.38268343236508977f, -0.70710678118654752f, -0.92387953251128674f,
                                   -1.0f, -0.92387953251128674f, -0.70710678118654752f, -0.38268343236508977f};

/* In-place DFT of length V across an array of vectors (element b of the transform is re[b], im[b]): radix-2
   decimation in time; every index is a compile-time constant once unrolled, so the arrays live in registers. */
ML_INLINE void ml_dft_lanes(ml_vec re[ML_V], ml_vec im[ML_V])
{
    static const unsigned char bitrev16[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
    const int shift = ML_V == 16 ? 0 : ML_V == 8 ? 1 : 2; /* 4 - log2(V) */
ML_UNROLL
    for (int i = 0; i < ML_V; i++) {
        const int j = bitrev16[i] >> shift;
        if (i < j) {
            const ml_vec tr = re[i], ti = im[i];
            re[i] = re[j], im[i] = im[j];
            re[j] = tr, im[j] = ti;
        }
    }
ML_UNROLL
    for (int len = 2; len <= ML_V; len <<= 1)
ML_UNROLL
        for (int s = 0; s < ML_V; s += len)
ML_UNROLL
            for (int j = 0; j < len / 2; j++) {
                const int a = s + j, b = a + len / 2, w = j * (16 / len);
                ml_vec tr = re[b], ti = im[b];
                if (w == 4) { /* times -i */
                    tr = im[b];
                    ti = ml_sub(ml_set1(0.0f), re[b]);
                } else if (w != 0) {
                    ml_cmul(&tr, &ti, ml_set1(ml_w16_re[w]), ml_set1(ml_w16_im[w]));
                }
                re[b] = ml_sub(re[a], tr), im[b] = ml_sub(im[a], ti);
                re[a] = ml_add(re[a], tr), im[a] = ml_add(im[a], ti);
            }
}

/* Steps 2 and 3 of the four-step transform: y holds each lane's transform over the rows (row k2, lane b);
   Z[k2 + rows k1] = sum_b y[k2][b] W_half^(b k2) W_V^(b k1), written in natural order to p->re, p->im. */
static void ml_across_lanes(bifsmn_melspec *p, const float *y)
{
    const int R = p->rows;
    for (int c = 0; c < R / ML_V; c++) {
        ml_vec re[ML_V], im[ML_V];
        for (int r = 0; r < ML_V; r++) {
            const int k = c * ML_V + r;
            re[r] = ml_load(ML_RE(y, k));
            im[r] = ml_load(ML_IM(y, k));
            ml_cmul(&re[r], &im[r], ml_load(ML_RE(p->step_tw, k)), ml_load(ML_IM(p->step_tw, k)));
        }
        ml_transpose(re);
        ml_transpose(im);
        ml_dft_lanes(re, im);
        for (int k1 = 0; k1 < ML_V; k1++) {
            ml_store(p->re + (size_t)R * k1 + c * ML_V, re[k1]);
            ml_store(p->im + (size_t)R * k1 + c * ML_V, im[k1]);
        }
    }
}

/* Power of the bins some filter uses, V bins k and V bins half - k per step (see melspec_ref.c). */
static void ml_split_power(bifsmn_melspec *p)
{
    const int h = p->half;
    float *zr = p->re, *zi = p->im, *pw = p->power;
    zr[h] = zr[0];
    zi[h] = zi[0];
    /* the k whose bin k or bin h - k is used: within [min(lo, h - hi), max(hi, h - lo)] */
    const int lo = p->bin_lo < h - p->bin_hi ? p->bin_lo : h - p->bin_hi;
    const int hi = p->bin_hi > h - p->bin_lo ? p->bin_hi : h - p->bin_lo;
    const int end = hi < h / 2 ? hi + 1 : h / 2;
    for (int k0 = lo > 0 ? lo / ML_V * ML_V : 0; k0 < end; k0 += ML_V) {
        const int hi0 = h - k0 - ML_V + 1; /* the mirrored block: bins hi0 .. h - k0 */
        const ml_vec ar = ml_load(zr + k0), ai = ml_load(zi + k0);
        const ml_vec cr = ml_reverse(ml_loadu(zr + hi0)), ci = ml_reverse(ml_loadu(zi + hi0));
        const ml_vec er = ml_add(ar, cr), ei = ml_sub(ai, ci), orr = ml_add(ai, ci), oi = ml_sub(cr, ar);
        const ml_vec wr = ml_load(p->split_re + k0), wi = ml_load(p->split_im + k0);
        const ml_vec xr = ml_fnmadd(wi, oi, ml_mul(wr, orr)), xi = ml_fmadd(wi, orr, ml_mul(wr, oi));
        const ml_vec pr = ml_add(er, xr), pi = ml_add(ei, xi), mr = ml_sub(er, xr), mi = ml_sub(ei, xi);
        ml_store(pw + k0, ml_fmadd(pr, pr, ml_mul(pi, pi)));
        ml_storeu(pw + hi0, ml_reverse(ml_fmadd(mr, mr, ml_mul(mi, mi))));
    }
    /* X[h/2] = conj Z[h/2] of the unhalved input */
    pw[h / 2] = 4.0f * (zr[h / 2] * zr[h / 2] + zi[h / 2] * zi[h / 2]);
}

void ML_FN(bifsmn_melspec *p, const float *frame, float *mel)
{
    if (p->lanes != ML_V) { /* a plan too small for the lanes layout */
        bifsmn_melspec_ref(p, frame, mel);
        return;
    }
    float *x = p->buf_a, *y = p->buf_b;
    ml_stage_input(p, frame, x);
    const float *tw = p->stage_tw + 6 * (p->rows / 4);
    int n = p->rows / 4, s = 4;
    for (; n >= 4; tw += 6 * (n / 4), n /= 4, s *= 4) {
        ml_stage4(x, y, tw, n, s);
        float *t = x;
        x = y, y = t;
    }
    if (n == 2) {
        ml_stage2(x, y, s);
        x = y;
    }
    ml_across_lanes(p, x);
    ml_split_power(p);
    for (int j = 0; j < p->n_mels; j++) {
        const float *w = p->mel_w + p->mel_off[j], *pw = p->power + p->mel_start[j];
        ml_vec acc = ml_set1(0.0f);
        for (int i = 0; i < p->mel_len[j]; i += ML_V)
            acc = ml_fmadd(ml_load(w + i), ml_load(pw + i), acc);
        mel[j] = ml_hsum(acc);
    }
}
