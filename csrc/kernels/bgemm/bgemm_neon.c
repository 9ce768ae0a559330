/* ARMv8 NEON binary GEMM: the paper's Fast Bitwise Computation Kernel (FBCK).
 *
 * out[m*N + n] = K - 2 * popcount(a[m] XOR w[n]), the +-1 dot product of two packed rows.
 *
 * One micro-kernel call computes a 2 (activation rows) x 4 (weight rows) output tile over the whole
 * depth, 128 bits per step, with every operand and accumulator resident in the 32 vector registers:
 *
 *   v0-v1    the 2 activation vectors, each reused against the 4 weights ("repeated" operand)
 *   v2-v5    the 4 weight vectors, each reused against the 2 activations
 *   v6-v13   the 8 EOR results, turned in place into per-byte popcounts by CNT
 *   v16-v23  8 per-loop byte accumulators (ADD .16b)
 *   v24-v31  8 per-block 16-bit accumulators (UADALP folds byte pairs into halfwords)
 *   t0, t1   the 8 final 32-bit sums (compiler-chosen, the only two registers left)
 *
 * Overflow bounds, per lane and per 128-bit step: a byte lane gains at most 8 (CNT of 8 bits), so
 * 31 steps reach 248 <= 255 (32 would wrap); a halfword lane gains at most 16, so a block of 4092
 * steps (132 chunks of 31) plus the 64-bit tail reaches 16 * 4093 = 65488 <= 65535. Each block is
 * then widened into the 32-bit sums, which hold any K an int can describe. Per steady-state step:
 * 6 loads and 24 NEON ops (EOR, CNT, ADD per 128 bit-MACs) for 1024 bit-MACs.
 *
 * Inline assembly rather than intrinsics: the same tile written with intrinsics compiled to slower
 * step loops under both GCC 12 and clang 14 (llvm-mca, Cortex-A72 model: 43 and 68 bit-MACs per
 * cycle against 85 here), and fixed registers and instruction order keep the loop identical under
 * both compilers. The step loop is software-pipelined for the in-order cores (Cortex-A53/A55): the
 * loads of step i issue while the CNT/ADD of step i-1 run, and the EOR of step i follows them. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "bgemm.h"

/* The micro-kernel is one asm string (its registers must survive from the first instruction to the
 * last), longer than the 4095 characters ISO C guarantees; GCC and clang take any length. */
#pragma GCC diagnostic ignored "-Woverlength-strings"

/* Steps (128 bits) per byte chunk and per halfword block; see the bounds above. */
#define FBCK_CHUNK "31"
#define FBCK_BLOCK "4092"

/* R is "q" for a 128-bit step (post-incremented by POST) or "d" for the 64-bit tail. */
#define FBCK_LOAD(R, POST)                                                                          \
    "ldr " R "0, [%[a0]]" POST "\n\t"                                                               \
    "ldr " R "1, [%[a1]]" POST "\n\t"                                                               \
    "ldr " R "2, [%[w0]]" POST "\n\t"                                                               \
    "ldr " R "3, [%[w1]]" POST "\n\t"                                                               \
    "ldr " R "4, [%[w2]]" POST "\n\t"                                                               \
    "ldr " R "5, [%[w3]]" POST "\n\t"

#define FBCK_EOR(SZ)                                                                                \
    "eor v6." SZ ", v0." SZ ", v2." SZ "\n\t"                                                       \
    "eor v7." SZ ", v0." SZ ", v3." SZ "\n\t"                                                       \
    "eor v8." SZ ", v0." SZ ", v4." SZ "\n\t"                                                       \
    "eor v9." SZ ", v0." SZ ", v5." SZ "\n\t"                                                       \
    "eor v10." SZ ", v1." SZ ", v2." SZ "\n\t"                                                      \
    "eor v11." SZ ", v1." SZ ", v3." SZ "\n\t"                                                      \
    "eor v12." SZ ", v1." SZ ", v4." SZ "\n\t"                                                      \
    "eor v13." SZ ", v1." SZ ", v5." SZ "\n\t"

#define FBCK_CNT                                                                                    \
    "cnt v6.16b, v6.16b\n\t"                                                                        \
    "cnt v7.16b, v7.16b\n\t"                                                                        \
    "cnt v8.16b, v8.16b\n\t"                                                                        \
    "cnt v9.16b, v9.16b\n\t"                                                                        \
    "cnt v10.16b, v10.16b\n\t"                                                                      \
    "cnt v11.16b, v11.16b\n\t"                                                                      \
    "cnt v12.16b, v12.16b\n\t"                                                                      \
    "cnt v13.16b, v13.16b\n\t"

