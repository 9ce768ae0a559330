#include "wav.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WAV_BYTES (1u << 30)

static int fail(char *msg, size_t msg_len, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static unsigned le16(const uint8_t *b) { return (unsigned)b[0] | (unsigned)b[1] << 8; }

int bifsmn_wav_parse(const uint8_t *data, size_t size, bifsmn_wav *out, char *msg, size_t msg_len)
{
    *out = (bifsmn_wav){0};
    if (size < 12 || memcmp(data, "RIFF", 4) != 0 || memcmp(data + 8, "WAVE", 4) != 0)
        return fail(msg, msg_len, "not a RIFF/WAVE file");
    const uint8_t *fmt = NULL, *pcm = NULL;
    size_t pcm_size = 0;
    /* Chunks are (id, size, data padded to an even length); the RIFF size field is not trusted. */
    size_t pos = 12;
    while (size - pos >= 8) {
        const uint8_t *id = data + pos;
        const size_t len = le32(data + pos + 4);
        pos += 8;
        if (len > size - pos)
            return fail(msg, msg_len, "chunk '%.4s' of %zu bytes runs past the end of the file", (const char *)id, len);
        if (memcmp(id, "fmt ", 4) == 0) {
            if (len < 16)
                return fail(msg, msg_len, "fmt chunk of %zu bytes is too short", len);
            fmt = data + pos;
            if (le16(fmt) == 0xfffe && (len < 26 || le16(fmt + 24) != 1))
                return fail(msg, msg_len, "extensible WAV whose sub-format is not PCM");
        } else if (memcmp(id, "data", 4) == 0 && !pcm) {
            pcm = data + pos;
            pcm_size = len;
        }
        pos += len + (len & 1);
        if (pos > size)
            pos = size;
    }
    if (!fmt)
        return fail(msg, msg_len, "no fmt chunk");
    if (!pcm)
        return fail(msg, msg_len, "no data chunk");
    const unsigned tag = le16(fmt), channels = le16(fmt + 2), bits = le16(fmt + 14);
    const uint32_t rate = le32(fmt + 4);
    if (tag != 1 && tag != 0xfffe)
        return fail(msg, msg_len, "audio format %u is not PCM (convert to 16-bit PCM)", tag);
    if (bits != 16)
        return fail(msg, msg_len, "%u-bit samples; 16-bit PCM is required", bits);
    if (channels == 0 || channels > 64)
        return fail(msg, msg_len, "%u channels", channels);
    if (rate == 0 || rate > 1000000)
        return fail(msg, msg_len, "sample rate %u Hz out of range", (unsigned)rate);
    const size_t frame_bytes = 2 * (size_t)channels;
    if (pcm_size % frame_bytes)
        return fail(msg, msg_len, "data chunk of %zu bytes is not a whole number of %zu-byte frames", pcm_size,
                    frame_bytes);
    const size_t n = pcm_size / 2;
    int16_t *s = malloc(n ? n * sizeof(int16_t) : 1);
    if (!s)
        return fail(msg, msg_len, "out of memory");
    for (size_t i = 0; i < n; i++)
        s[i] = (int16_t)le16(pcm + 2 * i);
    *out = (bifsmn_wav){(int)rate, (int)channels, pcm_size / frame_bytes, s};
    return 0;
}

int bifsmn_wav_read(const char *path, bifsmn_wav *out, char *msg, size_t msg_len)
{
    *out = (bifsmn_wav){0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(msg, msg_len, "cannot open the file");
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0 || (unsigned long)size > MAX_WAV_BYTES) {
        fclose(f);
        return fail(msg, msg_len, size < 0 ? "cannot read the file" : "file larger than 1 GiB");
    }
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        fclose(f);
        return fail(msg, msg_len, "out of memory");
    }
    const size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    const int rc = got == (size_t)size ? bifsmn_wav_parse(buf, (size_t)size, out, msg, msg_len)
                                       : fail(msg, msg_len, "cannot read the file");
    free(buf);
    return rc;
}

void bifsmn_wav_free(bifsmn_wav *wav)
{
    free(wav->samples);
    *wav = (bifsmn_wav){0};
}
