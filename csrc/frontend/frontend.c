/* Log-mel front end matching torchaudio: MelSpectrogram(sample_rate, n_fft, hop_length, n_mels,
   normalized, win_length, f_min, f_max) with its other defaults (periodic Hann window zero-padded to n_fft at
   the centre, centred STFT with reflect padding, power 2, HTK mel scale, no filter normalisation) followed by
   AmplitudeToDB("power", top_db) applied per clip. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bifsmn.h"
#include "fft.h"

#define BIFSMN_PI 3.14159265358979323846

struct bifsmn_frontend {
    bifsmn_frontend_config cfg;
    int n_frames;
    int n_freqs;
    double power_scale; /* 1 / sum(window^2) when normalized */
    double *window;     /* n_fft */
    double *signal;     /* num_samples + n_fft: the reflect-padded clip */
    double *frame;      /* n_fft */
    double *power;      /* n_freqs */
    int *mel_start;     /* first non-zero bin of each filter */
    int *mel_len;       /* number of non-zero bins */
    double *mel_w;      /* the non-zero weights of all filters, concatenated */
    int *mel_off;       /* offset of each filter in mel_w */
    bifsmn_rfft fft;
};

static double hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }
static double mel_to_hz(double m) { return 700.0 * (pow(10.0, m / 2595.0) - 1.0); }

void bifsmn_frontend_free(bifsmn_frontend *fe)
{
    if (!fe)
        return;
    free(fe->window);
    free(fe->signal);
    free(fe->frame);
    free(fe->power);
    free(fe->mel_start);
    free(fe->mel_len);
    free(fe->mel_w);
    free(fe->mel_off);
    bifsmn_rfft_free(&fe->fft);
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
static int build_mel(bifsmn_frontend *fe)
{
    const bifsmn_frontend_config *c = &fe->cfg;
    const int nm = c->n_mels, nfq = fe->n_freqs;
    double *f_pts = malloc(sizeof(double) * (size_t)(nm + 2));
    fe->mel_start = malloc(sizeof(int) * (size_t)nm);
    fe->mel_len = malloc(sizeof(int) * (size_t)nm);
    fe->mel_off = malloc(sizeof(int) * (size_t)nm);
    if (!f_pts || !fe->mel_start || !fe->mel_len || !fe->mel_off) {
        free(f_pts);
        return -1;
    }
    const double m_min = hz_to_mel(c->f_min), m_max = hz_to_mel(c->f_max);
    for (int j = 0; j < nm + 2; j++)
        f_pts[j] = mel_to_hz(m_min + (m_max - m_min) * j / (nm + 1));
    const double f_top = (double)(c->sample_rate / 2);
    int total = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int j = 0; j < nm; j++) {
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
                        fe->mel_w[fe->mel_off[j] + i - first] = w;
                }
            }
            if (pass == 0) {
                fe->mel_start[j] = first < 0 ? 0 : first;
                fe->mel_len[j] = last - first + 1 > 0 ? last - first + 1 : 0;
                fe->mel_off[j] = total;
                total += fe->mel_len[j];
            }
        }
        if (pass == 0) {
            /* Zero-filled: bins inside a filter's run whose weight is exactly 0 keep weight 0. */
            fe->mel_w = calloc((size_t)(total > 0 ? total : 1), sizeof(double));
            if (!fe->mel_w) {
                free(f_pts);
                return -1;
            }
        }
    }
    free(f_pts);
    return 0;
}

