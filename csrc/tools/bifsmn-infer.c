/* bifsmn-infer: classify WAV clips with a .bfsm model and print the top classes, detect keywords in a stream
   (--stream, infer_stream.c), or time either (--bench). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime(CLOCK_MONOTONIC) under -std=c11 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bifsmn.h"
#include "cli_util.h"
#include "infer_stream.h"
#include "wav.h"

static const char usage[] =
    "usage: bifsmn-infer [--top N] [--json] [--kernel auto|ref|avx2|avx512|neon] MODEL.bfsm CLIP.wav...\n"
    "       bifsmn-infer --stream [--threshold T|CLASS=T]... [--stride N] [--average MS] [--refractory MS]\n"
    "                    [--rearm R] [--min-count N] [--edge audio|reflect] [--posteriors] MODEL.bfsm FILE.wav|-\n"
    "       bifsmn-infer --bench N [--warmup W] [--bench-path both|net|e2e] [--kernel K] MODEL.bfsm CLIP.wav\n"
    "       bifsmn-infer --bench N --stream [--bench-seconds S] [stream options] MODEL.bfsm CLIP.wav\n"
    "       bifsmn-infer --profile N [--warmup W] [--profile-kind KIND] [--kernel K] MODEL.bfsm CLIP.wav\n"
    "Clips must be 16-bit PCM mono at the model's sample rate; shorter clips are zero-padded at the end and\n"
    "longer ones truncated to the model's clip length. Scores are softmax probabilities (logits in --json).\n"
    "--stream reads a WAV file of any length, or raw 16-bit little-endian mono PCM from standard input (-), e.g.\n"
    "  arecord -t raw -f S16_LE -r 16000 -c 1 | bifsmn-infer --stream model_1x.bfsm -\n"
    "and prints one JSON line per detected keyword: {\"time\": seconds, \"keyword\": class, \"score\": 0..1};\n"
    "--posteriors adds one line per network run (every N hops: --stride). Detector defaults: threshold 0.8\n"
    "(CLASS=T: one class; above 1 disables it), stride 3, average 500 ms, refractory 500 ms, rearm 0.5,\n"
    "min-count 1, edge audio (the rule: include/bifsmn.h). The end of the input is evaluated too (silence is\n"
    "appended until a window ends half a clip past it, so events may lie past the input) and ends cleanly.\n"
    "--bench N times N runs (after W untimed ones, default 10) on the first clip of the network alone (net:\n"
    "features in, scores out) and of front end + network (e2e: PCM in), alternating the two, and prints one\n"
    "JSON object with every run's nanoseconds (net_ns, e2e_ns; CLOCK_MONOTONIC) instead of classes. With\n"
    "--stream, each run pushes S seconds (default 10) of the clip, tiled, a hop at a time through a reset stream\n"
    "(stream_ns wall, stream_cpu_ns this thread's CPU time per round; cpu_ns_per_hop and real_time_factor\n"
    "from their median).\n"
    "--profile N times, N times each, the network and every kind of step of its plan alone (input, conv2d,\n"
    "linear, dwconv1d, and bconv2d, blinear, bdwconv1d for binary ones; all the steps of a kind per run) on the\n"
    "clip's buffers, alternating, and prints one JSON object: net_ns and, per kind, its step count and ns.\n"
    "--profile-kind KIND runs only that kind's steps, N times (to count instructions per kind under an\n"
    "emulator: the difference between two N is what one run of those steps executes).\n"
    "Exit status: 0 all clips classified (or the stream ended), 1 a clip, the input or the model failed,\n"
    "2 bad arguments.\n";

static int parse_kernel(const char *s, bifsmn_impl *out)
{
    static const char *const names[] = {"auto", "ref", "avx2", "avx512", "neon"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (bifsmn_impl)i;
            return 0;
        }
    return -1;
}

/* Reads one clip into the model's clip length of PCM; returns 0 or -1 with a reason in msg. */
static int load_clip(const bifsmn_model *model, const char *path, int16_t *pcm, char *msg, size_t msg_len)
{
    bifsmn_wav wav;
    if (bifsmn_wav_read(path, &wav, msg, msg_len) != 0)
        return -1;
    if (check_wav_format(model, &wav, msg, msg_len) != 0) {
        bifsmn_wav_free(&wav);
        return -1;
    }
    if (wav.n_frames == 0) { /* padding would classify pure silence as if it were the clip */
        snprintf(msg, msg_len, "empty (no samples)");
        bifsmn_wav_free(&wav);
        return -1;
    }
    const size_t n = (size_t)bifsmn_num_samples(model);
    const size_t copy = wav.n_frames < n ? wav.n_frames : n;
    memcpy(pcm, wav.samples, copy * sizeof(int16_t));
    memset(pcm + copy, 0, (n - copy) * sizeof(int16_t));
    bifsmn_wav_free(&wav);
    return 0;
}

