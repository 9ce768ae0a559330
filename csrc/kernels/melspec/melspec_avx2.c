/* AVX2 + FMA melspec kernel: the lanes algorithm (melspec_lanes.h) on 8 floats. Compiled with -mavx2 -mfma;
   called only after dispatch.c saw both. */
#include <immintrin.h>

#define ML_V 8
typedef __m256 ml_vec;

static inline ml_vec ml_load(const float *p) { return _mm256_load_ps(p); }
static inline ml_vec ml_loadu(const float *p) { return _mm256_loadu_ps(p); }
static inline void ml_store(float *p, ml_vec v) { _mm256_store_ps(p, v); }
static inline void ml_storeu(float *p, ml_vec v) { _mm256_storeu_ps(p, v); }
static inline ml_vec ml_set1(float x) { return _mm256_set1_ps(x); }
static inline ml_vec ml_add(ml_vec a, ml_vec b) { return _mm256_add_ps(a, b); }
static inline ml_vec ml_sub(ml_vec a, ml_vec b) { return _mm256_sub_ps(a, b); }
static inline ml_vec ml_mul(ml_vec a, ml_vec b) { return _mm256_mul_ps(a, b); }
static inline ml_vec ml_fmadd(ml_vec a, ml_vec b, ml_vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline ml_vec ml_fnmadd(ml_vec a, ml_vec b, ml_vec c) { return _mm256_fnmadd_ps(a, b, c); }
static inline ml_vec ml_reverse(ml_vec v) { return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0)); }

static inline float ml_hsum(ml_vec v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline void ml_deinterleave(const float *x, const float *w, ml_vec *re, ml_vec *im)
{
    const __m256 lo = _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_load_ps(w));
    const __m256 hi = _mm256_mul_ps(_mm256_loadu_ps(x + 8), _mm256_load_ps(w + 8));
    const __m256 a = _mm256_permute2f128_ps(lo, hi, 0x20), b = _mm256_permute2f128_ps(lo, hi, 0x31);
    *re = _mm256_shuffle_ps(a, b, 0x88); /* x0 x2 x4 x6 | x8 .. x14 */
    *im = _mm256_shuffle_ps(a, b, 0xdd);
}

static inline void ml_transpose(ml_vec r[8])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        s[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

#define ML_FN bifsmn_melspec_avx2
#include "melspec_lanes.h"
