/* Log-mel front end matching torchaudio: MelSpectrogram(sample_rate, n_fft, hop_length, n_mels,
   normalized, win_length, f_min, f_max) with its other defaults (periodic Hann window zero-padded to n_fft at
   the centre, centred STFT with reflect padding, power 2, HTK mel scale, no filter normalisation) followed by
   AmplitudeToDB("power", top_db) applied per clip. The filterbank and window are built in double; each frame
   then runs through the melspec kernel (float32) of the chosen implementation. */
#include "frontend.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "melspec/melspec.h"

#define BIFSMN_PI 3.14159265358979323846

struct bifsmn_frontend {
    bifsmn_frontend_config cfg;
    int n_frames;
    bifsmn_melspec_fn melspec;
    bifsmn_melspec plan;
    float *signal; /* num_samples + n_fft: the reflect-padded clip */
    float *mel;    /* n_mels: one frame's mel power */
};

/* The filterbank as runs of non-zero weights, built in double, handed to the kernel plan. */
typedef struct {
    int *start, *len;
    double *w;
} mel_runs;

static double hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }
static double mel_to_hz(double m) { return 700.0 * (pow(10.0, m / 2595.0) - 1.0); }

void bifsmn_frontend_free(bifsmn_frontend *fe)
{
    if (!fe)
        return;
    bifsmn_melspec_free(&fe->plan);
    free(fe->signal);
    free(fe->mel);
    free(fe);
}

/* Bounds keep a forged model header from asking for huge buffers or a slow filterbank build. */
static int valid_config(const bifsmn_frontend_config *c)
{
    const int nf = c->n_fft;
    if (c->sample_rate < 1000 || c->sample_rate > 384000 || nf < 4 || nf > 16384 || (nf & (nf - 1)) != 0 ||
        c->win_length < 1 || c->win_length > nf || c->hop_length < 1 || c->n_mels < 1 || c->n_mels > 256 ||
        c->n_mels > nf / 2 + 1)
        return 0;
    /* reflect padding of n_fft / 2 needs more samples than the pad */
    if (c->num_samples <= nf / 2 || c->num_samples > 10 * c->sample_rate || c->hop_length > c->num_samples)
        return 0;
    if ((long long)c->n_mels * (1 + c->num_samples / c->hop_length) > (1 << 22))
        return 0;
    return isfinite(c->f_min) && isfinite(c->f_max) && c->f_min >= 0.0f && c->f_min < c->f_max &&
           c->f_max <= c->sample_rate / 2 && (c->normalized == 0 || c->normalized == 1) &&
           (c->to_db == 0 || c->to_db == 1) && isfinite(c->top_db) && c->top_db >= 0.0f &&
           (c->top_db == 0.0f || c->to_db) && isfinite(c->pcm_scale);
}

/* torchaudio.functional.melscale_fbanks (htk, norm=None), keeping each filter's non-zero run. */
static int build_mel(const bifsmn_frontend_config *c, mel_runs *r)
{
    const int nm = c->n_mels, nfq = c->n_fft / 2 + 1;
    double *f_pts = malloc(sizeof(double) * (size_t)(nm + 2));
    r->start = malloc(sizeof(int) * (size_t)nm);
    r->len = malloc(sizeof(int) * (size_t)nm);
    if (!f_pts || !r->start || !r->len) {
        free(f_pts);
        return -1;
    }
    const double m_min = hz_to_mel(c->f_min), m_max = hz_to_mel(c->f_max);
    for (int j = 0; j < nm + 2; j++)
        f_pts[j] = mel_to_hz(m_min + (m_max - m_min) * j / (nm + 1));
    const double f_top = (double)(c->sample_rate / 2);
    int total = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int j = 0, off = 0; j < nm; j++) {
            /* Only bins strictly between f_pts[j] and f_pts[j + 2] can be non-zero: scan just those (and one
               more on each side against rounding) so that building a filterbank stays cheap. */
            const double lo = floor(f_pts[j] / f_top * (nfq - 1)) - 1, hi = ceil(f_pts[j + 2] / f_top * (nfq - 1)) + 1;
            const int i0 = lo < 0 ? 0 : (int)lo, i1 = hi > nfq - 1 ? nfq - 1 : (int)hi;
            int first = -1, last = -2;
            for (int i = i0; i <= i1; i++) {
                const double f = f_top * i / (nfq - 1);
                const double down = (f - f_pts[j]) / (f_pts[j + 1] - f_pts[j]);
                const double up = (f_pts[j + 2] - f) / (f_pts[j + 2] - f_pts[j + 1]);
                const double w = down < up ? down : up;
                if (w > 0.0) {
                    if (first < 0)
                        first = i;
                    last = i;
                    if (pass == 1)
                        r->w[off + i - first] = w;
                }
            }
            if (pass == 0) {
                r->start[j] = first < 0 ? 0 : first;
                r->len[j] = last - first + 1 > 0 ? last - first + 1 : 0;
                total += r->len[j];
            }
            off += r->len[j];
        }
        /* Zero-filled: bins inside a filter's run whose weight is exactly 0 keep weight 0. */
        if (pass == 0 && !(r->w = calloc((size_t)(total > 0 ? total : 1), sizeof(double)))) {
            free(f_pts);
            return -1;
        }
    }
    free(f_pts);
    return 0;
}

