/* The front end's engine-internal interface: creation on a chosen kernel set, and the per-frame and clamp
   steps that the streaming front end (src/stream.c) shares with the clip front end. */
#ifndef BIFSMN_FRONTEND_INTERNAL_H
#define BIFSMN_FRONTEND_INTERNAL_H

#include <stddef.h>

#include "bifsmn.h"
#include "dispatch.h"

int bifsmn_frontend_create_with(const bifsmn_frontend_config *config, const bifsmn_kernels *kernels,
                                bifsmn_frontend **out);
const bifsmn_frontend_config *bifsmn_frontend_get_config(const bifsmn_frontend *frontend);

/* One feature column from n_fft float samples (the frame, not yet windowed): col[j * stride], j < n_mels,
   in dB when the config says so. No clamp: that is a property of the whole feature map. */
void bifsmn_frontend_frame(bifsmn_frontend *frontend, const float *samples, float *col, size_t stride);

/* AmplitudeToDB's top_db: clamp the map at its maximum - top_db (nothing when top_db is 0). */
void bifsmn_frontend_clamp(const bifsmn_frontend *frontend, float *features, size_t n);

#endif
