/* The streaming API (bifsmn_stream_*, bifsmn_detector_*) on the tiny model of tiny_model.h:
   - chunk-size independence: pushes of 1, 7, 512, random and all samples give the same posteriors and events;
   - each run's posteriors are the softmax of the network's scores on the features the stream holds;
   - the incremental features equal the clip front end's on the same audio where a frame does not reach past
     the window (all of them with BIFSMN_EDGE_REFLECT), and the edge frames do differ with BIFSMN_EDGE_AUDIO;
   - run times are on the stride grid and never ahead of the audio; reset gives a fresh stream;
   - finish evaluates the end of the audio: runs on appended silence up to the first window ending half a clip
     past the last sample, with the clip front end's features of audio + silence, the same for every chunking;
     a finished stream refuses samples until reset;
   - the detector rule on hand-made posterior sequences with known events (the same keyword twice included);
   - bad settings and re-entrant calls are refused with a reason;
   - nothing is allocated by push or reset (when the linker can wrap malloc: BIFSMN_TEST_WRAP_MALLOC). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "internal.h"
#include "tiny_model.h"

#if defined(BIFSMN_TEST_WRAP_MALLOC)
/* -Wl,--wrap=...: every allocation of the library and this test goes through these while counting is on. */
static int counting, allocations;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n) { return allocations += counting, __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return allocations += counting, __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return allocations += counting, __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return allocations += counting, __real_aligned_alloc(a, n); }
#endif

#define NC 3        /* yes, no, _silence_ */
#define MAX_RUNS 4096
#define MAX_EVENTS 1024
#define RATE 16000

typedef struct {
    int64_t time;
    float p[NC], a[NC];
} run_record;

typedef struct {
    bifsmn_model *model;
    bifsmn_stream *stream; /* for the callbacks' own checks */
    const int16_t *audio;  /* the whole signal pushed, for the clip comparisons */
    size_t n_audio;
    int check_network, check_clip, edge;
    int n_runs, n_events;
    int edge_columns_differ, push_in_callback;
    run_record runs[MAX_RUNS];
    bifsmn_event events[MAX_EVENTS];
} recorder;

static void on_event(void *user, const bifsmn_event *e)
{
    recorder *r = user;
    if (r->n_events < MAX_EVENTS)
        r->events[r->n_events++] = *e;
}

static void softmax(const float *x, float *p, int n)
{
    double mx = x[0], sum = 0.0;
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++)
        sum += exp(x[i] - mx);
    for (int i = 0; i < n; i++)
        p[i] = (float)(exp(x[i] - mx) / sum);
}

/* The stream's window against the clip front end on the same samples (silence before the stream). */
static void compare_with_clip(recorder *r, int64_t end)
{
    const int nm = bifsmn_num_mels(r->model), T = bifsmn_num_frames(r->model), L = bifsmn_num_samples(r->model);
    const int H = 512, P = 256; /* tiny_model.h's front end */
    static float held[32 * 32], clip[32 * 32];
    static int16_t pcm[16000];
    for (int i = 0; i < L; i++) {
        const int64_t at = end - L + i;
        pcm[i] = at >= 0 && at < (int64_t)r->n_audio ? r->audio[at] : 0;
    }
    CHECK(bifsmn_stream_features(r->stream, held, (size_t)nm * T) == BIFSMN_OK, "stream features");
    CHECK(bifsmn_features_pcm(r->model, pcm, (size_t)L, clip, (size_t)nm * T) == BIFSMN_OK, "clip features");
    for (int t = 0; t < T; t++) {
        const int edge = t * H - P < 0 || t * H + P > L;
        int same = 1;
        for (int j = 0; j < nm; j++)
            same &= held[j * T + t] == clip[j * T + t];
        if (edge && r->edge == BIFSMN_EDGE_AUDIO)
            r->edge_columns_differ += !same;
        else
            CHECK(same, "run at %lld, frame %d (%s): stream and clip features differ", (long long)end, t,
                  edge ? "reflect-padded edge" : "interior");
    }
}

