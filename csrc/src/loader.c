/* .bfsm parser (csrc/FORMAT.md). Written to be fuzzed: every read is bounds-checked against the payload or
   the op body it belongs to, every count is range-checked before it sizes an allocation (and bounded by the
   bytes that would have to follow), every product is computed in 64 bits from bounded factors, and the
   shapes flowing between ops are checked symbolically before any buffer is sized from them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "internal.h"

#define HEADER_SIZE 16
#define MAX_DIM 65535
#define MAX_ELEMS (1u << 22)           /* elements of any tensor, weight matrix or im2col matrix */
#define MAX_BUFFER_BYTES (512u << 20)  /* slots + scratch */
#define MAX_OPS 4096
#define MAX_CLASSES 65535
#define MAX_STRING 1024
#define MAX_BLOCKS 4096
#define MAX_FILE_BYTES (1u << 30)
#define OP_HEADER_BYTES 12

typedef struct {
    const uint8_t *p;
    size_t n, pos;
} cursor;

typedef struct {
    char *msg;
    size_t msg_len;
} errsink;

static int fail(errsink *e, int code, const char *fmt, ...)
{
    if (e->msg && e->msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, e->msg_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int take(cursor *c, size_t len, const uint8_t **out)
{
    if (len > c->n - c->pos)
        return 0;
    *out = c->p + c->pos;
    c->pos += len;
    return 1;
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t le64(const uint8_t *b) { return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32; }

static float f32_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Reads n u32 fields; on a short cursor reports which record was cut. */
static int read_u32s(errsink *e, cursor *c, uint32_t *v, int n, const char *what)
{
    const uint8_t *b;
    if (!take(c, 4 * (size_t)n, &b))
        return fail(e, BIFSMN_ERR_TRUNCATED, "the file ends inside %s", what);
    for (int i = 0; i < n; i++)
        v[i] = le32(b + 4 * i);
    return BIFSMN_OK;
}

static int read_string(errsink *e, cursor *c, char **out, const char *what)
{
    const uint8_t *b;
    if (!take(c, 2, &b))
        return fail(e, BIFSMN_ERR_TRUNCATED, "the file ends inside %s", what);
    const size_t len = (size_t)b[0] | (size_t)b[1] << 8;
    if (len > MAX_STRING)
        return fail(e, BIFSMN_ERR_FORMAT, "%s is %zu bytes long (max %d)", what, len, MAX_STRING);
    if (!take(c, len, &b))
        return fail(e, BIFSMN_ERR_TRUNCATED, "the file ends inside %s", what);
    if (memchr(b, 0, len))
        return fail(e, BIFSMN_ERR_FORMAT, "%s contains a NUL byte", what);
    *out = malloc(len + 1);
    if (!*out)
        return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    memcpy(*out, b, len);
    (*out)[len] = '\0';
    return BIFSMN_OK;
}

float bifsmn_half_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) { /* zero or subnormal: man x 2^-24, exact in binary32 */
        const float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    /* normal: rebias the exponent (15 -> 127); infinity and NaN keep the all-ones exponent */
    return f32_of(sign | (exp == 0x1f ? 0xffu << 23 : (exp + 112u) << 23) | man << 13);
}

/* Copies n values of one array into a fresh aligned float buffer: little-endian float32 (BIFSMN_STORE_F32), binary16
   (F16), or, for a weight matrix of `rows` rows, a float32 scale per row then int8 values, each scale * value (I8). */
static int read_floats(errsink *e, cursor *c, size_t n, int storage, size_t rows, float **out, int op_index,
                       const char *what)
{
    const size_t bytes = storage == BIFSMN_STORE_F32 ? 4 * n : storage == BIFSMN_STORE_F16 ? 2 * n : 4 * rows + n;
    const uint8_t *b;
    if (!take(c, bytes, &b))
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: body too short for its %s", op_index, what);
    *out = bifsmn_alloc(4 * n);
    if (!*out)
        return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    if (storage == BIFSMN_STORE_F32) {
        for (size_t i = 0; i < n; i++)
            (*out)[i] = f32_of(le32(b + 4 * i));
    } else if (storage == BIFSMN_STORE_F16) {
        for (size_t i = 0; i < n; i++)
            (*out)[i] = bifsmn_half_to_float((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
    } else {
        const size_t cols = n / rows;
        for (size_t r = 0; r < rows; r++) {
            const float scale = f32_of(le32(b + 4 * r));
            for (size_t j = 0; j < cols; j++)
                (*out)[r * cols + j] = scale * (float)(int8_t)b[4 * rows + r * cols + j];
        }
    }
    return BIFSMN_OK;
}

/* rows x words packed sign rows of `bits` valid bits each; pad bits must be 0 (the bgemm contract). */
static int read_bits(errsink *e, cursor *c, size_t rows, size_t words, size_t bits, uint64_t **out, int op_index)
{
    const uint8_t *b;
    if (!take(c, 8 * rows * words, &b))
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: body too short for its packed weights", op_index);
    *out = bifsmn_alloc(8 * rows * words);
    if (!*out)
        return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    const uint64_t pad_mask = bits % 64 ? ~((UINT64_C(1) << (bits % 64)) - 1) : 0;
    for (size_t r = 0; r < rows; r++) {
        for (size_t w = 0; w < words; w++)
            (*out)[r * words + w] = le64(b + 8 * (r * words + w));
        if ((*out)[r * words + words - 1] & pad_mask)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: packed weight row %zu has non-zero pad bits", op_index, r);
    }
    return BIFSMN_OK;
}

typedef struct {
    int defined;
    int shape[3];
} slot_state;

static size_t elems3(const int s[3]) { return (size_t)s[0] * (size_t)s[1] * (size_t)s[2]; }

static int check_elems(errsink *e, int op_index, uint64_t n, const char *what)
{
    if (n == 0 || n > MAX_ELEMS)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: %s has %llu elements (1 to %u allowed)", op_index, what,
                    (unsigned long long)n, MAX_ELEMS);
    return BIFSMN_OK;
}

/* Geometry of one op from its dims; fills op->M/K/N/out_shape and checks it against the input slot shape. */
static int op_geometry(errsink *e, bifsmn_op *op, int i, const uint32_t *d, const int in[3])
{
    int rc;
    if (op->type == BIFSMN_OP_CONV2D) {
        for (int j = 0; j < 10; j++)
            if (d[j] > MAX_DIM || (j < 8 && d[j] == 0))
                return fail(e, BIFSMN_ERR_FORMAT, "op %d: conv2d dimension %d is %u", i, j, d[j]);
        op->c_in = (int)d[0], op->h_in = (int)d[1], op->w_in = (int)d[2], op->N = (int)d[3];
        op->kh = (int)d[4], op->kw = (int)d[5], op->sh = (int)d[6], op->sw = (int)d[7];
        op->ph = (int)d[8], op->pw = (int)d[9];
        if (in[0] != op->w_in || in[1] != op->h_in || in[2] != op->c_in)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: conv2d expects input (%d, %d, %d), slot %d holds (%d, %d, %d)",
                        i, op->w_in, op->h_in, op->c_in, op->in_slot, in[0], in[1], in[2]);
        const long hp = (long)op->h_in + 2L * op->ph, wp = (long)op->w_in + 2L * op->pw;
        if (op->kh > hp || op->kw > wp)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: conv2d kernel %dx%d larger than the padded input", i, op->kh,
                        op->kw);
        op->out_shape[0] = (int)((wp - op->kw) / op->sw + 1);
        op->out_shape[1] = (int)((hp - op->kh) / op->sh + 1);
        op->out_shape[2] = op->N;
        const uint64_t positions = (uint64_t)op->out_shape[0] * (uint64_t)op->out_shape[1];
        if ((rc = check_elems(e, i, positions, "the conv2d output plane")) != BIFSMN_OK)
            return rc;
        op->M = (int)positions;
        const uint64_t K = (uint64_t)op->kh * op->kw * op->c_in;
        if ((rc = check_elems(e, i, K, "the conv2d receptive field")) != BIFSMN_OK)
            return rc;
        op->K = (int)K;
    } else if (op->type == BIFSMN_OP_LINEAR) {
        if (d[0] == 0 || d[0] > MAX_ELEMS || d[1] == 0 || d[1] > MAX_DIM)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: linear dimensions %u -> %u out of range", i, d[0], d[1]);
        op->K = (int)d[0], op->N = (int)d[1];
        const uint64_t per_row = op->flatten ? elems3(in) : (uint64_t)in[1] * in[2];
        if (per_row != (uint64_t)op->K)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: linear expects %d inputs per row, slot %d holds (%d, %d, %d)", i,
                        op->K, op->in_slot, in[0], in[1], in[2]);
        op->M = op->flatten ? 1 : in[0];
        op->out_shape[0] = op->M, op->out_shape[1] = 1, op->out_shape[2] = op->N;
    } else {
        for (int j = 0; j < 4; j++)
            if (d[j] > MAX_DIM || (j < 3 && d[j] == 0))
                return fail(e, BIFSMN_ERR_FORMAT, "op %d: dwconv1d dimension %d is %u", i, j, d[j]);
        op->N = (int)d[0], op->taps = (int)d[1], op->dilation = (int)d[2], op->pad_left = (int)d[3];
        op->K = op->taps;
        if (in[1] != 1 || in[2] != op->N)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: dwconv1d expects (T, 1, %d), slot %d holds (%d, %d, %d)", i,
                        op->N, op->in_slot, in[0], in[1], in[2]);
        if ((uint64_t)(op->taps - 1) * op->dilation > MAX_DIM ||
            (uint64_t)op->pad_left > (uint64_t)(op->taps - 1) * op->dilation)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: dwconv1d padding %d exceeds its span (%d taps, dilation %d)", i,
                        op->pad_left, op->taps, op->dilation);
        op->M = in[0];
        memcpy(op->out_shape, in, sizeof op->out_shape);
    }
    if ((rc = check_elems(e, i, (uint64_t)op->M * op->N, "the output")) != BIFSMN_OK ||
        (rc = check_elems(e, i, (uint64_t)op->N * op->K, "the weight matrix")) != BIFSMN_OK)
        return rc;
    if (op->type == BIFSMN_OP_CONV2D)
        return check_elems(e, i, (uint64_t)op->M * op->K, "the im2col matrix");
    return BIFSMN_OK;
}

