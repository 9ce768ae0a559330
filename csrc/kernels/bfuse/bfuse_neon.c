/* ARMv8 NEON fused binary kernels.

   GEMM tile: 4 activation rows x 16 outputs, as 4 groups of 4 outputs. The panel holds each group's 4 weight
   rows 128 bits at a time side by side (one LD1 of 4 registers per step; an odd last word is paired with a
   zero word), so a step is one activation load per row, then EOR, CNT and ADD per (row, output): 128
   bit-MACs. At these depths (K = 128..400 in a D-FSMN) the cost is in the reduction, not the steps: the 16
   byte-count vectors of a group are summed by a tree of pairwise adds (ADDP) that reduces 4 vectors at once
   and keeps bytes for as many levels as the counts fit in 8 bits (UADDLP widens to halfwords at the first
   level that could overflow), ending with one halfword vector per two rows. One kernel per packed depth up to
   8 words (the steps unroll, the tree is fixed) and per output form of a D-FSMN: the threshold form compares
   those halfwords with 16-bit thresholds directly; the float form transforms 4 outputs per vector; both gather
   each row's 16 sign bits from weighted masks with two pairwise adds. Everything else (the last outputs of a
   row, a last partial row tile, other forms) runs a general tile. (Counted with qemu's insn plugin, GCC 12:
   the 1x D-FSMN's binary steps execute 0.32 M instructions, the whole network 0.38 M, from 1.12 M before.)

   Depthwise conv: the input signs are expanded once to bytes (0xff = -1) between zero rows, XORed with the
   weight bytes (held in registers for up to 8 taps), 16 channels per operation, every tap read without a
   test and a padded tap's contribution taken back at the few border time steps; the byte counts widen to
   int32 for the output transform. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bfuse.h"
#include "bfuse_neon.h"

#define CHUNK 31 /* 128-bit steps per byte-count chunk: 31 x 8 <= 255 */

/* The panel: groups of 4 outputs (padded to a multiple of 16 outputs with zero rows), each step of 128 bits
   holding the 4 rows' words 2s and 2s + 1 (0 past the last word). */
/* Depths of 65536 bits and more (past the halfword sums) run the reference, on its own layout. */
#define NEON_MAX_K 65535

size_t bifsmn_bpanel_words_neon(int N, int K)
{
    if (K > NEON_MAX_K)
        return bifsmn_bpanel_words_ref(N, K);
    return (size_t)(N + 15) / 16 * 4 * 8 * (size_t)((K + 127) / 128);
}

void bifsmn_bpanel_neon(const uint64_t *w, int N, int K, uint64_t *panel)
{
    if (K > NEON_MAX_K) {
        bifsmn_bpanel_ref(w, N, K, panel);
        return;
    }
    const int kw = (K + 63) / 64, steps = (K + 127) / 128;
    for (int g = 0; g < (N + 15) / 16 * 4; g++)
        for (int s = 0; s < steps; s++)
            for (int c = 0; c < 4; c++)
                for (int h = 0; h < 2; h++) {
                    const int n = 4 * g + c, i = 2 * s + h;
                    panel[(((size_t)g * steps + s) * 4 + c) * 2 + h] = n < N && i < kw ? w[(size_t)n * kw + i] : 0;
                }
}

/* The byte counts of one 128-bit step (words i, i + 1 of each row; i alone when `half`, LDR d zeroing the upper
   half) of 4 rows against a group's 4 weight vectors, stored (first step) or added into c. */
static inline __attribute__((always_inline)) void step_counts(uint8x16_t c[4][4], const uint64_t *const rows[4],
                                                              const uint64_t *p, int i, int half, int first,
                                                              int contiguous)
{
    const uint8x16x4_t w = vld1q_u8_x4((const uint8_t *)p);
    /* 4 consecutive rows of exactly one step (kw = 2): one load of 4 registers */
    const uint8x16x4_t rows4 = contiguous ? vld1q_u8_x4((const uint8_t *)rows[0]) : w;
    for (int r = 0; r < 4; r++) {
        const uint8x16_t a = contiguous ? rows4.val[r]
                             : half    ? vreinterpretq_u8_u64(vcombine_u64(vld1_u64(rows[r] + i), vdup_n_u64(0)))
                                       : vreinterpretq_u8_u64(vld1q_u64(rows[r] + i));
        for (int j = 0; j < 4; j++) {
            const uint8x16_t x = vcntq_u8(veorq_u8(a, w.val[j]));
            c[r][j] = first ? x : vaddq_u8(c[r][j], x);
        }
    }
}

/* Pairwise levels in bytes for a packed depth of kw words: after level j a byte adds 2^j bytes of at most 8 per
   step and never more than K <= 64 kw, and must stay <= 255. */