static void on_posteriors(void *user, int64_t time, const float *p, const float *a, int nc)
{
    recorder *r = user;
    CHECK(nc == NC, "%d classes", nc);
    if (r->n_runs < MAX_RUNS) {
        run_record *rec = &r->runs[r->n_runs++];
        memset(rec, 0, sizeof *rec); /* padding too: records are compared with memcmp */
        rec->time = time;
        memcpy(rec->p, p, sizeof rec->p);
        memcpy(rec->a, a, sizeof rec->a);
    }
    if (r->check_network) {
        static float features[32 * 32];
        float scores[NC], want[NC];
        CHECK(bifsmn_stream_features(r->stream, features, sizeof features / sizeof *features) == BIFSMN_OK, "features");
        CHECK(bifsmn_run_features(r->model, features, sizeof features / sizeof *features, scores, NC) == BIFSMN_OK,
              "network on the held features");
        softmax(scores, want, NC);
        for (int c = 0; c < NC; c++)
            CHECK(fabsf(want[c] - p[c]) <= 1e-6f, "run at %lld: posterior %d is %g, the network says %g",
                  (long long)time, c, p[c], want[c]);
    }
    if (r->check_clip)
        compare_with_clip(r, time);
    if (r->push_in_callback) {
        const int16_t x = 0;
        CHECK(bifsmn_stream_push(r->stream, &x, 1) == BIFSMN_ERR_ARGUMENT, "push from a callback accepted");
        CHECK(bifsmn_stream_reset(r->stream) == BIFSMN_ERR_ARGUMENT, "reset from a callback accepted");
        CHECK(bifsmn_stream_finish(r->stream) == BIFSMN_ERR_ARGUMENT, "finish from a callback accepted");
    }
}

/* 6 s of silence, noise bursts at several levels, tones and clicks: windows whose scores move. */
static int16_t *make_signal(size_t n)
{
    int16_t *x = malloc(n * sizeof *x);
    unsigned long long s = 4242;
    for (size_t i = 0; i < n; i++) {
        const size_t seg = i / 4000;
        double v = 0.0;
        switch (seg % 5) {
        case 0: v = 0.0; break;
        case 1: v = 9000.0 * rng_float(&s); break;
        case 2: v = 12000.0 * sin(2 * 3.14159265358979 * (300.0 + 200.0 * (double)seg) * (double)i / RATE); break;
        case 3: v = 300.0 * rng_float(&s); break;
        default: v = i % 800 == 0 ? 30000.0 : 0.0; break;
        }
        x[i] = (int16_t)v;
    }
    return x;
}

static bifsmn_stream *open_stream(bifsmn_model *m, recorder *r, int stride, int edge, float threshold)
{
    bifsmn_stream_config c;
    bifsmn_stream_config_default(&c);
    c.stride = stride;
    c.edge_frames = edge;
    c.detector.threshold = threshold;
    c.detector.refractory_ms = 100.0f;
    c.detector.rearm = 1.0f; /* the random model's "yes" rarely falls far: re-arm below the threshold */
    c.detector.average_ms = 100.0f;
    c.on_event = on_event;
    c.on_posteriors = on_posteriors;
    c.user = r;
    bifsmn_stream *s = NULL;
    char msg[256];
    CHECK(bifsmn_stream_create(m, &c, &s, msg, sizeof msg) == BIFSMN_OK, "create: %s", msg);
    r->stream = s;
    r->model = m;
    r->edge = edge;
    return s;
}

static void push_chunked(bifsmn_stream *s, const int16_t *x, size_t n, size_t chunk, unsigned long long *rng)
{
    for (size_t i = 0; i < n;) {
        size_t take = chunk ? chunk : 1 + (size_t)(rng_next(rng) % 3000);
        take = take < n - i ? take : n - i;
        CHECK(bifsmn_stream_push(s, x + i, take) == BIFSMN_OK, "push");
        i += take;
    }
}

static int same_records(const recorder *a, const recorder *b)
{
    return a->n_runs == b->n_runs && a->n_events == b->n_events &&
           memcmp(a->runs, b->runs, sizeof(run_record) * (size_t)a->n_runs) == 0 &&
           memcmp(a->events, b->events, sizeof(bifsmn_event) * (size_t)a->n_events) == 0;
}