/* Weights, affine and slopes of one op, stored as `ws` (the weights of a full-precision op) and `vs` (the per-output
   vectors); `body` must be consumed exactly. */
static int op_params(errsink *e, bifsmn_op *op, int i, cursor *body, int ws, int vs)
{
    int rc;
    const size_t N = (size_t)op->N;
    if (op->binary) {
        if (op->type == BIFSMN_OP_DWCONV1D) {
            op->kwords = (op->N + 63) / 64;
            rc = read_bits(e, body, (size_t)op->taps, (size_t)op->kwords, N, &op->wb, i);
        } else {
            op->kwords = (op->K + 63) / 64;
            rc = read_bits(e, body, N, (size_t)op->kwords, (size_t)op->K, &op->wb, i);
        }
        if (rc != BIFSMN_OK || (rc = read_floats(e, body, N, vs, 1, &op->a, i, "scales")) != BIFSMN_OK)
            return rc;
    } else if ((rc = read_floats(e, body, N * (size_t)op->K, ws, N, &op->wf, i, "weights")) != BIFSMN_OK) {
        return rc;
    }
    if ((rc = read_floats(e, body, N, vs, 1, &op->b, i, op->binary ? "shifts" : "biases")) != BIFSMN_OK)
        return rc;
    if (op->act == BIFSMN_ACT_PRELU &&
        (rc = read_floats(e, body, N, vs, 1, &op->slope, i, "PReLU slopes")) != BIFSMN_OK)
        return rc;
    if (body->pos != body->n)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: body has %zu bytes left over after its fields", i,
                    body->n - body->pos);
    return BIFSMN_OK;
}

