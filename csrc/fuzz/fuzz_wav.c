/* libFuzzer target: the RIFF/WAVE reader of bifsmn-infer (tools/wav.c), on bytes as a file would hold them.

   A clip that parses must be self-consistent (a sane rate and channel count, n_frames * channels samples that
   can all be read), and every failure must leave the output empty with a NUL-terminated reason. Also built
   without libFuzzer by replay.c for the ctest regressions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wav.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bifsmn_wav wav;
    char msg[128];
    msg[0] = '\0';
    if (bifsmn_wav_parse(data, size, &wav, msg, sizeof msg) != 0) {
        if (wav.samples || wav.n_frames || !msg[0] || strlen(msg) >= sizeof msg)
            abort();
        return 0;
    }
    if (wav.sample_rate <= 0 || wav.channels <= 0 || (wav.n_frames && !wav.samples) ||
        wav.n_frames * (size_t)wav.channels * 2 > size)
        abort();
    volatile int64_t sum = 0;
    for (size_t i = 0; i < wav.n_frames * (size_t)wav.channels; i++)
        sum += wav.samples[i]; /* reads every sample, so ASan checks the whole buffer */
    (void)sum;
    bifsmn_wav_free(&wav);
    return 0;
}
