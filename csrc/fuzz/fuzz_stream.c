/* libFuzzer target: the streaming API (bifsmn_stream_*) on the tiny model of tests/tiny_model.h, fed random
   settings, chunk sizes and samples.

   Input: byte 0 picks the settings (stride 1-8, edge mode, threshold, averaging, re-arming); then records of
   [chunk length: 2 bytes][kind: 1 byte][level: 1 byte], each pushing `length` samples (0 included) of one kind:
   raw bytes of the input, noise, a tone, silence or full-scale clicks, so that short inputs still make streams
   long enough to run the network and wrap the history. Every callback is checked (times on the run grid and never
   ahead of the audio (up to half a clip and a run past it while finishing), valid keywords and scores, posteriors
   that sum to 1), and the same samples pushed in one piece into a second stream, both then finished, must give
   the same posteriors and events: chunk-size independence as a fuzzed property. Also built without libFuzzer by replay.c for the ctest regressions. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tiny_model.h"

#define MAX_SAMPLES 48000 /* 3 s: keeps an execution to milliseconds under ASan */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    bifsmn_stream *stream;
    int64_t last_time, last_event;
    uint64_t hash; /* FNV-1a over every callback's data */
    int runs, events;
    int finishing; /* inside bifsmn_stream_finish: runs on appended silence */
} trace;

static void mix(trace *t, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 0x100000001b3ULL;
}

static void on_event(void *user, const bifsmn_event *e)
{
    trace *t = user;
    if (e->time != t->last_time || e->time <= t->last_event || e->keyword < 0 || e->keyword >= 3 ||
        !(e->score > 0.0f && e->score <= 1.0f))
        abort();
    t->last_event = e->time;
    t->events++;
    mix(t, e, sizeof *e);
}

static void on_posteriors(void *user, int64_t time, const float *p, const float *a, int nc)
{
    trace *t = user;
    const int64_t pos = bifsmn_stream_position(t->stream);
    const int64_t limit = t->finishing ? pos + 8000 + 8 * bifsmn_stream_hop(t->stream) /* half a clip + a run */
                                       : pos - bifsmn_stream_latency(t->stream);
    if (nc != 3 || time <= 0 || time > limit || time <= t->last_time ||
        (!t->finishing && (pos % bifsmn_stream_hop(t->stream)) != 0))
        abort();
    float sum = 0.0f;
    for (int c = 0; c < nc; c++) {
        if (!(p[c] >= 0.0f && p[c] <= 1.0f && a[c] >= 0.0f && a[c] <= 1.0f + 1e-6f))
            abort();
        sum += p[c];
    }
    if (fabsf(sum - 1.0f) > 1e-4f)
        abort();
    t->last_time = time;
    t->runs++;
    mix(t, &time, sizeof time);
    mix(t, p, sizeof(float) * (size_t)nc);
    mix(t, a, sizeof(float) * (size_t)nc);
}

static bifsmn_model *tiny(void)
{
    static bifsmn_model *m;
    if (!m) {
        layout L;
        buf b = build_model(&L);
        char msg[256];
        if (bifsmn_load_memory(b.p, b.n, BIFSMN_IMPL_AUTO, &m, msg, sizeof msg) != BIFSMN_OK)
            abort();
        free(b.p);
    }
    return m;
}

static bifsmn_stream *open_stream(uint8_t settings, trace *t)
{
    bifsmn_stream_config c;
    bifsmn_stream_config_default(&c);
    c.stride = 1 + (settings & 7);
    c.edge_frames = (settings >> 3) & 1;
    c.detector.threshold = (settings >> 4) & 1 ? 0.4f : 0.9f;
    c.detector.average_ms = (settings >> 5) & 1 ? 0.0f : 200.0f;
    c.detector.rearm = (settings >> 6) & 1 ? 1.0f : 0.2f;
    c.detector.refractory_ms = (settings >> 7) & 1 ? 0.0f : 300.0f;
    c.on_event = on_event;
    c.on_posteriors = on_posteriors;
    c.user = t;
    *t = (trace){NULL, 0, 0, 0xcbf29ce484222325ULL, 0, 0, 0};
    char msg[256];
    if (bifsmn_stream_create(tiny(), &c, &t->stream, msg, sizeof msg) != BIFSMN_OK)
        abort();
    return t->stream;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int16_t *all = malloc(sizeof(int16_t) * MAX_SAMPLES);
    if (!all)
        return 0;
    trace chunked, whole;
    bifsmn_stream *s = open_stream(data[0], &chunked);
    size_t n = 0, pos = 1;
    uint32_t rng = 12345;
    while (pos + 4 <= size && n < MAX_SAMPLES) {
        const size_t want = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
        const int kind = data[pos + 2] % 5, level = data[pos + 3];
        pos += 4;
        const size_t len = want < MAX_SAMPLES - n ? want : MAX_SAMPLES - n;
        int16_t *x = all + n;
        for (size_t i = 0; i < len; i++) {
            rng = rng * 1664525u + 1013904223u;
            switch (kind) {
            case 0: /* the input's own bytes, as far as they go */
                x[i] = pos + 1 < size ? (int16_t)(uint16_t)(data[pos] | data[pos + 1] << 8) : 0;
                pos += pos + 1 < size ? 2 : 0;
                break;
            case 1: x[i] = (int16_t)((int32_t)(rng >> 16) - 32768) * level / 255; break;
            case 2: x[i] = (int16_t)(level * 128.0 * sin(0.01 * (double)(level + 1) * (double)(n + i))); break;
            case 3: x[i] = 0; break;
            default: x[i] = (n + i) % (size_t)(level + 2) == 0 ? 32767 : -32768; break;
            }
        }
        if (bifsmn_stream_push(s, len ? x : NULL, len) != BIFSMN_OK)
            abort();
        n += len;
    }
    bifsmn_stream *w = open_stream(data[0], &whole);
    if (bifsmn_stream_push(w, all, n) != BIFSMN_OK || bifsmn_stream_position(w) != (int64_t)n ||
        bifsmn_stream_position(s) != (int64_t)n)
        abort();
    chunked.finishing = whole.finishing = 1;
    if (bifsmn_stream_finish(s) != BIFSMN_OK || bifsmn_stream_finish(w) != BIFSMN_OK ||
        bifsmn_stream_position(s) != (int64_t)n || bifsmn_stream_push(s, all, n ? 1 : 0) != (n ? BIFSMN_ERR_ARGUMENT : BIFSMN_OK))
        abort();
    if (whole.hash != chunked.hash || whole.runs != chunked.runs || whole.events != chunked.events)
        abort(); /* the chunking changed the results */
    bifsmn_stream_free(s);
    bifsmn_stream_free(w);
    free(all);
    return 0;
}