static int parse_op(errsink *e, bifsmn_model *m, cursor *c, int i, slot_state *slots, unsigned version)
{
    bifsmn_op *op = &m->ops[i];
    const uint8_t *h;
    if (!take(c, OP_HEADER_BYTES, &h))
        return fail(e, BIFSMN_ERR_TRUNCATED, "the file ends inside the header of op %d", i);
    const int type = h[0], flags = h[1];
    op->type = type;
    op->binary = flags & 1;
    op->flatten = (flags >> 1) & 1;
    op->in_slot = h[2], op->out_slot = h[3], op->res_slot = h[4], op->act = h[5];
    const uint32_t body_size = le32(h + 8);
    static const int ndims[] = {0, 10, 2, 4};
    if (type < BIFSMN_OP_CONV2D || type > BIFSMN_OP_DWCONV1D)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: unknown type %d", i, type);
    if ((flags & ~3) || (op->flatten && type != BIFSMN_OP_LINEAR) || (version < 2 && (h[6] || h[7])))
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: invalid flags 0x%02x or non-zero reserved bytes", i, flags);
    const int ws = h[6], vs = h[7]; /* version 2: the storage of the weights and of the per-output vectors */
    if (ws > BIFSMN_STORE_I8)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: unknown storage %d of its weights", i, ws);
    if (vs > BIFSMN_STORE_F16)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: unknown storage %d of its vectors", i, vs);
    if (op->binary && ws != BIFSMN_STORE_F32)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: storage %d for weights, but a binary op stores its weights as bits",
                    i, ws);
    if (op->act != BIFSMN_ACT_NONE && op->act != BIFSMN_ACT_PRELU)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: unknown activation %d", i, op->act);
    if (op->binary && !m->binary_model)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: binary layer in a full-precision model", i);
    if (op->in_slot >= m->num_slots || op->out_slot >= m->num_slots || op->in_slot == op->out_slot ||
        (op->res_slot != BIFSMN_NO_SLOT && (op->res_slot >= m->num_slots || op->res_slot == op->out_slot)))
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: invalid slots in %d, out %d, residual %d (%d slots)", i, op->in_slot,
                    op->out_slot, op->res_slot, m->num_slots);
    if (!slots[op->in_slot].defined)
        return fail(e, BIFSMN_ERR_FORMAT, "op %d: reads slot %d before anything writes it", i, op->in_slot);
    if (body_size > c->n - c->pos)
        return fail(e, BIFSMN_ERR_TRUNCATED, "op %d: body of %u bytes runs past the end of the file", i, body_size);
    cursor body = {c->p + c->pos, body_size, 0};
    c->pos += body_size;

    uint32_t d[10];
    int rc;
    if ((rc = read_u32s(e, &body, d, ndims[type], "an op's dimensions")) != BIFSMN_OK)
        return rc == BIFSMN_ERR_TRUNCATED ? fail(e, BIFSMN_ERR_FORMAT, "op %d: body too short for its dimensions", i)
                                          : rc;
    memcpy(op->in_shape, slots[op->in_slot].shape, sizeof op->in_shape);
    if ((rc = op_geometry(e, op, i, d, op->in_shape)) != BIFSMN_OK)
        return rc;
    if (op->res_slot != BIFSMN_NO_SLOT) {
        const slot_state *r = &slots[op->res_slot];
        if (!r->defined || memcmp(r->shape, op->out_shape, sizeof r->shape) != 0)
            return fail(e, BIFSMN_ERR_FORMAT, "op %d: residual slot %d does not hold its output shape (%d, %d, %d)", i,
                        op->res_slot, op->out_shape[0], op->out_shape[1], op->out_shape[2]);
    }
    if ((rc = op_params(e, op, i, &body, ws, vs)) != BIFSMN_OK)
        return rc;
    slots[op->out_slot].defined = 1;
    memcpy(slots[op->out_slot].shape, op->out_shape, sizeof op->out_shape);
    return BIFSMN_OK;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* Slots and the scratch of the standalone op runs, each sized for the largest op that uses it. */
