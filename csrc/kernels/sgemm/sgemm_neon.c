/* ARMv8 NEON float32 GEMM, C = A * W^T + bias, with both operands K-contiguous (see sgemm.h).
 *
 * A 4x4 output tile keeps 16 accumulators (v16-v31, four K lanes each) resident, and one loop
 * iteration loads two 4-float steps of the 4 activation rows and the 4 weight rows (v0-v15) before
 * issuing their 32 FMLAs: all 32 vector registers, no packing of W. Loads come first because the
 * in-order cores (Cortex-A53/A55) retire in order: a load issued behind a 10-cycle FMLA waits for
 * it. After the loop, a pairwise-add tree turns each row's four accumulators into one vector of
 * four outputs (a leftover 4-float step runs in the same asm); the K % 4 remainder is added per
 * output in the C caller. Fewer than 4 rows take a one-row loop (sgemm_neon_rows). */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "sgemm.h"

#define SGEMM_LD(Q, PTR, OFF) "ldr q" Q ", [%[" PTR "], #" OFF "]\n\t"
#define SGEMM_LD_ADVANCE(Q, PTR, BYTES) SGEMM_LD(Q, PTR, "0") "add %[" PTR "], %[" PTR "], #" BYTES "\n\t"
/* The 16 FMLAs of one 4-float step: activation rows in v<X0..X3>, weight rows in v<Y0..Y3>; the
 * accumulator of (row i, weight j) is v(16 + 4i + j). */
#define SGEMM_FMLA_STEP(X0, X1, X2, X3, Y0, Y1, Y2, Y3)                                             \
    "fmla v16.4s, v" X0 ".4s, v" Y0 ".4s\n\tfmla v17.4s, v" X0 ".4s, v" Y1 ".4s\n\t"               \
    "fmla v18.4s, v" X0 ".4s, v" Y2 ".4s\n\tfmla v19.4s, v" X0 ".4s, v" Y3 ".4s\n\t"               \
    "fmla v20.4s, v" X1 ".4s, v" Y0 ".4s\n\tfmla v21.4s, v" X1 ".4s, v" Y1 ".4s\n\t"               \
    "fmla v22.4s, v" X1 ".4s, v" Y2 ".4s\n\tfmla v23.4s, v" X1 ".4s, v" Y3 ".4s\n\t"               \
    "fmla v24.4s, v" X2 ".4s, v" Y0 ".4s\n\tfmla v25.4s, v" X2 ".4s, v" Y1 ".4s\n\t"               \
    "fmla v26.4s, v" X2 ".4s, v" Y2 ".4s\n\tfmla v27.4s, v" X2 ".4s, v" Y3 ".4s\n\t"               \
    "fmla v28.4s, v" X3 ".4s, v" Y0 ".4s\n\tfmla v29.4s, v" X3 ".4s, v" Y1 ".4s\n\t"               \
    "fmla v30.4s, v" X3 ".4s, v" Y2 ".4s\n\tfmla v31.4s, v" X3 ".4s, v" Y3 ".4s\n\t"

/* Sums of a[i] . w[j] over the first K & ~3 floats of a 4x4 tile, one vector of four outputs
 * (w0..w3) per row, stored to out[0..15]. Inline assembly so that both compilers emit the
 * load-then-FMLA order above (GCC interleaves them and uses register-offset loads, two uops each
 * on the A72 model) and so that the 16 accumulators need no asm operands (GCC allows 30). */
static inline void sgemm_neon_tile_4x4(const float *const a[4], const float *const w[4], int K, float *out)
{
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    uint64_t iters = (uint64_t)(K / 8);
    const uint64_t half = (uint64_t)(K & 4);
    __asm__ volatile(
        "movi v16.4s, #0\n\tmovi v17.4s, #0\n\tmovi v18.4s, #0\n\tmovi v19.4s, #0\n\t"
        "movi v20.4s, #0\n\tmovi v21.4s, #0\n\tmovi v22.4s, #0\n\tmovi v23.4s, #0\n\t"
        "movi v24.4s, #0\n\tmovi v25.4s, #0\n\tmovi v26.4s, #0\n\tmovi v27.4s, #0\n\t"
        "movi v28.4s, #0\n\tmovi v29.4s, #0\n\tmovi v30.4s, #0\n\tmovi v31.4s, #0\n\t"
        "cbz %[iters], 2f\n\t"
        /* The 8-float loop, the innermost loop llvm-mca measures. */
        "1:\n\t"
        SGEMM_LD_ADVANCE("0", "a0", "32") SGEMM_LD_ADVANCE("1", "a1", "32")
        SGEMM_LD_ADVANCE("2", "a2", "32") SGEMM_LD_ADVANCE("3", "a3", "32")
        SGEMM_LD_ADVANCE("4", "w0", "32") SGEMM_LD_ADVANCE("5", "w1", "32")
        SGEMM_LD_ADVANCE("6", "w2", "32") SGEMM_LD_ADVANCE("7", "w3", "32")
        SGEMM_LD("8", "a0", "-16")
        "subs %[iters], %[iters], #1\n\t"
        SGEMM_LD("9", "a1", "-16") SGEMM_LD("10", "a2", "-16") SGEMM_LD("11", "a3", "-16")
        SGEMM_LD("12", "w0", "-16") SGEMM_LD("13", "w1", "-16") SGEMM_LD("14", "w2", "-16")
        SGEMM_LD("15", "w3", "-16")
        SGEMM_FMLA_STEP("0", "1", "2", "3", "4", "5", "6", "7")
        SGEMM_FMLA_STEP("8", "9", "10", "11", "12", "13", "14", "15")
        "b.ne 1b\n\t"
        "2:\n\t"
        "cbz %[half], 3f\n\t"
        SGEMM_LD_ADVANCE("0", "a0", "16") SGEMM_LD_ADVANCE("1", "a1", "16")
        SGEMM_LD_ADVANCE("2", "a2", "16") SGEMM_LD_ADVANCE("3", "a3", "16")
        SGEMM_LD_ADVANCE("4", "w0", "16") SGEMM_LD_ADVANCE("5", "w1", "16")
        SGEMM_LD_ADVANCE("6", "w2", "16") SGEMM_LD_ADVANCE("7", "w3", "16")
        SGEMM_FMLA_STEP("0", "1", "2", "3", "4", "5", "6", "7")
        "3:\n\t"
        /* Pairwise-add tree: row i's four accumulators become (a_i.w0, a_i.w1, a_i.w2, a_i.w3). */
        "faddp v16.4s, v16.4s, v17.4s\n\tfaddp v18.4s, v18.4s, v19.4s\n\tfaddp v16.4s, v16.4s, v18.4s\n\t"
        "faddp v20.4s, v20.4s, v21.4s\n\tfaddp v22.4s, v22.4s, v23.4s\n\tfaddp v20.4s, v20.4s, v22.4s\n\t"
        "faddp v24.4s, v24.4s, v25.4s\n\tfaddp v26.4s, v26.4s, v27.4s\n\tfaddp v24.4s, v24.4s, v26.4s\n\t"
        "faddp v28.4s, v28.4s, v29.4s\n\tfaddp v30.4s, v30.4s, v31.4s\n\tfaddp v28.4s, v28.4s, v30.4s\n\t"
        "stp q16, q20, [%[out]]\n\t"
        "stp q24, q28, [%[out], #32]\n\t"
        : [iters] "+r"(iters), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
          [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3)
        : [half] "r"(half), [out] "r"(out)
        : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11",
          "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24",
          "v25", "v26", "v27", "v28", "v29", "v30", "v31");
}

