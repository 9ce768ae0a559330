/* A small valid .bfsm model built byte by byte (one op of every type, fp and binary, a residual; 3 classes
   yes / no / _silence_; a 512-point front end at 16 kHz, 32 mels x 32 frames), for the C tests and fuzz
   targets that need a model without the Python exporter. build_model also records where some fields are, for
   the loader's corruption tests. build_model_stored writes the float arrays in a version 2 storage (FORMAT.md
   "Storage"), or the same values as version 1 float32, so that the two loads can be compared. */
#ifndef BIFSMN_TINY_MODEL_H
#define BIFSMN_TINY_MODEL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "internal.h"

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void u8(buf *b, unsigned v)
{
    const uint8_t x = (uint8_t)v;
    put(b, &x, 1);
}

static void u16(buf *b, unsigned v) { u8(b, v & 0xff), u8(b, v >> 8); }
static void u32(buf *b, uint32_t v) { u16(b, v & 0xffff), u16(b, v >> 16); }
static void u64(buf *b, uint64_t v) { u32(b, (uint32_t)v), u32(b, (uint32_t)(v >> 32)); }

static void f32(buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u32(b, u);
}

static void str(buf *b, const char *s)
{
    u16(b, (unsigned)strlen(s));
    put(b, s, strlen(s));
}

static unsigned long long seed = 0x243f6a8885a308d3ULL;

static void floats(buf *b, int n)
{
    for (int i = 0; i < n; i++)
        f32(b, rng_float(&seed));
}

/* Random sign bits for rows x bits, pad bits 0. */
static void bits(buf *b, int rows, int nbits)
{
    const int words = (nbits + 63) / 64;
    for (int r = 0; r < rows; r++)
        for (int w = 0; w < words; w++) {
            uint64_t v = rng_next(&seed);
            if (w == words - 1 && nbits % 64)
                v &= (UINT64_C(1) << (nbits % 64)) - 1;
            u64(b, v);
        }
}

typedef struct {
    size_t op[5];       /* offset of each op header in the file */
    size_t conv_bits;   /* offset of op 1's packed weights */
} layout;

/* How the float arrays are written: NULL = version 1 with random floats. Otherwise values drawn so that every
   storage holds them exactly (halves of normal range; int8 steps of a per-row scale), written as `ws` (weights of
   the fp ops) and `vs` (every per-output vector) in version 2, or as float32 in version 1 when `mirror`. */
typedef struct {
    int ws, vs, mirror;
} storage;

static void op_header_v(buf *b, int type, int flags, int in, int out, int res, int act, uint32_t body, int ws, int vs)
{
    u8(b, type), u8(b, flags), u8(b, in), u8(b, out), u8(b, res), u8(b, act), u8(b, ws), u8(b, vs), u32(b, body);
}

/* A half of normal range, magnitude in [2^-6, 4): exponent 9..16 */
static uint16_t draw_half(void)
{
    const uint64_t r = rng_next(&seed);
    return (uint16_t)((r & 0x8000u) | (9u + (r >> 16) % 8u) << 10 | ((r >> 24) & 0x3ffu));
}

static uint32_t bytes_of(int n_rows, int n, int st) { return st == 0 ? 4u * n : st == 1 ? 2u * n : 4u * n_rows + n; }