#define FBCK_ADD8                                                                                   \
    "add v16.16b, v16.16b, v6.16b\n\t"                                                              \
    "add v17.16b, v17.16b, v7.16b\n\t"                                                              \
    "add v18.16b, v18.16b, v8.16b\n\t"                                                              \
    "add v19.16b, v19.16b, v9.16b\n\t"                                                              \
    "add v20.16b, v20.16b, v10.16b\n\t"                                                             \
    "add v21.16b, v21.16b, v11.16b\n\t"                                                             \
    "add v22.16b, v22.16b, v12.16b\n\t"                                                             \
    "add v23.16b, v23.16b, v13.16b\n\t"

/* UADALP halfword accumulators v24-v31 with byte vectors v<F>..v<F+7>. */
#define FBCK_UADALP(R0, R1, R2, R3, R4, R5, R6, R7)                                                 \
    "uadalp v24.8h, v" R0 ".16b\n\t"                                                                \
    "uadalp v25.8h, v" R1 ".16b\n\t"                                                                \
    "uadalp v26.8h, v" R2 ".16b\n\t"                                                                \
    "uadalp v27.8h, v" R3 ".16b\n\t"                                                                \
    "uadalp v28.8h, v" R4 ".16b\n\t"                                                                \
    "uadalp v29.8h, v" R5 ".16b\n\t"                                                                \
    "uadalp v30.8h, v" R6 ".16b\n\t"                                                                \
    "uadalp v31.8h, v" R7 ".16b\n\t"

#define FBCK_ZERO(R0, R1, R2, R3, R4, R5, R6, R7)                                                   \
    "movi v" R0 ".16b, #0\n\tmovi v" R1 ".16b, #0\n\tmovi v" R2 ".16b, #0\n\tmovi v" R3 ".16b, #0\n\t" \
    "movi v" R4 ".16b, #0\n\tmovi v" R5 ".16b, #0\n\tmovi v" R6 ".16b, #0\n\tmovi v" R7 ".16b, #0\n\t"

/* One load with an immediate offset: the step loop avoids writeback loads, which cost two uops
 * (a dispatch slot each) on the Cortex-A57/A72 model. */
#define FBCK_LD(Q, PTR, OFF) "ldr q" Q ", [%[" PTR "], #" OFF "]\n\t"
#define FBCK_ADVANCE(PTR) "add %[" PTR "], %[" PTR "], #32\n\t"

/* Popcounts of the 2x4 tile over `steps` 128-bit steps plus, when `tail` is 1, one 64-bit word;
 * pc0 gets (a0, w0..w3), pc1 gets (a1, w0..w3). Pointers address the start of each packed row.
 *
 * A chunk of 2*i+1 steps loads and EORs its first step, then runs i iterations of the step loop,
 * each loading two steps while counting the previous ones (so no load reads past the chunk), and
 * counts the last EOR afterwards. Inside the loop the loads are spread so that on the in-order
 * cores every load issues next to a pointer update or a NEON op (the A53/A55 models retire in
 * order, so a load right behind a 6-cycle NEON op waits). */
