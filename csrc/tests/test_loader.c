/* The loader on a small model built here byte by byte (one op of every type, fp and binary, a residual):
   it loads and runs, its binary ops match direct +-1 convolutions with zero padding contributing 0, and every
   malformed variant (truncation at every length, every byte flipped with and without a fixed-up CRC, targeted
   semantic errors) fails with an error code and never reads out of bounds (run under the host-debug preset's
   ASan/UBSan to make that last part strict). Also the WAV reader's error paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "internal.h"
#include "tiny_model.h"
#include "wav.h"

static int load(const buf *b, bifsmn_model **m, char *msg)
{
    return bifsmn_load_memory(b->p, b->n, BIFSMN_IMPL_AUTO, m, msg, 256);
}

/* Direct +-1 conv over (time, height, channel) tensors; padded taps contribute 0. */
static void naive_conv(const float *in, const uint64_t *wb, int kwords, int cin, int hin, int win, int cout, int k,
                       int s, int p, int32_t *out)
{
    const int oh_n = (hin + 2 * p - k) / s + 1, ow_n = (win + 2 * p - k) / s + 1;
    for (int ow = 0; ow < ow_n; ow++)
        for (int oh = 0; oh < oh_n; oh++)
            for (int o = 0; o < cout; o++) {
                int acc = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        const int ih = oh * s - p + ky, iw = ow * s - p + kx;
                        if (ih < 0 || ih >= hin || iw < 0 || iw >= win)
                            continue;
                        for (int c = 0; c < cin; c++) {
                            const int bit = (kx * k + ky) * cin + c;
                            const int ws = (wb[o * kwords + bit / 64] >> (bit % 64)) & 1 ? -1 : 1;
                            acc += ws * (in[(iw * hin + ih) * cin + c] < 0 ? -1 : 1);
                        }
                    }
                out[(ow * oh_n + oh) * cout + o] = acc;
            }
}

