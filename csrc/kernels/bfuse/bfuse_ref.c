/* Portable fused binary kernels: one output at a time, the definition the optimised files are tested against. */
#include "bfuse.h"

/* Portable popcount: the reference is built without -mpopcnt so that it runs on any CPU. */
static int popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}

float bifsmn_bout_value(const bifsmn_bout *o, int n, int32_t dot)
{
    const float p = o->scale[n] * (float)dot; /* two statements: no contraction into a fused multiply-add */
    float v = p + o->shift[n];
    if (o->slope) {
        const float neg = o->slope[n] * (v < 0.0f ? v : 0.0f);
        v = (v > 0.0f ? v : 0.0f) + neg;
    }
    return v;
}

int bifsmn_bout_thresholds(const bifsmn_bout *o, int K, int32_t *t)
{
    for (int n = 0; n < o->N; n++) {
        /* negative exactly on a prefix [-K, T) of the dot products */
        int T = -K;
        while (T <= K && bifsmn_bout_value(o, n, T) < 0.0f)
            T++;
        for (int d = T + 1; d <= K; d++)
            if (bifsmn_bout_value(o, n, d) < 0.0f)
                return -1;
        t[n] = T;
    }
    return 0;
}

/* The transform of one output given its dot product, stored and packed as o asks. */
static void finish(const bifsmn_bout *o, int m, int n, int32_t dot, uint64_t *row_bits, size_t bit0)
{
    float v = bifsmn_bout_value(o, n, dot);
    if (o->res)
        v += o->res[(size_t)m * o->N + n];
    if (o->out)
        o->out[(size_t)m * o->N + n] = v;
    if (o->bits)
        bifsmn_put_bits(row_bits, bit0 + (size_t)n, v < 0.0f, 1);
}

size_t bifsmn_bpanel_words_ref(int N, int K) { return (size_t)N * (size_t)((K + 63) / 64); }

void bifsmn_bpanel_ref(const uint64_t *w, int N, int K, uint64_t *panel)
{
    const size_t words = bifsmn_bpanel_words_ref(N, K);
    for (size_t i = 0; i < words; i++)
        panel[i] = w[i];
}

void bifsmn_bgemm_fused_ref(const uint64_t *a, const uint64_t *panel, int M, int K, const bifsmn_bout *o,
                            void *scratch)
{
    (void)scratch;
    const int kw = (K + 63) / 64, N = o->N;
    for (int m = 0; m < M; m++) {
        const uint64_t *am = a + (size_t)m * kw;
        const size_t bit0 = o->bits ? bifsmn_bout_bit(o, m) : 0;
        for (int n = 0; n < N; n++) {
            const uint64_t *wn = panel + (size_t)n * kw;
            int32_t pc = 0;
            for (int i = 0; i < kw; i++)
                pc += popcount64(am[i] ^ wn[i]);
            if (o->thr) {
                bifsmn_put_bits(o->bits, bit0 + (size_t)n, pc > o->thr[(size_t)m * o->thr_stride + n], 1);
                continue;
            }
            const int32_t base = o->base ? o->base[(size_t)m * N + n] : K;
            finish(o, m, n, base - 2 * pc, o->bits, bit0);
        }
    }
}

void bifsmn_bdwconv_ref(const uint64_t *x, const uint8_t *wneg, int T, int taps, int dilation, int pad_left,
                        const bifsmn_bout *o, void *scratch)
{
    (void)scratch;
    const int C = o->N, cw = (C + 63) / 64, wstride = cw * 64;
    for (int t = 0; t < T; t++) {
        const size_t bit0 = o->bits ? bifsmn_bout_bit(o, t) : 0;
        for (int c = 0; c < C; c++) {
            int32_t dot = 0;
            for (int k = 0; k < taps; k++) {
                const int ti = t + k * dilation - pad_left;
                if (ti < 0 || ti >= T)
                    continue;
                const int xneg = (int)(x[(size_t)ti * cw + c / 64] >> (c % 64)) & 1;
                dot += xneg == (wneg[(size_t)k * wstride + c] & 1) ? 1 : -1;
            }
            finish(o, t, c, dot, o->bits, bit0);
        }
    }
}
