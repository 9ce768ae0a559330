/* Engine internals shared by the loader (loader.c), the network (network.c) and the public API (api.c). */
#ifndef BIFSMN_INTERNAL_H
#define BIFSMN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "bifsmn.h"
#include "crc32.h"
#include "dispatch.h"

#define BIFSMN_MAX_SLOTS 8
#define BIFSMN_ACT_NONE 0
#define BIFSMN_ACT_PRELU 1
#define BIFSMN_NO_SLOT 0xff

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
    uint8_t *wsign; /* binary dwconv: the weight signs unpacked, taps x channels, 1 for -1 */
    float *a;       /* binary: per-output scale (weight scale and BatchNorm folded); NULL for fp ops */
    float *b;       /* binary: per-output shift; fp: bias (BatchNorm folded) */
    float *slope;   /* PReLU slopes when act == BIFSMN_ACT_PRELU */
    int32_t *corr;  /* binary conv2d: M x N sums of the weight signs over zero-padded taps */
} bifsmn_op;

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
    int32_t *ints;     /* binary dot products, M x N */
    float *features;   /* n_mels x n_frames */
};

/* network.c */
void bifsmn_run_op_internal(bifsmn_model *m, const bifsmn_op *op, const float *in, const float *res, float *out,
                            int32_t *out_int);
int bifsmn_binary_conv_correction(const bifsmn_op *op);
void bifsmn_forward(bifsmn_model *m, const float *features, float *scores);

#endif