static int allocate_buffers(errsink *e, bifsmn_model *m)
{
    size_t slot_elems[BIFSMN_MAX_SLOTS] = {0};
    size_t cols = 1, bits = 1;
    slot_elems[0] = (size_t)m->n_mels * m->n_frames;
    for (int i = 0; i < m->num_ops; i++) {
        const bifsmn_op *op = &m->ops[i];
        slot_elems[op->out_slot] = max_sz(slot_elems[op->out_slot], elems3(op->out_shape));
        if (op->type == BIFSMN_OP_CONV2D && !op->binary)
            cols = max_sz(cols, (size_t)op->M * op->K);
        if (op->binary) {
            size_t words = (size_t)op->M * op->kwords; /* the packed input; dwconv: kwords per time step */
            if (op->type == BIFSMN_OP_CONV2D)
                words += (size_t)op->w_in * (((size_t)op->h_in * op->c_in + 63) / 64);
            bits = max_sz(bits, words);
        }
    }
    uint64_t total = 4 * ((uint64_t)cols + slot_elems[0]) + 8 * (uint64_t)bits;
    for (int i = 0; i < m->num_ops; i++)
        if (m->ops[i].binary && m->ops[i].type == BIFSMN_OP_CONV2D)
            total += 4 * (uint64_t)m->ops[i].M * m->ops[i].N; /* conv corrections */
    for (int s = 0; s < m->num_slots; s++)
        total += 4 * (uint64_t)slot_elems[s];
    if (total > MAX_BUFFER_BYTES)
        return fail(e, BIFSMN_ERR_FORMAT, "the model needs %llu MiB of activation buffers (max %u)",
                    (unsigned long long)(total >> 20), MAX_BUFFER_BYTES >> 20);
    for (int s = 0; s < m->num_slots; s++)
        if (!(m->slots[s] = bifsmn_alloc(4 * max_sz(slot_elems[s], 1))))
            return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    m->cols = bifsmn_alloc(4 * cols);
    m->bits = bifsmn_alloc(8 * bits);
    m->features = bifsmn_alloc(4 * slot_elems[0]);
    if (!m->cols || !m->bits || !m->features)
        return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    memset(m->features, 0, 4 * slot_elems[0]);
    for (int i = 0; i < m->num_ops; i++) {
        bifsmn_op *op = &m->ops[i];
        if (op->type == BIFSMN_OP_CONV2D && op->binary)
            if (!(op->corr = bifsmn_alloc(4 * (size_t)op->M * op->N)) || bifsmn_binary_conv_correction(op) != 0)
                return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    }
    return BIFSMN_OK;
}

