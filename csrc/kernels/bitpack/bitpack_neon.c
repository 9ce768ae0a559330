/* ARMv8 NEON sign bit-packing: 64 floats -> one word per step, no scalar loop over bits.
 *
 * FCMLT #0 gives an all-ones lane exactly where x < 0 (so -0.0 and NaN pack as +1, like the
 * reference); two UZP1 narrowings turn 16 lane masks into 16 byte masks in order; AND with the
 * per-byte bit weights 1..128 and three pairwise-add levels sum each run of 8 bytes into one byte,
 * which lands byte j = bits 8j..8j+7 of the little-endian word. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <stddef.h>
#include <string.h>

#include "bitpack.h"

/* 16 floats -> 16 byte masks (0xFF where x < 0), weighted by their bit within a byte. */
static inline uint8x16_t bitpack_neon_16(const float *p, uint8x16_t weights)
{
    const uint16x8_t lo = vuzp1q_u16(vreinterpretq_u16_u32(vcltzq_f32(vld1q_f32(p))),
                                     vreinterpretq_u16_u32(vcltzq_f32(vld1q_f32(p + 4))));
    const uint16x8_t hi = vuzp1q_u16(vreinterpretq_u16_u32(vcltzq_f32(vld1q_f32(p + 8))),
                                     vreinterpretq_u16_u32(vcltzq_f32(vld1q_f32(p + 12))));
    return vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(lo), vreinterpretq_u8_u16(hi)), weights);
}

static inline uint64_t bitpack_neon_64(const float *p, uint8x16_t weights)
{
    const uint8x16_t s = vpaddq_u8(vpaddq_u8(bitpack_neon_16(p, weights), bitpack_neon_16(p + 16, weights)),
                                   vpaddq_u8(bitpack_neon_16(p + 32, weights), bitpack_neon_16(p + 48, weights)));
    return vgetq_lane_u64(vreinterpretq_u64_u8(vpaddq_u8(s, s)), 0);
}

void bifsmn_bitpack_neon(const float *x, uint64_t *out, int rows, int K)
{
    static const uint8_t bit_weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t weights = vld1q_u8(bit_weights);
    const int kw = (K + 63) / 64, full = K / 64;
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * (size_t)K;
        uint64_t *dst = out + (size_t)r * (size_t)kw;
        for (int w = 0; w < full; w++)
            dst[w] = bitpack_neon_64(row + (size_t)w * 64, weights);
        if (full < kw) {
            /* +0.0 padding packs to 0 bits, as the format requires. */
            float last[64] = {0.0f};
            memcpy(last, row + (size_t)full * 64, sizeof(float) * (size_t)(K - full * 64));
            dst[full] = bitpack_neon_64(last, weights);
        }
    }
}

#endif /* __aarch64__ */