/* The periodic Hann window of win_length zero-padded to n_fft at the centre, the plan, the buffers. */
static int build_plan(bifsmn_frontend *fe, int lanes)
{
    const bifsmn_frontend_config *c = &fe->cfg;
    const int nf = c->n_fft, wl = c->win_length, left = (nf - wl) / 2;
    double *window = malloc(sizeof(double) * (size_t)nf);
    mel_runs runs = {NULL, NULL, NULL};
    int rc = -1;
    if (window && build_mel(c, &runs) == 0) {
        double sum_sq = 0.0;
        for (int i = 0; i < nf; i++) {
            const int j = i - left;
            window[i] = j >= 0 && j < wl ? 0.5 - 0.5 * cos(2.0 * BIFSMN_PI * j / wl) : 0.0;
            sum_sq += window[i] * window[i];
        }
        rc = bifsmn_melspec_init(&fe->plan, nf, lanes, window, c->normalized ? 1.0 / sum_sq : 1.0, c->n_mels,
                                 runs.start, runs.len, runs.w);
    }
    free(window);
    free(runs.start);
    free(runs.len);
    free(runs.w);
    return rc;
}

int bifsmn_frontend_create_with(const bifsmn_frontend_config *config, const bifsmn_kernels *kernels,
                                bifsmn_frontend **out)
{
    if (!out)
        return BIFSMN_ERR_ARGUMENT;
    *out = NULL;
    if (!config || !kernels || !valid_config(config))
        return BIFSMN_ERR_ARGUMENT;
    bifsmn_frontend *fe = calloc(1, sizeof *fe);
    if (!fe)
        return BIFSMN_ERR_NOMEM;
    fe->cfg = *config;
    fe->n_frames = 1 + config->num_samples / config->hop_length;
    fe->melspec = kernels->melspec;
    fe->signal = malloc(sizeof(float) * ((size_t)config->num_samples + (size_t)config->n_fft));
    fe->mel = malloc(sizeof(float) * (size_t)config->n_mels);
    if (!fe->signal || !fe->mel || build_plan(fe, kernels->melspec_lanes) != 0) {
        bifsmn_frontend_free(fe);
        return BIFSMN_ERR_NOMEM;
    }
    *out = fe;
    return BIFSMN_OK;
}

int bifsmn_frontend_create(const bifsmn_frontend_config *config, bifsmn_frontend **out)
{
    bifsmn_kernels k;
    if (out)
        *out = NULL;
    const int rc = bifsmn_kernels_select(BIFSMN_IMPL_AUTO, &k, NULL, 0);
    return rc != BIFSMN_OK ? rc : bifsmn_frontend_create_with(config, &k, out);
}

int bifsmn_frontend_num_frames(const bifsmn_frontend *fe) { return fe ? fe->n_frames : BIFSMN_ERR_ARGUMENT; }

const bifsmn_frontend_config *bifsmn_frontend_get_config(const bifsmn_frontend *fe) { return &fe->cfg; }

