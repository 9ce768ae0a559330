/* AVX2 fused binary kernels. Compiled with -mavx2 -mfma; called only after dispatch.c saw AVX2 in cpuid.

   GEMM: vectorised along N, one ymm holding 32 bits of K for 8 outputs of an activation row. AVX2 has no
   vector popcount: the nibble lookup (pshufb) counts bytes, and the nibbles are split ahead of time - the
   weights' once at load (the panel holds w & 0x0f.. and (w >> 4) & 0x0f.. of each 32-bit piece), the
   activations' once per call into broadcast vectors in the scratch - so that a step is xor, xor, pshufb,
   pshufb, add, add: six operations for 256 bit-MACs, against eight when each step splits its own nibbles.
   Byte counts accumulate for up to 31 steps (8 per byte per step), then two multiply-adds with ones sum each
   32-bit lane's 4 bytes: the 8 popcounts in channel order, one accumulator per row (8 rows stay in registers).
   One kernel per packed depth up to 8 words and per output form of a D-FSMN (thresholds; PReLU, residual,
   floats and bits in the combinations the network uses), the others through the general code (on a Zen 2
   core, alternated timings: the 1x network in 33.3 us with the per-depth code, 37.6 us without).

   Depthwise conv: the input signs are expanded once to bytes (0xff = -1) and XORed with the weight bytes, 32
   channels per operation; the byte counts widen to 8 int32 lanes for the shared output transform. */
#include <immintrin.h>
#include <string.h>

#include "bfuse.h"
#include "bfuse_x86.h"

#define TILE_M 8
#define CHUNK 31 /* 32-bit steps per byte-count chunk */

static const uint32_t LOW_NIBBLES = 0x0f0f0f0fu;

/* Per group of 8 outputs and 32-bit piece j of K: 8 low-nibble dwords, then 8 high-nibble dwords. */
size_t bifsmn_bpanel_words_avx2(int N, int K) { return (size_t)(N + 7) / 8 * (size_t)((K + 63) / 64) * 16; }

void bifsmn_bpanel_avx2(const uint64_t *w, int N, int K, uint64_t *panel)
{
    const int kw = (K + 63) / 64, steps = 2 * kw;
    uint32_t *p = (uint32_t *)panel;
    for (int g = 0; g < (N + 7) / 8; g++)
        for (int j = 0; j < steps; j++, p += 16)
            for (int c = 0; c < 8; c++) {
                const int n = 8 * g + c;
                const uint32_t v = n < N ? (uint32_t)(w[(size_t)n * kw + j / 2] >> (32 * (j % 2))) : 0;
                p[c] = v & LOW_NIBBLES;
                p[8 + c] = (v >> 4) & LOW_NIBBLES;
            }
}

/* Byte counts of steps j0..j1-1 of `mt` rows against one group, added to acc[r]. */
static inline __attribute__((always_inline)) void count_steps(const __m256i *abuf, const __m256i *p, int steps,
                                                              int mt, int j0, int j1, __m256i *acc)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    for (int j = j0; j < j1; j++) {
        const __m256i lo = _mm256_load_si256(p + 2 * j), hi = _mm256_load_si256(p + 2 * j + 1);
        for (int r = 0; r < mt; r++) {
            const __m256i *ar = abuf + ((size_t)r * steps + j) * 2;
            acc[r] = _mm256_add_epi8(acc[r], _mm256_shuffle_epi8(lut, _mm256_xor_si256(lo, ar[0])));
            acc[r] = _mm256_add_epi8(acc[r], _mm256_shuffle_epi8(lut, _mm256_xor_si256(hi, ar[1])));
        }
    }
}

