/* ARMv8 NEON melspec kernel: the lanes algorithm (melspec_lanes.h) on 4 floats; ld2 deinterleaves the frame's
   even and odd samples for free. */
#if defined(__aarch64__)

#include <arm_neon.h>

#define ML_V 4
typedef float32x4_t ml_vec;

static inline ml_vec ml_load(const float *p) { return vld1q_f32(p); }
static inline ml_vec ml_loadu(const float *p) { return vld1q_f32(p); }
static inline void ml_store(float *p, ml_vec v) { vst1q_f32(p, v); }
static inline void ml_storeu(float *p, ml_vec v) { vst1q_f32(p, v); }
static inline ml_vec ml_set1(float x) { return vdupq_n_f32(x); }
static inline ml_vec ml_add(ml_vec a, ml_vec b) { return vaddq_f32(a, b); }
static inline ml_vec ml_sub(ml_vec a, ml_vec b) { return vsubq_f32(a, b); }
static inline ml_vec ml_mul(ml_vec a, ml_vec b) { return vmulq_f32(a, b); }
static inline ml_vec ml_fmadd(ml_vec a, ml_vec b, ml_vec c) { return vfmaq_f32(c, a, b); }
static inline ml_vec ml_fnmadd(ml_vec a, ml_vec b, ml_vec c) { return vfmsq_f32(c, a, b); }
static inline ml_vec ml_reverse(ml_vec v)
{
    const float32x4_t r = vrev64q_f32(v); /* 1 0 3 2 */
    return vextq_f32(r, r, 2);
}
static inline float ml_hsum(ml_vec v) { return vaddvq_f32(v); }

static inline void ml_deinterleave(const float *x, const float *w, ml_vec *re, ml_vec *im)
{
    const float32x4x2_t xv = vld2q_f32(x), wv = vld2q_f32(w);
    *re = vmulq_f32(xv.val[0], wv.val[0]);
    *im = vmulq_f32(xv.val[1], wv.val[1]);
}

static inline void ml_transpose(ml_vec r[4])
{
    const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]); /* a0 b0 a2 b2, a1 b1 a3 b3 */
    const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

#define ML_FN bifsmn_melspec_neon
#include "melspec_lanes.h"

#endif
