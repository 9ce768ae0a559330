/* Streaming keyword detection (bifsmn.h): an incremental front end (one frame per hop into a ring of feature
   columns), the network every `stride` hops on the latest complete window, and the detector (detector.c).

   All work happens at sample positions fixed by the configuration, never by the chunking: a push copies samples
   up to the next position where something is due (a frame completes, a run is due), does it, and goes on. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "internal.h"

struct bifsmn_stream {
    bifsmn_model *model;
    bifsmn_frontend *fe;
    bifsmn_detector *detector;
    bifsmn_event_fn on_event;
    bifsmn_posteriors_fn on_posteriors;
    void *user;
    int edge;
    int hop, pad, n_fft, clip, n_frames, n_mels, num_classes;
    int edge_left;   /* window frames t < edge_left reach before the clip (reflect padding) */
    int edge_right;  /* window frames t >= edge_right reach past its end */
    int span;        /* a window [s, s + clip) can run once sample s + span - 1 has arrived */
    int64_t period;  /* samples between runs: stride hops */
    int busy;        /* inside a callback */
    /* positions, in samples since creation or reset */
    int64_t pos;
    int64_t next_frame; /* index of the next frame to compute; it completes at next_frame * hop + pad */
    int64_t next_run;   /* position of the next run */
    int64_t last_end;   /* the window end of the last run; 0 before the first */
    int64_t finished;   /* samples pushed when bifsmn_stream_finish was called; -1 before */
    /* the last `keep` samples at least, hist[i] holding sample hist_start + i; silence before the start */
    float *hist;
    int64_t hist_start;
    size_t hist_fill, hist_keep, hist_cap;
    /* feature columns of frames, frame k in column k mod ring_len (n_mels floats each) */
    float *ring;
    int ring_len;
    float *silence;  /* the column of a frame of zeros */
    float *window;   /* n_mels x n_frames: the last run's features */
    float *frame;    /* n_fft: a reflect-padded edge frame */
    float *scores, *probs;
};

static int ring_slot(const bifsmn_stream *s, int64_t frame)
{
    const int64_t r = frame % s->ring_len;
    return (int)(r < 0 ? r + s->ring_len : r);
}

void bifsmn_stream_free(bifsmn_stream *s)
{
    if (!s)
        return;
    bifsmn_detector_free(s->detector);
    free(s->hist);
    free(s->ring);
    free(s->silence);
    free(s->window);
    free(s->frame);
    free(s->scores);
    free(s->probs);
    free(s);
}

void bifsmn_stream_config_default(bifsmn_stream_config *c)
{
    if (!c)
        return;
    *c = (bifsmn_stream_config){
        .stride = BIFSMN_DEFAULT_STRIDE,
        .edge_frames = BIFSMN_EDGE_AUDIO,
        .detector = {BIFSMN_DEFAULT_THRESHOLD, NULL, BIFSMN_DEFAULT_AVERAGE_MS, BIFSMN_DEFAULT_REFRACTORY_MS,
                     BIFSMN_DEFAULT_REARM, BIFSMN_DEFAULT_MIN_COUNT},
    };
}

static void clear(bifsmn_stream *s)
{
    s->pos = 0;
    s->next_frame = 0;
    s->next_run = s->period;
    s->last_end = 0;
    s->finished = -1;
    s->hist_start = -(int64_t)s->hist_keep;
    s->hist_fill = s->hist_keep;
    memset(s->hist, 0, sizeof(float) * s->hist_cap);
    for (int k = 0; k < s->ring_len; k++)
        memcpy(s->ring + (size_t)k * s->n_mels, s->silence, sizeof(float) * (size_t)s->n_mels);
    for (int j = 0; j < s->n_mels; j++)
        for (int t = 0; t < s->n_frames; t++)
            s->window[(size_t)j * s->n_frames + t] = s->silence[j];
    bifsmn_detector_reset(s->detector);
}