/* The sums of each 32-bit lane's 4 byte counts. */
static inline __m256i lane_sums(__m256i bytes)
{
    const __m256i pairs = _mm256_maddubs_epi16(bytes, _mm256_set1_epi8(1));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* 8 rows (mt valid; the others repeat the last one, computed and never stored) x one group of 8 outputs (nv valid):
   popcounts, then the output transform row by row. */
static inline __attribute__((always_inline)) void tile(const __m256i *abuf, const __m256i *p, int steps, int K,
                                                       int m0, int mt, int n0, int nv, const size_t *bit0,
                                                       const bifsmn_bout *o, int form)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i acc[TILE_M], pc[TILE_M];
    for (int r = 0; r < TILE_M; r++)
        acc[r] = zero;
    if (steps <= CHUNK) {
        count_steps(abuf, p, steps, TILE_M, 0, steps, acc);
        for (int r = 0; r < TILE_M; r++)
            pc[r] = lane_sums(acc[r]);
    } else {
        for (int r = 0; r < TILE_M; r++)
            pc[r] = zero;
        for (int j0 = 0; j0 < steps; j0 += CHUNK) {
            for (int r = 0; r < TILE_M; r++)
                acc[r] = zero;
            count_steps(abuf, p, steps, TILE_M, j0, steps - j0 < CHUNK ? steps : j0 + CHUNK, acc);
            for (int r = 0; r < TILE_M; r++)
                pc[r] = _mm256_add_epi32(pc[r], lane_sums(acc[r]));
        }
    }
    if (form != X86_ANY && mt == TILE_M && nv == 8) { /* the form's own code, rows unrolled */
        for (int r = 0; r < TILE_M; r++)
            bfuse_x86_finish8(o, form, m0 + r, n0, bit0[r], K, pc[r]);
        return;
    }
    for (int r = 0; r < TILE_M; r++) /* a constant bound: pc stays in registers */
        if (r < mt)
            bfuse_x86_finish(o, m0 + r, n0, nv, bit0[r], K, pc[r]);
}

/* The whole GEMM for a packed depth of STEPS 32-bit steps when it is a constant (the counting unrolls), else 0, in
   one output form (bfuse_x86_form; X86_ANY for the general code). The fixed forms need every packed output row to
   start on a byte (bfuse_x86_aligned). */
static inline __attribute__((always_inline)) void gemm(const uint64_t *a, const uint64_t *panel, int M, int K,
                                                       const bifsmn_bout *o, __m256i *abuf, int STEPS, int form)
{
    const int kw = (K + 63) / 64, steps = STEPS ? STEPS : 2 * kw, N = o->N;
    for (int m0 = 0; m0 < M; m0 += TILE_M) {
        const int mt = M - m0 < TILE_M ? M - m0 : TILE_M;
        size_t bit0[TILE_M];
        bfuse_x86_rows(o, m0, mt, bit0);
        /* TILE_M rows x steps x (lo, hi) broadcasts */
        for (int r = 0; r < TILE_M; r++)
            for (int j = 0; j < steps; j++) {
                const uint32_t v = (uint32_t)(a[(size_t)(m0 + (r < mt ? r : mt - 1)) * kw + j / 2] >> (32 * (j % 2)));
                abuf[((size_t)r * steps + j) * 2] = _mm256_set1_epi32((int)(v & LOW_NIBBLES));
                abuf[((size_t)r * steps + j) * 2 + 1] = _mm256_set1_epi32((int)((v >> 4) & LOW_NIBBLES));
            }
        for (int n0 = 0; n0 < N; n0 += 8)
            tile(abuf, (const __m256i *)panel + (size_t)n0 / 8 * steps * 2, steps, K, m0, mt, n0,
                 N - n0 < 8 ? N - n0 : 8, bit0, o, form);
    }
}

/* The output forms of a D-FSMN get their own code: thresholds (conv2, expand), PReLU + floats + bits (fc1), and the
   blocks' residual ones with and without bits; anything else the general code. */
