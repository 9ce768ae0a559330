/* Helpers shared by bifsmn-infer's clip and stream modes: JSON strings, counts, timing, the bench header. */
#ifndef BIFSMN_CLI_UTIL_H
#define BIFSMN_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "bifsmn.h"
#include "wav.h"

/* s as a JSON string literal on stdout. */
void json_string(const char *s);
/* A non-negative count option up to max; -1 when the text is not one. */
long parse_count(const char *s, long max);
/* CLOCK_MONOTONIC in nanoseconds. */
int64_t now_ns(void);
/* This thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID): unlike wall time, it leaves out the time other
   processes hold the core, which on a shared machine dominates a run of several milliseconds. */
int64_t cpu_ns(void);
/* The opening fields of a --bench report: {"model": .., "clip": .., "variant", "binary", "kernel", "warmup",
   "runs" (no closing brace). */
void print_bench_header(const bifsmn_model *model, const char *model_path, const char *clip, long warmup, long runs);
/* 0 when the clip is mono at the model's rate; otherwise -1 with the reason (and the fix) in msg. */
int check_wav_format(const bifsmn_model *model, const bifsmn_wav *wav, char *msg, size_t msg_len);
/* , "key": [ns, ...] */
void print_times(const char *key, const int64_t *ns, long runs);

#endif
