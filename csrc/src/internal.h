/* Engine internals shared by the loader (loader.c), the network (network.c) and the public API (api.c). */
#ifndef BIFSMN_INTERNAL_H
#define BIFSMN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "bfuse/bfuse.h"
#include "bifsmn.h"
#include "crc32.h"
#include "dispatch.h"

#define BIFSMN_MAX_SLOTS 8
#define BIFSMN_ACT_NONE 0
#define BIFSMN_ACT_PRELU 1
#define BIFSMN_NO_SLOT 0xff

/* .bfsm version 2 storage codes of an op's arrays (op header bytes 6 and 7; FORMAT.md "Storage") */
#define BIFSMN_STORE_F32 0
#define BIFSMN_STORE_F16 1
#define BIFSMN_STORE_I8 2 /* weight matrices only: a float32 scale per output row, then int8 values */

/* IEEE binary16 -> binary32, exact for every value (NaN payloads kept); the loader's fp16 storage. */
float bifsmn_half_to_float(uint16_t h);

/* One layer record, with the GEMM view every op type reduces to: M rows (time steps or conv output
   positions), K reduction depth, N outputs per row. Tensors are (time, height, channels), channels fastest. */
typedef struct {
    int type;   /* bifsmn_op_type */
    int binary; /* 1: sign-binarised input and weights */
    int flatten;
    int act;
    int in_slot, out_slot, res_slot;
    int in_shape[3], out_shape[3];
    int M, K, N;
    int kwords; /* (K + 63) / 64 for binary GEMM ops; words per tap row for binary dwconv */
    /* conv2d geometry: height is the mel axis, width the time axis */
    int c_in, h_in, w_in, kh, kw, sh, sw, ph, pw;
    /* dwconv1d geometry */
    int taps, dilation, pad_left;
    float *wf;      /* fp weights: N x K (conv: c_out x (kw, kh, c_in)); dwconv: channels x taps */
    uint64_t *wb;   /* binary weights: N x kwords (conv: bit (kx * kh + ky) * c_in + c); dwconv: taps x kwords */
    float *a;       /* binary: per-output scale (weight scale and BatchNorm folded); NULL for fp ops */
    float *b;       /* binary: per-output shift; fp: bias (BatchNorm folded) */
    float *slope;   /* PReLU slopes when act == BIFSMN_ACT_PRELU */
    int32_t *corr;  /* binary conv2d: M x N sums of the weight signs over zero-padded taps */
    /* Binary ops, laid out at load for the fused kernels (plan.c). Outputs whose scale is negative have their
       weights and scale negated (exactly the same products), so that every scale is >= 0 or NaN. */
    uint64_t *panel; /* the weight rows in the kernel's own layout */
    float *scale;    /* |a| where negated; scale, shift (b) and slopes padded with zeros to a multiple of 16 */
    float *shift, *slopes;
    int32_t *base;   /* binary conv2d: M x N, K minus the padding correction of the (negated) weights */
    uint8_t *wneg;   /* binary dwconv: taps x ((N + 63) / 64 * 64) bytes, 0xff where the weight is -1 */
    /* The plan's buffers for this op's output and input (NULL when not needed) */
    uint64_t *out_bits; /* packed signs of the output: out_shape[0] rows of (out_shape[1] * out_shape[2]) bits */
    uint64_t *in_bits;  /* packed input when no producer writes its bits */
    uint64_t *cols;     /* binary conv2d: the im2col rows; bytes never copied into stay 0 (the padding) */
    int32_t *thr;       /* threshold form: popcount thresholds, M x N (conv2d) or N */
    struct bifsmn_copy *copies; /* binary conv2d with c_in % 8 == 0: the im2col as byte copies */
    int num_copies;
    /* A full-precision conv2d of one input channel without residual runs the direct kernel (kernels/sconv/) */
    float *xpad;                    /* its phase-split zero-padded input, (w_in + 2 pw) * sh rows of hq floats */
    float *spanel, *sbias, *sslope; /* weights (kw * kh) x np, bias and slopes padded to np = 16 * ceil(N / 16) */
    int hq;
} bifsmn_op;

