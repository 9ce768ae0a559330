/* NEON helpers shared by the fused kernels that pack sign bits (bfuse_neon.c, sconv/sconv_neon.c). */
#ifndef BIFSMN_BFUSE_NEON_H
#define BIFSMN_BFUSE_NEON_H

#include <arm_neon.h>
#include <stdint.h>

/* Bit j of each half: the weights that turn 16 byte masks into 16 bits. */
static inline uint8x16_t bifsmn_neon_bit_weights(void)
{
    static const uint8_t w[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    return vld1q_u8(w);
}

/* The 16 sign bits of 4 mask vectors (all-ones lanes), lane j of neg[g] -> bit 4 g + j. */
static inline uint32_t bifsmn_neon_signs16(const uint32x4_t neg[4], uint8x16_t weights)
{
    const uint16x8_t m01 = vuzp1q_u16(vreinterpretq_u16_u32(neg[0]), vreinterpretq_u16_u32(neg[1]));
    const uint16x8_t m23 = vuzp1q_u16(vreinterpretq_u16_u32(neg[2]), vreinterpretq_u16_u32(neg[3]));
    uint8x16_t x = vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(m01), vreinterpretq_u8_u16(m23)), weights);
    x = vpaddq_u8(x, x);
    x = vpaddq_u8(x, x);
    x = vpaddq_u8(x, x);
    return vgetq_lane_u16(vreinterpretq_u16_u8(x), 0);
}

#endif