static void test_valid(const buf *b)
{
    char msg[256];
    bifsmn_model *m = NULL;
    CHECK(load(b, &m, msg) == BIFSMN_OK, "valid model rejected: %s", msg);
    if (!m)
        return;
    CHECK(bifsmn_num_classes(m) == 3 && strcmp(bifsmn_class_name(m, 2), "_silence_") == 0, "classes");
    CHECK(bifsmn_class_name(m, 3) == NULL && bifsmn_class_name(m, -1) == NULL, "class index out of range");
    CHECK(strcmp(bifsmn_variant(m), "test") == 0 && bifsmn_is_binary(m) == 1, "variant/kind");
    CHECK(bifsmn_num_samples(m) == 16000 && bifsmn_num_mels(m) == 32 && bifsmn_num_frames(m) == 32, "shapes");
    CHECK(bifsmn_num_ops(m) == 5, "op count");

    float feats[32 * 32], s1[3], s2[3];
    for (int i = 0; i < 32 * 32; i++)
        feats[i] = 40.0f * rng_float(&seed);
    CHECK(bifsmn_run_features(m, feats, 1024, s1, 3) == BIFSMN_OK, "run_features");
    CHECK(bifsmn_run_features(m, feats, 1024, s2, 3) == BIFSMN_OK && memcmp(s1, s2, sizeof s1) == 0,
          "runs are not deterministic");
    CHECK(isfinite(s1[0]) && isfinite(s1[1]) && isfinite(s1[2]), "non-finite scores");
    CHECK(bifsmn_run_features(m, feats, 1023, s1, 3) == BIFSMN_ERR_ARGUMENT, "wrong feature count accepted");
    CHECK(bifsmn_run_features(m, feats, 1024, s1, 2) == BIFSMN_ERR_ARGUMENT, "wrong score count accepted");
    int16_t pcm[16000];
    for (int i = 0; i < 16000; i++)
        pcm[i] = (int16_t)(rng_next(&seed) % 2000) - 1000;
    CHECK(bifsmn_run_pcm(m, pcm, 16000, s1, 3) == BIFSMN_OK, "run_pcm");
    CHECK(bifsmn_run_pcm(m, pcm, 8000, s1, 3) == BIFSMN_ERR_ARGUMENT, "short clip accepted");

    /* binary conv with padding: engine integers == direct convolution */
    bifsmn_op_info info;
    CHECK(bifsmn_op_get_info(m, 1, &info) == BIFSMN_OK && info.binary && info.type == BIFSMN_OP_CONV2D, "op 1");
    CHECK(info.out_shape[0] == 8 && info.out_shape[1] == 8 && info.out_shape[2] == 8, "op 1 shape");
    float in[16 * 16 * 4], out[8 * 8 * 8];
    int32_t got[8 * 8 * 8], want[8 * 8 * 8];
    for (int i = 0; i < 16 * 16 * 4; i++)
        in[i] = rng_float(&seed);
    CHECK(bifsmn_op_run(m, 1, in, NULL, out, got) == BIFSMN_OK, "op_run conv");
    naive_conv(in, m->ops[1].wb, 2, 4, 16, 16, 8, 5, 2, 2, want);
    CHECK(memcmp(got, want, sizeof got) == 0, "binary conv2d integers differ from the direct convolution");

    /* binary depthwise memory: padded time steps contribute 0 */
    float x[8 * 16], res[8 * 16], y[8 * 16];
    int32_t gi[8 * 16];
    for (int i = 0; i < 8 * 16; i++)
        x[i] = rng_float(&seed), res[i] = rng_float(&seed);
    CHECK(bifsmn_op_run(m, 3, x, NULL, y, gi) == BIFSMN_ERR_ARGUMENT, "missing residual accepted");
    CHECK(bifsmn_op_run(m, 3, x, res, y, gi) == BIFSMN_OK, "op_run dwconv");
    int bad = 0;
    for (int t = 0; t < 8; t++)
        for (int c = 0; c < 16; c++) {
            int acc = 0;
            for (int k = 0; k < 5; k++) {
                const int ti = t + k - 2;
                if (ti < 0 || ti >= 8)
                    continue;
                const int ws = (m->ops[3].wb[k] >> c) & 1 ? -1 : 1;
                acc += ws * (x[ti * 16 + c] < 0 ? -1 : 1);
            }
            bad += acc != gi[t * 16 + c];
            float v = m->ops[3].a[c] * (float)acc + m->ops[3].b[c];
            v = v < 0 ? v * m->ops[3].slope[c] : v;
            bad += fabsf(v + res[t * 16 + c] - y[t * 16 + c]) > 1e-5f;
        }
    CHECK(bad == 0, "binary dwconv1d: %d wrong values", bad);
    bifsmn_free(m);

    /* the reference kernels give the same binary integers and the same scores up to float rounding */
    bifsmn_model *r = NULL;
    CHECK(bifsmn_load_memory(b->p, b->n, BIFSMN_IMPL_REF, &r, msg, sizeof msg) == BIFSMN_OK, "ref load");
    CHECK(r && strcmp(bifsmn_kernel_name(r), "ref") == 0, "ref kernel name");
    if (r) {
        bifsmn_op_run(r, 1, in, NULL, out, want);
        CHECK(memcmp(got, want, sizeof got) == 0, "ref and dispatched kernels disagree");
        bifsmn_free(r);
    }
}