/* One byte run of a binary im2col: input bit rows -> im2col rows. */
typedef struct bifsmn_copy {
    uint32_t src, dst, len; /* byte offsets and length */
} bifsmn_copy;

/* A step of the forward plan: one op (or the input transposition), with everything it reads and writes
   resolved at load, so that bifsmn_forward is a loop of calls. */
typedef struct bifsmn_step bifsmn_step;
typedef void (*bifsmn_step_fn)(bifsmn_model *m, const bifsmn_step *s);
struct bifsmn_step {
    bifsmn_step_fn run;
    const char *kind; /* profile category: input, conv2d, linear, dwconv1d, and b-prefixed binary ones */
    const bifsmn_op *op;     /* the op (the input step: the direct conv whose input it lays out, or NULL) */
    const float *in;         /* float input (fp ops; binary ops that pack their own input); NULL: laid out */
    const uint64_t *in_bits; /* binary ops: packed input (a producer's out_bits or op->in_bits) */
    const float *res;        /* fp ops: residual */
    float *out;              /* fp ops: output slot */
    bifsmn_bout bout;        /* binary ops: the output transform */
    bifsmn_sconv_out sout;   /* direct conv2d ops: the output */
};

struct bifsmn_model {
    bifsmn_kernels kernels;
    int binary_model;
    int num_classes;
    char *variant;
    char **class_names;
    bifsmn_frontend *frontend;
    int n_mels, n_frames, num_samples, sample_rate;
    int num_ops;
    bifsmn_op *ops;
    int num_slots;
    float *slots[BIFSMN_MAX_SLOTS];
    /* scratch, sized at load for the largest op */
    float *cols;       /* float im2col matrix, M x K */
    uint64_t *bits;    /* packed activations: im2col rows then per-position input bits; dwconv sign bytes */
    float *features;   /* n_mels x n_frames */
    void *scratch;     /* the fused kernels' scratch, sized for the largest binary op */
    const float *input; /* the features bifsmn_forward is running on (read by the input step) */
    int num_steps;
    bifsmn_step *steps; /* the forward plan: steps[0] transposes the features, steps[i + 1] runs ops[i] */
};

/* network.c */
void bifsmn_run_op_internal(bifsmn_model *m, const bifsmn_op *op, const float *in, const float *res, float *out,
                            int32_t *out_int);
int bifsmn_binary_conv_correction(const bifsmn_op *op);
/* The output transform of a binary op with float output `out` (may be NULL) and residual `res`, no bits. */
bifsmn_bout bifsmn_op_bout(const bifsmn_op *op, const float *res, float *out);
/* The output of a direct conv2d op with float output `out` (may be NULL), no bits. */
bifsmn_sconv_out bifsmn_op_sout(const bifsmn_op *op, float *out);
/* Fills copies (when not NULL) with the byte runs of a binary conv2d's im2col (c_in % 8 == 0); returns how
   many there are. */
int bifsmn_im2col_copies(const bifsmn_op *op, bifsmn_copy *copies);
void bifsmn_forward(bifsmn_model *m, const float *features, float *scores);

/* Step functions (network.c) the plan is made of, one per kind. */
void bifsmn_step_input(bifsmn_model *m, const bifsmn_step *s);
void bifsmn_step_conv2d(bifsmn_model *m, const bifsmn_step *s);
void bifsmn_step_linear(bifsmn_model *m, const bifsmn_step *s);
void bifsmn_step_dwconv1d(bifsmn_model *m, const bifsmn_step *s);
void bifsmn_step_bconv2d(bifsmn_model *m, const bifsmn_step *s);
void bifsmn_step_blinear(bifsmn_model *m, const bifsmn_step *s);
void bifsmn_step_bdwconv1d(bifsmn_model *m, const bifsmn_step *s);

/* plan.c: the fused-kernel layouts of every binary op and the forward plan, built once the kernels are chosen
   (returns BIFSMN_OK or BIFSMN_ERR_NOMEM); plan_free releases what plan_build allocated. */
int bifsmn_plan_build(bifsmn_model *m);
void bifsmn_plan_free(bifsmn_model *m);

#endif