static void test_chunking(bifsmn_model *m, const int16_t *x, size_t n)
{
    static recorder whole, part;
    const size_t chunks[] = {1, 7, 512, 0 /* random sizes */};
    for (int edge = 0; edge < 2; edge++)
        for (int stride = 1; stride <= 3; stride += 2) {
            memset(&whole, 0, sizeof whole);
            bifsmn_stream *s = open_stream(m, &whole, stride, edge, 0.9f);
            CHECK(bifsmn_stream_push(s, x, n) == BIFSMN_OK, "push all");
            const int pushed_runs = whole.n_runs;
            CHECK(bifsmn_stream_finish(s) == BIFSMN_OK, "finish");
            bifsmn_stream_free(s);
            /* finish: runs on until a window ends half a clip (8000 samples) past the audio, and no further */
            const int64_t last = whole.runs[whole.n_runs - 1].time, target = (int64_t)n + 8000;
            CHECK(whole.n_runs > pushed_runs && last >= target && whole.runs[whole.n_runs - 2].time < target,
                  "edge %d stride %d: finish ran %d runs, the last ending at %lld", edge, stride,
                  whole.n_runs - pushed_runs, (long long)last);
            printf("edge %d stride %d: %d runs, %d events\n", edge, stride, whole.n_runs, whole.n_events);
            CHECK(whole.n_events >= 3, "edge %d stride %d: only %d events: the comparison would be weak", edge, stride,
                  whole.n_events);
            const int64_t period = (int64_t)stride * 512;
            CHECK(whole.n_runs >= (int)((int64_t)n / period) - 3, "edge %d stride %d: %d runs", edge, stride,
                  whole.n_runs);
            for (int i = 1; i < whole.n_runs; i++)
                CHECK(whole.runs[i].time - whole.runs[i - 1].time == period, "runs %d, %d are %lld samples apart", i - 1,
                      i, (long long)(whole.runs[i].time - whole.runs[i - 1].time));
            for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
                memset(&part, 0, sizeof part);
                unsigned long long rng = 99;
                s = open_stream(m, &part, stride, edge, 0.9f);
                push_chunked(s, x, n, chunks[c], &rng);
                CHECK(bifsmn_stream_finish(s) == BIFSMN_OK, "finish");
                CHECK(bifsmn_stream_position(s) == (int64_t)n, "position %lld", (long long)bifsmn_stream_position(s));
                bifsmn_stream_free(s);
                CHECK(same_records(&whole, &part), "edge %d stride %d: pushes of %zu give %d runs / %d events, not %d / %d",
                      edge, stride, chunks[c], part.n_runs, part.n_events, whole.n_runs, whole.n_events);
            }
        }
}

static void test_network_and_clip(bifsmn_model *m, int16_t *x, size_t n)
{
    static recorder r;
    for (int edge = 0; edge < 2; edge++) {
        memset(&r, 0, sizeof r);
        r.check_network = r.check_clip = 1;
        r.audio = x;
        r.n_audio = n;
        bifsmn_stream *s = open_stream(m, &r, 3, edge, 0.4f);
        CHECK(bifsmn_stream_latency(s) == (edge == BIFSMN_EDGE_AUDIO ? 31 * 512 + 256 - 16000 : 0), "latency %d",
              bifsmn_stream_latency(s));
        unsigned long long rng = 7;
        push_chunked(s, x, n, 0, &rng);
        const int pushed_runs = r.n_runs;
        CHECK(bifsmn_stream_finish(s) == BIFSMN_OK, "finish"); /* its windows: the audio, then silence */
        CHECK(r.n_runs > pushed_runs + 4 && r.runs[r.n_runs - 1].time > (int64_t)n, "%d runs after finish",
              r.n_runs - pushed_runs);
        CHECK(r.n_runs > 50, "%d runs", r.n_runs);
        if (edge == BIFSMN_EDGE_AUDIO)
            CHECK(r.edge_columns_differ > r.n_runs, "edge frames equal the reflect-padded ones in %d of %d runs",
                  4 * r.n_runs - r.edge_columns_differ, r.n_runs);
        bifsmn_stream_free(s);
    }
}