/* Fewer than 4 rows (a classifier's M = 1): one row against 8 weight rows at a time, where the 4x4 tile would
   compute every product 4 times. Partial groups repeat their last weight row; only valid outputs are stored. */
static void sgemm_neon_rows(const float *a, const float *w, const float *bias, float *c, int M, int N, int K)
{
    for (int m = 0; m < M; m++) {
        const float *am = a + (size_t)m * K;
        for (int n = 0; n < N; n += 8) {
            const int nr = N - n < 8 ? N - n : 8;
            const float *wr[8];
            for (int j = 0; j < 8; j++)
                wr[j] = w + (size_t)(n + (j < nr ? j : nr - 1)) * (size_t)K;
            float32x4_t acc[8];
            for (int j = 0; j < 8; j++)
                acc[j] = vdupq_n_f32(0.0f);
            int k = 0;
            for (; k + 4 <= K; k += 4) {
                const float32x4_t x = vld1q_f32(am + k);
                for (int j = 0; j < 8; j++)
                    acc[j] = vfmaq_f32(acc[j], x, vld1q_f32(wr[j] + k));
            }
            /* (sum of acc[0]), ..., (sum of acc[7]) by a pairwise-add tree */
            float32x4_t lo = vpaddq_f32(vpaddq_f32(acc[0], acc[1]), vpaddq_f32(acc[2], acc[3]));
            float32x4_t hi = vpaddq_f32(vpaddq_f32(acc[4], acc[5]), vpaddq_f32(acc[6], acc[7]));
            float sums[8];
            vst1q_f32(sums, lo);
            vst1q_f32(sums + 4, hi);
            for (int j = 0; j < nr; j++) {
                float v = sums[j];
                for (int kk = k; kk < K; kk++)
                    v += am[kk] * wr[j][kk];
                c[(size_t)m * N + n + j] = v + (bias ? bias[n + j] : 0.0f);
            }
        }
    }
}

void bifsmn_sgemm_neon(const float *a, const float *w, const float *bias, float *c, int M, int N, int K)
{
    if (M < 4) {
        sgemm_neon_rows(a, w, bias, c, M, N, K);
        return;
    }
    /* Partial tiles repeat their last valid row; only valid outputs are stored. */
    for (int m = 0; m < M; m += 4) {
        const int mr = M - m < 4 ? M - m : 4;
        const float *ar[4];
        for (int i = 0; i < 4; i++)
            ar[i] = a + (size_t)(m + (i < mr ? i : mr - 1)) * (size_t)K;
        for (int n = 0; n < N; n += 4) {
            const int nr = N - n < 4 ? N - n : 4;
            const float *wr[4];
            float b[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int j = 0; j < 4; j++) {
                wr[j] = w + (size_t)(n + (j < nr ? j : nr - 1)) * (size_t)K;
                if (bias && j < nr)
                    b[j] = bias[n + j];
            }
            float acc[16];
            sgemm_neon_tile_4x4(ar, wr, K, acc);
            const float32x4_t bv = vld1q_f32(b);
            for (int i = 0; i < mr; i++) {
                float32x4_t r = vld1q_f32(acc + 4 * i);
                for (int k = K & ~3; k < K; k++) {
                    const float32x4_t wk = {wr[0][k], wr[1][k], wr[2][k], wr[3][k]};
                    r = vfmaq_n_f32(r, wk, ar[i][k]);
                }
                r = vaddq_f32(r, bv);
                float *o = c + (size_t)(m + i) * (size_t)N + n;
                if (nr == 4) {
                    vst1q_f32(o, r);
                } else {
                    float lanes[4];
                    vst1q_f32(lanes, r);
                    for (int j = 0; j < nr; j++)
                        o[j] = lanes[j];
                }
            }
        }
    }
}

#endif /* __aarch64__ */
