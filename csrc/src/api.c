/* Public API around the loader and the network: queries, argument checks, kernel access, buffers. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *bifsmn_strerror(int status)
{
    switch (status) {
    case BIFSMN_OK: return "ok";
    case BIFSMN_ERR_ARGUMENT: return "invalid argument";
    case BIFSMN_ERR_IO: return "I/O error";
    case BIFSMN_ERR_NOMEM: return "out of memory";
    case BIFSMN_ERR_MAGIC: return "not a .bfsm model";
    case BIFSMN_ERR_VERSION: return "unsupported .bfsm format version";
    case BIFSMN_ERR_TRUNCATED: return "truncated model file";
    case BIFSMN_ERR_CRC: return "CRC mismatch";
    case BIFSMN_ERR_FORMAT: return "malformed model file";
    case BIFSMN_ERR_KERNEL: return "kernel implementation not available";
    default: return "unknown error";
    }
}

void bifsmn_free(bifsmn_model *m)
{
    if (!m)
        return;
    if (m->class_names)
        for (int i = 0; i < m->num_classes; i++)
            free(m->class_names[i]);
    free(m->class_names);
    free(m->variant);
    bifsmn_frontend_free(m->frontend);
    bifsmn_plan_free(m);
    if (m->ops) {
        for (int i = 0; i < m->num_ops; i++) {
            bifsmn_op *op = &m->ops[i];
            bifsmn_dealloc(op->wf);
            bifsmn_dealloc(op->wb);
            bifsmn_dealloc(op->a);
            bifsmn_dealloc(op->b);
            bifsmn_dealloc(op->slope);
            bifsmn_dealloc(op->corr);
        }
        free(m->ops);
    }
    for (int s = 0; s < BIFSMN_MAX_SLOTS; s++)
        bifsmn_dealloc(m->slots[s]);
    bifsmn_dealloc(m->cols);
    bifsmn_dealloc(m->bits);
    bifsmn_dealloc(m->features);
    free(m);
}

int bifsmn_num_classes(const bifsmn_model *m) { return m ? m->num_classes : BIFSMN_ERR_ARGUMENT; }

const char *bifsmn_class_name(const bifsmn_model *m, int index)
{
    return m && index >= 0 && index < m->num_classes ? m->class_names[index] : NULL;
}

const char *bifsmn_variant(const bifsmn_model *m) { return m ? m->variant : NULL; }
int bifsmn_is_binary(const bifsmn_model *m) { return m ? m->binary_model : BIFSMN_ERR_ARGUMENT; }
const char *bifsmn_kernel_name(const bifsmn_model *m) { return m ? m->kernels.name : NULL; }
int bifsmn_sample_rate(const bifsmn_model *m) { return m ? m->sample_rate : BIFSMN_ERR_ARGUMENT; }
int bifsmn_num_samples(const bifsmn_model *m) { return m ? m->num_samples : BIFSMN_ERR_ARGUMENT; }
int bifsmn_num_mels(const bifsmn_model *m) { return m ? m->n_mels : BIFSMN_ERR_ARGUMENT; }
int bifsmn_num_frames(const bifsmn_model *m) { return m ? m->n_frames : BIFSMN_ERR_ARGUMENT; }

int bifsmn_features_pcm(bifsmn_model *m, const int16_t *pcm, size_t n_samples, float *features, size_t n_features)
{
    if (!m)
        return BIFSMN_ERR_ARGUMENT;
    return bifsmn_frontend_run_pcm(m->frontend, pcm, n_samples, features, n_features);
}

int bifsmn_run_features(bifsmn_model *m, const float *features, size_t n_features, float *scores, size_t n_scores)
{
    if (!m || !features || !scores || n_features != (size_t)m->n_mels * m->n_frames ||
        n_scores != (size_t)m->num_classes)
        return BIFSMN_ERR_ARGUMENT;
    bifsmn_forward(m, features, scores);
    return BIFSMN_OK;
}

int bifsmn_run_pcm(bifsmn_model *m, const int16_t *pcm, size_t n_samples, float *scores, size_t n_scores)
{
    if (!m || !scores || n_scores != (size_t)m->num_classes)
        return BIFSMN_ERR_ARGUMENT;
    const size_t nf = (size_t)m->n_mels * m->n_frames;
    const int rc = bifsmn_frontend_run_pcm(m->frontend, pcm, n_samples, m->features, nf);
    if (rc != BIFSMN_OK)
        return rc;
    bifsmn_forward(m, m->features, scores);
    return BIFSMN_OK;
}

int bifsmn_num_ops(const bifsmn_model *m) { return m ? m->num_ops : BIFSMN_ERR_ARGUMENT; }

int bifsmn_op_get_info(const bifsmn_model *m, int index, bifsmn_op_info *info)
{
    if (!m || !info || index < 0 || index >= m->num_ops)
        return BIFSMN_ERR_ARGUMENT;
    const bifsmn_op *op = &m->ops[index];
    info->type = op->type;
    info->binary = op->binary;
    memcpy(info->in_shape, op->in_shape, sizeof info->in_shape);
    memcpy(info->out_shape, op->out_shape, sizeof info->out_shape);
    info->has_residual = op->res_slot != BIFSMN_NO_SLOT;
    return BIFSMN_OK;
}

int bifsmn_op_run(bifsmn_model *m, int index, const float *in, const float *residual, float *out, int32_t *out_int)
{
    if (!m || index < 0 || index >= m->num_ops || !in || !out)
        return BIFSMN_ERR_ARGUMENT;
    const bifsmn_op *op = &m->ops[index];
    if (op->res_slot != BIFSMN_NO_SLOT && !residual)
        return BIFSMN_ERR_ARGUMENT;
    bifsmn_run_op_internal(m, op, in, op->res_slot != BIFSMN_NO_SLOT ? residual : NULL, out, out_int);
    return BIFSMN_OK;
}

int bifsmn_kernel_available(bifsmn_impl impl) { return bifsmn_kernels_available(impl); }

struct bifsmn_kernel_set {
    bifsmn_kernels k;
};

int bifsmn_kernel_set_create(bifsmn_impl impl, bifsmn_kernel_set **out)
{
    if (!out)
        return BIFSMN_ERR_ARGUMENT;
    *out = NULL;
    bifsmn_kernels k;
    const int rc = bifsmn_kernels_select(impl, &k, NULL, 0);
    if (rc != BIFSMN_OK)
        return rc;
    if (!(*out = malloc(sizeof **out)))
        return BIFSMN_ERR_NOMEM;
    (*out)->k = k;
    return BIFSMN_OK;
}

void bifsmn_kernel_set_free(bifsmn_kernel_set *set) { free(set); }

const char *bifsmn_kernel_set_name(const bifsmn_kernel_set *set) { return set ? set->k.name : NULL; }

int bifsmn_kernel_bitpack(const bifsmn_kernel_set *set, const float *x, uint64_t *out, int rows, int K)
{
    if (!set || !x || !out || rows < 0 || K < 0)
        return BIFSMN_ERR_ARGUMENT;
    set->k.bitpack(x, out, rows, K);
    return BIFSMN_OK;
}

int bifsmn_kernel_bgemm(const bifsmn_kernel_set *set, const uint64_t *a, const uint64_t *w, int32_t *out, int M,
                        int N, int K)
{
    if (!set || !a || !w || !out || M < 0 || N < 0 || K < 0)
        return BIFSMN_ERR_ARGUMENT;
    set->k.bgemm(a, w, out, M, N, K);
    return BIFSMN_OK;
}

int bifsmn_kernel_sgemm(const bifsmn_kernel_set *set, const float *a, const float *w, const float *bias, float *c,
                        int M, int N, int K)
{
    if (!set || !a || !w || !c || M < 0 || N < 0 || K < 0)
        return BIFSMN_ERR_ARGUMENT;
    set->k.sgemm(a, w, bias, c, M, N, K);
    return BIFSMN_OK;
}