static void test_reset(bifsmn_model *m, const int16_t *x, size_t n)
{
    static recorder fresh, again;
    memset(&fresh, 0, sizeof fresh);
    bifsmn_stream *s = open_stream(m, &fresh, 2, BIFSMN_EDGE_AUDIO, 0.4f);
    bifsmn_stream_push(s, x, n / 2);
    bifsmn_stream_free(s);
    memset(&again, 0, sizeof again);
    s = open_stream(m, &again, 2, BIFSMN_EDGE_AUDIO, 0.4f);
    bifsmn_stream_push(s, x + n / 3, n / 3); /* something else first */
    CHECK(bifsmn_stream_reset(s) == BIFSMN_OK && bifsmn_stream_position(s) == 0, "reset");
    again.n_runs = again.n_events = 0;
    bifsmn_stream_push(s, x, n / 2);
    CHECK(same_records(&fresh, &again), "a reset stream differs from a fresh one");
    again.push_in_callback = 1;
    bifsmn_stream_push(s, x, 2048);
    CHECK(bifsmn_stream_push(s, NULL, 0) == BIFSMN_OK, "an empty push refused");
    CHECK(bifsmn_stream_push(s, NULL, 5) == BIFSMN_ERR_ARGUMENT, "NULL samples accepted");
    again.push_in_callback = 0;
    /* finished: no more samples, a second finish runs nothing, reset takes samples again */
    const int64_t pos = bifsmn_stream_position(s);
    CHECK(bifsmn_stream_finish(s) == BIFSMN_OK && bifsmn_stream_position(s) == pos, "finish");
    const int runs = again.n_runs;
    CHECK(bifsmn_stream_push(s, x, 10) == BIFSMN_ERR_ARGUMENT, "a finished stream took samples");
    CHECK(bifsmn_stream_push(s, NULL, 0) == BIFSMN_OK, "an empty push refused after finish");
    CHECK(bifsmn_stream_finish(s) == BIFSMN_OK && again.n_runs == runs, "a second finish ran the network");
    CHECK(bifsmn_stream_reset(s) == BIFSMN_OK && bifsmn_stream_finish(s) == BIFSMN_OK && again.n_runs == runs,
          "finish without samples ran the network");
    CHECK(bifsmn_stream_reset(s) == BIFSMN_OK && bifsmn_stream_push(s, x, 4096) == BIFSMN_OK, "push after reset");
    CHECK(bifsmn_stream_finish(NULL) == BIFSMN_ERR_ARGUMENT, "NULL stream finished");
    bifsmn_stream_free(s);
}

/* A detector step with posteriors (yes, no, silence). */
static int step(bifsmn_detector *d, int64_t t, float yes, float no, bifsmn_event *e)
{
    const float p[NC] = {yes, no, 1.0f - yes - no};
    return bifsmn_detector_step(d, t, p, NC, e);
}

