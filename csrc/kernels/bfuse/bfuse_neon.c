/* ARMv8 NEON fused binary kernels.

   GEMM tile: 4 activation rows x 16 outputs, as 4 groups of 4 outputs. The panel holds each group's 4 weight
   rows 128 bits at a time side by side (one LD1 of 4 registers per step; an odd last word is paired with a
   zero word), so a step is one activation load per row, then EOR, CNT and ADD per (row, output): 128
   bit-MACs. At these depths (K = 128..400 in a D-FSMN) the cost is in the reduction, not the steps: the 16
   byte-count vectors of a group are summed by a tree of pairwise adds (ADDP) that reduces 4 vectors at once
   and keeps bytes for as many levels as the counts fit in 8 bits (UADDLP widens to halfwords at the first
   level that could overflow), ending with one vector of 4 outputs per row. The output transform (shared
   with the depthwise conv) then works on 16 consecutive outputs of a row: 4 vectors, 16 sign bits.

   Depthwise conv: the input signs are expanded once to bytes (0xff = -1) and XORed with the weight bytes, 16
   channels per operation; the byte counts widen to int32 for the output transform. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "bfuse.h"
#include "bfuse_neon.h"

#define CHUNK 31 /* 128-bit steps per byte-count chunk: 31 x 8 <= 255 */

/* The panel: groups of 4 outputs (padded to a multiple of 16 outputs with zero rows), each step of 128 bits
   holding the 4 rows' words 2s and 2s + 1 (0 past the last word). */
size_t bifsmn_bpanel_words_neon(int N, int K) { return (size_t)(N + 15) / 16 * 4 * 8 * (size_t)((K + 127) / 128); }

