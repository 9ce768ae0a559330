/* The forward pass: every op is an im2col/bitpack step, one GEMM (binary or float) or a depthwise loop, and a
   shared epilogue (affine for binary ops, PReLU, residual add). No allocation: all buffers come from the model. */
#include <string.h>

#include "internal.h"

/* Rows are output positions in (time, height) order so that the GEMM output is already the next tensor
   (time, height, channels); columns are (kx, ky, channel), so that for one time tap kx the ky run is a
   contiguous run of the input as well. */
static void clip_run(const bifsmn_op *op, int oh, int *ky0, int *ky1)
{
    const int first = op->ph - oh * op->sh, last = op->h_in + op->ph - oh * op->sh; /* in-bounds ky range */
    *ky0 = first > 0 ? (first < op->kh ? first : op->kh) : 0;
    *ky1 = last < op->kh ? (last > *ky0 ? last : *ky0) : op->kh;
}

static void im2col_float(const bifsmn_op *op, const float *in, float *cols)
{
    const int oh_n = op->out_shape[1], ow_n = op->out_shape[0], c = op->c_in, kh = op->kh;
    for (int ow = 0; ow < ow_n; ow++) {
        for (int oh = 0; oh < oh_n; oh++) {
            float *dst = cols + ((size_t)ow * oh_n + oh) * (size_t)op->K;
            int ky0, ky1;
            clip_run(op, oh, &ky0, &ky1);
            const int ih0 = oh * op->sh - op->ph + ky0;
            /* Plain loops, not memcpy/memset: runs are a few floats (kh * c_in), where calls cost more than
               the copy (CMake builds this file without GCC's loop-to-libcall rewriting). */
            for (int kx = 0; kx < op->kw; kx++, dst += (size_t)kh * c) {
                const int iw = ow * op->sw - op->pw + kx;
                const int inside = iw >= 0 && iw < op->w_in;
                const int lo = inside ? ky0 * c : kh * c, hi = inside ? ky1 * c : kh * c;
                for (int i = 0; i < lo; i++)
                    dst[i] = 0.0f;
                if (inside) {
                    const float *src = in + ((size_t)iw * op->h_in + ih0) * c;
                    for (int i = lo; i < hi; i++)
                        dst[i] = src[i - lo];
                }
                for (int i = hi; i < kh * c; i++)
                    dst[i] = 0.0f;
            }
        }
    }
}

/* n <= 64 bits of a packed row starting at bit `off` (reads the next word only when the range reaches it). */
static uint64_t get_bits(const uint64_t *src, size_t off, int n)
{
    const size_t w = off >> 6;
    const int sh = (int)(off & 63);
    uint64_t v = src[w] >> sh;
    if (sh && sh + n > 64)
        v |= src[w + 1] << (64 - sh);
    return n < 64 ? v & ((UINT64_C(1) << n) - 1) : v;
}

/* ORs n <= 64 bits (nothing above bit n set) into dst at bit `off`. */
static void put_bits(uint64_t *dst, size_t off, uint64_t v, int n)
{
    const size_t w = off >> 6;
    const int sh = (int)(off & 63);
    dst[w] |= v << sh;
    if (sh && sh + n > 64)
        dst[w + 1] |= v >> (64 - sh);
}

/* im2col on sign bits. The input (time, height, channels) is packed once as one bit row per time step
   (height x channels bits, the tensor's own order), so the taps ky0..ky1 of one time tap kx are one contiguous
   bit range of input row iw and land in one contiguous range of the im2col row. Padded taps stay 0 (+1);
   op->corr removes their contribution after the GEMM. */
static void im2col_bits(const bifsmn_model *m, const bifsmn_op *op, const float *in, uint64_t *rows)
{
    const int oh_n = op->out_shape[1], ow_n = op->out_shape[0], c = op->c_in;
    const int col_words = (op->h_in * c + 63) / 64;
    uint64_t *col_bits = rows + (size_t)op->M * op->kwords;
    m->kernels.bitpack(in, col_bits, op->w_in, op->h_in * c);
    memset(rows, 0, sizeof(uint64_t) * (size_t)op->M * op->kwords);
    for (int ow = 0; ow < ow_n; ow++) {
        for (int oh = 0; oh < oh_n; oh++) {
            uint64_t *row = rows + ((size_t)ow * oh_n + oh) * (size_t)op->kwords;
            int ky0, ky1;
            clip_run(op, oh, &ky0, &ky1);
            const size_t src0 = (size_t)(oh * op->sh - op->ph + ky0) * c, n = (size_t)(ky1 - ky0) * c;
            for (int kx = 0; kx < op->kw; kx++) {
                const int iw = ow * op->sw - op->pw + kx;
                if (iw < 0 || iw >= op->w_in)
                    continue;
                const uint64_t *src = col_bits + (size_t)iw * col_words;
                const size_t dst0 = ((size_t)kx * op->kh + ky0) * c;
                for (size_t done = 0; done < n; done += 64) {
                    const int nb = n - done < 64 ? (int)(n - done) : 64;
                    put_bits(row, dst0 + done, get_bits(src, src0 + done, nb), nb);
                }
            }
        }
    }
}