static void test_errors(const buf *good, const layout *L)
{
    char msg[256];
    bifsmn_model *m = (bifsmn_model *)1;
    CHECK(bifsmn_load_memory(NULL, 10, BIFSMN_IMPL_AUTO, &m, msg, sizeof msg) == BIFSMN_ERR_ARGUMENT && !m, "NULL");
    CHECK(bifsmn_load_file("/nonexistent/model.bfsm", BIFSMN_IMPL_AUTO, &m, msg, sizeof msg) == BIFSMN_ERR_IO,
          "missing file");
    CHECK(strstr(msg, "/nonexistent/model.bfsm") != NULL, "the message names the file: %s", msg);

    /* every truncation */
    int bad = 0;
    for (size_t n = 0; n < good->n; n++) {
        m = NULL;
        const int rc = bifsmn_load_memory(good->p, n, BIFSMN_IMPL_AUTO, &m, msg, sizeof msg);
        bad += rc == BIFSMN_OK || m != NULL || msg[0] == '\0';
    }
    CHECK(bad == 0, "%d truncated files were accepted or gave no message", bad);

    buf b = {malloc(good->n + 1), good->n, good->n + 1};
    /* every single-byte corruption of the payload is caught by the CRC */
    bad = 0;
    for (size_t i = 16; i < good->n; i++) {
        memcpy(b.p, good->p, good->n);
        b.p[i] ^= 0x5a;
        bad += load(&b, &m, msg) != BIFSMN_ERR_CRC;
    }
    CHECK(bad == 0, "%d payload corruptions escaped the CRC check", bad);

    /* Mutations of the structural bytes (header, strings, op headers and dimensions) with the CRC fixed up reach
       the field checks: they may load, but must never crash. Weight bytes are skipped: any value is valid there. */
    const uint8_t masks[] = {0x01, 0x10, 0x80, 0xff};
    int loaded = 0;
    for (size_t i = 16; i < good->n; i++) {
        int structural = i < L->op[0];
        for (int k = 0; k < 5; k++)
            structural |= i >= L->op[k] && i < L->op[k] + 12 + 40;
        if (!structural)
            continue;
        for (int j = 0; j < 4; j++) {
            memcpy(b.p, good->p, good->n);
            b.p[i] ^= masks[j];
            finish(&b);
            m = NULL;
            if (load(&b, &m, msg) == BIFSMN_OK) {
                float feats[1024] = {0}, s[3];
                loaded++;
                CHECK(bifsmn_run_features(m, feats, 1024, s, 3) == BIFSMN_OK, "mutant at %zu loads but fails", i);
                bifsmn_free(m);
            }
        }
    }
    printf("structural mutations that still load: %d\n", loaded);

#define EXPECT(code, needle, ...)                                                                                    \
    do {                                                                                                              \
        memcpy(b.p, good->p, good->n);                                                                                \
        b.n = good->n;                                                                                                \
        __VA_ARGS__;                                                                                                  \
        const int rc_ = load(&b, &m, msg);                                                                            \
        CHECK(rc_ == (code) && strstr(msg, needle) != NULL, "expected %d '%s', got %d '%s'", code, needle, rc_, msg); \
    } while (0)

    EXPECT(BIFSMN_ERR_MAGIC, "magic", b.p[0] = 'X');
    EXPECT(BIFSMN_ERR_VERSION, "versions 1 to 2", b.p[4] = 3);
    EXPECT(BIFSMN_ERR_VERSION, "format version 0", b.p[4] = 0);
    EXPECT(BIFSMN_ERR_FORMAT, "non-zero reserved bytes", b.p[L->op[0] + 6] = 1; finish(&b)); /* storage: v2 only */
    EXPECT(BIFSMN_ERR_FORMAT, "header size", b.p[6] = 20);
    EXPECT(BIFSMN_ERR_FORMAT, "trailing", b.p[b.n++] = 0);
    EXPECT(BIFSMN_ERR_TRUNCATED, "payload", b.p[11] = 0x7f);
    EXPECT(BIFSMN_ERR_CRC, "CRC", b.p[12] ^= 1);
    EXPECT(BIFSMN_ERR_FORMAT, "unknown type", b.p[L->op[2]] = 9; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "invalid slots", b.p[L->op[2] + 3] = 2; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "before anything writes", b.p[L->op[0] + 2] = 2; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "pad bits", b.p[L->conv_bits + 15] |= 0x80; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "binary layer in a full-precision", b.p[16] = 1; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "residual", b.p[L->op[3] + 4] = 2; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "front-end", b.p[16 + 6 * 4] = 0xe8; b.p[16 + 6 * 4 + 1] = 0x03; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "top_db", b.p[16 + 13 * 4] = 7; finish(&b)); /* top_db flag with top_db 0 */
    EXPECT(BIFSMN_ERR_FORMAT, "expects", b.p[L->op[1] + 12] = 5; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "too short", b.p[L->op[4] + 16] = 4; finish(&b));
    EXPECT(BIFSMN_ERR_FORMAT, "op count", b.p[16 + 8] = 0xff; b.p[16 + 9] = 0xff; finish(&b));
    free(b.p);
}

