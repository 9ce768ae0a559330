/* The forward pass: the steps of the plan (plan.c) and the standalone run of one op (bifsmn_op_run).
   A full-precision op is an im2col, one float GEMM (or the depthwise loop) and its PReLU/residual loops; a
   binary op is a fused kernel (kernels/bfuse/) reading packed input signs and writing its floats and/or the
   packed signs of its output in one pass. No allocation: every buffer comes from the model. */
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
static void or_bits(uint64_t *dst, size_t off, uint64_t v, int n)
{
    const size_t w = off >> 6;
    const int sh = (int)(off & 63);
    dst[w] |= v << sh;
    if (sh && sh + n > 64)
        dst[w + 1] |= v >> (64 - sh);
}

/* im2col on sign bits. The input (time, height, channels) comes packed as one bit row per time step (height x
   channels bits, the tensor's own order), so the taps ky0..ky1 of one time tap kx are one contiguous bit range
   of input row iw and land in one contiguous range of the im2col row. Padded taps stay 0 (+1); the op's base
   (K minus the padding correction) removes their contribution. */
static void im2col_bits(const bifsmn_op *op, const uint64_t *in_rows, uint64_t *rows)
{
    const int oh_n = op->out_shape[1], ow_n = op->out_shape[0], c = op->c_in;
    const int col_words = (op->h_in * c + 63) / 64;
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
                const uint64_t *src = in_rows + (size_t)iw * col_words;
                const size_t dst0 = ((size_t)kx * op->kh + ky0) * c;
                for (size_t done = 0; done < n; done += 64) {
                    const int nb = n - done < 64 ? (int)(n - done) : 64;
                    or_bits(row, dst0 + done, get_bits(src, src0 + done, nb), nb);
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

int bifsmn_im2col_copies(const bifsmn_op *op, bifsmn_copy *copies)
{
    const int oh_n = op->out_shape[1], ow_n = op->out_shape[0], c = op->c_in;
    const size_t col_bytes = (size_t)(op->h_in * c + 63) / 64 * 8, row_bytes = (size_t)op->kwords * 8;
    int n = 0;
    for (int ow = 0; ow < ow_n; ow++)
        for (int oh = 0; oh < oh_n; oh++) {
            int ky0, ky1;
            clip_run(op, oh, &ky0, &ky1);
            if (ky1 == ky0)
                continue;
            for (int kx = 0; kx < op->kw; kx++) {
                const int iw = ow * op->sw - op->pw + kx;
                if (iw < 0 || iw >= op->w_in)
                    continue;
                if (copies)
                    copies[n] = (bifsmn_copy){
                        (uint32_t)((size_t)iw * col_bytes + (size_t)(oh * op->sh - op->ph + ky0) * c / 8),
                        (uint32_t)(((size_t)ow * oh_n + oh) * row_bytes + ((size_t)kx * op->kh + ky0) * c / 8),
                        (uint32_t)((size_t)(ky1 - ky0) * c / 8)};
                n++;
            }
        }
    return n;
}

/* n bytes as two overlapping words (or halves, or bytes): no call to memcpy for a 10-byte copy, and nothing written
   outside the run. */
static void copy_run(unsigned char *d, const unsigned char *s, uint32_t n)
{
    if (n >= 8) {
        uint64_t v;
        for (uint32_t i = 0; i + 8 < n; i += 8) {
            memcpy(&v, s + i, 8);
            memcpy(d + i, &v, 8);
        }
        memcpy(&v, s + n - 8, 8);
        memcpy(d + n - 8, &v, 8);
    } else if (n >= 4) {
        uint32_t v, u;
        memcpy(&v, s, 4);
        memcpy(&u, s + n - 4, 4);
        memcpy(d, &v, 4);
        memcpy(d + n - 4, &u, 4);
    } else {
        for (uint32_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

/* The byte-run im2col. */
static void im2col_copy(const bifsmn_op *op, const uint64_t *in_rows, uint64_t *rows)
{
    const unsigned char *src = (const unsigned char *)in_rows;
    unsigned char *dst = (unsigned char *)rows;
    for (int i = 0; i < op->num_copies; i++)
        copy_run(dst + op->copies[i].dst, src + op->copies[i].src, op->copies[i].len);
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

/* Full-precision ops: PReLU as max(0, v) + slope * min(0, v) (PyTorch's exact form), residual add. Each step is
   its own loop over the row so that the compiler can vectorise it. */
static void fp_epilogue(const bifsmn_op *op, const float *res, float *out)
{
    const int N = op->N;
    for (int r = 0; r < op->M; r++) {
        float *o = out + (size_t)r * N;
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

/* The direct kernel's input: the padded input split by height phase (kernels/sconv/sconv.h). Only the interior is
   written; the padding stays 0 from load. */
static void pad_phases(const bifsmn_op *op, const float *in)
{
    const int sh = op->sh;
    for (int iw = 0; iw < op->w_in; iw++) {
        const float *src = in + (size_t)iw * op->h_in;
        float *rows = op->xpad + (size_t)(iw + op->pw) * sh * op->hq;
        for (int p = 0; p < sh; p++) {
            const int ih0 = ((p - op->ph) % sh + sh) % sh; /* the first row with (ih + ph) % sh == p */
            float *dst = rows + (size_t)p * op->hq + (ih0 + op->ph) / sh;
            for (int ih = ih0, j = 0; ih < op->h_in; ih += sh, j++)
                dst[j] = src[ih];
        }
    }
}

bifsmn_sconv_out bifsmn_op_sout(const bifsmn_op *op, float *out)
{
    return (bifsmn_sconv_out){.N = op->N, .OH = op->out_shape[1], .OW = op->out_shape[0], .kh = op->kh,
                              .kw = op->kw, .sh = op->sh, .sw = op->sw, .hq = op->hq, .slope = op->sslope,
                              .out = out};
}

bifsmn_bout bifsmn_op_bout(const bifsmn_op *op, const float *res, float *out)
{
    return (bifsmn_bout){.N = op->N, .scale = op->scale, .shift = op->shift, .slope = op->slopes,
                         .base = op->base, .res = res, .out = out, .group = 1, .stride = 1};
}

/* ---- plan steps ---- */

void bifsmn_step_input(bifsmn_model *m, const bifsmn_step *s)
{
    const float *f = m->input;
    const bifsmn_op *op = s->op;
    if (op) { /* straight into the phase-split padded input of the direct conv, the features' only reader */
        for (int i = 0; i < m->n_mels; i++) {
            const int y = i + op->ph;
            float *dst = op->xpad + (size_t)op->pw * op->sh * op->hq + (size_t)(y % op->sh) * op->hq + y / op->sh;
            const size_t step = (size_t)op->sh * op->hq;
            const float *src = f + (size_t)i * m->n_frames;
            int t = 0;
            for (; t + 4 <= m->n_frames; t += 4, dst += 4 * step) { /* 4 at a time: fewer address updates */
                dst[0] = src[t];
                dst[step] = src[t + 1];
                dst[2 * step] = src[t + 2];
                dst[3 * step] = src[t + 3];
            }
            for (; t < m->n_frames; t++, dst += step)
                *dst = src[t];
        }
        return;
    }
    /* (mel, frame) features -> the (time, height = mel, channels = 1) input tensor. */
    float *x = s->out;
    for (int t = 0; t < m->n_frames; t++)
        for (int i = 0; i < m->n_mels; i++)
            x[(size_t)t * m->n_mels + i] = f[(size_t)i * m->n_frames + t];
}

/* The signs of a full-precision op's output, when a binary op reads them. */
static void fp_finish(const bifsmn_model *m, const bifsmn_step *s)
{
    const bifsmn_op *op = s->op;
    fp_epilogue(op, s->res, s->out);
    if (op->out_bits)
        m->kernels.bitpack(s->out, op->out_bits, op->out_shape[0], op->out_shape[1] * op->out_shape[2]);
}

void bifsmn_step_conv2d(bifsmn_model *m, const bifsmn_step *s)
{
    const bifsmn_op *op = s->op;
    if (op->spanel) { /* PReLU and the sign bits included */
        if (s->in) /* else the input step laid out the features */
            pad_phases(op, s->in);
        m->kernels.sconv1(op->xpad, op->spanel, op->sbias, &s->sout);
        return;
    }
    im2col_float(op, s->in, m->cols);
    m->kernels.sgemm(m->cols, op->wf, op->b, s->out, op->M, op->N, op->K);
    fp_finish(m, s);
}

void bifsmn_step_linear(bifsmn_model *m, const bifsmn_step *s)
{
    const bifsmn_op *op = s->op;
    m->kernels.sgemm(s->in, op->wf, op->b, s->out, op->M, op->N, op->K);
    fp_finish(m, s);
}

void bifsmn_step_dwconv1d(bifsmn_model *m, const bifsmn_step *s)
{
    dwconv_float(s->op, s->in, s->out);
    fp_finish(m, s);
}

void bifsmn_step_bconv2d(bifsmn_model *m, const bifsmn_step *s)
{
    const bifsmn_op *op = s->op;
    if (op->in_bits)
        m->kernels.bitpack(s->in, op->in_bits, op->w_in, op->h_in * op->c_in);
    if (op->copies)
        im2col_copy(op, s->in_bits, op->cols);
    else
        im2col_bits(op, s->in_bits, op->cols);
    m->kernels.bgemm_fused(op->cols, op->panel, op->M, op->K, &s->bout, m->scratch);
}

void bifsmn_step_blinear(bifsmn_model *m, const bifsmn_step *s)
{
    const bifsmn_op *op = s->op;
    if (op->in_bits)
        m->kernels.bitpack(s->in, op->in_bits, op->M, op->K);
    m->kernels.bgemm_fused(s->in_bits, op->panel, op->M, op->K, &s->bout, m->scratch);
}

void bifsmn_step_bdwconv1d(bifsmn_model *m, const bifsmn_step *s)
{
    const bifsmn_op *op = s->op;
    if (op->in_bits)
        m->kernels.bitpack(s->in, op->in_bits, op->M, op->N);
    m->kernels.bdwconv(s->in_bits, op->wneg, op->M, op->taps, op->dilation, op->pad_left, &s->bout, m->scratch);
}

void bifsmn_forward(bifsmn_model *m, const float *features, float *scores)
{
    m->input = features;
    for (int i = 0; i < m->num_steps; i++)
        m->steps[i].run(m, &m->steps[i]);
    memcpy(scores, m->slots[m->ops[m->num_ops - 1].out_slot], sizeof(float) * (size_t)m->num_classes);
}

/* ---- one op alone (bifsmn_op_run): float output, and a binary op's integer dot products on request ---- */

/* The depthwise +-1 products of packed input signs, out-of-range taps contributing 0. */
static void dwconv_ints(const bifsmn_op *op, const uint64_t *x, int32_t *ints)
{
    const int T = op->M, C = op->N, cw = (C + 63) / 64;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            int32_t dot = 0;
            for (int k = 0; k < op->taps; k++) {
                const int ti = t + k * op->dilation - op->pad_left;
                if (ti < 0 || ti >= T)
                    continue;
                const int xneg = (int)(x[(size_t)ti * cw + c / 64] >> (c % 64)) & 1;
                const int wneg = (int)(op->wb[(size_t)k * op->kwords + c / 64] >> (c % 64)) & 1;
                dot += xneg == wneg ? 1 : -1;
            }
            ints[(size_t)t * C + c] = dot;
        }
}

void bifsmn_run_op_internal(bifsmn_model *m, const bifsmn_op *op, const float *in, const float *res, float *out,
                            int32_t *out_int)
{
    const bifsmn_kernels *k = &m->kernels;
    if (!op->binary) {
        if (op->spanel) {
            const bifsmn_sconv_out sout = bifsmn_op_sout(op, out);
            pad_phases(op, in);
            k->sconv1(op->xpad, op->spanel, op->sbias, &sout);
            return;
        }
        if (op->type == BIFSMN_OP_CONV2D) {
            im2col_float(op, in, m->cols);
            k->sgemm(m->cols, op->wf, op->b, out, op->M, op->N, op->K);
        } else if (op->type == BIFSMN_OP_LINEAR) {
            k->sgemm(in, op->wf, op->b, out, op->M, op->N, op->K);
        } else {
            dwconv_float(op, in, out);
        }
        fp_epilogue(op, res, out);
        return;
    }
    const bifsmn_bout bout = bifsmn_op_bout(op, res, out);
    if (op->type == BIFSMN_OP_DWCONV1D) {
        k->bitpack(in, m->bits, op->M, op->N);
        k->bdwconv(m->bits, op->wneg, op->M, op->taps, op->dilation, op->pad_left, &bout, m->scratch);
        if (out_int)
            dwconv_ints(op, m->bits, out_int);
        return;
    }
    uint64_t *rows = m->bits;
    if (op->type == BIFSMN_OP_CONV2D) {
        uint64_t *in_rows = rows + (size_t)op->M * op->kwords;
        k->bitpack(in, in_rows, op->w_in, op->h_in * op->c_in);
        im2col_bits(op, in_rows, rows);
    } else {
        k->bitpack(in, rows, op->M, op->K);
    }
    k->bgemm_fused(rows, op->panel, op->M, op->K, &bout, m->scratch);
    if (out_int) {
        /* the integers of the weights as stored (the panel may hold some rows negated) */
        k->bgemm(rows, op->wb, out_int, op->M, op->N, op->K);
        if (op->corr)
            for (size_t i = 0, n = (size_t)op->M * op->N; i < n; i++)
                out_int[i] -= op->corr[i];
    }
}
