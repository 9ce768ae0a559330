/* Minimal, defensive RIFF/WAVE reader for bifsmn-infer: 16-bit PCM only (plain or WAVE_FORMAT_EXTENSIBLE). */
#ifndef BIFSMN_WAV_H
#define BIFSMN_WAV_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int sample_rate;
    int channels;
    size_t n_frames;  /* samples per channel */
    int16_t *samples; /* n_frames * channels, interleaved */
} bifsmn_wav;

/* 0 on success; -1 with a one-line reason in msg otherwise (out is then empty). */
int bifsmn_wav_parse(const uint8_t *data, size_t size, bifsmn_wav *out, char *msg, size_t msg_len);
int bifsmn_wav_read(const char *path, bifsmn_wav *out, char *msg, size_t msg_len);
void bifsmn_wav_free(bifsmn_wav *wav);

#endif