static void test_detector_rule(bifsmn_model *m)
{
    /* stride 4 hops of 512 samples at 16 kHz: one run every 128 ms; average over 256 ms = 2 runs */
    bifsmn_detector_config c = {0.8f, NULL, 256.0f, 500.0f, 0.5f, 2};
    bifsmn_detector *d = NULL;
    char msg[256];
    CHECK(bifsmn_detector_create(m, 4, &c, &d, msg, sizeof msg) == BIFSMN_OK, "create: %s", msg);
    /* time of run i: 2048 (i + 1); each row: yes, no; expected event (class, -1 none) */
    static const float seq[][3] = {
        {0.95f, 0.0f, -1}, /* 0: one run only: below min_count (2) */
        {0.95f, 0.0f, 0},  /* 1: average 0.95: "yes" */
        {0.95f, 0.0f, -1}, /* 2: still high: disarmed, no second event */
        {0.1f, 0.0f, -1},  /* 3: average 0.525: not below rearm 0.4 yet */
        {0.1f, 0.0f, -1},  /* 4: 0.1 < 0.4: re-armed */
        {0.95f, 0.0f, -1}, /* 5: average 0.525 < 0.8 */
        {0.95f, 0.0f, 0},  /* 6: "yes" again, 640 ms after the first: past the refractory 500 ms */
        {0.0f, 0.9f, -1},  /* 7: averages 0.475 / 0.45: top is yes, below threshold */
        {0.0f, 0.9f, -1},  /* 8: "no" at 0.9 but only 256 ms after the last event: refractory */
        {0.0f, 0.9f, -1},  /* 9: 384 ms: still refractory */
        {0.0f, 0.9f, 1},   /* 10: 512 ms: "no" (armed: never fired) */
        {0.0f, 0.0f, -1},  /* 11: silence on top: never a keyword */
        {0.0f, 0.0f, -1},  /* 12 */
        {0.6f, 0.0f, -1},  /* 13: one spike averages to 0.3 */
        {0.0f, 0.0f, -1},  /* 14 */
    };
    bifsmn_event e;
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        const int64_t t = 2048 * (int64_t)(i + 1);
        const int fired = step(d, t, seq[i][0], seq[i][1], &e);
        CHECK(fired == (seq[i][2] >= 0), "run %zu: fired %d", i, fired);
        if (fired && seq[i][2] >= 0)
            CHECK(e.keyword == (int)seq[i][2] && e.time == t && fabsf(e.score - 0.5f * (seq[i][0] + seq[i - 1][0] +
                                                                                            seq[i][1] + seq[i - 1][1])) <
                                                                     1e-6f,
                  "run %zu: event (%d, %lld, %g)", i, e.keyword, (long long)e.time, e.score);
    }
    CHECK(fabsf(bifsmn_detector_averaged(d)[2] - 0.7f) < 1e-6f, "average of silence %g", bifsmn_detector_averaged(d)[2]);
    /* the same sequence in one bifsmn_detector_run: a reset, then the same three events; a short buffer gets the
       first ones and the count */
    enum { RUNS = sizeof seq / sizeof *seq };
    int64_t times[RUNS];
    float rows[RUNS][NC];
    for (int i = 0; i < RUNS; i++) {
        times[i] = 2048 * (int64_t)(i + 1);
        rows[i][0] = seq[i][0], rows[i][1] = seq[i][1], rows[i][2] = 1.0f - seq[i][0] - seq[i][1];
    }
    bifsmn_event batch[4];
    CHECK(bifsmn_detector_run(d, times, &rows[0][0], RUNS, NC, batch, 4) == 3, "batch run");
    CHECK(batch[0].time == 4096 && batch[0].keyword == 0 && batch[1].time == 14336 && batch[1].keyword == 0 &&
              batch[2].time == 22528 && batch[2].keyword == 1,
          "batch events (%lld, %d) (%lld, %d) (%lld, %d)", (long long)batch[0].time, batch[0].keyword,
          (long long)batch[1].time, batch[1].keyword, (long long)batch[2].time, batch[2].keyword);
    CHECK(bifsmn_detector_run(d, times, &rows[0][0], RUNS, NC, batch, 1) == 3 && batch[0].time == 4096, "short buffer");
    CHECK(bifsmn_detector_run(d, times, &rows[0][0], RUNS, NC, NULL, 0) == 3, "count only");
    CHECK(bifsmn_detector_run(d, times, &rows[0][0], RUNS, NC - 1, batch, 4) == BIFSMN_ERR_ARGUMENT, "bad width");
    CHECK(bifsmn_detector_run(d, NULL, NULL, 0, NC, NULL, 0) == 0, "no runs");
    /* after a reset the minimum count applies again */
    bifsmn_detector_reset(d);
    CHECK(step(d, 2048, 0.95f, 0.0f, &e) == 0 && step(d, 4096, 0.95f, 0.0f, &e) == 1, "after reset");
    bifsmn_detector_free(d);

    /* per-class thresholds: yes disabled (above 1), _silence_ made a keyword */
    const float th[NC] = {1.5f, 0.8f, 0.6f};
    c.thresholds = th;
    c.min_count = 1;
    c.average_ms = 0.0f; /* one run */
    CHECK(bifsmn_detector_create(m, 4, &c, &d, msg, sizeof msg) == BIFSMN_OK, "create: %s", msg);
    CHECK(step(d, 2048, 0.99f, 0.0f, &e) == 0, "a disabled class fired");
    CHECK(step(d, 100000, 0.0f, 0.0f, &e) == 1 && e.keyword == 2, "_silence_ with its own threshold did not fire");
    bifsmn_detector_free(d);
}