/* n values (rows x n / rows for a weight matrix) in storage `st` (or float32 when st < 0 / mirror). */
static void stored(buf *b, int rows, int n, int st, const storage *s)
{
    if (!s) {
        floats(b, n);
        return;
    }
    if (st == BIFSMN_STORE_I8) {
        float scale[64];
        for (int r = 0; r < rows; r++)
            scale[r] = 0.01f + 0.001f * (float)(rng_next(&seed) % 64);
        if (!s->mirror)
            for (int r = 0; r < rows; r++)
                f32(b, scale[r]);
        for (int i = 0; i < n; i++) {
            const int8_t q = (int8_t)((int)(rng_next(&seed) % 255) - 127);
            if (s->mirror)
                f32(b, scale[i / (n / rows)] * (float)q);
            else
                u8(b, (uint8_t)q);
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        const uint16_t h = draw_half();
        if (s->mirror || st == BIFSMN_STORE_F32)
            f32(b, bifsmn_half_to_float(h));
        else
            u16(b, h);
    }
}

static void finish(buf *b)
{
    const uint32_t payload = (uint32_t)(b->n - 16), crc = bifsmn_crc32(b->p + 16, payload);
    for (int i = 0; i < 4; i++) {
        b->p[8 + i] = (uint8_t)(payload >> (8 * i));
        b->p[12 + i] = (uint8_t)(crc >> (8 * i));
    }
}

static buf build_model_stored(layout *L, const storage *s)
{
    const int v2 = s && !s->mirror, ws = v2 ? s->ws : 0, vs = v2 ? s->vs : 0; /* the codes in the file */
    const int dw = s ? s->ws : 0, dv = s ? s->vs : 0;                         /* how the values are drawn */
    buf b = {0};
    put(&b, "BFSM", 4);
    u16(&b, v2 ? 2 : 1), u16(&b, 16), u32(&b, 0), u32(&b, 0);
    /* kind, classes, ops, slots, rate, samples, n_fft, win_length, hop, mels, frames */
    const uint32_t h[] = {0, 3, 5, 3, 16000, 16000, 512, 512, 512, 32, 32}; /* small FFT: loads stay cheap */
    for (int i = 0; i < 11; i++)
        u32(&b, h[i]);
    f32(&b, 0.0f), f32(&b, 8000.0f), u32(&b, 3), f32(&b, 0.0f), f32(&b, 1.0f / 32768.0f);
    str(&b, "test"), str(&b, "yes"), str(&b, "no"), str(&b, "_silence_");
    u32(&b, 1), u32(&b, 0);
    /* 0: fp conv 1 -> 4, 3x3, stride 2, pad 1: (32, 32, 1) -> (16, 16, 4), PReLU */
    L->op[0] = b.n;
    op_header_v(&b, 1, 0, 0, 1, 0xff, 1, 40 + bytes_of(4, 4 * 9, ws) + 2 * bytes_of(1, 4, vs), ws, vs);
    const uint32_t c0[] = {1, 32, 32, 4, 3, 3, 2, 2, 1, 1};
    for (int i = 0; i < 10; i++)
        u32(&b, c0[i]);
    stored(&b, 4, 4 * 9, dw, s);
    stored(&b, 1, 4 + 4, dv, s);
    /* 1: binary conv 4 -> 8, 5x5, stride 2, pad 2: (16, 16, 4) -> (8, 8, 8), K = 100 */
    L->op[1] = b.n;
    op_header_v(&b, 1, 1, 1, 2, 0xff, 1, 40 + 8 * 8 * 2 + 3 * bytes_of(1, 8, vs), 0, vs);
    const uint32_t c1[] = {4, 16, 16, 8, 5, 5, 2, 2, 2, 2};
    for (int i = 0; i < 10; i++)
        u32(&b, c1[i]);
    L->conv_bits = b.n;
    bits(&b, 8, 100);
    stored(&b, 1, 8 * 3, dv, s);
    /* 2: binary linear 64 -> 16 per frame: (8, 8, 8) -> (8, 1, 16) */
    L->op[2] = b.n;
    op_header_v(&b, 2, 1, 2, 0, 0xff, 1, 8 + 8 * 16 + 3 * bytes_of(1, 16, vs), 0, vs);
    u32(&b, 64), u32(&b, 16);
    bits(&b, 16, 64);
    stored(&b, 1, 16 * 3, dv, s);
    /* 3: binary depthwise memory, 5 taps, 2 left: (8, 1, 16) -> (8, 1, 16), + residual slot 0 */
    L->op[3] = b.n;
    op_header_v(&b, 3, 1, 0, 1, 0, 1, 16 + 8 * 5 + 3 * bytes_of(1, 16, vs), 0, vs);
    u32(&b, 16), u32(&b, 5), u32(&b, 1), u32(&b, 2);
    bits(&b, 5, 16);
    stored(&b, 1, 16 * 3, dv, s);
    /* 4: fp classifier over the flattened (8, 1, 16) -> 3 */
    L->op[4] = b.n;
    op_header_v(&b, 2, 2, 1, 2, 0xff, 0, 8 + bytes_of(3, 3 * 128, ws) + bytes_of(1, 3, vs), ws, vs);
    u32(&b, 128), u32(&b, 3);
    stored(&b, 3, 3 * 128, dw, s);
    stored(&b, 1, 3, dv, s);
    finish(&b);
    return b;
}

static buf build_model(layout *L) { return build_model_stored(L, NULL); }

#endif
