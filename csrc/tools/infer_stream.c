/* bifsmn-infer --stream: a WAV file, or raw 16-bit little-endian mono PCM on standard input ("-"), through a
   bifsmn_stream; one JSON object per line per event ({"time": s, "keyword": k, "score": p}) and, with
   --posteriors, one per network run. At the end of the file or of the pipe the stream is finished
   (bifsmn_stream_finish: its last audio is evaluated too) and the program ends cleanly; a closed
   standard output stops the program quietly; every other failure is one line on stderr. */
#define _POSIX_C_SOURCE 200809L /* read, isatty */
#include "infer_stream.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "wav.h"

void stream_options_init(stream_options *o)
{
    memset(o, 0, sizeof *o);
    o->bench_seconds = 10.0;
    bifsmn_stream_config_default(&o->config);
}

/* A float option value within [lo, hi] (lo excluded when open_lo); NAN when it is not one. */
static double parse_real(const char *s, double lo, double hi, int open_lo)
{
    char *end;
    const double v = strtod(s, &end);
    return *s && !*end && isfinite(v) && (open_lo ? v > lo : v >= lo) && v <= hi ? v : NAN;
}

int stream_option(stream_options *o, int argc, char **argv, int i)
{
    const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    bifsmn_detector_config *d = &o->config.detector;
    if (strcmp(opt, "--stream") == 0) {
        o->enabled = 1;
        return 1;
    }
    if (strcmp(opt, "--posteriors") == 0) {
        o->posteriors = 1;
        return 1;
    }
    static const char *const valued[] = {"--threshold", "--stride", "--average", "--refractory", "--rearm",
                                         "--min-count", "--edge", "--bench-seconds"};
    int known = 0;
    for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
        known |= strcmp(opt, valued[k]) == 0;
    if (!known)
        return 0;
    if (!val) {
        fprintf(stderr, "bifsmn-infer: %s needs a value\n", opt);
        return -1;
    }
    double v = 0.0;
    const char *expect = NULL;
    if (strcmp(opt, "--threshold") == 0) {
        const char *eq = strchr(val, '=');
        if (eq) {
            v = parse_real(eq + 1, 0.0, 1e9, 1);
            if (eq == val || isnan(v))
                expect = "CLASS=T with T > 0 (above 1 disables the class)";
            else if (o->n_class_thresholds == STREAM_MAX_CLASS_THRESHOLDS)
                expect = "at most 64 per-class values";
            else {
                o->class_names[o->n_class_thresholds] = val;
                o->class_values[o->n_class_thresholds++] = (float)v;
            }
        } else if (isnan(v = parse_real(val, 0.0, 1.0, 1)))
            expect = "a number in (0, 1] or CLASS=T";
        else
            d->threshold = (float)v;
    } else if (strcmp(opt, "--stride") == 0) {
        const long n = parse_count(val, 100000);
        if (n < 1)
            expect = "a positive number of hops";
        o->config.stride = (int)n;
    } else if (strcmp(opt, "--average") == 0) {
        if (isnan(v = parse_real(val, 0.0, 600000.0, 0)))
            expect = "milliseconds in [0, 600000]";
        d->average_ms = (float)v;
    } else if (strcmp(opt, "--refractory") == 0) {
        if (isnan(v = parse_real(val, 0.0, 3600000.0, 0)))
            expect = "milliseconds in [0, 3600000]";
        d->refractory_ms = (float)v;
    } else if (strcmp(opt, "--rearm") == 0) {
        if (isnan(v = parse_real(val, 0.0, 1.0, 0)))
            expect = "a number in [0, 1]";
        d->rearm = (float)v;
    } else if (strcmp(opt, "--min-count") == 0) {
        const long n = parse_count(val, 100000);
        if (n < 1)
            expect = "a positive number of runs";
        d->min_count = (int)n;
    } else if (strcmp(opt, "--edge") == 0) {
        o->config.edge_frames = strcmp(val, "audio") == 0 ? BIFSMN_EDGE_AUDIO : BIFSMN_EDGE_REFLECT;
        if (strcmp(val, "audio") != 0 && strcmp(val, "reflect") != 0)
            expect = "audio or reflect";
    } else if (isnan(o->bench_seconds = parse_real(val, 0.0, 3600.0, 1))) {
        expect = "seconds in (0, 3600]";
    }
    if (expect) {
        fprintf(stderr, "bifsmn-infer: %s needs %s, got '%s'\n", opt, expect, val);
        return -1;
    }
    return 2;
}

typedef struct {
    const bifsmn_model *model;
    double rate;
    int posteriors;
    int closed; /* standard output is a closed pipe */
    int failed; /* another write error */
    long runs;  /* network runs seen */
} output;

static void flush_line(output *out)
{
    if (fflush(stdout) == 0)
        return;
    if (errno == EPIPE)
        out->closed = 1;
    else
        out->failed = 1;
}