static inline int byte_levels(int kw)
{
    const int steps = (kw + 1) / 2;
    int levels = 0;
    while (levels < 4 && ((8 * steps) << (levels + 1) < 64 * kw ? (8 * steps) << (levels + 1) : 64 * kw) <= 255)
        levels++;
    return levels;
}

/* The 16 byte-count vectors of 4 rows x 4 outputs -> one vector of 4 outputs per row. Level 1 pairs outputs (0, 1)
   and (2, 3), level 2 makes one vector per row, levels 3 and 4 pair rows; `levels` of them in bytes, the rest in
   halfwords (UADDLP widens where a byte could overflow). */
static inline __attribute__((always_inline)) void reduce(uint8x16_t c[4][4], int levels, uint16x8_t h[2])
{
    uint16x8_t h01, h23, q[4];
    if (levels >= 3) {
        uint8x16_t b[4];
        for (int r = 0; r < 4; r++)
            b[r] = vpaddq_u8(vpaddq_u8(c[r][0], c[r][1]), vpaddq_u8(c[r][2], c[r][3]));
        if (levels == 4) {
            const uint8x16_t all = vpaddq_u8(vpaddq_u8(b[0], b[1]), vpaddq_u8(b[2], b[3]));
            h01 = vmovl_u8(vget_low_u8(all));
            h23 = vmovl_high_u8(all);
        } else {
            h01 = vpaddlq_u8(vpaddq_u8(b[0], b[1]));
            h23 = vpaddlq_u8(vpaddq_u8(b[2], b[3]));
        }
    } else {
        for (int r = 0; r < 4; r++) {
            if (levels == 2)
                q[r] = vpaddlq_u8(vpaddq_u8(vpaddq_u8(c[r][0], c[r][1]), vpaddq_u8(c[r][2], c[r][3])));
            else if (levels == 1)
                q[r] = vpaddq_u16(vpaddlq_u8(vpaddq_u8(c[r][0], c[r][1])), vpaddlq_u8(vpaddq_u8(c[r][2], c[r][3])));
            else
                q[r] = vpaddq_u16(vpaddq_u16(vpaddlq_u8(c[r][0]), vpaddlq_u8(c[r][1])),
                                  vpaddq_u16(vpaddlq_u8(c[r][2]), vpaddlq_u8(c[r][3])));
        }
        h01 = vpaddq_u16(q[0], q[1]);
        h23 = vpaddq_u16(q[2], q[3]);
    }
    h[0] = h01;
    h[1] = h23;
}

/* Popcounts of 4 rows x one group over steps s0..s1-1 (at most CHUNK): h[0] = rows 0 and 1 (4 outputs each), h[1] =
   rows 2 and 3. With kw a constant (the per-depth kernels below) the steps unroll and the reduction is fixed. */
static inline __attribute__((always_inline)) void chunk_popcounts(const uint64_t *const rows[4], const uint64_t *p,
                                                                  int kw, int s0, int s1, uint16x8_t h[2],
                                                                  int consecutive)
{
    uint8x16_t c[4][4];
    step_counts(c, rows, p + (size_t)s0 * 8, 2 * s0, 2 * s0 + 1 == kw, 1, consecutive && kw == 2);
    if (s1 - s0 <= 2) {
        for (int s = s0 + 1; s < s1; s++)
            step_counts(c, rows, p + (size_t)s * 8, 2 * s, 2 * s + 1 == kw, 0, 0);
    } else {
        /* A rolled loop: unrolled, every step's activations are loaded up front and no longer fit the 32
           registers with the 16 accumulators (K = 400 spilled a third of its instructions). */
#pragma GCC unroll 1
        for (int s = s0 + 1; s < s1; s++)
            step_counts(c, rows, p + (size_t)s * 8, 2 * s, 2 * s + 1 == kw, 0, 0);
    }
    reduce(c, byte_levels(2 * (s1 - s0) < kw - 2 * s0 ? 2 * (s1 - s0) : kw - 2 * s0), h);
}

/* The same over the whole depth, chunk by chunk; halfword sums, so K <= NEON_MAX_K. */
static inline __attribute__((always_inline)) void group_popcounts(const uint64_t *const rows[4], const uint64_t *p,
                                                                  int kw, uint16x8_t h[2], int consecutive)
{
    const int steps = (kw + 1) / 2;
    chunk_popcounts(rows, p, kw, 0, steps < CHUNK ? steps : CHUNK, h, consecutive);
    for (int s0 = CHUNK; s0 < steps; s0 += CHUNK) {
        uint16x8_t part[2];
        chunk_popcounts(rows, p, kw, s0, steps - s0 < CHUNK ? steps : s0 + CHUNK, part, 0);
        h[0] = vaddq_u16(h[0], part[0]);
        h[1] = vaddq_u16(h[1], part[1]);
    }
}