int bifsmn_frontend_create(const bifsmn_frontend_config *config, bifsmn_frontend **out)
{
    if (!out)
        return BIFSMN_ERR_ARGUMENT;
    *out = NULL;
    if (!config || !valid_config(config))
        return BIFSMN_ERR_ARGUMENT;
    bifsmn_frontend *fe = calloc(1, sizeof *fe);
    if (!fe)
        return BIFSMN_ERR_NOMEM;
    fe->cfg = *config;
    const int nf = config->n_fft;
    fe->n_frames = 1 + config->num_samples / config->hop_length;
    fe->n_freqs = nf / 2 + 1;
    fe->window = malloc(sizeof(double) * (size_t)nf);
    fe->signal = malloc(sizeof(double) * ((size_t)config->num_samples + (size_t)nf));
    fe->frame = malloc(sizeof(double) * (size_t)nf);
    fe->power = malloc(sizeof(double) * (size_t)fe->n_freqs);
    if (!fe->window || !fe->signal || !fe->frame || !fe->power || build_mel(fe) != 0 ||
        bifsmn_rfft_init(&fe->fft, nf) != 0) {
        bifsmn_frontend_free(fe);
        return BIFSMN_ERR_NOMEM;
    }
    const int wl = config->win_length, left = (nf - wl) / 2;
    double sum_sq = 0.0;
    for (int i = 0; i < nf; i++) {
        const int j = i - left;
        fe->window[i] = j >= 0 && j < wl ? 0.5 - 0.5 * cos(2.0 * BIFSMN_PI * j / wl) : 0.0; /* periodic Hann */
        sum_sq += fe->window[i] * fe->window[i];
    }
    fe->power_scale = config->normalized ? 1.0 / sum_sq : 1.0;
    *out = fe;
    return BIFSMN_OK;
}

int bifsmn_frontend_num_frames(const bifsmn_frontend *fe) { return fe ? fe->n_frames : BIFSMN_ERR_ARGUMENT; }

/* fe->signal[pad .. pad + L) already holds the clip: reflect-pad it, then one STFT frame per column. */
static void compute(bifsmn_frontend *fe, float *out)
{
    const bifsmn_frontend_config *c = &fe->cfg;
    const int nf = c->n_fft, pad = nf / 2, L = c->num_samples, nm = c->n_mels, nt = fe->n_frames;
    double *s = fe->signal;
    for (int i = 1; i <= pad; i++) {
        s[pad - i] = s[pad + i];
        s[pad + L - 1 + i] = s[pad + L - 1 - i];
    }
    for (int t = 0; t < nt; t++) {
        const double *src = s + (size_t)t * (size_t)c->hop_length;
        for (int i = 0; i < nf; i++)
            fe->frame[i] = src[i] * fe->window[i];
        bifsmn_rfft_power(&fe->fft, fe->frame, fe->power);
        for (int j = 0; j < nm; j++) {
            const double *w = fe->mel_w + fe->mel_off[j];
            const double *p = fe->power + fe->mel_start[j];
            double acc = 0.0;
            for (int i = 0; i < fe->mel_len[j]; i++)
                acc += w[i] * p[i];
            acc *= fe->power_scale;
            out[(size_t)j * nt + t] = (float)(c->to_db ? 10.0 * log10(fmax(acc, 1e-10)) : acc);
        }
    }
    if (c->top_db > 0.0f) {
        const size_t n = (size_t)nm * nt;
        float floor_db = out[0];
        for (size_t i = 1; i < n; i++)
            floor_db = out[i] > floor_db ? out[i] : floor_db;
        floor_db -= c->top_db;
        for (size_t i = 0; i < n; i++)
            out[i] = out[i] < floor_db ? floor_db : out[i];
    }
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
    const double scale = fe->cfg.pcm_scale;
    double *s = fe->signal + fe->cfg.n_fft / 2;
    for (size_t i = 0; i < n_samples; i++)
        s[i] = pcm[i] * scale;
    compute(fe, out);
    return BIFSMN_OK;
}

int bifsmn_frontend_run_float(bifsmn_frontend *fe, const float *x, size_t n_samples, float *out, size_t n_out)
{
    const int rc = check_sizes(fe, x, n_samples, out, n_out);
    if (rc != BIFSMN_OK)
        return rc;
    double *s = fe->signal + fe->cfg.n_fft / 2;
    for (size_t i = 0; i < n_samples; i++)
        s[i] = x[i];
    compute(fe, out);
    return BIFSMN_OK;
}
