/* The forward plan, built once at load: what every op's output is used for, the layouts its kernels read, and
   the list of steps bifsmn_forward calls one after the other.

   - Uses. An op's output is read as floats (by a full-precision op, as a residual, as the scores) and/or as
     packed signs (by a binary op). Binary ops write only what is read; a full-precision op whose output a binary
     op reads packs it right after its epilogue. A binary op's input therefore arrives packed, except when its
     producer is the input transposition or a layout that is not the packed-rows one (a binary flatten).
   - Threshold form. A binary conv2d/linear output that is only binarised, without a residual, needs no floats:
     its sign bits come from integer thresholds on the popcount (bifsmn_bout_thresholds).
   - Layouts. Weights go into the chosen kernels' panel; outputs with a negative scale get their weights and
     scale negated (the same products, and thresholds that are all of the form "dot < T"); the zero-padding
     correction of a binary conv2d is folded into its base (K minus the correction) once. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The last op before `j` that writes `slot`; -1 for none (slot 0 then holds the model input). */
static int producer(const bifsmn_model *m, int j, int slot)
{
    for (int i = j - 1; i >= 0; i--)
        if (m->ops[i].out_slot == slot)
            return i;
    return -1;
}

/* A binary op can read its producer's packed rows (one per time step) unless it flattens a tensor whose rows do
   not end on a word boundary. */
static int reads_packed_rows(const bifsmn_op *op)
{
    return !op->flatten || op->in_shape[0] == 1 || (op->in_shape[1] * op->in_shape[2]) % 64 == 0;
}

static size_t row_words(const bifsmn_op *op) { return ((size_t)op->out_shape[1] * op->out_shape[2] + 63) / 64; }

static int floor_half(int32_t x) { return x >= 0 ? x / 2 : -((1 - x) / 2); }

/* Padded copies of the transform and the kernels' weight layout, with the outputs of negative scale negated. */
static int lay_out_binary(const bifsmn_model *m, bifsmn_op *op)
{
    const int N = op->N, padded = (N + 15) / 16 * 16;
    if (!(op->scale = bifsmn_alloc(4 * (size_t)padded)) || !(op->shift = bifsmn_alloc(4 * (size_t)padded)) ||
        (op->act == BIFSMN_ACT_PRELU && !(op->slopes = bifsmn_alloc(4 * (size_t)padded))))
        return BIFSMN_ERR_NOMEM;
    const int negate_allowed = op->type != BIFSMN_OP_DWCONV1D; /* dwconv runs the float form only */
    for (int n = 0; n < padded; n++) {
        const int negate = n < N && negate_allowed && op->a[n] < 0.0f;
        op->scale[n] = n < N ? (negate ? -op->a[n] : op->a[n]) : 0.0f;
        op->shift[n] = n < N ? op->b[n] : 0.0f;
        if (op->slopes)
            op->slopes[n] = n < N ? op->slope[n] : 0.0f;
    }
    if (op->type == BIFSMN_OP_DWCONV1D) {
        const size_t stride = (size_t)op->kwords * 64;
        if (!(op->wneg = bifsmn_alloc((size_t)op->taps * stride)))
            return BIFSMN_ERR_NOMEM;
        for (int k = 0; k < op->taps; k++)
            for (size_t c = 0; c < stride; c++)
                op->wneg[(size_t)k * stride + c] =
                    c < (size_t)N && (op->wb[(size_t)k * op->kwords + c / 64] >> (c % 64)) & 1 ? 0xff : 0;
        return BIFSMN_OK;
    }
    const size_t kw = (size_t)op->kwords;
    uint64_t *w = bifsmn_alloc(8 * (size_t)N * kw);
    op->panel = bifsmn_alloc(8 * m->kernels.bpanel_words(N, op->K));
    if (!w || !op->panel) {
        bifsmn_dealloc(w);
        return BIFSMN_ERR_NOMEM;
    }
    const uint64_t last = op->K % 64 ? (UINT64_C(1) << (op->K % 64)) - 1 : ~UINT64_C(0);
    for (int n = 0; n < N; n++)
        for (size_t i = 0; i < kw; i++) {
            const uint64_t v = op->wb[(size_t)n * kw + i];
            w[(size_t)n * kw + i] = op->a[n] < 0.0f ? ~v & (i + 1 == kw ? last : ~UINT64_C(0)) : v;
        }
    m->kernels.bpanel(w, N, op->K, op->panel);
    bifsmn_dealloc(w);
    if (op->type == BIFSMN_OP_CONV2D) {
        if (!(op->base = bifsmn_alloc(4 * (size_t)op->M * N)))
            return BIFSMN_ERR_NOMEM;
        for (int p = 0; p < op->M; p++)
            for (int n = 0; n < N; n++) {
                const int32_t corr = op->corr[(size_t)p * N + n];
                op->base[(size_t)p * N + n] = op->K - (op->a[n] < 0.0f ? -corr : corr);
            }
    }
    return BIFSMN_OK;
}