static inline void fbck_tile_2x4(const uint64_t *a0, const uint64_t *a1, const uint64_t *w0,
                                 const uint64_t *w1, const uint64_t *w2, const uint64_t *w3,
                                 uint64_t steps, uint64_t tail, uint32x4_t *pc0, uint32x4_t *pc1)
{
    uint32x4_t t0, t1;
    uint64_t blk, iters;
    __asm__ volatile(
        "movi %[t0].4s, #0\n\t"
        "movi %[t1].4s, #0\n\t"
        /* Block: at most 4092 steps into the halfword accumulators. */
        "1:\n\t"
        "mov %[blk], #" FBCK_BLOCK "\n\t"
        "cmp %[steps], %[blk]\n\t"
        "csel %[blk], %[steps], %[blk], lo\n\t"
        "sub %[steps], %[steps], %[blk]\n\t"
        FBCK_ZERO("24", "25", "26", "27", "28", "29", "30", "31")
        "cbz %[blk], 4f\n\t"
        /* Chunk: min(blk, 31) steps rounded down to odd, at most 31 into the byte accumulators. */
        "2:\n\t"
        "mov %[iters], #" FBCK_CHUNK "\n\t"
        "cmp %[blk], %[iters]\n\t"
        "csel %[iters], %[blk], %[iters], lo\n\t"
        "sub %[iters], %[iters], #1\n\t"
        "lsr %[iters], %[iters], #1\n\t"
        "sub %[blk], %[blk], %[iters], lsl #1\n\t"
        "sub %[blk], %[blk], #1\n\t"
        FBCK_ZERO("16", "17", "18", "19", "20", "21", "22", "23")
        FBCK_LOAD("q", ", #16")
        FBCK_EOR("16b")
        "cbz %[iters], 5f\n\t"
        /* The step loop (two steps per iteration), the innermost loop llvm-mca measures. */
        "3:\n\t"
        FBCK_LD("0", "a0", "0") FBCK_ADVANCE("a0")
        FBCK_LD("1", "a1", "0") FBCK_ADVANCE("a1")
        FBCK_LD("2", "w0", "0") FBCK_ADVANCE("w0")
        FBCK_LD("3", "w1", "0")
        FBCK_LD("4", "w2", "0")
        FBCK_LD("5", "w3", "0")
        FBCK_CNT
        FBCK_ADD8
        FBCK_EOR("16b")
        FBCK_LD("3", "w1", "16") FBCK_ADVANCE("w1")
        FBCK_LD("0", "a0", "-16")
        FBCK_LD("4", "w2", "16") FBCK_ADVANCE("w2")
        FBCK_LD("1", "a1", "-16")
        FBCK_LD("5", "w3", "16") FBCK_ADVANCE("w3")
        FBCK_LD("2", "w0", "-16")
        "subs %[iters], %[iters], #1\n\t"
        FBCK_CNT
        FBCK_ADD8
        FBCK_EOR("16b")
        "b.ne 3b\n\t"
        "5:\n\t"
        FBCK_CNT
        FBCK_ADD8
        FBCK_UADALP("16", "17", "18", "19", "20", "21", "22", "23")
        "cbnz %[blk], 2b\n\t"
        /* The odd 64-bit word joins the last block: LDR d zeroes the upper halves, so the full-width
         * EOR/CNT below counts only the tail bits. */
        "4:\n\t"
        "cbnz %[steps], 6f\n\t"
        "cbz %[tail], 6f\n\t"
        FBCK_LOAD("d", "")
        FBCK_EOR("16b")
        FBCK_CNT
        FBCK_UADALP("6", "7", "8", "9", "10", "11", "12", "13")
        /* Widen the block into the 32-bit sums: pairwise to .4s, then an ADDP tree per output row. */
        "6:\n\t"
        "uaddlp v24.4s, v24.8h\n\t"
        "uaddlp v25.4s, v25.8h\n\t"
        "uaddlp v26.4s, v26.8h\n\t"
        "uaddlp v27.4s, v27.8h\n\t"
        "uaddlp v28.4s, v28.8h\n\t"
        "uaddlp v29.4s, v29.8h\n\t"
        "uaddlp v30.4s, v30.8h\n\t"
        "uaddlp v31.4s, v31.8h\n\t"
        "addp v24.4s, v24.4s, v25.4s\n\t"
        "addp v26.4s, v26.4s, v27.4s\n\t"
        "addp v28.4s, v28.4s, v29.4s\n\t"
        "addp v30.4s, v30.4s, v31.4s\n\t"
        "addp v24.4s, v24.4s, v26.4s\n\t"
        "addp v28.4s, v28.4s, v30.4s\n\t"
        "add %[t0].4s, %[t0].4s, v24.4s\n\t"
        "add %[t1].4s, %[t1].4s, v28.4s\n\t"
        "cbnz %[steps], 1b\n\t"
        : [t0] "=&w"(t0), [t1] "=&w"(t1), [blk] "=&r"(blk), [iters] "=&r"(iters), [steps] "+r"(steps),
          [a0] "+r"(a0), [a1] "+r"(a1), [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3)
        : [tail] "r"(tail)
        : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11",
          "v12", "v13", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26",
          "v27", "v28", "v29", "v30", "v31");
    *pc0 = t0;
    *pc1 = t1;
}

void bifsmn_bgemm_neon(const uint64_t *a, const uint64_t *w, int32_t *out, int M, int N, int K)
{
    const size_t kw = (size_t)(K + 63) / 64;
    const int32x4_t kvec = vdupq_n_s32(K);
    /* Partial tiles repeat their last valid row so the one micro-kernel serves every shape; only
     * the valid outputs are stored. */
    for (int m = 0; m < M; m += 2) {
        const int mr = M - m < 2 ? M - m : 2;
        const uint64_t *a0 = a + (size_t)m * kw;
        const uint64_t *a1 = a0 + (size_t)(mr - 1) * kw;
        for (int n = 0; n < N; n += 4) {
            const int nr = N - n < 4 ? N - n : 4;
            const uint64_t *wr[4];
            for (int j = 0; j < 4; j++)
                wr[j] = w + (size_t)(n + (j < nr ? j : nr - 1)) * kw;
            uint32x4_t pc[2];
            fbck_tile_2x4(a0, a1, wr[0], wr[1], wr[2], wr[3], kw / 2, kw & 1, &pc[0], &pc[1]);
            for (int i = 0; i < mr; i++) {
                const int32x4_t dot = vsubq_s32(kvec, vshlq_n_s32(vreinterpretq_s32_u32(pc[i]), 1));
                int32_t *o = out + (size_t)(m + i) * (size_t)N + n;
                if (nr == 4) {
                    vst1q_s32(o, dot);
                } else {
                    int32_t lanes[4];
                    vst1q_s32(lanes, dot);
                    for (int j = 0; j < nr; j++)
                        o[j] = lanes[j];
                }
            }
        }
    }
}

#endif /* __aarch64__ */