/* Every binary16 value against its definition, (-1)^s x 2^(e - 15) x 1.m (e = 0: 2^-14 x 0.m), infinities, NaNs. */
static void test_half(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const int e = (h >> 10) & 31, man = h & 1023;
        const double mag = e == 0 ? ldexp(man, -24) : ldexp(1024 + man, e - 25);
        const double want = (h & 0x8000) ? -mag : mag;
        const float got = bifsmn_half_to_float((uint16_t)h);
        if (e == 31)
            bad += man ? !isnan(got) : !(isinf(got) && (got < 0) == ((h & 0x8000) != 0));
        else
            bad += (double)got != want || (signbit(got) != 0) != ((h & 0x8000) != 0);
    }
    CHECK(bad == 0, "%d binary16 values decoded wrongly", bad);
}

/* Version 2 storage: a model with its fp weights in int8 (a scale per row) or fp16 and its vectors in fp16 loads
   the very values a version 1 file of float32 holds (the same draws), so every output is identical; the storage
   codes are checked. */
static void test_storage(void)
{
    const storage kinds[] = {{BIFSMN_STORE_I8, BIFSMN_STORE_F16, 0}, {BIFSMN_STORE_F16, BIFSMN_STORE_F16, 0},
                             {BIFSMN_STORE_F16, BIFSMN_STORE_F32, 0}, {BIFSMN_STORE_F32, BIFSMN_STORE_F32, 0}};
    char msg[256];
    for (int k = 0; k < 4; k++) {
        layout L, L1;
        storage mirror = kinds[k];
        mirror.mirror = 1;
        seed = 99;
        buf v2 = build_model_stored(&L, &kinds[k]);
        seed = 99;
        buf v1 = build_model_stored(&L1, &mirror);
        CHECK(v2.p[4] == 2 && v1.p[4] == 1, "versions");
        if (kinds[k].ws == BIFSMN_STORE_I8)
            CHECK(v2.n < v1.n, "int8 weights are smaller (%zu vs %zu bytes)", v2.n, v1.n);
        bifsmn_model *a = NULL, *b = NULL;
        CHECK(load(&v2, &a, msg) == BIFSMN_OK, "storage %d/%d rejected: %s", kinds[k].ws, kinds[k].vs, msg);
        CHECK(load(&v1, &b, msg) == BIFSMN_OK, "mirror rejected: %s", msg);
        if (a && b) {
            int same = 1;
            for (int i = 0; i < 5; i++) {
                const bifsmn_op *x = &a->ops[i], *y = &b->ops[i];
                const size_t n = (size_t)x->N;
                same &= !x->wf || memcmp(x->wf, y->wf, 4 * n * (size_t)x->K) == 0;
                same &= memcmp(x->b, y->b, 4 * n) == 0 && (!x->a || memcmp(x->a, y->a, 4 * n) == 0);
                same &= !x->slope || memcmp(x->slope, y->slope, 4 * n) == 0;
            }
            CHECK(same, "storage %d/%d: loaded values differ from the float32 file's", kinds[k].ws, kinds[k].vs);
            float feats[32 * 32], sa[3], sb[3];
            for (int i = 0; i < 32 * 32; i++)
                feats[i] = 40.0f * rng_float(&seed);
            CHECK(bifsmn_run_features(a, feats, 1024, sa, 3) == BIFSMN_OK &&
                      bifsmn_run_features(b, feats, 1024, sb, 3) == BIFSMN_OK && memcmp(sa, sb, sizeof sa) == 0,
                  "storage %d/%d: scores differ", kinds[k].ws, kinds[k].vs);
        }
        bifsmn_free(a);
        bifsmn_free(b);
        if (k == 0) { /* the codes */
            bifsmn_model *m = NULL;
            const struct {
                size_t at;
                uint8_t value;
                const char *needle;
            } bad[] = {{L.op[0] + 6, 3, "unknown storage 3 of its weights"},
                       {L.op[0] + 7, 2, "unknown storage 2 of its vectors"},
                       {L.op[1] + 6, 1, "binary op stores its weights as bits"},
                       {L.op[0] + 6, 1, "too short"}, /* f16 is 2 bytes a weight, the body sized for int8 */
                       {L.op[4] + 7, 0, "too short"}};
            for (int i = 0; i < 5; i++) {
                buf c = {0};
                put(&c, v2.p, v2.n);
                c.p[bad[i].at] = bad[i].value;
                finish(&c);
                const int rc = load(&c, &m, msg);
                CHECK(rc == BIFSMN_ERR_FORMAT && strstr(msg, bad[i].needle), "code case %d: %d '%s'", i, rc, msg);
                free(c.p);
            }
        }
        free(v1.p);
        free(v2.p);
    }
}