/* The popcounts of 4 rows x one group into dst (row r's 4 outputs at dst + 4 r), per packed depth, for the general
   tile (the last outputs of a row and the forms without their own tiles). */
typedef void (*counts_fn)(const uint64_t *const rows[4], const uint64_t *p, int kw, uint16_t *dst);

#define BFUSE_COUNTS(KW)                                                                                   \
    static void counts_##KW(const uint64_t *const rows[4], const uint64_t *p, int kw, uint16_t *dst)      \
    {                                                                                                      \
        (void)kw;                                                                                          \
        uint16x8_t h[2];                                                                                   \
        group_popcounts(rows, p, KW, h, 0);                                                                \
        vst1q_u16(dst, h[0]);                                                                              \
        vst1q_u16(dst + 8, h[1]);                                                                          \
    }
BFUSE_COUNTS(1)
BFUSE_COUNTS(2)
BFUSE_COUNTS(3)
BFUSE_COUNTS(4)
BFUSE_COUNTS(5)
BFUSE_COUNTS(6)
BFUSE_COUNTS(7)
BFUSE_COUNTS(8)

static void counts_any(const uint64_t *const rows[4], const uint64_t *p, int kw, uint16_t *dst)
{
    uint16x8_t h[2];
    group_popcounts(rows, p, kw, h, 0);
    vst1q_u16(dst, h[0]);
    vst1q_u16(dst + 8, h[1]);
}

/* The 4 sign bits of a mask vector (all-ones lanes), lane j -> bit j. */
static inline uint32_t signs4(uint32x4_t neg)
{
    static const uint32_t weights[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(neg, vld1q_u32(weights)));
}

/* What the float form does, fixed per instantiation of the tile below so that no per-output test remains. */
enum { F_SLOPE = 1, F_RES = 2, F_OUT = 4, F_BITS = 8, F_BASE = 16 };

static int float_flags(const bifsmn_bout *o)
{
    return (o->slope ? F_SLOPE : 0) | (o->res ? F_RES : 0) | (o->out ? F_OUT : 0) | (o->bits ? F_BITS : 0) |
           (o->base ? F_BASE : 0);
}

/* Row m's 4 outputs n..n+3 (all valid) of the float form from their dot products: the transform, stored as f says;
   returns the sign masks. The multiply and the add stay two roundings, as in the reference. */
static inline __attribute__((always_inline)) uint32x4_t transform_at(int f, int32x4_t dot, const float *res, float *out,
                                                                     float32x4_t scale, float32x4_t shift,
                                                                     float32x4_t slope)
{
    const float32x4_t zero = vdupq_n_f32(0.0f);
    float32x4_t v = vaddq_f32(vmulq_f32(vcvtq_f32_s32(dot), scale), shift);
    if (f & F_SLOPE) /* FMAXNM/FMINNM: 0 for NaN, like the reference's comparisons */
        v = vaddq_f32(vmaxnmq_f32(v, zero), vmulq_f32(slope, vminnmq_f32(v, zero)));
    if (f & F_RES)
        v = vaddq_f32(v, vld1q_f32(res));
    if (f & F_OUT)
        vst1q_f32(out, v);
    return vcltzq_f32(v);
}

/* The same at output (m, n) of o. */
static inline __attribute__((always_inline)) uint32x4_t transform(const bifsmn_bout *o, int f, int32x4_t dot, int m,
                                                                  int n, float32x4_t scale, float32x4_t shift,
                                                                  float32x4_t slope)
{
    const size_t at = (size_t)m * o->N + n;
    return transform_at(f, dot, f & F_RES ? o->res + at : NULL, f & F_OUT ? o->out + at : NULL, scale, shift, slope);
}

/* Each row's 16 sign bits from two vectors of weighted masks (rows 0-1 and 2-3, 4 lanes each): two pairwise adds
   leave row r's bits in lane r. */
static inline __attribute__((always_inline)) void store_rows(const bifsmn_bout *o, uint16x8_t acc01, uint16x8_t acc23,
                                                             int mt, const size_t bit0[4], int n0)
{
    uint16x8_t b = vpaddq_u16(acc01, acc23);
    b = vpaddq_u16(b, b);
    bifsmn_put_bits(o->bits, bit0[0] + (size_t)n0, vgetq_lane_u16(b, 0), 16);
    if (mt > 1)
        bifsmn_put_bits(o->bits, bit0[1] + (size_t)n0, vgetq_lane_u16(b, 1), 16);
    if (mt > 2)
        bifsmn_put_bits(o->bits, bit0[2] + (size_t)n0, vgetq_lane_u16(b, 2), 16);
    if (mt > 3)
        bifsmn_put_bits(o->bits, bit0[3] + (size_t)n0, vgetq_lane_u16(b, 3), 16);
}

