/* bifsmn-infer: classify WAV clips with a .bfsm model and print the top classes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bifsmn.h"
#include "wav.h"

static const char usage[] =
    "usage: bifsmn-infer [--top N] [--json] [--kernel auto|ref|avx2|avx512|neon] MODEL.bfsm CLIP.wav...\n"
    "Clips must be 16-bit PCM mono at the model's sample rate; shorter clips are zero-padded at the end and\n"
    "longer ones truncated to the model's clip length. Scores are softmax probabilities (logits in --json).\n"
    "Exit status: 0 all clips classified, 1 a clip or the model failed, 2 bad arguments.\n";

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

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

/* Classifies one clip into logits; returns 0 or -1 with a reason in msg. */
static int classify(bifsmn_model *model, const char *path, int16_t *pcm, float *logits, char *msg, size_t msg_len)
{
    bifsmn_wav wav;
    if (bifsmn_wav_read(path, &wav, msg, msg_len) != 0)
        return -1;
    const int rate = bifsmn_sample_rate(model);
    if (wav.channels != 1 || wav.sample_rate != rate) {
        snprintf(msg, msg_len, "%d channel(s) at %d Hz; the model needs mono at %d Hz", wav.channels,
                 wav.sample_rate, rate);
        bifsmn_wav_free(&wav);
        return -1;
    }
    const size_t n = (size_t)bifsmn_num_samples(model);
    const size_t copy = wav.n_frames < n ? wav.n_frames : n;
    memcpy(pcm, wav.samples, copy * sizeof(int16_t));
    memset(pcm + copy, 0, (n - copy) * sizeof(int16_t));
    bifsmn_wav_free(&wav);
    const int rc = bifsmn_run_pcm(model, pcm, n, logits, (size_t)bifsmn_num_classes(model));
    if (rc != BIFSMN_OK) {
        snprintf(msg, msg_len, "%s", bifsmn_strerror(rc));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int top = 3, json = 0, first = 1;
    bifsmn_impl kernel = BIFSMN_IMPL_AUTO;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        const char *opt = argv[first];
        if (strcmp(opt, "--") == 0) {
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
    if (argc - first < 2) {
        fputs(usage, stderr);
        return 2;
    }
    char msg[512];
    bifsmn_model *model = NULL;
    const int rc = bifsmn_load_file(argv[first], kernel, &model, msg, sizeof msg);
    if (rc != BIFSMN_OK) {
        fprintf(stderr, "bifsmn-infer: %s: %s (%s)\n", argv[first], msg, bifsmn_strerror(rc));
        return 1;
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