int bifsmn_stream_create(bifsmn_model *m, const bifsmn_stream_config *c, bifsmn_stream **out, char *msg,
                         size_t msg_len)
{
    if (msg && msg_len)
        msg[0] = '\0';
    if (!out)
        return BIFSMN_ERR_ARGUMENT;
    *out = NULL;
    if (!m || !c) {
        if (msg && msg_len)
            snprintf(msg, msg_len, "no model or stream settings");
        return BIFSMN_ERR_ARGUMENT;
    }
    if (c->edge_frames != BIFSMN_EDGE_AUDIO && c->edge_frames != BIFSMN_EDGE_REFLECT) {
        if (msg && msg_len)
            snprintf(msg, msg_len, "edge_frames: %d is neither BIFSMN_EDGE_AUDIO (0) nor BIFSMN_EDGE_REFLECT (1)",
                     c->edge_frames);
        return BIFSMN_ERR_ARGUMENT;
    }
    bifsmn_stream *s = calloc(1, sizeof *s);
    if (!s)
        return BIFSMN_ERR_NOMEM;
    int rc = bifsmn_detector_create(m, c->stride, &c->detector, &s->detector, msg, msg_len);
    if (rc != BIFSMN_OK) {
        free(s);
        return rc;
    }
    const bifsmn_frontend_config *fc = bifsmn_frontend_get_config(m->frontend);
    s->model = m;
    s->fe = m->frontend;
    s->on_event = c->on_event;
    s->on_posteriors = c->on_posteriors;
    s->user = c->user;
    s->edge = c->edge_frames;
    s->hop = fc->hop_length;
    s->n_fft = fc->n_fft;
    s->pad = fc->n_fft / 2;
    s->clip = m->num_samples;
    s->n_frames = m->n_frames;
    s->n_mels = m->n_mels;
    s->num_classes = m->num_classes;
    s->period = (int64_t)c->stride * s->hop;
    /* frame t covers [t hop - pad, t hop + pad) of the clip */
    const int T = s->n_frames, H = s->hop, P = s->pad, L = s->clip;
    s->edge_left = (P + H - 1) / H < T ? (P + H - 1) / H : T;
    s->edge_right = (L - P) / H + 1 < T ? (L - P) / H + 1 : T;
    if (s->edge_right < s->edge_left)
        s->edge_right = s->edge_left;
    const int last_needed = s->edge == BIFSMN_EDGE_AUDIO ? (T - 1) * H + P
                            : s->edge_right > s->edge_left ? (s->edge_right - 1) * H + P
                                                           : 0;
    s->span = last_needed > L ? last_needed : L;
    /* The oldest sample still needed is the next window's start or the next frame's, both within
       span + hop + n_fft of the position; a capacity of twice that moves each sample about once. */
    s->hist_keep = (size_t)s->span + (size_t)H + (size_t)s->n_fft;
    s->hist_cap = 2 * s->hist_keep + (size_t)H;
    s->ring_len = T + 3; /* the window plus the frames computed past it while waiting for its run */
    s->hist = malloc(sizeof(float) * s->hist_cap);
    s->ring = malloc(sizeof(float) * (size_t)s->ring_len * (size_t)s->n_mels);
    s->silence = calloc((size_t)s->n_mels, sizeof(float));
    s->window = malloc(sizeof(float) * (size_t)s->n_mels * (size_t)T);
    s->frame = calloc((size_t)s->n_fft, sizeof(float));
    s->scores = malloc(sizeof(float) * (size_t)s->num_classes);
    s->probs = malloc(sizeof(float) * (size_t)s->num_classes);
    if (!s->hist || !s->ring || !s->silence || !s->window || !s->frame || !s->scores || !s->probs) {
        bifsmn_stream_free(s);
        return BIFSMN_ERR_NOMEM;
    }
    bifsmn_frontend_frame(s->fe, s->frame, s->silence, 1); /* s->frame is all zeros */
    clear(s);
    *out = s;
    return BIFSMN_OK;
}

int bifsmn_stream_reset(bifsmn_stream *s)
{
    if (!s || s->busy)
        return BIFSMN_ERR_ARGUMENT;
    clear(s);
    return BIFSMN_OK;
}

int64_t bifsmn_stream_position(const bifsmn_stream *s)
{
    return !s ? BIFSMN_ERR_ARGUMENT : s->finished >= 0 ? s->finished : s->pos;
}

int bifsmn_stream_hop(const bifsmn_stream *s) { return s ? s->hop : BIFSMN_ERR_ARGUMENT; }

int bifsmn_stream_latency(const bifsmn_stream *s) { return s ? s->span - s->clip : BIFSMN_ERR_ARGUMENT; }

int bifsmn_stream_features(const bifsmn_stream *s, float *out, size_t n)
{
    if (!s || !out || n != (size_t)s->n_mels * (size_t)s->n_frames)
        return BIFSMN_ERR_ARGUMENT;
    memcpy(out, s->window, sizeof(float) * n);
    return BIFSMN_OK;
}

static const float *sample_at(const bifsmn_stream *s, int64_t index) { return s->hist + (index - s->hist_start); }