void bifsmn_bpanel_neon(const uint64_t *w, int N, int K, uint64_t *panel)
{
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
                                                              const uint64_t *p, int i, int half, int first)
{
    const uint8x16x4_t w = vld1q_u8_x4((const uint8_t *)p);
    for (int r = 0; r < 4; r++) {
        const uint8x16_t a = half ? vreinterpretq_u8_u64(vcombine_u64(vld1_u64(rows[r] + i), vdup_n_u64(0)))
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

/* Popcounts of 4 rows x one group: h[0] = rows 0 and 1 (4 outputs each), h[1] = rows 2 and 3. Halfwords hold any
   K up to 31 x 128; deeper layers (chunks) overflow them, but only the reference-sized tests reach 65536. With kw a constant (the
   per-depth kernels below) the steps unroll and the reduction is fixed; kw > CHUNK * 2 sums chunks of CHUNK steps. */
static inline __attribute__((always_inline)) void group_popcounts(const uint64_t *const rows[4], const uint64_t *p,
                                                                  int kw, uint16x8_t h[2])
{
    const int steps = (kw + 1) / 2;
    for (int s0 = 0; s0 < steps; s0 += CHUNK) {
        const int s1 = steps - s0 < CHUNK ? steps : s0 + CHUNK;
        uint8x16_t c[4][4];
        step_counts(c, rows, p + (size_t)s0 * 8, 2 * s0, 2 * s0 + 1 == kw, 1);
        for (int s = s0 + 1; s < s1; s++)
            step_counts(c, rows, p + (size_t)s * 8, 2 * s, 2 * s + 1 == kw, 0);
        uint16x8_t part[2];
        reduce(c, byte_levels(2 * (s1 - s0) < kw - 2 * s0 ? 2 * (s1 - s0) : kw - 2 * s0), part);
        if (s0 == 0) {
            h[0] = part[0];
            h[1] = part[1];
        } else {
            h[0] = vaddq_u16(h[0], part[0]);
            h[1] = vaddq_u16(h[1], part[1]);
        }
    }
}

/* Row r's 4 popcounts out of a group's pair of halfword vectors. */
static inline uint32x4_t row_counts(const uint16x8_t h[2], int r)
{
    return r % 2 ? vmovl_high_u16(h[r / 2]) : vmovl_u16(vget_low_u16(h[r / 2]));
}

/* The 4 sign bits of a mask vector (all-ones lanes), lane j -> bit j. */
static inline uint32_t signs4(uint32x4_t neg)
{
    static const uint32_t weights[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(neg, vld1q_u32(weights)));
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

/* The transform of outputs n..n+3 of row m, all valid: v = scale * dot + shift, PReLU, + res; stored when o->out. */
static inline __attribute__((always_inline)) uint32x4_t transform4(const bifsmn_bout *o, int m, int n, int32x4_t dot,
                                                                   float32x4_t scale, float32x4_t shift,
                                                                   float32x4_t slope)
{
    const float32x4_t zero = vdupq_n_f32(0.0f);
    float32x4_t v = vaddq_f32(vmulq_f32(vcvtq_f32_s32(dot), scale), shift);
    if (o->slope) /* FMAXNM/FMINNM: 0 for NaN, like the reference's comparisons */
        v = vaddq_f32(vmaxnmq_f32(v, zero), vmulq_f32(slope, vminnmq_f32(v, zero)));
    const size_t at = (size_t)m * o->N + n;
    if (o->res)
        v = vaddq_f32(v, vld1q_f32(o->res + at));
    if (o->out)
        vst1q_f32(o->out + at, v);
    return vcltzq_f32(v);
}

/* Row m's 16 outputs n0..n0+15 from their popcounts (pc[g]: outputs n0 + 4 g..): the sign bits (threshold form),
   or the transform and its sign bits (float form). */
static inline __attribute__((always_inline)) void finish16(const bifsmn_bout *o, const uint32x4_t pc[4], int K, int m,
                                                           size_t bit0, int n0, uint8x16_t weights)
{
    uint32x4_t neg[4];
    if (o->thr) {
        const int32x4x4_t t = vld1q_s32_x4(o->thr + (size_t)m * o->thr_stride + n0);
        for (int g = 0; g < 4; g++)
            neg[g] = vcgtq_s32(vreinterpretq_s32_u32(pc[g]), t.val[g]);
    } else {
        const int32_t *base = o->base ? o->base + (size_t)m * o->N + n0 : NULL;
        for (int g = 0; g < 4; g++) {
            const int32x4_t b = base ? vld1q_s32(base + 4 * g) : vdupq_n_s32(K);
            const int32x4_t dot = vsubq_s32(b, vreinterpretq_s32_u32(vshlq_n_u32(pc[g], 1)));
            neg[g] = transform4(o, m, n0 + 4 * g, dot, vld1q_f32(o->scale + n0 + 4 * g),
                                vld1q_f32(o->shift + n0 + 4 * g),
                                o->slope ? vld1q_f32(o->slope + n0 + 4 * g) : vdupq_n_f32(0.0f));
        }
        if (!o->bits)
            return;
    }
    bifsmn_put_bits(o->bits, bit0 + (size_t)n0, bifsmn_neon_signs16(neg, weights), 16);
}

/* 4 rows (mt valid) x 16 outputs n0..n0+15, all valid. The popcounts of the 4 groups go through a small buffer
   (one store per group, one load per row and group): the transform then runs row by row on few live registers,
   where keeping the 16 vectors in registers made the compiler spill the counting loop. */
static inline __attribute__((always_inline)) void tile16(const bifsmn_bout *o, const uint64_t *const rows[4],
                                                         const uint64_t *p, int kw, int K, int m0, int mt,
                                                         const size_t bit0[4], int n0, uint8x16_t weights)
{
    const int steps = (kw + 1) / 2;
    uint16_t counts[4][16]; /* [group][row * 4 + output] */
    for (int g = 0; g < 4; g++) {
        uint16x8_t h[2];
        group_popcounts(rows, p + (size_t)g * 8 * steps, kw, h);
        vst1q_u16(counts[g], h[0]);
        vst1q_u16(counts[g] + 8, h[1]);
    }
    for (int r = 0; r < mt; r++) {
        uint32x4_t pc[4];
        for (int g = 0; g < 4; g++)
            pc[g] = vmovl_u16(vld1_u16(counts[g] + 4 * r));
        finish16(o, pc, K, m0 + r, bit0[r], n0, weights);
    }
}

/* The last outputs n0..N-1 (fewer than 16) of 4 rows, one group of 4 at a time. */
static void tile_tail(const bifsmn_bout *o, const uint64_t *const rows[4], const uint64_t *p, int kw, int K, int m0,
                      int mt, const size_t bit0[4], int n0)
{
    const int steps = (kw + 1) / 2, nv = o->N - n0;
    uint32_t bits[4] = {0, 0, 0, 0};
    for (int g = 0; 4 * g < nv; g++) {
        uint16x8_t h[2];
        group_popcounts(rows, p + (size_t)g * 8 * steps, kw, h);
        const int n = n0 + 4 * g, gv = nv - 4 * g < 4 ? nv - 4 * g : 4;
        for (int r = 0; r < mt; r++) {
            const uint32x4_t pc = row_counts(h, r);
            bits[r] |= (o->thr ? finish_thr(o, m0 + r, n, gv, pc)
                               : finish_float(o, m0 + r, n, gv, dots(o, m0 + r, n, gv, K, pc)))
                       << (4 * g);
        }
    }
    for (int r = 0; o->bits && r < mt; r++)
        bifsmn_put_bits(o->bits, bit0[r] + (size_t)n0, bits[r] & ((1u << nv) - 1), nv);
}

static inline __attribute__((always_inline)) void gemm(const uint64_t *a, const uint64_t *panel, int M, int K,
                                                       const bifsmn_bout *out, int kw)
{
    const uint8x16_t weights = bifsmn_neon_bit_weights();
    const bifsmn_bout o = *out;
    const int N = o.N, steps = (kw + 1) / 2;
    for (int m0 = 0; m0 < M; m0 += 4) {
        /* Rows past M repeat the last one: computed, never stored. */
        const int mt = M - m0 < 4 ? M - m0 : 4;
        const uint64_t *rows[4];
        size_t bit0[4];
        for (int r = 0; r < 4; r++) {
            rows[r] = a + (size_t)(m0 + (r < mt ? r : mt - 1)) * kw;
            bit0[r] = o.bits && r < mt ? bifsmn_bout_bit(&o, m0 + r) : 0;
        }
        int n0 = 0;
        for (; n0 + 16 <= N; n0 += 16)
            tile16(&o, rows, panel + (size_t)n0 / 4 * 8 * steps, kw, K, m0, mt, bit0, n0, weights);
        if (n0 < N)
            tile_tail(&o, rows, panel + (size_t)n0 / 4 * 8 * steps, kw, K, m0, mt, bit0, n0);
    }
}

/* One kernel per packed depth up to 8 words (K <= 512, every layer of a D-FSMN), so that the steps unroll and the
   reduction is fixed at compile time; deeper layers take the general loop. */
void bifsmn_bgemm_fused_neon(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *o,
                             void *scratch)
{
    (void)scratch;
    switch ((K + 63) / 64) {
    case 1: gemm(a, panel, M, K, o, 1); break;
    case 2: gemm(a, panel, M, K, o, 2); break;
    case 3: gemm(a, panel, M, K, o, 3); break;
    case 4: gemm(a, panel, M, K, o, 4); break;
    case 5: gemm(a, panel, M, K, o, 5); break;
    case 6: gemm(a, panel, M, K, o, 6); break;
    case 7: gemm(a, panel, M, K, o, 7); break;
    case 8: gemm(a, panel, M, K, o, 8); break;
    default: gemm(a, panel, M, K, o, (K + 63) / 64); break;
    }
}

void bifsmn_bdwconv_neon(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation, int pad_left,
                         const bifsmn_bout *out, void *scratch)
{
    if (taps > 127) { /* the byte counts below hold up to 127 taps */
        bifsmn_bdwconv_ref(x, wneg, T, taps, dilation, pad_left, out, scratch);
        return;
    }
    static const uint8_t spread_idx[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    const uint8x16_t spread = vld1q_u8(spread_idx), weights = bifsmn_neon_bit_weights();
    const bifsmn_bout o = *out;
    const int C = o.N, cw = (C + 63) / 64, stride = cw * 64;
    uint8_t *xs = scratch; /* T x stride bytes, 0xff where the input is -1 */
    for (int t = 0; t < T; t++) {
        const uint8_t *src = (const uint8_t *)(x + (size_t)t * cw);
        for (int j = 0; j < 8 * cw; j += 2) {
            const uint16x8_t v = vdupq_n_u16((uint16_t)(src[j] | src[j + 1] << 8));
            vst1q_u8(xs + (size_t)t * stride + 8 * j, vtstq_u8(vqtbl1q_u8(vreinterpretq_u8_u16(v), spread), weights));
        }
    }
    /* Channels outer, time inner: a group's transform parameters stay in registers across the time steps. */
    for (int c0 = 0; c0 < C; c0 += 16) {
        const int nv = C - c0 < 16 ? C - c0 : 16;
        float32x4_t scale[4], shift[4], slope[4];
        for (int g = 0; g < 4; g++) {
            scale[g] = vld1q_f32(o.scale + c0 + 4 * g);
            shift[g] = vld1q_f32(o.shift + c0 + 4 * g);
            slope[g] = o.slope ? vld1q_f32(o.slope + c0 + 4 * g) : scale[g];
        }
        for (int t = 0; t < T; t++) {
            /* the in-range taps k0..k1-1: 0 <= t + k * dilation - pad_left < T */
            const int first = pad_left - t, last = T - 1 - t + pad_left;
            const int k0 = first > 0 ? (first + dilation - 1) / dilation : 0;
            const int k1 = last < 0 ? 0 : (last / dilation + 1 < taps ? last / dilation + 1 : taps);
            uint8x16_t dis = vdupq_n_u8(0); /* taps where input and weight signs differ */
            for (int k = k0; k < k1; k++) {
                const uint8x16_t xv = vld1q_u8(xs + (size_t)(t + k * dilation - pad_left) * stride + c0);
                dis = vsubq_u8(dis, veorq_u8(xv, vld1q_u8(wneg + (size_t)k * stride + c0)));
            }
            const int valid = k1 > k0 ? k1 - k0 : 0;
            const int8x16_t dot = vsubq_s8(vdupq_n_s8((int8_t)valid), vreinterpretq_s8_u8(vaddq_u8(dis, dis)));
            const int16x8_t lo = vmovl_s8(vget_low_s8(dot)), hi = vmovl_high_s8(dot);
            const int32x4_t d[4] = {vmovl_s16(vget_low_s16(lo)), vmovl_high_s16(lo), vmovl_s16(vget_low_s16(hi)),
                                    vmovl_high_s16(hi)};
            const size_t bit0 = o.bits ? bifsmn_bout_bit(&o, t) + (size_t)c0 : 0;
            if (nv == 16) {
                uint32x4_t neg[4];
                for (int g = 0; g < 4; g++)
                    neg[g] = transform4(&o, t, c0 + 4 * g, d[g], scale[g], shift[g], slope[g]);
                if (o.bits)
                    bifsmn_put_bits(o.bits, bit0, bifsmn_neon_signs16(neg, weights), 16);
            } else {
                uint32_t bits = 0;
                for (int g = 0; 4 * g < nv; g++)
                    bits |= finish_float(&o, t, c0 + 4 * g, nv - 4 * g < 4 ? nv - 4 * g : 4, d[g]) << (4 * g);
                if (o.bits)
                    bifsmn_put_bits(o.bits, bit0, bits & ((1u << nv) - 1), nv);
            }
        }
    }
}

#endif /* __aarch64__ */