static void on_event(void *user, const bifsmn_event *e)
{
    output *out = user;
    if (out->closed || out->failed)
        return;
    printf("{\"time\": %.6f, \"keyword\": ", (double)e->time / out->rate);
    json_string(bifsmn_class_name(out->model, e->keyword));
    printf(", \"score\": %.6f}\n", (double)e->score);
    flush_line(out);
}

static void on_posteriors(void *user, int64_t time, const float *p, const float *a, int nc)
{
    output *out = user;
    (void)a;
    out->runs++;
    if (!out->posteriors || out->closed || out->failed)
        return;
    printf("{\"time\": %.6f, \"posteriors\": {", (double)time / out->rate);
    for (int i = 0; i < nc; i++) {
        printf("%s", i ? ", " : "");
        json_string(bifsmn_class_name(out->model, i));
        printf(": %.6f", (double)p[i]);
    }
    printf("}}\n");
    flush_line(out);
}

/* Per-class thresholds from --threshold CLASS=T over the defaults (keywords: the common threshold, classes
   starting with '_': none); 0, or -1 after an error naming the unknown class. */
static int resolve_thresholds(const bifsmn_model *model, const stream_options *o, const char *model_path, float *th)
{
    const int nc = bifsmn_num_classes(model);
    for (int c = 0; c < nc; c++)
        th[c] = bifsmn_class_name(model, c)[0] == '_' ? 2.0f : o->config.detector.threshold;
    for (int i = 0; i < o->n_class_thresholds; i++) {
        const char *spec = o->class_names[i];
        const size_t len = (size_t)(strchr(spec, '=') - spec);
        int found = -1;
        for (int c = 0; c < nc; c++)
            if (strlen(bifsmn_class_name(model, c)) == len && strncmp(bifsmn_class_name(model, c), spec, len) == 0)
                found = c;
        if (found < 0) {
            fprintf(stderr, "bifsmn-infer: --threshold %s: %s has no class '%.*s' (classes:", spec, model_path, (int)len,
                    spec);
            for (int c = 0; c < nc; c++)
                fprintf(stderr, "%s %s", c ? "," : "", bifsmn_class_name(model, c));
            fprintf(stderr, ")\n");
            return -1;
        }
        th[found] = o->class_values[i];
    }
    return 0;
}

/* Raw little-endian PCM from standard input until the end of the pipe. */
static int feed_stdin(bifsmn_stream *s, output *out)
{
    unsigned char bytes[8192 + 1];
    int16_t pcm[sizeof bytes / 2];
    size_t carry = 0; /* a byte of a sample split across reads */
    long long total = 0;
    while (!out->closed && !out->failed) {
        const ssize_t got = read(STDIN_FILENO, bytes + carry, sizeof bytes - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            fprintf(stderr, "bifsmn-infer: -: cannot read standard input (%s)\n", strerror(errno));
            return 1;
        }
        if (got == 0)
            break;
        total += got;
        const size_t have = carry + (size_t)got, n = have / 2;
        for (size_t i = 0; i < n; i++)
            pcm[i] = (int16_t)(uint16_t)(bytes[2 * i] | bytes[2 * i + 1] << 8);
        carry = have % 2;
        if (carry)
            bytes[0] = bytes[have - 1];
        bifsmn_stream_push(s, pcm, n);
    }
    if (carry && !out->closed && !out->failed) {
        fprintf(stderr,
                "bifsmn-infer: -: the input ended inside a sample (%lld bytes, an odd number): expected raw 16-bit "
                "little-endian mono PCM\n",
                total);
        return 1;
    }
    return 0;
}