static void expect_refused(bifsmn_model *m, bifsmn_stream_config c, const char *field)
{
    bifsmn_stream *s = (bifsmn_stream *)&c; /* must be reset to NULL */
    char msg[256];
    const int rc = bifsmn_stream_create(m, &c, &s, msg, sizeof msg);
    CHECK(rc == BIFSMN_ERR_ARGUMENT && !s && strstr(msg, field) == msg, "%s: rc %d, message '%s'", field, rc, msg);
}

static void test_bad_settings(bifsmn_model *m)
{
    bifsmn_stream_config good, c;
    bifsmn_stream_config_default(&good);
    const float zero_th[NC] = {0.5f, 0.0f, 2.0f};
    c = good, c.stride = 0, expect_refused(m, c, "stride");
    c = good, c.stride = 1 << 20, expect_refused(m, c, "stride");
    c = good, c.edge_frames = 2, expect_refused(m, c, "edge_frames");
    c = good, c.detector.threshold = 0.0f, expect_refused(m, c, "threshold");
    c = good, c.detector.threshold = 1.5f, expect_refused(m, c, "threshold");
    c = good, c.detector.threshold = NAN, expect_refused(m, c, "threshold");
    c = good, c.detector.thresholds = zero_th, expect_refused(m, c, "thresholds[1] (no)");
    c = good, c.detector.average_ms = -1.0f, expect_refused(m, c, "average_ms");
    c = good, c.detector.refractory_ms = INFINITY, expect_refused(m, c, "refractory_ms");
    c = good, c.detector.rearm = 1.5f, expect_refused(m, c, "rearm");
    c = good, c.detector.min_count = 0, expect_refused(m, c, "min_count");
    bifsmn_stream *s = NULL;
    CHECK(bifsmn_stream_create(NULL, &good, &s, NULL, 0) == BIFSMN_ERR_ARGUMENT && !s, "NULL model accepted");
    CHECK(bifsmn_stream_create(m, NULL, &s, NULL, 0) == BIFSMN_ERR_ARGUMENT, "NULL config accepted");
    CHECK(bifsmn_stream_push(NULL, NULL, 0) == BIFSMN_ERR_ARGUMENT, "NULL stream accepted");
    bifsmn_stream_free(NULL);
    bifsmn_detector_free(NULL);
}

static void test_no_allocation(bifsmn_model *m, const int16_t *x, size_t n)
{
#if defined(BIFSMN_TEST_WRAP_MALLOC)
    static recorder r;
    memset(&r, 0, sizeof r);
    r.check_network = 1; /* the callback runs the model too */
    bifsmn_stream *s = open_stream(m, &r, 1, BIFSMN_EDGE_REFLECT, 0.4f);
    counting = 1;
    allocations = 0;
    bifsmn_stream_push(s, x, n);
    bifsmn_stream_reset(s);
    bifsmn_stream_push(s, x, n / 2);
    bifsmn_stream_finish(s);
    counting = 0;
    CHECK(allocations == 0, "%d allocations after creation", allocations);
    CHECK(r.n_runs > 100, "%d runs", r.n_runs);
    bifsmn_stream_free(s);
    printf("test_stream: no allocation after creation (%d runs)\n", r.n_runs);
#else
    (void)m, (void)x, (void)n;
    printf("test_stream: allocation counting not built (the linker cannot wrap malloc), skipped\n");
#endif
}

int main(void)
{
    layout L;
    buf b = build_model(&L);
    bifsmn_model *m = NULL;
    char msg[256];
    CHECK(bifsmn_load_memory(b.p, b.n, BIFSMN_IMPL_AUTO, &m, msg, sizeof msg) == BIFSMN_OK, "load: %s", msg);
    free(b.p);
    if (!m)
        return check_report("test_stream");
    const size_t n = 6 * RATE;
    int16_t *x = make_signal(n);
    test_chunking(m, x, n);
    test_network_and_clip(m, x, n);
    test_reset(m, x, n);
    test_detector_rule(m);
    test_bad_settings(m);
    test_no_allocation(m, x, n);
    free(x);
    bifsmn_free(m);
    return check_report("test_stream");
}