/* Classifies one clip into logits; returns 0 or -1 with a reason in msg. */
static int classify(bifsmn_model *model, const char *path, int16_t *pcm, float *logits, char *msg, size_t msg_len)
{
    if (load_clip(model, path, pcm, msg, msg_len) != 0)
        return -1;
    const int rc = bifsmn_run_pcm(model, pcm, (size_t)bifsmn_num_samples(model), logits,
                                  (size_t)bifsmn_num_classes(model));
    if (rc != BIFSMN_OK) {
        snprintf(msg, msg_len, "%s", bifsmn_strerror(rc));
        return -1;
    }
    return 0;
}

enum { BENCH_NET = 1, BENCH_E2E = 2 };

/* What --bench and --profile time: the clip's samples and features, a score buffer, and two arrays of times
   (`net`: runs, `other`: other_runs). */
typedef struct {
    size_t n, nc, nf;
    int16_t *pcm;
    float *features, *scores;
    int64_t *net, *other;
} timed_clip;

static void timed_clip_free(timed_clip *t)
{
    free(t->pcm);
    free(t->features);
    free(t->scores);
    free(t->net);
    free(t->other);
}

/* Allocates, reads the clip and computes its features with the model's own front end into *rc (an engine
   status); returns 0, or -1 with the message printed when memory or the clip fails. */
static int timed_clip_open(timed_clip *t, bifsmn_model *model, const char *clip, long runs, size_t other_runs,
                           int *rc)
{
    char msg[512];
    t->n = (size_t)bifsmn_num_samples(model);
    t->nc = (size_t)bifsmn_num_classes(model);
    t->nf = (size_t)bifsmn_num_mels(model) * (size_t)bifsmn_num_frames(model);
    t->pcm = malloc(sizeof(int16_t) * t->n);
    t->features = malloc(sizeof(float) * t->nf);
    t->scores = malloc(sizeof(float) * t->nc);
    t->net = calloc((size_t)runs, sizeof(int64_t));
    t->other = calloc(other_runs, sizeof(int64_t));
    if (!t->pcm || !t->features || !t->scores || !t->net || !t->other) {
        fprintf(stderr, "bifsmn-infer: out of memory for %ld runs\n", runs);
        return -1;
    }
    if (load_clip(model, clip, t->pcm, msg, sizeof msg) != 0) {
        fprintf(stderr, "bifsmn-infer: %s: %s\n", clip, msg);
        return -1;
    }
    *rc = bifsmn_features_pcm(model, t->pcm, t->n, t->features, t->nf);
    return 0;
}


/* --bench: the paths alternate run by run, so that drift on a shared machine weighs on both alike. The
   features of the network-alone path are computed once by the model's own front end. */