/* The float form of 4 rows x 16 outputs, all valid: group by group, the group's scale, shift and slopes
   loaded once for its 4 rows; each row's sign masks narrowed to halfwords, weighted by their bit (4 g + j) and ORed
   over the groups. */
static inline __attribute__((always_inline)) void tile_float(const bifsmn_bout *o, int f,
                                                             const uint64_t *const rows[4], const uint64_t *p, int kw,
                                                             int K, int m0, int mt, const size_t bit0[4], int n0,
                                                             const uint16x8_t wg[4])
{
    const int steps = (kw + 1) / 2;
    const size_t at = (size_t)m0 * o->N + n0, N = (size_t)o->N; /* row r, output n0 + j: at + r N + j */
    const float *res = f & F_RES ? o->res + at : NULL;
    float *out = f & F_OUT ? o->out + at : NULL;
    const int32_t *base = f & F_BASE ? o->base + at : NULL;
    uint16x8_t acc01 = vdupq_n_u16(0), acc23 = acc01;
    for (int g = 0; g < 4; g++) {
        uint16x8_t h[2];
        group_popcounts(rows, p + (size_t)g * 8 * steps, kw, h, 1);
        const int n = n0 + 4 * g, j = 4 * g;
        const float32x4_t scale = vld1q_f32(o->scale + n), shift = vld1q_f32(o->shift + n);
        const float32x4_t slope = f & F_SLOPE ? vld1q_f32(o->slope + n) : scale;
        uint32x4_t rm[4];
        for (int r = 0; r < 4; r++) {
            const uint16x4_t pc = r % 2 ? vget_high_u16(h[r / 2]) : vget_low_u16(h[r / 2]);
            const int32x4_t b = f & F_BASE ? vld1q_s32(base + r * N + j) : vdupq_n_s32(K);
            const int32x4_t dot = vsubq_s32(b, vreinterpretq_s32_u32(vshll_n_u16(pc, 1)));
            rm[r] = transform_at(f, dot, f & F_RES ? res + r * N + j : NULL, f & F_OUT ? out + r * N + j : NULL,
                                 scale, shift, slope);
        }
        const uint32x4_t r0 = rm[0], r1 = rm[1], r2 = rm[2], r3 = rm[3];
        if (f & F_BITS) {
            acc01 = vorrq_u16(acc01, vandq_u16(vcombine_u16(vmovn_u32(r0), vmovn_u32(r1)), wg[g]));
            acc23 = vorrq_u16(acc23, vandq_u16(vcombine_u16(vmovn_u32(r2), vmovn_u32(r3)), wg[g]));
        }
    }
    if (f & F_BITS)
        store_rows(o, acc01, acc23, mt, bit0, n0);
}

/* The threshold form of 4 rows x 16 outputs, all valid, for K < 32768: in halfwords. A group's counts
   are compared with its thresholds narrowed to 16 bits, the masks weighted and ORed as in the float form. */
static inline __attribute__((always_inline)) void tile_thr(const bifsmn_bout *o, const uint64_t *const rows[4],
                                                           const uint64_t *p, int kw, int m0, int mt,
                                                           const size_t bit0[4], int n0, const uint16x8_t wg[4])
{
    const int steps = (kw + 1) / 2;
    uint16x8_t acc01 = vdupq_n_u16(0), acc23 = acc01;
    for (int g = 0; g < 4; g++) {
        uint16x8_t h[2];
        group_popcounts(rows, p + (size_t)g * 8 * steps, kw, h, 1);
        const int32_t *t = o->thr + (size_t)m0 * o->thr_stride + n0 + 4 * g;
        int16x8_t t01, t23;
        if (o->thr_stride == 0) {
            const int16x4_t t4 = vmovn_s32(vld1q_s32(t));
            t01 = t23 = vcombine_s16(t4, t4);
        } else { /* per row (a conv's padding correction); rows past mt repeat the last one */
            const size_t s1 = (size_t)o->thr_stride * (mt > 1), s2 = (size_t)o->thr_stride * (mt > 2 ? 2 : mt - 1);
            const size_t s3 = (size_t)o->thr_stride * (mt > 3 ? 3 : mt - 1);
            t01 = vcombine_s16(vmovn_s32(vld1q_s32(t)), vmovn_s32(vld1q_s32(t + s1)));
            t23 = vcombine_s16(vmovn_s32(vld1q_s32(t + s2)), vmovn_s32(vld1q_s32(t + s3)));
        }
        acc01 = vorrq_u16(acc01, vandq_u16(vcgtq_s16(vreinterpretq_s16_u16(h[0]), t01), wg[g]));
        acc23 = vorrq_u16(acc23, vandq_u16(vcgtq_s16(vreinterpretq_s16_u16(h[1]), t23), wg[g]));
    }
    store_rows(o, acc01, acc23, mt, bit0, n0);
}

