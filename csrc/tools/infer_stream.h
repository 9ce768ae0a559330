/* bifsmn-infer --stream: keyword events from a WAV file or raw PCM on standard input, and --bench --stream. */
#ifndef BIFSMN_INFER_STREAM_H
#define BIFSMN_INFER_STREAM_H

#include "bifsmn.h"

#define STREAM_MAX_CLASS_THRESHOLDS 64

typedef struct {
    int enabled;    /* --stream */
    int posteriors; /* --posteriors */
    double bench_seconds;
    bifsmn_stream_config config;
    /* --threshold CLASS=T, resolved against the model's classes by stream_main */
    int n_class_thresholds;
    const char *class_names[STREAM_MAX_CLASS_THRESHOLDS];
    float class_values[STREAM_MAX_CLASS_THRESHOLDS];
} stream_options;

void stream_options_init(stream_options *o);

/* Parses argv[i] (and its value) when it is a stream option: the number of arguments used, 0 when argv[i] is not
   one, -1 after printing a one-line error for a bad value. */
int stream_option(stream_options *o, int argc, char **argv, int i);

/* Runs the stream mode (bench_runs > 0: the stream benchmark); returns the exit status. */
int stream_main(bifsmn_model *model, stream_options *o, const char *model_path, const char *input, long bench_runs,
                long warmup);

#endif
