#define _POSIX_C_SOURCE 200809L /* clock_gettime(CLOCK_MONOTONIC) under -std=c11 */
#include "cli_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void json_string(const char *s)
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

long parse_count(const char *s, long max)
{
    char *end;
    const long v = strtol(s, &end, 10);
    return (*s && !*end && v >= 0 && v <= max) ? v : -1;
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void print_bench_header(const bifsmn_model *model, const char *model_path, const char *clip, long warmup, long runs)
{
    printf("{\"model\": ");
    json_string(model_path);
    printf(", \"clip\": ");
    json_string(clip);
    printf(", \"variant\": ");
    json_string(bifsmn_variant(model));
    printf(", \"binary\": %s, \"kernel\": ", bifsmn_is_binary(model) ? "true" : "false");
    json_string(bifsmn_kernel_name(model));
    printf(", \"warmup\": %ld, \"runs\": %ld", warmup, runs);
}

void print_times(const char *key, const int64_t *ns, long runs)
{
    printf(", \"%s\": [", key);
    for (long i = 0; i < runs; i++)
        printf("%s%lld", i ? ", " : "", (long long)ns[i]);
    printf("]");
}

int check_wav_format(const bifsmn_model *model, const bifsmn_wav *wav, char *msg, size_t msg_len)
{
    const int rate = bifsmn_sample_rate(model);
    if (wav->channels == 1 && wav->sample_rate == rate)
        return 0;
    snprintf(msg, msg_len, "%d channel(s) at %d Hz; the model needs mono at %d Hz (convert it: sox IN -r %d -c 1 -b 16 OUT.wav)",
             wav->channels, wav->sample_rate, rate, rate);
    return -1;
}