static inline __attribute__((always_inline)) void gemm_forms(const uint64_t *a, const uint64_t *panel, int M, int K,
                                                             const bifsmn_bout *o, __m256i *abuf, int STEPS)
{
    switch (bfuse_x86_aligned(o) ? bfuse_x86_form(o) : X86_ANY) {
    case X86_THR: gemm(a, panel, M, K, o, abuf, STEPS, X86_THR); break;
    case X86_SLOPE | X86_RES | X86_OUT | X86_BITS:
        gemm(a, panel, M, K, o, abuf, STEPS, X86_SLOPE | X86_RES | X86_OUT | X86_BITS);
        break;
    case X86_SLOPE | X86_RES | X86_OUT: gemm(a, panel, M, K, o, abuf, STEPS, X86_SLOPE | X86_RES | X86_OUT); break;
    case X86_SLOPE | X86_OUT | X86_BITS: gemm(a, panel, M, K, o, abuf, STEPS, X86_SLOPE | X86_OUT | X86_BITS); break;
    default: gemm(a, panel, M, K, o, abuf, STEPS, X86_ANY); break;
    }
}

/* One kernel per packed depth up to 8 words (every layer of a D-FSMN), so that the counting unrolls. */
void bifsmn_bgemm_fused_avx2(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *out,
                             void *scratch)
{
    const bifsmn_bout o = *out;
    switch ((K + 63) / 64) {
    case 1: gemm_forms(a, panel, M, K, &o, scratch, 2); break;
    case 2: gemm_forms(a, panel, M, K, &o, scratch, 4); break;
    case 3: gemm_forms(a, panel, M, K, &o, scratch, 6); break;
    case 4: gemm_forms(a, panel, M, K, &o, scratch, 8); break;
    case 5: gemm_forms(a, panel, M, K, &o, scratch, 10); break;
    case 6: gemm_forms(a, panel, M, K, &o, scratch, 12); break;
    case 7: gemm_forms(a, panel, M, K, &o, scratch, 14); break;
    case 8: gemm_forms(a, panel, M, K, &o, scratch, 16); break;
    default: gemm_forms(a, panel, M, K, &o, scratch, 0); break;
    }
}

void bifsmn_bdwconv_avx2(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation, int pad_left,
                         const bifsmn_bout *out, void *scratch)
{
    if (taps > 127) { /* the byte counts below hold up to 127 taps */
        bifsmn_bdwconv_ref(x, wneg, T, taps, dilation, pad_left, out, scratch);
        return;
    }
    const bifsmn_bout o = *out;
    const int C = o.N, cw = (C + 63) / 64, stride = cw * 64;
    uint8_t *xs = scratch; /* T x stride bytes, 0xff where the input is -1 */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                            3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < 2 * cw; j++) {
            uint32_t v;
            memcpy(&v, (const unsigned char *)(x + (size_t)t * cw) + 4 * j, 4);
            const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)v), spread), bit);
            _mm256_store_si256((__m256i *)(xs + (size_t)t * stride + 32 * j), _mm256_cmpeq_epi8(b, bit));
        }
    for (int t = 0; t < T; t++) {
        size_t bit0;
        bfuse_x86_rows(&o, t, 1, &bit0);
        int valid = 0;
        for (int k = 0; k < taps; k++) {
            const int ti = t + k * dilation - pad_left;
            valid += ti >= 0 && ti < T;
        }
        for (int c0 = 0; c0 < C; c0 += 32) {
            __m256i dis = _mm256_setzero_si256(); /* taps where input and weight signs differ */
            for (int k = 0; k < taps; k++) {
                const int ti = t + k * dilation - pad_left;
                if (ti < 0 || ti >= T)
                    continue;
                const __m256i xv = _mm256_load_si256((const __m256i *)(xs + (size_t)ti * stride + c0));
                const __m256i wv = _mm256_loadu_si256((const __m256i *)(wneg + (size_t)k * stride + c0));
                dis = _mm256_sub_epi8(dis, _mm256_xor_si256(xv, wv));
            }
            _Alignas(32) int8_t dot[32];
            _mm256_store_si256((__m256i *)dot, _mm256_sub_epi8(_mm256_set1_epi8((char)valid), _mm256_add_epi8(dis, dis)));
            for (int q = 0; q < 4 && c0 + 8 * q < C; q++) {
                const int n0 = c0 + 8 * q, nv = C - n0 < 8 ? C - n0 : 8;
                bfuse_x86_float(&o, t, n0, nv, bit0, _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(dot + 8 * q))));
            }
        }
    }
}
