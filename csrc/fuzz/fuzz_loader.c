/* libFuzzer target: the .bfsm loader, through the public bifsmn_load_memory.

   Each input is loaded twice: as given (the magic, version, size and CRC checks) and with the header's payload
   size and CRC rewritten to match, so that mutations reach the payload parser instead of stopping at the CRC.
   A model that loads must then be usable: every query answers, and when it is small enough each op and the
   whole network run on deterministic inputs. A loader that accepts shapes the network cannot run is exactly
   the bug this finds (under ASan/UBSan). Also built without libFuzzer by replay.c for the ctest regressions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define HEADER_SIZE 16
#define MAX_RUN_MACS 20000000ull     /* keeps each run to milliseconds */
#define MAX_FRONTEND_WORK (1ull << 22) /* frames x samples: bounds the STFT, whose n_fft < 2 x samples */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fill(float *x, size_t n, uint32_t state)
{
    for (size_t i = 0; i < n; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) / 4194304.0f - 2.0f; /* [-2, 2) */
    }
}

static float *floats(size_t n, uint32_t seed)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (x)
        fill(x, n, seed);
    return x;
}

static size_t elems(const int s[3]) { return (size_t)s[0] * (size_t)s[1] * (size_t)s[2]; }

static void run_ops(bifsmn_model *m)
{
    for (int i = 0; i < bifsmn_num_ops(m); i++) {
        bifsmn_op_info info;
        if (bifsmn_op_get_info(m, i, &info) != BIFSMN_OK)
            abort();
        const size_t n_in = elems(info.in_shape), n_out = elems(info.out_shape);
        float *in = floats(n_in, (uint32_t)i), *res = floats(n_out, 7u), *out = floats(n_out, 0u);
        int32_t *ints = malloc((n_out ? n_out : 1) * sizeof *ints);
        if (in && res && out && ints && bifsmn_op_run(m, i, in, info.has_residual ? res : NULL, out, ints) != BIFSMN_OK)
            abort();
        free(in), free(res), free(out), free(ints);
    }
}

static void exercise(bifsmn_model *m)
{
    const int classes = bifsmn_num_classes(m);
    if (classes < 1 || !bifsmn_variant(m) || !bifsmn_kernel_name(m) || bifsmn_class_name(m, classes))
        abort();
    for (int i = 0; i < classes; i++)
        if (!bifsmn_class_name(m, i))
            abort();
    unsigned long long macs = 0;
    for (int i = 0; i < m->num_ops; i++)
        macs += (unsigned long long)m->ops[i].M * (unsigned long long)m->ops[i].N * (unsigned long long)m->ops[i].K;
    if (macs > MAX_RUN_MACS)
        return;
    run_ops(m);
    const size_t n_features = (size_t)bifsmn_num_mels(m) * (size_t)bifsmn_num_frames(m);
    float *features = floats(n_features, 1u), *scores = floats((size_t)classes, 0u);
    if (features && scores && bifsmn_run_features(m, features, n_features, scores, (size_t)classes) != BIFSMN_OK)
        abort();
    const size_t n_samples = (size_t)bifsmn_num_samples(m);
    if ((unsigned long long)bifsmn_num_frames(m) * n_samples <= MAX_FRONTEND_WORK) {
        int16_t *pcm = malloc(n_samples * sizeof *pcm);
        for (size_t i = 0; pcm && i < n_samples; i++)
            pcm[i] = (int16_t)((i * 7919u) & 0xffffu);
        if (pcm && scores && bifsmn_run_pcm(m, pcm, n_samples, scores, (size_t)classes) != BIFSMN_OK)
            abort();
        free(pcm);
    }
    free(features), free(scores);
}

static void load(const uint8_t *data, size_t size)
{
    bifsmn_model *m = NULL;
    char msg[160];
    const int rc = bifsmn_load_memory(data, size, BIFSMN_IMPL_AUTO, &m, msg, sizeof msg);
    if ((rc == BIFSMN_OK) != (m != NULL) || strlen(msg) >= sizeof msg)
        abort();
    if (m)
        exercise(m);
    bifsmn_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load(data, size);
    if (size >= HEADER_SIZE && size - HEADER_SIZE <= UINT32_MAX) {
        uint8_t *fixed = malloc(size);
        if (!fixed)
            return 0;
        memcpy(fixed, data, size);
        put_le32(fixed + 8, (uint32_t)(size - HEADER_SIZE));
        put_le32(fixed + 12, bifsmn_crc32(fixed + HEADER_SIZE, size - HEADER_SIZE));
        load(fixed, size);
        free(fixed);
    }
    return 0;
}
