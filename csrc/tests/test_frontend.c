/* Front end: config validation and physical sanity of the features (a tone lands in its mel band, silence
   clamps to -100 dB). The melspec kernels are tests/test_melspec.c; parity with torchaudio is
   tests/test_frontend_c.py. */
#include <math.h>
#include <stdlib.h>

#include "bifsmn.h"
#include "check.h"

#define PI 3.14159265358979323846

static const bifsmn_frontend_config base = {16000, 16000, 2048, 2048, 512,  32,
                                            0.0f,  8000.0f, 1,    1,    0.0f, 1.0f / 32768.0f};

static void test_invalid_configs(void)
{
    bifsmn_frontend *fe = NULL;
    bifsmn_frontend_config c = base;
    c.n_fft = 1000; /* not a power of two */
    CHECK(bifsmn_frontend_create(&c, &fe) == BIFSMN_ERR_ARGUMENT && !fe, "n_fft 1000 accepted");
    c = base;
    c.f_max = 9000.0f; /* above Nyquist */
    CHECK(bifsmn_frontend_create(&c, &fe) == BIFSMN_ERR_ARGUMENT, "f_max above Nyquist accepted");
    c = base;
    c.num_samples = 1000; /* shorter than the reflect pad */
    CHECK(bifsmn_frontend_create(&c, &fe) == BIFSMN_ERR_ARGUMENT, "clip shorter than n_fft/2 accepted");
    c = base;
    c.f_min = NAN;
    CHECK(bifsmn_frontend_create(&c, &fe) == BIFSMN_ERR_ARGUMENT, "NaN f_min accepted");
    CHECK(bifsmn_frontend_create(NULL, &fe) == BIFSMN_ERR_ARGUMENT, "NULL config accepted");
}

static void test_features(void)
{
    bifsmn_frontend *fe = NULL;
    CHECK(bifsmn_frontend_create(&base, &fe) == BIFSMN_OK, "valid config rejected");
    if (!fe)
        return;
    const int nt = bifsmn_frontend_num_frames(fe);
    CHECK(nt == 32, "16000 samples at hop 512 make %d frames, expected 32", nt);
    float *x = calloc(16000, sizeof(float)), *out = malloc(sizeof(float) * 32 * nt);
    CHECK(bifsmn_frontend_run_float(fe, x, 16000, out, 32 * (size_t)nt) == BIFSMN_OK, "run on silence");
    int bad = 0;
    for (int i = 0; i < 32 * nt; i++)
        bad += out[i] != -100.0f;
    CHECK(bad == 0, "silence must clamp to -100 dB (%d values differ)", bad);
    /* 1 kHz tone: HTK 1000 Hz = 1000 mel, 0.62 of the way from the peak of filter 10 (946.7 mel) to that of
       filter 11 (1032.7 mel), so filter 11 has the larger weight. */
    for (int i = 0; i < 16000; i++)
        x[i] = 0.5f * (float)sin(2 * PI * 1000.0 * i / 16000.0);
    CHECK(bifsmn_frontend_run_float(fe, x, 16000, out, 32 * (size_t)nt) == BIFSMN_OK, "run on a tone");
    int best = 0;
    for (int j = 1; j < 32; j++)
        best = out[j * nt + nt / 2] > out[best * nt + nt / 2] ? j : best;
    CHECK(best == 11, "1 kHz tone peaks in mel filter %d", best);
    CHECK(bifsmn_frontend_run_float(fe, x, 15999, out, 32 * (size_t)nt) == BIFSMN_ERR_ARGUMENT, "wrong length");
    free(x);
    free(out);
    bifsmn_frontend_free(fe);
}

int main(void)
{
    test_invalid_configs();
    test_features();
    return check_report("test_frontend");
}
