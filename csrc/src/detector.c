/* The posterior rule of bifsmn.h's streaming section: averaging window, per-class thresholds, re-arming,
   refractory time, minimum count. Everything is sized at creation; a step only reads and writes its arrays. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "internal.h"

#define MAX_AVERAGE_RUNS 100000 /* a 10-minute average at 32 ms hops and stride 1: bounds the history */
#define DISABLED 2.0f           /* a threshold no average reaches */

struct bifsmn_detector {
    int num_classes;
    int n_avg;          /* runs averaged */
    int min_count;
    int count;          /* runs since creation or reset, saturating at n_avg + min_count */
    int head;           /* next history row */
    float rearm;
    int64_t refractory; /* samples */
    int64_t last_event; /* time of the last event; valid when has_event */
    int has_event;
    float *thresholds;  /* num_classes */
    float *history;     /* n_avg x num_classes, zero before use */
    float *average;     /* num_classes */
    uint8_t *armed;     /* num_classes */
};

static int bad(char *msg, size_t msg_len, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return BIFSMN_ERR_ARGUMENT;
}

void bifsmn_detector_free(bifsmn_detector *d)
{
    if (!d)
        return;
    free(d->thresholds);
    free(d->history);
    free(d->average);
    free(d->armed);
    free(d);
}

void bifsmn_detector_reset(bifsmn_detector *d)
{
    if (!d)
        return;
    d->count = d->head = d->has_event = 0;
    d->last_event = 0;
    memset(d->history, 0, sizeof(float) * (size_t)d->n_avg * (size_t)d->num_classes);
    memset(d->average, 0, sizeof(float) * (size_t)d->num_classes);
    memset(d->armed, 1, (size_t)d->num_classes);
}

int bifsmn_detector_create(const bifsmn_model *m, int stride, const bifsmn_detector_config *c, bifsmn_detector **out,
                           char *msg, size_t msg_len)
{
    if (msg && msg_len)
        msg[0] = '\0';
    if (!out)
        return BIFSMN_ERR_ARGUMENT;
    *out = NULL;
    if (!m || !c)
        return bad(msg, msg_len, "no model or detector settings");
    const int hop = bifsmn_frontend_get_config(m->frontend)->hop_length;
    const int max_stride = (1 << 20) / hop; /* about a minute at 16 kHz */
    if (stride < 1 || stride > max_stride)
        return bad(msg, msg_len, "stride: %d hops is outside [1, %d]", stride, max_stride);
    if (!(c->threshold > 0.0f && c->threshold <= 1.0f))
        return bad(msg, msg_len, "threshold: %g is outside (0, 1]", (double)c->threshold);
    if (!(c->average_ms >= 0.0f && c->average_ms <= 600000.0f))
        return bad(msg, msg_len, "average_ms: %g is outside [0, 600000]", (double)c->average_ms);
    if (!(c->refractory_ms >= 0.0f && c->refractory_ms <= 3.6e6f))
        return bad(msg, msg_len, "refractory_ms: %g is outside [0, 3600000]", (double)c->refractory_ms);
    if (!(c->rearm >= 0.0f && c->rearm <= 1.0f))
        return bad(msg, msg_len, "rearm: %g is outside [0, 1]", (double)c->rearm);
    if (c->min_count < 1 || c->min_count > MAX_AVERAGE_RUNS)
        return bad(msg, msg_len, "min_count: %d is outside [1, %d]", c->min_count, MAX_AVERAGE_RUNS);
    const int nc = m->num_classes;
    if (c->thresholds)
        for (int i = 0; i < nc; i++)
            if (!(c->thresholds[i] > 0.0f && c->thresholds[i] < INFINITY))
                return bad(msg, msg_len, "thresholds[%d] (%s): %g is not a positive number (above 1 disables it)", i,
                           m->class_names[i], (double)c->thresholds[i]);
    const double period_ms = 1000.0 * stride * hop / m->sample_rate;
    const double runs = floor(c->average_ms / period_ms + 0.5);
    bifsmn_detector *d = calloc(1, sizeof *d);
    if (!d)
        return BIFSMN_ERR_NOMEM;
    d->num_classes = nc;
    d->n_avg = runs < 1 ? 1 : runs > MAX_AVERAGE_RUNS ? MAX_AVERAGE_RUNS : (int)runs;
    d->min_count = c->min_count;
    d->rearm = c->rearm;
    d->refractory = (int64_t)floor((double)c->refractory_ms * m->sample_rate / 1000.0 + 0.5);
    d->thresholds = malloc(sizeof(float) * (size_t)nc);
    d->history = malloc(sizeof(float) * (size_t)d->n_avg * (size_t)nc);
    d->average = malloc(sizeof(float) * (size_t)nc);
    d->armed = malloc((size_t)nc);
    if (!d->thresholds || !d->history || !d->average || !d->armed) {
        bifsmn_detector_free(d);
        return BIFSMN_ERR_NOMEM;
    }
    for (int i = 0; i < nc; i++)
        d->thresholds[i] = c->thresholds ? c->thresholds[i] : m->class_names[i][0] == '_' ? DISABLED : c->threshold;
    bifsmn_detector_reset(d);
    *out = d;
    return BIFSMN_OK;
}

const float *bifsmn_detector_averaged(const bifsmn_detector *d) { return d ? d->average : NULL; }

int bifsmn_detector_step(bifsmn_detector *d, int64_t time, const float *p, size_t n, bifsmn_event *event)
{
    if (!d || !p || !event || n != (size_t)d->num_classes)
        return BIFSMN_ERR_ARGUMENT;
    const int nc = d->num_classes;
    memcpy(d->history + (size_t)d->head * nc, p, sizeof(float) * (size_t)nc);
    d->head = (d->head + 1) % d->n_avg;
    if (d->count < d->n_avg + d->min_count)
        d->count++;
    /* rows not yet written are zero, so the sum over all rows is the sum over the ones that were */
    const int used = d->count < d->n_avg ? d->count : d->n_avg;
    int top = 0;
    for (int c = 0; c < nc; c++) {
        float sum = 0.0f;
        for (int r = 0; r < d->n_avg; r++)
            sum += d->history[(size_t)r * nc + c];
        d->average[c] = sum / (float)used;
        if (d->average[c] < d->rearm * d->thresholds[c])
            d->armed[c] = 1;
        if (d->average[c] > d->average[top])
            top = c;
    }
    const float score = d->average[top];
    if (d->count < d->min_count || !(d->thresholds[top] <= 1.0f) || !(score >= d->thresholds[top]) || !d->armed[top] ||
        (d->has_event && time - d->last_event < d->refractory))
        return 0;
    memset(d->armed, 1, (size_t)nc);
    d->armed[top] = 0;
    d->has_event = 1;
    d->last_event = time;
    *event = (bifsmn_event){time, top, score};
    return 1;
}

int bifsmn_detector_run(bifsmn_detector *d, const int64_t *times, const float *p, size_t n_runs, size_t n,
                        bifsmn_event *events, size_t max_events)
{
    if (!d || (n_runs && (!times || !p)) || (max_events && !events) || n != (size_t)d->num_classes ||
        n_runs > (size_t)INT32_MAX)
        return BIFSMN_ERR_ARGUMENT;
    bifsmn_detector_reset(d);
    int fired = 0;
    bifsmn_event e;
    for (size_t i = 0; i < n_runs; i++)
        if (bifsmn_detector_step(d, times[i], p + i * n, n, &e) == 1) {
            if ((size_t)fired < max_events)
                events[fired] = e;
            fired++;
        }
    return fired;
}