static int bench(bifsmn_model *model, const char *model_path, const char *clip, long runs, long warmup, int paths)
{
    timed_clip t;
    int status = 1, rc = BIFSMN_OK;
    if (timed_clip_open(&t, model, clip, runs, (size_t)runs, &rc) != 0)
        goto done;
    const size_t n = t.n, nc = t.nc, nf = t.nf;
    int16_t *pcm = t.pcm;
    float *features = t.features, *scores = t.scores;
    int64_t *net = t.net, *e2e = t.other;
    for (long i = -warmup; i < runs && rc == BIFSMN_OK; i++) {
        int64_t t0 = now_ns();
        if (paths & BENCH_NET) {
            rc = bifsmn_run_features(model, features, nf, scores, nc);
            const int64_t t1 = now_ns();
            if (i >= 0)
                net[i] = t1 - t0;
            t0 = t1;
        }
        if ((paths & BENCH_E2E) && rc == BIFSMN_OK) {
            rc = bifsmn_run_pcm(model, pcm, n, scores, nc);
            if (i >= 0)
                e2e[i] = now_ns() - t0;
        }
    }
    if (rc != BIFSMN_OK) {
        fprintf(stderr, "bifsmn-infer: %s: %s\n", model_path, bifsmn_strerror(rc));
        goto done;
    }
    print_bench_header(model, model_path, clip, warmup, runs);
    if (paths & BENCH_NET)
        print_times("net_ns", net, runs);
    if (paths & BENCH_E2E)
        print_times("e2e_ns", e2e, runs);
    printf("}\n");
    status = 0;
done:
    timed_clip_free(&t);
    return status;
}

/* --profile: the network, then each kind of plan step alone, N times each, alternating run by run. The steps of
   a kind run in plan order on the buffers the clip's own run left, so they see realistic data. */
static int profile(bifsmn_model *model, const char *model_path, const char *clip, long runs, long warmup,
                   const char *only)
{
    enum { MAX_KINDS = 16 };
    const char *kinds[MAX_KINDS];
    int nkinds = 0, status = 1;
    const int steps = bifsmn_plan_length(model);
    int *kind_of = malloc(sizeof(int) * (size_t)(steps > 0 ? steps : 1)); /* each step's kind index, -1: not timed */
    if (!kind_of) {
        fprintf(stderr, "bifsmn-infer: out of memory\n");
        return 1;
    }
    for (int i = 0; i < steps; i++) {
        const char *k = bifsmn_plan_step_kind(model, i);
        int j = 0;
        while (j < nkinds && strcmp(kinds[j], k) != 0)
            j++;
        if (j == nkinds && nkinds < MAX_KINDS && (!only || strcmp(only, k) == 0))
            kinds[nkinds++] = k;
        kind_of[i] = j < nkinds ? j : -1;
    }
    if (only && nkinds == 0) {
        fprintf(stderr, "bifsmn-infer: %s has no step of kind '%s'\n", model_path, only);
        free(kind_of);
        return 2;
    }
    timed_clip t;
    int rc = BIFSMN_OK;
    if (timed_clip_open(&t, model, clip, runs, (size_t)runs * MAX_KINDS, &rc) != 0)
        goto done;
    const size_t n = t.n, nc = t.nc, nf = t.nf;
    int16_t *pcm = t.pcm;
    float *features = t.features, *scores = t.scores;
    int64_t *net = t.net, *ns = t.other;
    if (rc == BIFSMN_OK)
        rc = bifsmn_run_pcm(model, pcm, n, scores, nc); /* the features step 0 replays */
    for (long i = -warmup; i < runs && rc == BIFSMN_OK; i++) {
        if (!only) {
            const int64_t t0 = now_ns();
            rc = bifsmn_run_features(model, features, nf, scores, nc);
            if (i >= 0)
                net[i] = now_ns() - t0;
        }
        for (int k = 0; k < nkinds; k++) {
            const int64_t t0 = now_ns();
            for (int s = 0; s < steps; s++)
                if (kind_of[s] == k)
                    bifsmn_plan_run_step(model, s);
            if (i >= 0)
                ns[(size_t)k * runs + i] = now_ns() - t0;
        }
    }
    if (rc != BIFSMN_OK) {
        fprintf(stderr, "bifsmn-infer: %s: %s\n", model_path, bifsmn_strerror(rc));
        goto done;
    }
    print_bench_header(model, model_path, clip, warmup, runs);
    if (!only)
        print_times("net_ns", net, runs);
    printf(", \"kinds\": {");
    for (int k = 0; k < nkinds; k++) {
        int count = 0;
        for (int s = 0; s < steps; s++)
            count += kind_of[s] == k;
        printf("%s", k ? ", " : "");
        json_string(kinds[k]);
        printf(": {\"steps\": %d", count);
        print_times("ns", ns + (size_t)k * runs, runs);
        printf("}");
    }
    printf("}}\n");
    status = 0;
done:
    free(kind_of);
    timed_clip_free(&t);
    return status;
}

