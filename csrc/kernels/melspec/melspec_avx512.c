/* AVX-512F melspec kernel: the lanes algorithm (melspec_lanes.h) on 16 floats. Compiled with -mavx512f;
   called only after dispatch.c saw AVX-512F with OS zmm support. */
#include <immintrin.h>

#define ML_V 16
typedef __m512 ml_vec;

static inline ml_vec ml_load(const float *p) { return _mm512_load_ps(p); }
static inline ml_vec ml_loadu(const float *p) { return _mm512_loadu_ps(p); }
static inline void ml_store(float *p, ml_vec v) { _mm512_store_ps(p, v); }
static inline void ml_storeu(float *p, ml_vec v) { _mm512_storeu_ps(p, v); }
static inline ml_vec ml_set1(float x) { return _mm512_set1_ps(x); }
static inline ml_vec ml_add(ml_vec a, ml_vec b) { return _mm512_add_ps(a, b); }
static inline ml_vec ml_sub(ml_vec a, ml_vec b) { return _mm512_sub_ps(a, b); }
static inline ml_vec ml_mul(ml_vec a, ml_vec b) { return _mm512_mul_ps(a, b); }
static inline ml_vec ml_fmadd(ml_vec a, ml_vec b, ml_vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline ml_vec ml_fnmadd(ml_vec a, ml_vec b, ml_vec c) { return _mm512_fnmadd_ps(a, b, c); }
static inline float ml_hsum(ml_vec v) { return _mm512_reduce_add_ps(v); }

static inline ml_vec ml_reverse(ml_vec v)
{
    return _mm512_permutexvar_ps(_mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), v);
}

static inline void ml_deinterleave(const float *x, const float *w, ml_vec *re, ml_vec *im)
{
    const __m512 lo = _mm512_mul_ps(_mm512_loadu_ps(x), _mm512_load_ps(w));
    const __m512 hi = _mm512_mul_ps(_mm512_loadu_ps(x + 16), _mm512_load_ps(w + 16));
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    *re = _mm512_permutex2var_ps(lo, even, hi);
    *im = _mm512_permutex2var_ps(lo, _mm512_add_epi32(even, _mm512_set1_epi32(1)), hi);
}

static inline __m512 unpack_pd(__m512 a, __m512 b, int hi)
{
    const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
    return _mm512_castpd_ps(hi ? _mm512_unpackhi_pd(x, y) : _mm512_unpacklo_pd(x, y));
}

/* 16 x 16: pairs of floats, then pairs of pairs (64-bit unpacks), then 128-bit blocks in two shuffles. */
static inline void ml_transpose(ml_vec r[16])
{
    __m512 t[16], u[16], v[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + c]: columns c, c + 4, c + 8, c + 12 of rows 4 g .. 4 g + 3, one 128-bit block per column */
    for (int g = 0; g < 4; g++) {
        u[4 * g] = unpack_pd(t[4 * g], t[4 * g + 2], 0);
        u[4 * g + 1] = unpack_pd(t[4 * g], t[4 * g + 2], 1);
        u[4 * g + 2] = unpack_pd(t[4 * g + 1], t[4 * g + 3], 0);
        u[4 * g + 3] = unpack_pd(t[4 * g + 1], t[4 * g + 3], 1);
    }
    /* v[4 h + c] (h = 0, 1: rows 0-7, 8-15; e = 0, 1): blocks (c, c + 8) then (c + 4, c + 12) of two groups */
    for (int c = 0; c < 4; c++)
        for (int h = 0; h < 2; h++) {
            v[8 * h + c] = _mm512_shuffle_f32x4(u[8 * h + c], u[8 * h + 4 + c], 0x88);
            v[8 * h + 4 + c] = _mm512_shuffle_f32x4(u[8 * h + c], u[8 * h + 4 + c], 0xdd);
        }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(v[c], v[8 + c], 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(v[c], v[8 + c], 0xdd);
        r[c + 4] = _mm512_shuffle_f32x4(v[4 + c], v[12 + c], 0x88);
        r[c + 12] = _mm512_shuffle_f32x4(v[4 + c], v[12 + c], 0xdd);
    }
}

#define ML_FN bifsmn_melspec_avx512
#include "melspec_lanes.h"