/* The direct kernel's layouts of a one-channel full-precision conv2d: padded weights, bias and slopes, and the
   phase-split padded input (zero, then only its interior is written). */
#define MAX_DIRECT_INPUT (1u << 22) /* floats of that padded input; larger (absurd padding) keep the im2col path */

static size_t direct_input_floats(const bifsmn_op *op)
{
    const uint64_t hq = ((uint64_t)op->h_in + 2u * op->ph + op->sh - 1) / op->sh + 16;
    const uint64_t n = ((uint64_t)op->w_in + 2u * op->pw) * op->sh * hq;
    return n <= MAX_DIRECT_INPUT ? (size_t)n : 0;
}

static int lay_out_direct(bifsmn_op *op)
{
    const int np = (op->N + 15) / 16 * 16, taps = op->kw * op->kh;
    op->hq = (op->h_in + 2 * op->ph + op->sh - 1) / op->sh + 16;
    const size_t xs = direct_input_floats(op);
    if (!(op->spanel = bifsmn_alloc(4 * (size_t)taps * np)) || !(op->sbias = bifsmn_alloc(4 * (size_t)np)) ||
        (op->act == BIFSMN_ACT_PRELU && !(op->sslope = bifsmn_alloc(4 * (size_t)np))) ||
        !(op->xpad = bifsmn_alloc(4 * xs)))
        return BIFSMN_ERR_NOMEM;
    memset(op->xpad, 0, 4 * xs);
    for (int n = 0; n < np; n++) {
        for (int t = 0; t < taps; t++)
            op->spanel[(size_t)t * np + n] = n < op->N ? op->wf[(size_t)n * op->K + t] : 0.0f;
        op->sbias[n] = n < op->N ? op->b[n] : 0.0f;
        if (op->sslope)
            op->sslope[n] = n < op->N ? op->slope[n] : 0.0f;
    }
    return BIFSMN_OK;
}

/* Popcount thresholds of a binary conv2d/linear: sign bit = popcount > thr. 1 when built, 0 when the outputs
   are not threshold functions (the float form is used), -1 when out of memory. */
static int thresholds(bifsmn_op *op)
{
    const bifsmn_bout o = bifsmn_op_bout(op, NULL, NULL);
    const int N = op->N, rows = op->type == BIFSMN_OP_CONV2D ? op->M : 1;
    int32_t *t = bifsmn_alloc(4 * (size_t)N);
    if (!t)
        return -1;
    if (bifsmn_bout_thresholds(&o, op->K, t) != 0) {
        bifsmn_dealloc(t);
        return 0;
    }
    /* dot = base - 2 popcount < T  <=>  popcount > floor((base - T) / 2) */
    if ((op->thr = bifsmn_alloc(4 * (size_t)rows * N)))
        for (int r = 0; r < rows; r++)
            for (int n = 0; n < N; n++) {
                const int32_t base = op->base ? op->base[(size_t)r * N + n] : op->K;
                op->thr[(size_t)r * N + n] = floor_half(base - t[n]);
            }
    bifsmn_dealloc(t);
    return op->thr ? 1 : -1;
}