static int feed_wav(bifsmn_stream *s, const bifsmn_model *model, const char *path, output *out)
{
    bifsmn_wav wav;
    char msg[512];
    if (bifsmn_wav_read(path, &wav, msg, sizeof msg) != 0 || check_wav_format(model, &wav, msg, sizeof msg) != 0) {
        fprintf(stderr, "bifsmn-infer: %s: %s\n", path, msg);
        bifsmn_wav_free(&wav);
        return 1;
    }
    const size_t chunk = (size_t)bifsmn_sample_rate(model); /* a second at a time: a closed output stops soon */
    for (size_t i = 0; i < wav.n_frames && !out->closed && !out->failed; i += chunk)
        bifsmn_stream_push(s, wav.samples + i, wav.n_frames - i < chunk ? wav.n_frames - i : chunk);
    bifsmn_wav_free(&wav);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* --bench N --stream: N rounds (after W untimed) of bench_seconds of the clip, tiled, pushed a hop at a time into
   a reset stream; each round's wall and thread CPU time, and the median CPU time per hop and real-time factor. */
static int bench(bifsmn_model *model, bifsmn_stream *s, const stream_options *o, const char *model_path,
                 const char *clip, long runs, long warmup, output *out)
{
    bifsmn_wav wav;
    char msg[512];
    if (bifsmn_wav_read(clip, &wav, msg, sizeof msg) != 0 || check_wav_format(model, &wav, msg, sizeof msg) != 0 ||
        (wav.n_frames == 0 && snprintf(msg, sizeof msg, "empty (no samples)"))) {
        fprintf(stderr, "bifsmn-infer: %s: %s\n", clip, msg);
        bifsmn_wav_free(&wav);
        return 1;
    }
    const size_t n = (size_t)(o->bench_seconds * bifsmn_sample_rate(model) + 0.5);
    int16_t *pcm = malloc(sizeof(int16_t) * (n ? n : 1));
    int64_t *ns = calloc((size_t)runs, sizeof(int64_t)), *cpu = calloc((size_t)runs, sizeof(int64_t));
    if (!pcm || !ns || !cpu) {
        fprintf(stderr, "bifsmn-infer: out of memory for %zu samples\n", n);
        free(pcm), free(ns), free(cpu), bifsmn_wav_free(&wav);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        pcm[i] = wav.samples[i % wav.n_frames];
    bifsmn_wav_free(&wav);
    const size_t hop = (size_t)bifsmn_stream_hop(s);
    long network_runs = 0;
    for (long r = -warmup; r < runs; r++) {
        bifsmn_stream_reset(s);
        out->runs = 0;
        const int64_t t0 = now_ns(), c0 = cpu_ns();
        for (size_t i = 0; i < n; i += hop)
            bifsmn_stream_push(s, pcm + i, n - i < hop ? n - i : hop);
        if (r >= 0) {
            cpu[r] = cpu_ns() - c0;
            ns[r] = now_ns() - t0;
        }
        network_runs = out->runs;
    }
    /* the summary the issue asks for: median CPU time per hop and as a fraction of the audio's duration */
    int64_t *sorted = malloc(sizeof(int64_t) * (size_t)runs);
    double median = 0.0;
    if (sorted) {
        memcpy(sorted, cpu, sizeof(int64_t) * (size_t)runs);
        qsort(sorted, (size_t)runs, sizeof *sorted, cmp_i64);
        median = runs % 2 ? (double)sorted[runs / 2] : 0.5 * ((double)sorted[runs / 2 - 1] + (double)sorted[runs / 2]);
        free(sorted);
    }
    const double hops = (double)n / (double)hop, seconds = (double)n / bifsmn_sample_rate(model);
    print_bench_header(model, model_path, clip, warmup, runs);
    printf(", \"stream\": {\"stride\": %d, \"edge_frames\": \"%s\", \"sample_rate\": %d, \"audio_samples\": %zu, "
           "\"hop_samples\": %zu, \"network_runs\": %ld, \"latency_samples\": %d, \"cpu_ns_per_hop\": %.1f, "
           "\"real_time_factor\": %.3g}",
           o->config.stride, o->config.edge_frames == BIFSMN_EDGE_AUDIO ? "audio" : "reflect",
           bifsmn_sample_rate(model), n, hop, network_runs, bifsmn_stream_latency(s), median / hops,
           median / (seconds * 1e9));
    print_times("stream_ns", ns, runs);
    print_times("stream_cpu_ns", cpu, runs);
    printf("}\n");
    free(pcm);
    free(ns);
    free(cpu);
    return 0;
}

int stream_main(bifsmn_model *model, stream_options *o, const char *model_path, const char *input, long bench_runs,
                long warmup)
{
    const int nc = bifsmn_num_classes(model);
    float *thresholds = malloc(sizeof(float) * (size_t)nc);
    if (!thresholds || resolve_thresholds(model, o, model_path, thresholds) != 0) {
        free(thresholds);
        return 2;
    }
    output out = {model, (double)bifsmn_sample_rate(model), o->posteriors, 0, 0, 0};
    bifsmn_stream_config c = o->config;
    c.detector.thresholds = thresholds;
    c.on_event = bench_runs > 0 ? NULL : on_event;
    c.on_posteriors = on_posteriors;
    c.user = &out;
    bifsmn_stream *s = NULL;
    char msg[512];
    if (bifsmn_stream_create(model, &c, &s, msg, sizeof msg) != BIFSMN_OK) {
        fprintf(stderr, "bifsmn-infer: %s: %s\n", model_path, msg);
        free(thresholds);
        return 2;
    }
    int status;
    if (bench_runs > 0) {
        status = bench(model, s, o, model_path, input, bench_runs, warmup, &out);
    } else {
        signal(SIGPIPE, SIG_IGN); /* a closed output becomes EPIPE on the next line: stop quietly then */
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (strcmp(input, "-") == 0 && isatty(STDIN_FILENO)) {
            fprintf(stderr, "bifsmn-infer: -: standard input is a terminal; pipe raw 16-bit PCM into it, e.g. "
                            "arecord -t raw -f S16_LE -r %d -c 1 | bifsmn-infer --stream %s -\n",
                    bifsmn_sample_rate(model), model_path);
            status = 2;
        } else {
            status = strcmp(input, "-") == 0 ? feed_stdin(s, &out) : feed_wav(s, model, input, &out);
        }
        if (status == 0 && !out.closed && !out.failed)
            bifsmn_stream_finish(s);
        if (out.failed) {
            fprintf(stderr, "bifsmn-infer: cannot write the events (%s)\n", strerror(errno));
            status = 1;
        }
    }
    bifsmn_stream_free(s);
    free(thresholds);
    return status;
}
