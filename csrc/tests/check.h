/* Tiny assertion helpers for the ctest programs: count failures, keep going, exit non-zero at the end. */
#ifndef BIFSMN_CHECK_H
#define BIFSMN_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            check_failures++;                                                                                         \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                                \
            fprintf(stderr, __VA_ARGS__);                                                                             \
            fputc('\n', stderr);                                                                                      \
        }                                                                                                             \
    } while (0)

static inline int check_report(const char *name)
{
    if (check_failures)
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
    else
        printf("%s: all checks passed\n", name);
    return check_failures ? 1 : 0;
}

/* xorshift64*: deterministic test data without libc rand's global state. */
static inline unsigned long long rng_next(unsigned long long *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static inline float rng_float(unsigned long long *s) /* uniform in [-1, 1) */
{
    return (float)((double)(rng_next(s) >> 11) / 4503599627370496.0 - 1.0);
}

#endif