/* Output transform of 4 outputs n..n+3 of row m (nv of them valid) from their dot products; returns their
   sign bits. o should be a local copy (stores through out could alias a caller's struct). */
static inline __attribute__((always_inline)) uint32_t finish_float(const bifsmn_bout *o, int m, int n, int nv,
                                                                   int32x4_t dot)
{
    const float32x4_t zero = vdupq_n_f32(0.0f);
    float32x4_t v = vmulq_f32(vcvtq_f32_s32(dot), vld1q_f32(o->scale + n));
    v = vaddq_f32(v, vld1q_f32(o->shift + n));
    if (o->slope) /* FMAXNM/FMINNM: 0 for NaN, like the reference's comparisons */
        v = vaddq_f32(vmaxnmq_f32(v, zero), vmulq_f32(vld1q_f32(o->slope + n), vminnmq_f32(v, zero)));
    const size_t at = (size_t)m * o->N + n;
    if (nv == 4) {
        if (o->res)
            v = vaddq_f32(v, vld1q_f32(o->res + at));
        if (o->out)
            vst1q_f32(o->out + at, v);
    } else {
        float tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int j = 0; o->res && j < nv; j++)
            tmp[j] = o->res[at + j];
        v = vaddq_f32(v, vld1q_f32(tmp));
        vst1q_f32(tmp, v);
        for (int j = 0; o->out && j < nv; j++)
            o->out[at + j] = tmp[j];
    }
    return signs4(vcltzq_f32(v));
}

/* Threshold form of 4 outputs n..n+3 of row m (nv valid) from their popcounts; returns their sign bits. */
static inline __attribute__((always_inline)) uint32_t finish_thr(const bifsmn_bout *o, int m, int n, int nv,
                                                                 uint32x4_t pc)
{
    const int32_t *t = o->thr + (size_t)m * o->thr_stride + n;
    int32_t tmp[4] = {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX};
    if (nv < 4) {
        for (int j = 0; j < nv; j++)
            tmp[j] = t[j];
        t = tmp;
    }
    return signs4(vcgtq_s32(vreinterpretq_s32_u32(pc), vld1q_s32(t)));
}

/* dot = base - 2 popcount for 4 outputs n..n+3 of row m (nv valid). */
static inline int32x4_t dots(const bifsmn_bout *o, int m, int n, int nv, int K, uint32x4_t pc)
{
    int32x4_t base = vdupq_n_s32(K);
    if (o->base) {
        const int32_t *b = o->base + (size_t)m * o->N + n;
        int32_t tmp[4] = {0, 0, 0, 0};
        if (nv < 4) {
            for (int j = 0; j < nv; j++)
                tmp[j] = b[j];
            b = tmp;
        }
        base = vld1q_s32(b);
    }
    return vmlsq_n_s32(base, vreinterpretq_s32_u32(pc), 2);
}

/* Any form, nv <= 16 outputs n0.. of 4 rows: one group of 4 at a time, every option tested per output. For the
   last outputs of a row and the combinations no specialised tile covers. */
static void tile_any(const bifsmn_bout *o, counts_fn counts, const uint64_t *const rows[4], const uint64_t *p,
                     int kw, int K, int m0, int mt, const size_t bit0[4], int n0, int nv)
{
    const int steps = (kw + 1) / 2;
    uint32_t bits[4] = {0, 0, 0, 0};
    for (int g = 0; 4 * g < nv; g++) {
        uint16_t pc16[16];
        counts(rows, p + (size_t)g * 8 * steps, kw, pc16);
        const int n = n0 + 4 * g, gv = nv - 4 * g < 4 ? nv - 4 * g : 4;
        for (int r = 0; r < mt; r++) {
            const uint32x4_t pc = vmovl_u16(vld1_u16(pc16 + 4 * r));
            bits[r] |= (o->thr ? finish_thr(o, m0 + r, n, gv, pc)
                               : finish_float(o, m0 + r, n, gv, dots(o, m0 + r, n, gv, K, pc)))
                       << (4 * g);
        }
    }
    for (int r = 0; o->bits && r < mt; r++)
        bifsmn_put_bits(o->bits, bit0[r] + (size_t)n0, bits[r] & ((1u << nv) - 1), nv);
}

/* All tiles of a call in one form: 0 = threshold, > 0 = float flags, < 0 = the general tile everywhere; KW the
   packed depth when it is a constant (the counting unrolls into the tiles), else 0. */