static buf wav_file(unsigned tag, unsigned channels, unsigned rate, unsigned bits_per, uint32_t data_bytes)
{
    buf b = {0};
    put(&b, "RIFF", 4), u32(&b, 36 + data_bytes), put(&b, "WAVE", 4);
    put(&b, "LIST", 4), u32(&b, 3), put(&b, "abc", 3), u8(&b, 0); /* odd chunk: padded */
    put(&b, "fmt ", 4), u32(&b, 16), u16(&b, tag), u16(&b, channels), u32(&b, rate);
    u32(&b, rate * channels * bits_per / 8), u16(&b, channels * bits_per / 8), u16(&b, bits_per);
    put(&b, "data", 4), u32(&b, data_bytes);
    for (uint32_t i = 0; i < data_bytes / 2; i++)
        u16(&b, i * 77);
    if (data_bytes & 1)
        u8(&b, 0);
    return b;
}

static void test_wav(void)
{
    char msg[256];
    bifsmn_wav w;
    buf b = wav_file(1, 1, 16000, 16, 200);
    CHECK(bifsmn_wav_parse(b.p, b.n, &w, msg, sizeof msg) == 0, "valid wav: %s", msg);
    CHECK(w.sample_rate == 16000 && w.channels == 1 && w.n_frames == 100 && w.samples[3] == 3 * 77, "wav values");
    bifsmn_wav_free(&w);
    int bad = 0;
    for (size_t n = 0; n < b.n; n++)
        bad += bifsmn_wav_parse(b.p, n, &w, msg, sizeof msg) == 0 && w.n_frames == 100;
    CHECK(bad == 0, "%d truncated wavs parsed as complete", bad);
    free(b.p);
    const struct {
        unsigned tag, ch, rate, bits;
        uint32_t bytes;
        const char *needle;
    } cases[] = {{3, 1, 16000, 32, 400, "not PCM"}, {1, 1, 16000, 8, 100, "16-bit"}, {1, 2, 16000, 16, 402, "frames"}};
    for (int i = 0; i < 3; i++) {
        b = wav_file(cases[i].tag, cases[i].ch, cases[i].rate, cases[i].bits, cases[i].bytes);
        CHECK(bifsmn_wav_parse(b.p, b.n, &w, msg, sizeof msg) != 0 && strstr(msg, cases[i].needle), "case %d: %s", i,
              msg);
        free(b.p);
    }
    b = wav_file(1, 1, 16000, 16, 200);
    b.p[b.n - 200 - 4] = 0xff; /* data size larger than the file */
    CHECK(bifsmn_wav_parse(b.p, b.n, &w, msg, sizeof msg) != 0 && strstr(msg, "past the end"), "%s", msg);
    CHECK(bifsmn_wav_parse((const uint8_t *)"RIFX", 4, &w, msg, sizeof msg) != 0, "RIFX accepted");
    free(b.p);
}

int main(void)
{
    CHECK(bifsmn_crc32((const uint8_t *)"123456789", 9) == 0xcbf43926u, "CRC-32 check value");
    layout L;
    buf good = build_model(&L);
    test_valid(&good);
    test_errors(&good, &L);
    test_half();
    test_storage();
    test_wav();
    free(good.p);
    return check_report("test_loader");
}