int main(int argc, char **argv)
{
    int top = 3, json = 0, first = 1, paths = BENCH_NET | BENCH_E2E;
    long runs = 0, warmup = 10, profile_runs = 0;
    const char *profile_kind = NULL;
    bifsmn_impl kernel = BIFSMN_IMPL_AUTO;
    stream_options stream;
    stream_options_init(&stream);
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        const char *opt = argv[first];
        const int used = stream_option(&stream, argc, argv, first);
        if (used < 0)
            return 2;
        if (used > 0) {
            first += used - 1;
        } else if (strcmp(opt, "--") == 0) {
            first++;
            break;
        } else if (strcmp(opt, "--json") == 0) {
            json = 1;
        } else if (strcmp(opt, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(opt, "--top") == 0 && first + 1 < argc) {
            char *end;
            const long v = strtol(argv[++first], &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "bifsmn-infer: --top needs a positive integer, got '%s'\n", argv[first]);
                return 2;
            }
            top = (int)v;
        } else if (strcmp(opt, "--bench") == 0 && first + 1 < argc) {
            if ((runs = parse_count(argv[++first], 100000000)) < 1) {
                fprintf(stderr, "bifsmn-infer: --bench needs a positive integer, got '%s'\n", argv[first]);
                return 2;
            }
        } else if (strcmp(opt, "--profile") == 0 && first + 1 < argc) {
            if ((profile_runs = parse_count(argv[++first], 100000000)) < 1) {
                fprintf(stderr, "bifsmn-infer: --profile needs a positive integer, got '%s'\n", argv[first]);
                return 2;
            }
        } else if (strcmp(opt, "--profile-kind") == 0 && first + 1 < argc) {
            profile_kind = argv[++first];
        } else if (strcmp(opt, "--warmup") == 0 && first + 1 < argc) {
            if ((warmup = parse_count(argv[++first], 100000000)) < 0) {
                fprintf(stderr, "bifsmn-infer: --warmup needs a non-negative integer, got '%s'\n", argv[first]);
                return 2;
            }
        } else if (strcmp(opt, "--bench-path") == 0 && first + 1 < argc) {
            const char *p = argv[++first];
            paths = strcmp(p, "net") == 0 ? BENCH_NET : strcmp(p, "e2e") == 0 ? BENCH_E2E
                    : strcmp(p, "both") == 0 ? BENCH_NET | BENCH_E2E : 0;
            if (!paths) {
                fprintf(stderr, "bifsmn-infer: --bench-path needs both, net or e2e, got '%s'\n", p);
                return 2;
            }
        } else if (strcmp(opt, "--kernel") == 0 && first + 1 < argc) {
            if (parse_kernel(argv[++first], &kernel) != 0) {
                fprintf(stderr, "bifsmn-infer: unknown kernel '%s'\n%s", argv[first], usage);
                return 2;
            }
        } else {
            fprintf(stderr, "bifsmn-infer: unknown or incomplete option '%s'\n%s", opt, usage);
            return 2;
        }
    }
    if (argc - first < 2 || (stream.enabled && argc - first != 2)) {
        if (stream.enabled && argc - first > 2)
            fprintf(stderr, "bifsmn-infer: --stream takes one input (a WAV file or -), got %d\n", argc - first - 1);
        fputs(usage, stderr);
        return 2;
    }
    if (profile_kind && profile_runs == 0) {
        fprintf(stderr, "bifsmn-infer: --profile-kind needs --profile N\n");
        return 2;
    }
    if (profile_runs > 0 && (stream.enabled || runs > 0)) {
        fprintf(stderr, "bifsmn-infer: --profile goes without --bench and --stream\n");
        return 2;
    }
    char msg[512];
    bifsmn_model *model = NULL;
    const int rc = bifsmn_load_file(argv[first], kernel, &model, msg, sizeof msg);
    if (rc != BIFSMN_OK) {
        fprintf(stderr, "bifsmn-infer: %s: %s (%s)\n", argv[first], msg, bifsmn_strerror(rc));
        return 1;
    }
    if (stream.enabled) {
        const int status = stream_main(model, &stream, argv[first], argv[first + 1], runs, warmup);
        bifsmn_free(model);
        return status;
    }
    if (runs > 0 || profile_runs > 0) {
        const int status = runs > 0 ? bench(model, argv[first], argv[first + 1], runs, warmup, paths)
                                    : profile(model, argv[first], argv[first + 1], profile_runs, warmup, profile_kind);
        bifsmn_free(model);
        return status;
    }
    const int nc = bifsmn_num_classes(model);
    if (top > nc)
        top = nc;
    int16_t *pcm = malloc(sizeof(int16_t) * (size_t)bifsmn_num_samples(model));
    float *logits = malloc(sizeof(float) * (size_t)nc);
    double *prob = malloc(sizeof(double) * (size_t)nc);
    int *order = malloc(sizeof(int) * (size_t)nc);
    if (!pcm || !logits || !prob || !order) {
        fprintf(stderr, "bifsmn-infer: out of memory\n");
        return 1;
    }
    int status = 0;
    if (json)
        printf("[");
    for (int c = first + 1; c < argc; c++) {
        const char *path = argv[c];
        if (json)
            printf("%s\n  {\"file\": ", c > first + 1 ? "," : "");
        if (json)
            json_string(path);
        if (classify(model, path, pcm, logits, msg, sizeof msg) != 0) {
            status = 1;
            if (json) {
                printf(", \"error\": ");
                json_string(msg);
                printf("}");
            } else {
                fprintf(stderr, "bifsmn-infer: %s: %s\n", path, msg);
            }
            continue;
        }
        /* Softmax in double, shifted by the max logit so that exp never overflows. */
        double mx = logits[0], sum = 0.0;
        for (int i = 1; i < nc; i++)
            mx = logits[i] > mx ? logits[i] : mx;
        for (int i = 0; i < nc; i++)
            sum += prob[i] = exp(logits[i] - mx);
        for (int i = 0; i < nc; i++) {
            prob[i] /= sum;
            order[i] = i;
        }
        /* Partial selection sort: top is small. */
        for (int i = 0; i < top; i++)
            for (int j = i + 1; j < nc; j++)
                if (logits[order[j]] > logits[order[i]]) {
                    const int t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
        if (json) {
            printf(", \"top\": [");
            for (int i = 0; i < top; i++) {
                printf("%s{\"class\": ", i ? ", " : "");
                json_string(bifsmn_class_name(model, order[i]));
                printf(", \"score\": %.6f, \"logit\": %.6f}", prob[order[i]], (double)logits[order[i]]);
            }
            printf("]}");
        } else {
            printf("%s\n", path);
            for (int i = 0; i < top; i++)
                printf("  %-16s %.4f\n", bifsmn_class_name(model, order[i]), prob[order[i]]);
        }
    }
    if (json)
        printf("\n]\n");
    free(pcm);
    free(logits);
    free(prob);
    free(order);
    bifsmn_free(model);
    return status;
}
