/* The output transform of 8 outputs in a ymm register, shared by the AVX2 and AVX-512 fused kernels (both files
   are compiled with -mavx2). The same operations in the same order as bifsmn_bout_value: multiply, add,
   max(v, 0) + slope * min(v, 0) (maxps/minps return their second operand, 0, for NaN, like the reference's
   comparisons), residual add, and the sign bit of the result by an ordered compare (-0 and NaN are +1). */
#ifndef BIFSMN_BFUSE_X86_H
#define BIFSMN_BFUSE_X86_H

#include <immintrin.h>

#include "bfuse.h"

/* Lanes 0..nv-1 enabled. */
static inline __m256i bfuse_x86_mask(int nv)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nv), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256i bfuse_x86_load_i32(const int32_t *p, int nv)
{
    return nv == 8 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskload_epi32((const int *)p, bfuse_x86_mask(nv));
}

/* The sign bits of 8 outputs (nv valid) at bit `at` of o->bits. */
static inline __attribute__((always_inline)) void bfuse_x86_put(const bifsmn_bout *o, size_t at, int nv,
                                                                unsigned bits)
{
    if (nv == 8 && (at & 7) == 0)
        ((unsigned char *)o->bits)[at >> 3] = (unsigned char)bits;
    else
        bifsmn_put_bits(o->bits, at, bits & ((1u << nv) - 1), nv);
}

/* Threshold form: the sign bits of outputs n0..n0+nv-1 of row m (bits at bit0 + n) from their popcounts. */
static inline __attribute__((always_inline)) void bfuse_x86_thr(const bifsmn_bout *o, int m, int n0, int nv,
                                                                size_t bit0, __m256i pc)
{
    const __m256i t = bfuse_x86_load_i32(o->thr + (size_t)m * o->thr_stride + n0, nv);
    bfuse_x86_put(o, bit0 + (size_t)n0, nv, (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(pc, t))));
}

/* Float form: outputs n0..n0+nv-1 of row m from their dot products. o should be a local copy: stores through
   out and bits could alias a caller's struct and force its fields to be reloaded. */
static inline __attribute__((always_inline)) void bfuse_x86_float(const bifsmn_bout *o, int m, int n0, int nv,
                                                                  size_t bit0, __m256i dot)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(o->scale + n0));
    v = _mm256_add_ps(v, _mm256_loadu_ps(o->shift + n0));
    if (o->slope) {
        const __m256 neg = _mm256_mul_ps(_mm256_loadu_ps(o->slope + n0), _mm256_min_ps(v, zero));
        v = _mm256_add_ps(_mm256_max_ps(v, zero), neg);
    }
    const size_t at = (size_t)m * o->N + n0;
    if (o->res)
        v = _mm256_add_ps(v, nv == 8 ? _mm256_loadu_ps(o->res + at) : _mm256_maskload_ps(o->res + at, bfuse_x86_mask(nv)));
    if (o->out) {
        if (nv == 8)
            _mm256_storeu_ps(o->out + at, v);
        else
            _mm256_maskstore_ps(o->out + at, bfuse_x86_mask(nv), v);
    }
    if (o->bits)
        bfuse_x86_put(o, bit0 + (size_t)n0, nv, (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
}

/* What the float form does, fixed per instantiation of a kernel so that no per-output test remains; X86_ANY tests
   every option at run time. */
enum { X86_THR = 0, X86_SLOPE = 1, X86_RES = 2, X86_OUT = 4, X86_BITS = 8, X86_BASE = 16, X86_ANY = -1 };

static inline int bfuse_x86_form(const bifsmn_bout *o)
{
    if (o->thr)
        return X86_THR;
    return (o->slope ? X86_SLOPE : 0) | (o->res ? X86_RES : 0) | (o->out ? X86_OUT : 0) | (o->bits ? X86_BITS : 0) |
           (o->base ? X86_BASE : 0);
}

/* The float form of 8 outputs, all valid and their bits byte-aligned, with the options fixed by `form`. */
static inline __attribute__((always_inline)) void bfuse_x86_float8(const bifsmn_bout *o, int form, int m, int n0,
                                                                   size_t bit0, __m256i dot)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(o->scale + n0));
    v = _mm256_add_ps(v, _mm256_loadu_ps(o->shift + n0));
    if (form & X86_SLOPE) {
        const __m256 neg = _mm256_mul_ps(_mm256_loadu_ps(o->slope + n0), _mm256_min_ps(v, zero));
        v = _mm256_add_ps(_mm256_max_ps(v, zero), neg);
    }
    const size_t at = (size_t)m * o->N + n0;
    if (form & X86_RES)
        v = _mm256_add_ps(v, _mm256_loadu_ps(o->res + at));
    if (form & X86_OUT)
        _mm256_storeu_ps(o->out + at, v);
    if (form & X86_BITS)
        ((unsigned char *)o->bits)[(bit0 + (size_t)n0) >> 3] =
            (unsigned char)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
}

/* 8 outputs of row m from their popcounts in a fixed form, all valid and byte-aligned. */
static inline __attribute__((always_inline)) void bfuse_x86_finish8(const bifsmn_bout *o, int form, int m, int n0,
                                                                    size_t bit0, int K, __m256i pc)
{
    if (form == X86_THR) {
        const __m256i t = _mm256_loadu_si256((const __m256i *)(o->thr + (size_t)m * o->thr_stride + n0));
        ((unsigned char *)o->bits)[(bit0 + (size_t)n0) >> 3] =
            (unsigned char)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(pc, t)));
        return;
    }
    const __m256i base = form & X86_BASE ? _mm256_loadu_si256((const __m256i *)(o->base + (size_t)m * o->N + n0))
                                         : _mm256_set1_epi32(K);
    bfuse_x86_float8(o, form, m, n0, bit0, _mm256_sub_epi32(base, _mm256_add_epi32(pc, pc)));
}

/* Either form from 8 popcounts (dot = base - 2 popcount). */
static inline __attribute__((always_inline)) void bfuse_x86_finish(const bifsmn_bout *o, int m, int n0, int nv,
                                                                   size_t bit0, int K, __m256i pc)
{
    if (o->thr) {
        bfuse_x86_thr(o, m, n0, nv, bit0, pc);
        return;
    }
    const __m256i base = o->base ? bfuse_x86_load_i32(o->base + (size_t)m * o->N + n0, nv) : _mm256_set1_epi32(K);
    bfuse_x86_float(o, m, n0, nv, bit0, _mm256_sub_epi32(base, _mm256_add_epi32(pc, pc)));
}

/* 1 when every row's packed bits start on a byte (or there are none), so that groups of 8 outputs are byte stores. */
static inline int bfuse_x86_aligned(const bifsmn_bout *o)
{
    return !o->bits || (o->N % 8 == 0 && (o->stride * 64) % 8 == 0);
}

/* Bit offsets of rows m0..m0+rows-1 in o->bits (0 when o has no bits). */
static inline void bfuse_x86_rows(const bifsmn_bout *o, int m0, int rows, size_t *bit0)
{
    for (int r = 0; r < rows; r++)
        bit0[r] = o->bits ? bifsmn_bout_bit(o, m0 + r) : 0;
}

#endif