/* Fixed model header fields, in file order. */
enum { H_KIND, H_CLASSES, H_OPS, H_SLOTS, H_RATE, H_SAMPLES, H_NFFT, H_WIN, H_HOP, H_MELS, H_FRAMES, H_FMIN,
       H_FMAX, H_FLAGS, H_TOP_DB, H_PCM_SCALE, H_COUNT };

static int parse_payload(errsink *e, bifsmn_model *m, cursor *c, bifsmn_impl kernel, unsigned version)
{
    uint32_t h[H_COUNT];
    int rc;
    /* First: the front end's plan is laid out for the kernels' vector width. */
    if ((rc = bifsmn_kernels_select(kernel, &m->kernels, e->msg, e->msg_len)) != BIFSMN_OK)
        return rc;
    if ((rc = read_u32s(e, c, h, H_COUNT, "the model header")) != BIFSMN_OK)
        return rc;
    if (h[H_KIND] > 1)
        return fail(e, BIFSMN_ERR_FORMAT, "unknown model kind %u (0 binary, 1 full precision)", h[H_KIND]);
    m->binary_model = h[H_KIND] == 0;
    /* Every class name and op needs bytes in the file: bounding counts by the payload size keeps a forged
       count from sizing a huge allocation. */
    if (h[H_CLASSES] == 0 || h[H_CLASSES] > MAX_CLASSES || h[H_CLASSES] > (c->n - c->pos) / 2)
        return fail(e, BIFSMN_ERR_FORMAT, "class count %u out of range", h[H_CLASSES]);
    if (h[H_OPS] == 0 || h[H_OPS] > MAX_OPS || h[H_OPS] > (c->n - c->pos) / OP_HEADER_BYTES)
        return fail(e, BIFSMN_ERR_FORMAT, "op count %u out of range", h[H_OPS]);
    if (h[H_SLOTS] < 2 || h[H_SLOTS] > BIFSMN_MAX_SLOTS)
        return fail(e, BIFSMN_ERR_FORMAT, "slot count %u out of range (2 to %d)", h[H_SLOTS], BIFSMN_MAX_SLOTS);
    if (h[H_FLAGS] & ~7u)
        return fail(e, BIFSMN_ERR_FORMAT, "unknown front-end flags 0x%x", h[H_FLAGS]);
    m->num_classes = (int)h[H_CLASSES];
    m->num_slots = (int)h[H_SLOTS];
    const bifsmn_frontend_config fc = {
        .sample_rate = h[H_RATE] > 384000 ? 0 : (int)h[H_RATE],
        .num_samples = h[H_SAMPLES] > (1u << 30) ? 0 : (int)h[H_SAMPLES],
        .n_fft = h[H_NFFT] > (1u << 30) ? 0 : (int)h[H_NFFT],
        .win_length = h[H_WIN] > (1u << 30) ? 0 : (int)h[H_WIN],
        .hop_length = h[H_HOP] > (1u << 30) ? 0 : (int)h[H_HOP],
        .n_mels = h[H_MELS] > (1u << 30) ? 0 : (int)h[H_MELS],
        .f_min = f32_of(h[H_FMIN]),
        .f_max = f32_of(h[H_FMAX]),
        .normalized = (int)(h[H_FLAGS] & 1),
        .to_db = (int)((h[H_FLAGS] >> 1) & 1),
        .top_db = (h[H_FLAGS] >> 2) & 1 ? f32_of(h[H_TOP_DB]) : 0.0f,
        .pcm_scale = f32_of(h[H_PCM_SCALE]),
    };
    rc = bifsmn_frontend_create_with(&fc, &m->kernels, &m->frontend);
    if (rc == BIFSMN_ERR_NOMEM)
        return fail(e, rc, "out of memory");
    if (rc != BIFSMN_OK || ((h[H_FLAGS] >> 2) & 1 && !(fc.top_db > 0.0f)))
        return fail(e, BIFSMN_ERR_FORMAT,
                    "front-end settings out of range (rate %u, samples %u, n_fft %u, window %u, hop %u, mels %u, "
                    "fmin %g, fmax %g, top_db %g)",
                    h[H_RATE], h[H_SAMPLES], h[H_NFFT], h[H_WIN], h[H_HOP], h[H_MELS], (double)fc.f_min,
                    (double)fc.f_max, (double)fc.top_db);
    m->sample_rate = fc.sample_rate;
    m->num_samples = fc.num_samples;
    m->n_mels = fc.n_mels;
    m->n_frames = bifsmn_frontend_num_frames(m->frontend);
    if (h[H_FRAMES] != (uint32_t)m->n_frames)
        return fail(e, BIFSMN_ERR_FORMAT, "header says %u frames, the front end makes %d", h[H_FRAMES], m->n_frames);

    if ((rc = read_string(e, c, &m->variant, "the variant name")) != BIFSMN_OK)
        return rc;
    if (!(m->class_names = calloc((size_t)m->num_classes, sizeof(char *))))
        return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->num_classes; i++)
        if ((rc = read_string(e, c, &m->class_names[i], "a class name")) != BIFSMN_OK)
            return rc;
    uint32_t n_blocks = 0;
    if ((rc = read_u32s(e, c, &n_blocks, 1, "the block list")) != BIFSMN_OK)
        return rc;
    const uint8_t *skip;
    if (n_blocks > MAX_BLOCKS)
        return fail(e, BIFSMN_ERR_FORMAT, "block list of %u entries (max %d)", n_blocks, MAX_BLOCKS);
    if (!take(c, 4 * (size_t)n_blocks, &skip))
        return fail(e, BIFSMN_ERR_TRUNCATED, "the file ends inside the block list");

    m->num_ops = (int)h[H_OPS];
    if (!(m->ops = calloc((size_t)m->num_ops, sizeof(bifsmn_op))))
        return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    slot_state slots[BIFSMN_MAX_SLOTS] = {{0}};
    slots[0] = (slot_state){1, {m->n_frames, m->n_mels, 1}};
    for (int i = 0; i < m->num_ops; i++)
        if ((rc = parse_op(e, m, c, i, slots, version)) != BIFSMN_OK)
            return rc;
    if (c->pos != c->n)
        return fail(e, BIFSMN_ERR_FORMAT, "%zu unread bytes after the last op", c->n - c->pos);
    const bifsmn_op *last = &m->ops[m->num_ops - 1];
    if (elems3(last->out_shape) != (size_t)m->num_classes || last->out_shape[2] != m->num_classes)
        return fail(e, BIFSMN_ERR_FORMAT, "the last op outputs (%d, %d, %d), not the %d class scores",
                    last->out_shape[0], last->out_shape[1], last->out_shape[2], m->num_classes);
    if ((rc = allocate_buffers(e, m)) != BIFSMN_OK)
        return rc;
    if (bifsmn_plan_build(m) != BIFSMN_OK)
        return fail(e, BIFSMN_ERR_NOMEM, "out of memory");
    return BIFSMN_OK;
}