/* The packed input buffer of a binary op that packs its own input. */
static size_t input_words(const bifsmn_op *op)
{
    if (op->type == BIFSMN_OP_CONV2D)
        return (size_t)op->w_in * (((size_t)op->h_in * op->c_in + 63) / 64);
    return (size_t)op->M * op->kwords;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static const char *kind_of(const bifsmn_op *op)
{
    static const char *const names[2][4] = {{"", "conv2d", "linear", "dwconv1d"}, {"", "bconv2d", "blinear", "bdwconv1d"}};
    return names[op->binary][op->type];
}

static bifsmn_step_fn step_of(const bifsmn_op *op)
{
    static const bifsmn_step_fn fns[2][4] = {
        {NULL, bifsmn_step_conv2d, bifsmn_step_linear, bifsmn_step_dwconv1d},
        {NULL, bifsmn_step_bconv2d, bifsmn_step_blinear, bifsmn_step_bdwconv1d}};
    return fns[op->binary][op->type];
}

int bifsmn_plan_build(bifsmn_model *m)
{
    const int n = m->num_ops;
    unsigned char *floats = calloc((size_t)n, 1), *packed = calloc((size_t)n, 1);
    int rc = BIFSMN_ERR_NOMEM;
    if (!floats || !packed || !(m->steps = calloc((size_t)n + 1, sizeof *m->steps)))
        goto done;
    /* who reads what */
    floats[n - 1] = 1;
    for (int j = 0; j < n; j++) {
        const bifsmn_op *op = &m->ops[j];
        int p = producer(m, j, op->in_slot);
        if (p >= 0 && op->binary && reads_packed_rows(op))
            packed[p] = 1;
        else if (p >= 0)
            floats[p] = 1;
        if (op->res_slot != BIFSMN_NO_SLOT && (p = producer(m, j, op->res_slot)) >= 0)
            floats[p] = 1;
    }
    size_t scratch = 64;
    for (int i = 0; i < n; i++) {
        bifsmn_op *op = &m->ops[i];
        if (packed[i] && !(op->out_bits = bifsmn_alloc(8 * (size_t)op->out_shape[0] * row_words(op))))
            goto done;
        if (op->out_bits)
            memset(op->out_bits, 0, 8 * (size_t)op->out_shape[0] * row_words(op));
        if (!op->binary) {
            if (op->type == BIFSMN_OP_CONV2D && op->c_in == 1 && op->res_slot == BIFSMN_NO_SLOT &&
                direct_input_floats(op) && lay_out_direct(op) != BIFSMN_OK)
                goto done;
            continue;
        }
        if (lay_out_binary(m, op) != BIFSMN_OK)
            goto done;
        scratch = max_sz(scratch, op->type == BIFSMN_OP_DWCONV1D ? BIFSMN_BDWCONV_SCRATCH(op->M, op->N, op->taps, op->dilation)
                                                                  : BIFSMN_BGEMM_SCRATCH(op->K));
        const int p = producer(m, i, op->in_slot);
        if ((p < 0 || !m->ops[p].out_bits || !reads_packed_rows(op)) &&
            !(op->in_bits = bifsmn_alloc(8 * input_words(op))))
            goto done;
        if (op->type == BIFSMN_OP_CONV2D) {
            if (!(op->cols = bifsmn_alloc(8 * (size_t)op->M * op->kwords)))
                goto done;
            memset(op->cols, 0, 8 * (size_t)op->M * op->kwords);
            if (op->c_in % 8 == 0) {
                op->num_copies = bifsmn_im2col_copies(op, NULL);
                if (!(op->copies = malloc(sizeof(bifsmn_copy) * (size_t)(op->num_copies ? op->num_copies : 1))))
                    goto done;
                bifsmn_im2col_copies(op, op->copies);
            }
        }
        if (packed[i] && !floats[i] && op->res_slot == BIFSMN_NO_SLOT && op->type != BIFSMN_OP_DWCONV1D &&
            thresholds(op) < 0)
            goto done;
    }
    if (!(m->scratch = bifsmn_alloc(scratch)))
        goto done;

    m->steps[0] = (bifsmn_step){.run = bifsmn_step_input, .kind = "input", .out = m->slots[0]};
    for (int i = 0; i < n; i++) {
        const bifsmn_op *op = &m->ops[i];
        const int p = producer(m, i, op->in_slot);
        const float *res = op->res_slot == BIFSMN_NO_SLOT ? NULL : m->slots[op->res_slot];
        bifsmn_step *s = &m->steps[i + 1];
        *s = (bifsmn_step){.run = step_of(op), .kind = kind_of(op), .op = op, .in = m->slots[op->in_slot],
                           .res = res, .out = m->slots[op->out_slot]};
        if (op->spanel) {
            s->sout = bifsmn_op_sout(op, floats[i] ? m->slots[op->out_slot] : NULL);
            s->sout.bits = op->out_bits;
            s->sout.stride = (int)row_words(op);
        }
        if (!op->binary)
            continue;
        s->in_bits = op->in_bits ? op->in_bits : m->ops[p].out_bits;
        s->bout = bifsmn_op_bout(op, res, floats[i] ? m->slots[op->out_slot] : NULL);
        if (op->thr) {
            s->bout.thr = op->thr;
            s->bout.thr_stride = op->type == BIFSMN_OP_CONV2D ? op->N : 0;
        }
        if (op->out_bits) {
            s->bout.bits = op->out_bits;
            s->bout.group = op->out_shape[1];
            s->bout.stride = (int)row_words(op);
        }
    }
    /* The features' only reader a direct conv: the input step writes its padded input, the conv reads no slot. */
    int readers = 0, reader = -1;
    for (int j = 0; j < n; j++) {
        const bifsmn_op *op = &m->ops[j];
        const int reads = (op->in_slot == 0) + (op->res_slot == 0);
        if (reads && producer(m, j, 0) < 0)
            readers += reads, reader = j;
    }
    if (readers == 1 && m->ops[reader].spanel && m->ops[reader].in_slot == 0) {
        m->steps[0].op = &m->ops[reader];
        m->steps[reader + 1].in = NULL;
    }
    m->num_steps = n + 1;
    rc = BIFSMN_OK;
done:
    free(floats);
    free(packed);
    return rc;
}

void bifsmn_plan_free(bifsmn_model *m)
{
    for (int i = 0; m->ops && i < m->num_ops; i++) {
        bifsmn_op *op = &m->ops[i];
        bifsmn_dealloc(op->panel);
        bifsmn_dealloc(op->scale);
        bifsmn_dealloc(op->shift);
        bifsmn_dealloc(op->slopes);
        bifsmn_dealloc(op->base);
        bifsmn_dealloc(op->wneg);
        bifsmn_dealloc(op->out_bits);
        bifsmn_dealloc(op->in_bits);
        bifsmn_dealloc(op->cols);
        bifsmn_dealloc(op->thr);
        free(op->copies);
        bifsmn_dealloc(op->xpad);
        bifsmn_dealloc(op->spanel);
        bifsmn_dealloc(op->sbias);
        bifsmn_dealloc(op->sslope);
    }
    bifsmn_dealloc(m->scratch);
    free(m->steps);
}

/* ---- profiling: the plan's steps one at a time ---- */

int bifsmn_plan_length(const bifsmn_model *m) { return m ? m->num_steps : BIFSMN_ERR_ARGUMENT; }

const char *bifsmn_plan_step_kind(const bifsmn_model *m, int step)
{
    return m && step >= 0 && step < m->num_steps ? m->steps[step].kind : NULL;
}

int bifsmn_plan_run_step(bifsmn_model *m, int step)
{
    if (!m || step < 0 || step >= m->num_steps)
        return BIFSMN_ERR_ARGUMENT;
    if (step == 0)
        m->input = m->features;
    m->steps[step].run(m, &m->steps[step]);
    return BIFSMN_OK;
}