static inline __attribute__((always_inline)) void gemm(const bifsmn_bout *o, int form, int KW, counts_fn counts,
                                                       const uint64_t *a, const uint64_t *panel, int M, int K)
{
    static const uint16_t bit_of[8] = {1, 2, 4, 8, 1, 2, 4, 8};
    const uint16x8_t wg[4] = {vld1q_u16(bit_of), vshlq_n_u16(vld1q_u16(bit_of), 4), vshlq_n_u16(vld1q_u16(bit_of), 8),
                              vshlq_n_u16(vld1q_u16(bit_of), 12)};
    const int kw = KW ? KW : (K + 63) / 64, steps = (kw + 1) / 2, N = o->N;
    for (int m0 = 0; m0 < M; m0 += 4) {
        /* Rows past M repeat the last one: computed, never stored. */
        const int mt = M - m0 < 4 ? M - m0 : 4;
        const uint64_t *rows[4];
        size_t bit0[4];
        for (int r = 0; r < 4; r++) {
            rows[r] = a + (size_t)(m0 + (r < mt ? r : mt - 1)) * kw;
            bit0[r] = o->bits && r < mt ? bifsmn_bout_bit(o, m0 + r) : 0;
        }
        int n0 = 0;
        for (; n0 + 16 <= N; n0 += 16) { /* the forms' own tiles take 4 full rows */
            const uint64_t *p = panel + (size_t)n0 / 4 * 8 * steps;
            if (form == 0 && mt == 4)
                tile_thr(o, rows, p, kw, m0, 4, bit0, n0, wg);
            else if (form > 0 && mt == 4)
                tile_float(o, form, rows, p, kw, K, m0, 4, bit0, n0, wg);
            else
                tile_any(o, counts, rows, p, kw, K, m0, mt, bit0, n0, 16);
        }
        if (n0 < N)
            tile_any(o, counts, rows, panel + (size_t)n0 / 4 * 8 * steps, kw, K, m0, mt, bit0, n0, N - n0);
    }
}

/* The forms of a D-FSMN get their own tiles: thresholds (conv2, expand), PReLU + floats + bits (fc1), and the
   blocks' residual ones with and without bits; anything else the general tile. */
static inline __attribute__((always_inline)) void gemm_forms(const bifsmn_bout *o, int KW, counts_fn counts,
                                                             const uint64_t *a, const uint64_t *panel, int M, int K)
{
    const int f = float_flags(o);
    if (o->thr)
        gemm(o, K < 32768 ? 0 : -1, KW, counts, a, panel, M, K);
    else if (f == (F_SLOPE | F_RES | F_OUT | F_BITS))
        gemm(o, F_SLOPE | F_RES | F_OUT | F_BITS, KW, counts, a, panel, M, K);
    else if (f == (F_SLOPE | F_RES | F_OUT))
        gemm(o, F_SLOPE | F_RES | F_OUT, KW, counts, a, panel, M, K);
    else if (f == (F_SLOPE | F_OUT | F_BITS))
        gemm(o, F_SLOPE | F_OUT | F_BITS, KW, counts, a, panel, M, K);
    else
        gemm(o, -1, KW, counts, a, panel, M, K);
}

/* One kernel per packed depth up to 8 words (every layer of a D-FSMN): the counting unrolls and its reduction is
   fixed at compile time. */