/* 10 log10(max(p, 1e-10)), exactly -100 at and below the floor (NaN included), within 1e-5 dB elsewhere:
   p = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172, by its
   series to t^7 (the next term is below 3e-8); +inf gives FLT_MAX's 385.3 dB. Branch-free, so that the loop
   over a column vectorises (see CMakeLists.txt): libm's log10f cost more than an FFT stage. */
static inline float power_to_db(float p)
{
    const float x = p < FLT_MAX ? p : FLT_MAX;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const int32_t e = (int32_t)(u - 0x3f3504f3u) >> 23; /* 0x3f3504f3: sqrt(1/2) */
    const uint32_t mu = u - ((uint32_t)e << 23);
    float m;
    memcpy(&m, &mu, sizeof m);
    const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    const float ln_m = 2.0f * t * (1.0f + t2 * (1.0f / 3.0f + t2 * (1.0f / 5.0f + t2 * (1.0f / 7.0f))));
    const float db = 3.01029995663981195f * (float)e + 4.34294481903251828f * ln_m;
    return p > 1e-10f ? db : -100.0f;
}

void bifsmn_frontend_frame(bifsmn_frontend *fe, const float *samples, float *col, size_t stride)
{
    float *mel = fe->mel;
    fe->melspec(&fe->plan, samples, mel);
    const int nm = fe->cfg.n_mels;
    if (fe->cfg.to_db)
        for (int j = 0; j < nm; j++)
            mel[j] = power_to_db(mel[j]);
    for (int j = 0; j < nm; j++)
        col[(size_t)j * stride] = mel[j];
}

void bifsmn_frontend_clamp(const bifsmn_frontend *fe, float *x, size_t n)
{
    if (!(fe->cfg.top_db > 0.0f) || n == 0)
        return;
    float floor_db = x[0];
    for (size_t i = 1; i < n; i++)
        floor_db = x[i] > floor_db ? x[i] : floor_db;
    floor_db -= fe->cfg.top_db;
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] < floor_db ? floor_db : x[i];
}

/* fe->signal[pad .. pad + L) already holds the clip: reflect-pad it, then one STFT frame per column. */
static void compute(bifsmn_frontend *fe, float *out)
{
    const bifsmn_frontend_config *c = &fe->cfg;
    const int pad = c->n_fft / 2, L = c->num_samples, nt = fe->n_frames;
    float *s = fe->signal;
    for (int i = 1; i <= pad; i++) {
        s[pad - i] = s[pad + i];
        s[pad + L - 1 + i] = s[pad + L - 1 - i];
    }
    for (int t = 0; t < nt; t++)
        bifsmn_frontend_frame(fe, s + (size_t)t * (size_t)c->hop_length, out + t, (size_t)nt);
    bifsmn_frontend_clamp(fe, out, (size_t)c->n_mels * (size_t)nt);
}

static int check_sizes(const bifsmn_frontend *fe, const void *x, size_t n_samples, const float *out, size_t n_out)
{
    if (!fe || !x || !out || n_samples != (size_t)fe->cfg.num_samples ||
        n_out != (size_t)fe->cfg.n_mels * (size_t)fe->n_frames)
        return BIFSMN_ERR_ARGUMENT;
    return BIFSMN_OK;
}

int bifsmn_frontend_run_pcm(bifsmn_frontend *fe, const int16_t *pcm, size_t n_samples, float *out, size_t n_out)
{
    const int rc = check_sizes(fe, pcm, n_samples, out, n_out);
    if (rc != BIFSMN_OK)
        return rc;
    const float scale = fe->cfg.pcm_scale;
    float *s = fe->signal + fe->cfg.n_fft / 2;
    for (size_t i = 0; i < n_samples; i++)
        s[i] = (float)pcm[i] * scale;
    compute(fe, out);
    return BIFSMN_OK;
}

int bifsmn_frontend_run_float(bifsmn_frontend *fe, const float *x, size_t n_samples, float *out, size_t n_out)
{
    const int rc = check_sizes(fe, x, n_samples, out, n_out);
    if (rc != BIFSMN_OK)
        return rc;
    memcpy(fe->signal + fe->cfg.n_fft / 2, x, sizeof(float) * n_samples);
    compute(fe, out);
    return BIFSMN_OK;
}
