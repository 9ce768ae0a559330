/* The one place a kernel implementation is chosen (see dispatch.c). */
#ifndef BIFSMN_DISPATCH_H
#define BIFSMN_DISPATCH_H

#include <stddef.h>

#include "bfuse/bfuse.h"
#include "bgemm/bgemm.h"
#include "bifsmn.h"
#include "bitpack/bitpack.h"
#include "melspec/melspec.h"
#include "sconv/sconv.h"
#include "sgemm/sgemm.h"

typedef struct {
    bifsmn_impl impl;
    const char *name;
    bifsmn_bitpack_fn bitpack;
    bifsmn_bgemm_fn bgemm;
    bifsmn_sgemm_fn sgemm;
    bifsmn_melspec_fn melspec;
    int melspec_lanes; /* the plan layout melspec expects (bifsmn_melspec_init) */
    bifsmn_bpanel_words_fn bpanel_words;
    bifsmn_bpanel_fn bpanel;
    bifsmn_bgemm_fused_fn bgemm_fused;
    bifsmn_bdwconv_fn bdwconv;
    bifsmn_sconv1_fn sconv1;
} bifsmn_kernels;

/* 1 when `impl` (not AUTO) can run on this CPU and was built in. */
int bifsmn_kernels_available(bifsmn_impl impl);

/* Fills *k with the implementation `want`; AUTO honours BIFSMN_KERNEL, else the best available one.
   Returns BIFSMN_OK, or BIFSMN_ERR_KERNEL with a reason in msg (may be NULL). */
int bifsmn_kernels_select(bifsmn_impl want, bifsmn_kernels *k, char *msg, size_t msg_len);

#endif