/* corr[p][n] = sum of weight signs of output n over the taps of position p that fall in the zero padding.
   With 2-D prefix sums over the per-tap sums this is O(1) per (position, output): the in-bounds taps of a
   position form a rectangle. Returns -1 when the temporary table cannot be allocated. */
int bifsmn_binary_conv_correction(const bifsmn_op *op)
{
    const int kh = op->kh, kw = op->kw, c = op->c_in, stride = (kw + 1) * (kh + 1);
    int32_t *pre = bifsmn_alloc(sizeof(int32_t) * (size_t)op->N * stride);
    if (!pre)
        return -1;
    for (int n = 0; n < op->N; n++) {
        const uint64_t *w = op->wb + (size_t)n * op->kwords;
        int32_t *P = pre + (size_t)n * stride; /* P[y * (kw + 1) + x] = sum over ky < y, kx < x */
        for (int x = 0; x <= kw; x++)
            P[x] = 0;
        for (int ky = 0; ky < kh; ky++) {
            P[(ky + 1) * (kw + 1)] = 0;
            int32_t row = 0;
            for (int kx = 0; kx < kw; kx++) {
                const size_t base = ((size_t)kx * kh + ky) * c;
                for (int ch = 0; ch < c; ch++)
                    row += (w[(base + ch) >> 6] >> ((base + ch) & 63)) & 1 ? -1 : 1;
                P[(ky + 1) * (kw + 1) + kx + 1] = P[ky * (kw + 1) + kx + 1] + row;
            }
        }
    }
    const int oh_n = op->out_shape[1], ow_n = op->out_shape[0];
    for (int ow = 0; ow < ow_n; ow++) {
        const int first = op->pw - ow * op->sw, last = op->w_in + op->pw - ow * op->sw; /* in-bounds kx range */
        const int kx0 = first > 0 ? (first < kw ? first : kw) : 0;
        const int kx1 = last < kw ? (last > kx0 ? last : kx0) : kw;
        for (int oh = 0; oh < oh_n; oh++) {
            int ky0, ky1;
            clip_run(op, oh, &ky0, &ky1);
            int32_t *dst = op->corr + ((size_t)ow * oh_n + oh) * (size_t)op->N;
            for (int n = 0; n < op->N; n++) {
                const int32_t *P = pre + (size_t)n * stride;
                const int32_t total = P[kh * (kw + 1) + kw];
                const int32_t inside = P[ky1 * (kw + 1) + kx1] - P[ky0 * (kw + 1) + kx1] -
                                       P[ky1 * (kw + 1) + kx0] + P[ky0 * (kw + 1) + kx0];
                dst[n] = total - inside;
            }
        }
    }
    bifsmn_dealloc(pre);
    return 0;
}

/* Depthwise conv over time on signs: channels are independent (no popcount across a word), so the signs are
   kept one per byte (0 for +1, 1 for -1) and XOR-counted per channel, a loop compilers vectorise. Padded time
   steps are skipped: the "contributes 0" rule of zero padding. */
static void dwconv_binary(const bifsmn_model *m, const bifsmn_op *op, const float *in, int32_t *ints)
{
    const int T = op->M, C = op->N;
    uint8_t *xs = (uint8_t *)m->bits;
    for (size_t i = 0, n = (size_t)T * C; i < n; i++)
        xs[i] = in[i] < 0.0f;
    for (int t = 0; t < T; t++) {
        int32_t *o = ints + (size_t)t * C;
        memset(o, 0, sizeof(int32_t) * (size_t)C);
        int valid = 0;
        for (int k = 0; k < op->taps; k++) {
            const int ti = t + k * op->dilation - op->pad_left;
            if (ti < 0 || ti >= T)
                continue;
            valid++;
            const uint8_t *x = xs + (size_t)ti * C, *w = op->wsign + (size_t)k * C;
            for (int c = 0; c < C; c++)
                o[c] += x[c] ^ w[c];
        }
        for (int c = 0; c < C; c++)
            o[c] = valid - 2 * o[c];
    }
}