/* n samples of pcm, or of silence when pcm is NULL, into the history. */
static void append(bifsmn_stream *s, const int16_t *pcm, size_t n)
{
    if (s->hist_fill + n > s->hist_cap) {
        const size_t drop = s->hist_fill - s->hist_keep;
        memmove(s->hist, s->hist + drop, sizeof(float) * s->hist_keep);
        s->hist_start += (int64_t)drop;
        s->hist_fill = s->hist_keep;
    }
    const float scale = bifsmn_frontend_get_config(s->fe)->pcm_scale;
    float *dst = s->hist + s->hist_fill;
    if (pcm)
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)pcm[i] * scale;
    else
        memset(dst, 0, sizeof(float) * n);
    s->hist_fill += n;
    s->pos += (int64_t)n;
}

/* Window frame t of the clip starting at `start`, reflect-padded at the clip's edges, into window column t. */
static void reflect_frame(bifsmn_stream *s, int64_t start, int t)
{
    const int L = s->clip;
    for (int i = 0; i < s->n_fft; i++) {
        int j = t * s->hop - s->pad + i;
        j = j < 0 ? -j : j >= L ? 2 * (L - 1) - j : j;
        s->frame[i] = *sample_at(s, start + j);
    }
    bifsmn_frontend_frame(s->fe, s->frame, s->window + t, (size_t)s->n_frames);
}

static void softmax(const float *x, float *p, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    for (int i = 0; i < n; i++)
        p[i] = (float)(exp((double)x[i] - mx) / sum);
}

/* The run due at s->pos: the latest window [start, start + clip) on the hop grid with start + span <= pos. */
static void run(bifsmn_stream *s)
{
    const int64_t H = s->hop, grid = s->pos - s->span;
    const int64_t first = (grid >= 0 ? grid / H : -((-grid + H - 1) / H)); /* floor(grid / H) */
    const int64_t start = first * H, end = start + s->clip;
    if (end <= 0)
        return;
    s->last_end = end;
    const int T = s->n_frames, nm = s->n_mels;
    for (int t = 0; t < T; t++) {
        const float *col = s->ring + (size_t)ring_slot(s, first + t) * nm;
        for (int j = 0; j < nm; j++)
            s->window[(size_t)j * T + t] = col[j];
    }
    if (s->edge == BIFSMN_EDGE_REFLECT)
        for (int t = 0; t < T; t++)
            if (t < s->edge_left || t >= s->edge_right)
                reflect_frame(s, start, t);
    bifsmn_frontend_clamp(s->fe, s->window, (size_t)nm * T);
    bifsmn_forward(s->model, s->window, s->scores);
    softmax(s->scores, s->probs, s->num_classes);
    bifsmn_event ev;
    const int fired = bifsmn_detector_step(s->detector, end, s->probs, (size_t)s->num_classes, &ev) == 1;
    s->busy = 1;
    if (s->on_posteriors)
        s->on_posteriors(s->user, end, s->probs, bifsmn_detector_averaged(s->detector), s->num_classes);
    if (fired && s->on_event)
        s->on_event(s->user, &ev);
    s->busy = 0;
}

/* Feeds n samples (silence when pcm is NULL), doing every frame and run that falls due on the way. */
static void feed(bifsmn_stream *s, const int16_t *pcm, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const int64_t frame_due = s->next_frame * s->hop + s->pad;
        const int64_t due = frame_due < s->next_run ? frame_due : s->next_run;
        const size_t take = (size_t)(due - s->pos) < n - i ? (size_t)(due - s->pos) : n - i;
        append(s, pcm ? pcm + i : NULL, take);
        i += take;
        if (s->pos == frame_due) {
            const int64_t k = s->next_frame++;
            bifsmn_frontend_frame(s->fe, sample_at(s, k * s->hop - s->pad), s->ring + (size_t)ring_slot(s, k) * s->n_mels,
                                  1);
        }
        if (s->pos == s->next_run) {
            s->next_run += s->period;
            run(s);
        }
    }
}

int bifsmn_stream_push(bifsmn_stream *s, const int16_t *pcm, size_t n)
{
    if (!s || s->busy || (!pcm && n) || (s->finished >= 0 && n))
        return BIFSMN_ERR_ARGUMENT;
    feed(s, pcm, n);
    return BIFSMN_OK;
}

int bifsmn_stream_finish(bifsmn_stream *s)
{
    if (!s || s->busy)
        return BIFSMN_ERR_ARGUMENT;
    if (s->finished >= 0)
        return BIFSMN_OK;
    s->finished = s->pos;
    if (s->pos == 0)
        return BIFSMN_OK;
    /* silence up to each next run until a window ends half a clip past the audio: a function of the pushed
       samples alone, so the chunking still does not matter */
    const int64_t target = s->pos + s->clip / 2;
    while (s->last_end < target)
        feed(s, NULL, (size_t)(s->next_run - s->pos));
    return BIFSMN_OK;
}