typedef void (*gemm_fn)(const bifsmn_bout *o, const uint64_t *a, const uint64_t *panel, int M, int K);
#define BFUSE_GEMM(KW)                                                                                      \
    static void gemm_##KW(const bifsmn_bout *o, const uint64_t *a, const uint64_t *panel, int M, int K)    \
    {                                                                                                       \
        gemm_forms(o, KW, counts_##KW, a, panel, M, K);                                                     \
    }
BFUSE_GEMM(1)
BFUSE_GEMM(2)
BFUSE_GEMM(3)
BFUSE_GEMM(4)
BFUSE_GEMM(5)
BFUSE_GEMM(6)
BFUSE_GEMM(7)
BFUSE_GEMM(8)

static void gemm_any(const bifsmn_bout *o, const uint64_t *a, const uint64_t *panel, int M, int K)
{
    gemm_forms(o, 0, counts_any, a, panel, M, K);
}

void bifsmn_bgemm_fused_neon(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *out,
                             void *scratch)
{
    static const gemm_fn by_depth[9] = {gemm_any, gemm_1, gemm_2, gemm_3, gemm_4, gemm_5, gemm_6, gemm_7, gemm_8};
    if (K > NEON_MAX_K) { /* popcounts past 16 bits */
        bifsmn_bgemm_fused_ref(a, panel, M, K, out, scratch);
        return;
    }
    const bifsmn_bout o = *out;
    const int kw = (K + 63) / 64;
    (kw <= 8 ? by_depth[kw] : gemm_any)(&o, a, panel, M, K);
}

/* The dot products of 16 channels c0.. at time t: taps x (XOR, subtract) on the padded byte rows, the padded taps
   taken back at the borders. w holds the TAPS weight rows when TAPS is a constant up to 8, else it is unused. */
static inline __attribute__((always_inline)) int8x16_t dw_dots(const uint8_t *xt, const uint8_t *wneg,
                                                               const uint8x16_t w[8], int TAPS, int taps, int t,
                                                               int T, int dilation, int pad_left, int stride,
                                                               int border)
{
    uint8x16_t dis = vdupq_n_u8(0); /* taps where input and weight signs differ */
    for (int k = 0; k < taps; k++)
        dis = vsubq_u8(dis, veorq_u8(vld1q_u8(xt + (size_t)k * dilation * stride),
                                     TAPS ? w[k] : vld1q_u8(wneg + (size_t)k * stride)));
    int valid = taps;
    if (border)
        for (int k = 0; k < taps; k++) {
            const int ti = t + k * dilation - pad_left;
            if (ti < 0 || ti >= T) { /* a zero row: it disagreed with a -1 weight */
                dis = vaddq_u8(dis, TAPS ? w[k] : vld1q_u8(wneg + (size_t)k * stride));
                valid--;
            }
        }
    return vsubq_s8(vdupq_n_s8((int8_t)valid), vreinterpretq_s8_u8(vaddq_u8(dis, dis)));
}

/* The depthwise conv of full groups of 16 channels in one form f (fixed float flags) and TAPS (a constant up to 8,
   the weights then in registers across the time steps, or 0). xs holds pad_left zero rows, the T input rows, then
   zero rows, so every tap is read unconditionally. Channels outer, time inner: the weights and the transform
   parameters stay in registers. */
static inline __attribute__((always_inline)) void dwconv16(const bifsmn_bout *o, int f, int TAPS, const uint8_t *xs,
                                                           const uint8_t *wneg, int T, int taps, int dilation,
                                                           int pad_left, int c_end)
{
    const uint8x16_t weights = bifsmn_neon_bit_weights();
    const int stride = (o->N + 63) / 64 * 64, span = (taps - 1) * dilation;
    const size_t row_bits = (size_t)o->stride * 64;
    for (int c0 = 0; c0 < c_end; c0 += 16) {
        float32x4_t scale[4], shift[4], slope[4];
        for (int g = 0; g < 4; g++) {
            scale[g] = vld1q_f32(o->scale + c0 + 4 * g);
            shift[g] = vld1q_f32(o->shift + c0 + 4 * g);
            slope[g] = vld1q_f32(o->slope + c0 + 4 * g);
        }
        uint8x16_t w[8];
        for (int k = 0; k < TAPS; k++)
            w[k] = vld1q_u8(wneg + (size_t)k * stride + c0);
        for (int t = 0; t < T; t++) {
            const int border = t < pad_left || t + span - pad_left >= T;
            const int8x16_t dot = dw_dots(xs + (size_t)t * stride + c0, wneg + c0, w, TAPS, TAPS ? TAPS : taps, t,
                                          T, dilation, pad_left, stride, border);
            const int16x8_t lo = vmovl_s8(vget_low_s8(dot)), hi = vmovl_high_s8(dot);
            uint32x4_t neg[4];
            neg[0] = transform(o, f, vmovl_s16(vget_low_s16(lo)), t, c0, scale[0], shift[0], slope[0]);
            neg[1] = transform(o, f, vmovl_high_s16(lo), t, c0 + 4, scale[1], shift[1], slope[1]);
            neg[2] = transform(o, f, vmovl_s16(vget_low_s16(hi)), t, c0 + 8, scale[2], shift[2], slope[2]);
            neg[3] = transform(o, f, vmovl_high_s16(hi), t, c0 + 12, scale[3], shift[3], slope[3]);
            if (f & F_BITS)
                bifsmn_put_bits(o->bits, (size_t)t * row_bits + (size_t)c0, bifsmn_neon_signs16(neg, weights), 16);
        }
    }
}

/* Any form, channels c_begin.. (groups of up to 16), every option tested per output. */
static void dwconv_any(const bifsmn_bout *o, const uint8_t *xs, const uint8_t *wneg, int T, int taps, int dilation,
                       int pad_left, int c_begin)
{
    const int C = o->N, stride = (C + 63) / 64 * 64, span = (taps - 1) * dilation;
    for (int c0 = c_begin; c0 < C; c0 += 16) {
        const int nv = C - c0 < 16 ? C - c0 : 16;
        for (int t = 0; t < T; t++) {
            const int border = t < pad_left || t + span - pad_left >= T;
            const int8x16_t dot = dw_dots(xs + (size_t)t * stride + c0, wneg + c0, NULL, 0, taps, t, T, dilation,
                                          pad_left, stride, border);
            const int16x8_t lo = vmovl_s8(vget_low_s8(dot)), hi = vmovl_high_s8(dot);
            const int32x4_t d[4] = {vmovl_s16(vget_low_s16(lo)), vmovl_high_s16(lo), vmovl_s16(vget_low_s16(hi)),
                                    vmovl_high_s16(hi)};
            uint32_t bits = 0;
            for (int g = 0; 4 * g < nv; g++)
                bits |= finish_float(o, t, c0 + 4 * g, nv - 4 * g < 4 ? nv - 4 * g : 4, d[g]) << (4 * g);
            if (o->bits)
                bifsmn_put_bits(o->bits, bifsmn_bout_bit(o, t) + (size_t)c0, bits & ((1u << nv) - 1), nv);
        }
    }
}

void bifsmn_bdwconv_neon(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation, int pad_left,
                         const bifsmn_bout *out, void *scratch)
{
    const int span = (taps - 1) * dilation;
    if (taps > 127 || span > BIFSMN_BDWCONV_PAD_SPAN) { /* byte counts hold 127 taps; see BIFSMN_BDWCONV_SCRATCH */
        bifsmn_bdwconv_ref(x, wneg, T, taps, dilation, pad_left, out, scratch);
        return;
    }
    /* byte j of the 64 input bits of a word -> 8 lanes; the lanes' bit then selects one sign each */
    static const uint8_t spread_idx[4][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                              {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
                                              {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
                                              {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7}};
    const uint8x16_t spread0 = vld1q_u8(spread_idx[0]), spread1 = vld1q_u8(spread_idx[1]);
    const uint8x16_t spread2 = vld1q_u8(spread_idx[2]), spread3 = vld1q_u8(spread_idx[3]);
    const uint8x16_t weights = bifsmn_neon_bit_weights();
    const bifsmn_bout o = *out;
    const int cw = (o.N + 63) / 64, stride = cw * 64;
    uint8_t *xs = scratch; /* pad_left zero rows, T rows of 0xff where the input is -1, span - pad_left zero rows */
    memset(xs, 0, (size_t)pad_left * stride);
    memset(xs + (size_t)(pad_left + T) * stride, 0, (size_t)(span - pad_left) * stride);
    for (int t = 0; t < T; t++) {
        uint8_t *dst = xs + (size_t)(t + pad_left) * stride;
        for (int j = 0; j < cw; j++, dst += 64) {
            const uint8x16_t v = vreinterpretq_u8_u64(vdupq_n_u64(x[(size_t)t * cw + j]));
            vst1q_u8(dst, vtstq_u8(vqtbl1q_u8(v, spread0), weights));
            vst1q_u8(dst + 16, vtstq_u8(vqtbl1q_u8(v, spread1), weights));
            vst1q_u8(dst + 32, vtstq_u8(vqtbl1q_u8(v, spread2), weights));
            vst1q_u8(dst + 48, vtstq_u8(vqtbl1q_u8(v, spread3), weights));
        }
    }
    /* A D-FSMN memory block (PReLU, its input as the residual, floats and bits, each row starting on a halfword)
       gets its own code for its full groups of 16 channels, with the tap count fixed up to 8; the rest the general
       code. */
    const int f = F_SLOPE | F_RES | F_OUT | F_BITS;
    const int full = float_flags(&o) == f && (o.stride * 64) % 16 == 0 ? o.N / 16 * 16 : 0;
    switch (full ? (taps <= 8 ? taps : 0) : -1) {
    case -1: break;
    case 1: dwconv16(&o, f, 1, xs, wneg, T, taps, dilation, pad_left, full); break;
    case 2: dwconv16(&o, f, 2, xs, wneg, T, taps, dilation, pad_left, full); break;
    case 3: dwconv16(&o, f, 3, xs, wneg, T, taps, dilation, pad_left, full); break;
    case 4: dwconv16(&o, f, 4, xs, wneg, T, taps, dilation, pad_left, full); break;
    case 5: dwconv16(&o, f, 5, xs, wneg, T, taps, dilation, pad_left, full); break;
    case 6: dwconv16(&o, f, 6, xs, wneg, T, taps, dilation, pad_left, full); break;
    case 7: dwconv16(&o, f, 7, xs, wneg, T, taps, dilation, pad_left, full); break;
    case 8: dwconv16(&o, f, 8, xs, wneg, T, taps, dilation, pad_left, full); break;
    default: dwconv16(&o, f, 0, xs, wneg, T, taps, dilation, pad_left, full); break;
    }
    if (full < o.N)
        dwconv_any(&o, xs, wneg, T, taps, dilation, pad_left, full);
}

#endif /* __aarch64__ */