static void dwconv_float(const bifsmn_op *op, const float *in, float *out)
{
    const int T = op->M, C = op->N;
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * C;
        for (int c = 0; c < C; c++)
            o[c] = op->b[c];
        for (int k = 0; k < op->taps; k++) {
            const int ti = t + k * op->dilation - op->pad_left;
            if (ti < 0 || ti >= T)
                continue;
            const float *x = in + (size_t)ti * C;
            for (int c = 0; c < C; c++)
                o[c] += op->wf[(size_t)c * op->taps + k] * x[c];
        }
    }
}

/* a * dot + b (binary), PReLU as max(0, v) + slope * min(0, v) (PyTorch's exact form), residual add. Each
   step is its own loop over the row so that the compiler can vectorise it. */
static void epilogue(const bifsmn_op *op, const int32_t *ints, const float *res, float *out)
{
    const int N = op->N;
    for (int r = 0; r < op->M; r++) {
        float *o = out + (size_t)r * N;
        if (op->binary) {
            const int32_t *d = ints + (size_t)r * N;
            for (int n = 0; n < N; n++)
                o[n] = op->a[n] * (float)d[n] + op->b[n];
        }
        if (op->act == BIFSMN_ACT_PRELU)
            for (int n = 0; n < N; n++) {
                const float v = o[n];
                o[n] = (v > 0.0f ? v : 0.0f) + op->slope[n] * (v < 0.0f ? v : 0.0f);
            }
        if (res)
            for (int n = 0; n < N; n++)
                o[n] += res[(size_t)r * N + n];
    }
}

void bifsmn_run_op_internal(bifsmn_model *m, const bifsmn_op *op, const float *in, const float *res, float *out,
                            int32_t *out_int)
{
    const bifsmn_kernels *k = &m->kernels;
    switch (op->type) {
    case BIFSMN_OP_CONV2D:
        if (op->binary) {
            im2col_bits(m, op, in, m->bits);
            k->bgemm(m->bits, op->wb, m->ints, op->M, op->N, op->K);
            for (size_t i = 0, n = (size_t)op->M * op->N; i < n; i++)
                m->ints[i] -= op->corr[i];
        } else {
            im2col_float(op, in, m->cols);
            k->sgemm(m->cols, op->wf, op->b, out, op->M, op->N, op->K);
        }
        break;
    case BIFSMN_OP_LINEAR:
        if (op->binary) {
            k->bitpack(in, m->bits, op->M, op->K);
            k->bgemm(m->bits, op->wb, m->ints, op->M, op->N, op->K);
        } else {
            k->sgemm(in, op->wf, op->b, out, op->M, op->N, op->K);
        }
        break;
    default: /* BIFSMN_OP_DWCONV1D: the loader admits no other type */
        if (op->binary)
            dwconv_binary(m, op, in, m->ints);
        else
            dwconv_float(op, in, out);
        break;
    }
    if (op->binary && out_int)
        memcpy(out_int, m->ints, sizeof(int32_t) * (size_t)op->M * op->N);
    epilogue(op, m->ints, res, out);
}

void bifsmn_forward(bifsmn_model *m, const float *features, float *scores)
{
    /* (mel, frame) features -> the (time, height = mel, channels = 1) input tensor. */
    float *x = m->slots[0];
    for (int t = 0; t < m->n_frames; t++)
        for (int f = 0; f < m->n_mels; f++)
            x[(size_t)t * m->n_mels + f] = features[(size_t)f * m->n_frames + t];
    for (int i = 0; i < m->num_ops; i++) {
        const bifsmn_op *op = &m->ops[i];
        const float *res = op->res_slot == BIFSMN_NO_SLOT ? NULL : m->slots[op->res_slot];
        bifsmn_run_op_internal(m, op, m->slots[op->in_slot], res, m->slots[op->out_slot], NULL);
    }
    memcpy(scores, m->slots[m->ops[m->num_ops - 1].out_slot], sizeof(float) * (size_t)m->num_classes);
}