int bifsmn_load_memory(const void *data, size_t size, bifsmn_impl kernel, bifsmn_model **out, char *msg,
                       size_t msg_len)
{
    errsink e = {msg, msg_len};
    if (msg && msg_len)
        msg[0] = '\0';
    if (!out)
        return fail(&e, BIFSMN_ERR_ARGUMENT, "no output pointer");
    *out = NULL;
    if (!data)
        return fail(&e, BIFSMN_ERR_ARGUMENT, "no model data");
    const uint8_t *b = data;
    if (size < 4 || memcmp(b, "BFSM", 4) != 0)
        return fail(&e, BIFSMN_ERR_MAGIC, "not a .bfsm model (bad magic)");
    if (size < HEADER_SIZE)
        return fail(&e, BIFSMN_ERR_TRUNCATED, "file of %zu bytes is shorter than the %d-byte header", size,
                    HEADER_SIZE);
    const unsigned version = (unsigned)b[4] | (unsigned)b[5] << 8, header_size = (unsigned)b[6] | (unsigned)b[7] << 8;
    if (version < BIFSMN_FORMAT_VERSION_MIN || version > BIFSMN_FORMAT_VERSION)
        return fail(&e, BIFSMN_ERR_VERSION, "format version %u; this engine reads versions %d to %d", version,
                    BIFSMN_FORMAT_VERSION_MIN, BIFSMN_FORMAT_VERSION);
    if (header_size != HEADER_SIZE)
        return fail(&e, BIFSMN_ERR_FORMAT, "header size %u, expected %d", header_size, HEADER_SIZE);
    const uint32_t payload = le32(b + 8), crc = le32(b + 12);
    if (payload > size - HEADER_SIZE)
        return fail(&e, BIFSMN_ERR_TRUNCATED, "payload of %u bytes but only %zu follow the header", payload,
                    size - HEADER_SIZE);
    if (payload < size - HEADER_SIZE)
        return fail(&e, BIFSMN_ERR_FORMAT, "%zu trailing bytes after the payload", size - HEADER_SIZE - payload);
    if (bifsmn_crc32(b + HEADER_SIZE, payload) != crc)
        return fail(&e, BIFSMN_ERR_CRC, "CRC32 mismatch: the file is corrupted");

    bifsmn_model *m = calloc(1, sizeof *m);
    if (!m)
        return fail(&e, BIFSMN_ERR_NOMEM, "out of memory");
    cursor c = {b + HEADER_SIZE, payload, 0};
    const int rc = parse_payload(&e, m, &c, kernel, version);
    if (rc != BIFSMN_OK) {
        bifsmn_free(m);
        return rc;
    }
    *out = m;
    return BIFSMN_OK;
}

int bifsmn_load_file(const char *path, bifsmn_impl kernel, bifsmn_model **out, char *msg, size_t msg_len)
{
    errsink e = {msg, msg_len};
    if (out)
        *out = NULL;
    if (!path || !out)
        return fail(&e, BIFSMN_ERR_ARGUMENT, "no path or output pointer");
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(&e, BIFSMN_ERR_IO, "cannot open %s", path);
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return fail(&e, BIFSMN_ERR_IO, "cannot read %s", path);
    }
    if ((unsigned long)size > MAX_FILE_BYTES) {
        fclose(f);
        return fail(&e, BIFSMN_ERR_FORMAT, "%s is %ld bytes, larger than any model (max %u)", path, size,
                    MAX_FILE_BYTES);
    }
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        fclose(f);
        return fail(&e, BIFSMN_ERR_NOMEM, "out of memory");
    }
    const size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return fail(&e, BIFSMN_ERR_IO, "cannot read %s", path);
    }
    const int rc = bifsmn_load_memory(buf, (size_t)size, kernel, out, msg, msg_len);
    free(buf);
    return rc;
}
