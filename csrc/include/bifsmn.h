/* bifsmn: C11 inference engine for BiFSMN keyword-spotting models stored as .bfsm files (csrc/FORMAT.md).
 *
 * A model owns every buffer it needs, sized at load (a stream, at its creation); the run and push calls never
 * allocate. There is no global state: separate models are independent, but one model must not run on two
 * threads at once (it holds scratch).
 * Every function returning int returns BIFSMN_OK (0) or a negative bifsmn_status.
 */
#ifndef BIFSMN_H
#define BIFSMN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The newest .bfsm version this engine reads (and the exporter writes); version 1 (every array float32, csrc/FORMAT.md)
   is read too. */
#define BIFSMN_FORMAT_VERSION 2
#define BIFSMN_FORMAT_VERSION_MIN 1

#if defined(_WIN32)
#define BIFSMN_API
#else
#define BIFSMN_API __attribute__((visibility("default")))
#endif

typedef enum {
    BIFSMN_OK = 0,
    BIFSMN_ERR_ARGUMENT = -1,  /* NULL pointer, wrong buffer size, index out of range */
    BIFSMN_ERR_IO = -2,        /* the model file cannot be opened or read */
    BIFSMN_ERR_NOMEM = -3,     /* an allocation failed */
    BIFSMN_ERR_MAGIC = -4,     /* not a .bfsm file */
    BIFSMN_ERR_VERSION = -5,   /* a .bfsm format version this engine does not read */
    BIFSMN_ERR_TRUNCATED = -6, /* sizes in the file point past its end */
    BIFSMN_ERR_CRC = -7,       /* the payload does not match its CRC32 */
    BIFSMN_ERR_FORMAT = -8,    /* a field is out of range or inconsistent with the header */
    BIFSMN_ERR_KERNEL = -9     /* the requested kernel implementation is not available on this CPU/build */
} bifsmn_status;

/* Kernel implementations. AUTO reads the BIFSMN_KERNEL environment variable (ref|avx2|avx512|neon) and
   otherwise picks the best one this CPU supports (x86: detected once at load; aarch64: NEON when built). */
typedef enum {
    BIFSMN_IMPL_AUTO = 0,
    BIFSMN_IMPL_REF = 1,
    BIFSMN_IMPL_AVX2 = 2,
    BIFSMN_IMPL_AVX512 = 3,
    BIFSMN_IMPL_NEON = 4
} bifsmn_impl;

typedef struct bifsmn_model bifsmn_model;

/* Static description of an error code ("CRC mismatch", ...); never NULL. */
BIFSMN_API const char *bifsmn_strerror(int status);

/* Loading. On failure *out is NULL and, when msg is not NULL, msg receives a one-line reason (truncated to
   msg_len, always NUL-terminated). load_memory copies what it needs: the buffer may be freed afterwards. */
BIFSMN_API int bifsmn_load_file(const char *path, bifsmn_impl kernel, bifsmn_model **out, char *msg,
                                size_t msg_len);
BIFSMN_API int bifsmn_load_memory(const void *data, size_t size, bifsmn_impl kernel, bifsmn_model **out,
                                  char *msg, size_t msg_len);
BIFSMN_API void bifsmn_free(bifsmn_model *model);

/* Queries. */
BIFSMN_API int bifsmn_num_classes(const bifsmn_model *model);
/* NULL when index is out of range. */
BIFSMN_API const char *bifsmn_class_name(const bifsmn_model *model, int index);
/* "1x", "0.5x", "0.25x" for a student, "fp" for a full-precision model. */
BIFSMN_API const char *bifsmn_variant(const bifsmn_model *model);
/* 1 for a binary student, 0 for a full-precision model. */
BIFSMN_API int bifsmn_is_binary(const bifsmn_model *model);
/* The kernels chosen at load: "ref", "avx2", "avx512" or "neon". */
BIFSMN_API const char *bifsmn_kernel_name(const bifsmn_model *model);
BIFSMN_API int bifsmn_sample_rate(const bifsmn_model *model);
BIFSMN_API int bifsmn_num_samples(const bifsmn_model *model); /* PCM samples per clip that run_pcm expects */
BIFSMN_API int bifsmn_num_mels(const bifsmn_model *model);    /* feature rows */
BIFSMN_API int bifsmn_num_frames(const bifsmn_model *model);  /* feature columns */

/* Inference: scores receives num_classes logits (pre-softmax). features are n_mels x n_frames row-major (the
   layout of torchaudio's MelSpectrogram output for one clip), in dB. */
BIFSMN_API int bifsmn_run_pcm(bifsmn_model *model, const int16_t *pcm, size_t n_samples, float *scores,
                              size_t n_scores);
BIFSMN_API int bifsmn_run_features(bifsmn_model *model, const float *features, size_t n_features, float *scores,
                                   size_t n_scores);
/* The model's front end alone (int16 PCM -> dB features), the first half of run_pcm. */
BIFSMN_API int bifsmn_features_pcm(bifsmn_model *model, const int16_t *pcm, size_t n_samples, float *features,
                                   size_t n_features);

/* ---- Streaming keyword detection: continuous PCM in, keyword events out. ----
 *
 * A stream runs a loaded model over continuous 16-bit PCM. Push any number of samples at a time: all work is
 * scheduled on sample positions, so the same samples give the same posteriors and events whether they come one
 * at a time or ten minutes at once. Nothing is allocated after bifsmn_stream_create.
 *
 * Timeline. H = the front end's hop_length, N = n_fft, L = the model's num_samples (its clip), T = its frames;
 * samples before the first pushed one are silence.
 * - Stream frame k is the STFT frame centred on sample k H. It is computed once, when sample k H + N/2 - 1 has
 *   arrived (one FFT per hop), into a ring of the last T + 3 feature columns.
 * - The network runs every `stride` hops: whenever the number of pushed samples reaches a multiple of
 *   stride H, on the latest complete window, i.e. the T frames of a clip [end - L, end) with end - L on the
 *   hop grid. `end` is the time of the run and of any event it fires; the run happens bifsmn_stream_latency()
 *   samples or a little more (up to a hop) after `end`. Runs start once end > 0.
 * - Edge frames. The clip front end reflect-pads its clip (torchaudio's center=True), so its first ceil(N/2 / H)
 *   frames and the frames reaching past the clip's end see mirrored audio where a stream has real audio.
 *   BIFSMN_EDGE_AUDIO (the default) keeps the stream's own frames, computed on the real neighbouring audio:
 *   interior frames equal the clip front end's, edge frames differ, and the window's last frame needs
 *   (T - 1) H + N/2 - L samples past `end` (the latency; 896 samples, 56 ms, at the defaults).
 *   BIFSMN_EDGE_REFLECT recomputes the edge frames at every run from the window's own samples, reflect-padded,
 *   so that the network sees exactly the clip front end's features of [end - L, end) (4 extra FFTs per run at
 *   the defaults; latency 0 up to the hop grid). The measured accuracy of both is in csrc/README.md.
 * - Each window gets the clip's per-clip top_db clamp (when the model has one).
 *
 * The detector. Each run gives posteriors p = softmax(scores); then:
 *   1. a = the mean of p over the last n runs, n = max(1, round(average_ms / run period)) (fewer just after
 *      creation or reset), the run period being stride H samples;
 *   2. class c re-arms when a[c] < rearm * threshold[c];
 *   3. the top class k of a (the lowest index on ties) fires when k is armed, a[k] >= threshold[k] <= 1, at least
 *      min_count runs happened since creation or reset, and no event fired in the last refractory_ms; the event
 *      is (end, k, a[k]); k is disarmed and every other class re-armed.
 * Keywords: every class whose name does not start with '_' gets `threshold`; _silence_, _unknown_ and other
 * '_' classes get none (they never fire), unless `thresholds` gives per-class values (a value above 1
 * disables a class). Unlike TensorFlow's RecognizeCommands, which fires only on a label different from the
 * previous one, a keyword fires again once its average has dropped below rearm * threshold: "yes ... yes"
 * spoken twice gives two events.
 */
typedef enum { BIFSMN_EDGE_AUDIO = 0, BIFSMN_EDGE_REFLECT = 1 } bifsmn_edge_mode;

typedef struct {
    int64_t time; /* samples from the start of the stream to the end of the window that fired */
    int keyword;  /* class index */
    float score;  /* the averaged posterior a[keyword], in (0, 1] */
} bifsmn_event;

typedef struct {
    float threshold;         /* every keyword's threshold, in (0, 1]; default BIFSMN_DEFAULT_THRESHOLD */
    const float *thresholds; /* NULL, or num_classes values > 0 replacing every class's (copied at creation) */
    float average_ms;        /* posterior averaging window, >= 0; default BIFSMN_DEFAULT_AVERAGE_MS */
    float refractory_ms;     /* no event within this long after one, >= 0; default BIFSMN_DEFAULT_REFRACTORY_MS */
    float rearm;             /* in [0, 1]; default BIFSMN_DEFAULT_REARM */
    int min_count;           /* >= 1; default BIFSMN_DEFAULT_MIN_COUNT */
} bifsmn_detector_config;

typedef void (*bifsmn_event_fn)(void *user, const bifsmn_event *event);
/* After every run: its time (the window's end), the posteriors p and the averages a, num_classes each. */
typedef void (*bifsmn_posteriors_fn)(void *user, int64_t time, const float *posteriors, const float *averaged,
                                     int num_classes);

typedef struct {
    int stride;                     /* hops between network runs, >= 1; default BIFSMN_DEFAULT_STRIDE */
    int edge_frames;                /* bifsmn_edge_mode; default BIFSMN_EDGE_AUDIO */
    bifsmn_detector_config detector;
    bifsmn_event_fn on_event;           /* may be NULL */
    bifsmn_posteriors_fn on_posteriors; /* may be NULL */
    void *user;                         /* passed to both */
} bifsmn_stream_config;

#define BIFSMN_DEFAULT_STRIDE 3
#define BIFSMN_DEFAULT_THRESHOLD 0.8f
#define BIFSMN_DEFAULT_AVERAGE_MS 500.0f
#define BIFSMN_DEFAULT_REFRACTORY_MS 500.0f
#define BIFSMN_DEFAULT_REARM 0.5f
#define BIFSMN_DEFAULT_MIN_COUNT 1

typedef struct bifsmn_stream bifsmn_stream;
typedef struct bifsmn_detector bifsmn_detector;

/* Fills *config with the defaults above (no callbacks). */
BIFSMN_API void bifsmn_stream_config_default(bifsmn_stream_config *config);

/* A stream on `model`. The stream runs the model's front end and network (their scratch): do not use the model
   from another thread while the stream is in use; several streams may share a model on one thread. On a bad
   setting: BIFSMN_ERR_ARGUMENT and a one-line reason in msg (may be NULL) naming the field. */
BIFSMN_API int bifsmn_stream_create(bifsmn_model *model, const bifsmn_stream_config *config, bifsmn_stream **out,
                                    char *msg, size_t msg_len);
/* Feeds n samples (pcm may be NULL when n is 0); callbacks run inside this call, in time order. A callback may
   call bifsmn_stream_features and run the model, but not push to, finish, reset or free this stream (that returns
   BIFSMN_ERR_ARGUMENT). */
BIFSMN_API int bifsmn_stream_push(bifsmn_stream *stream, const int16_t *pcm, size_t n);
/* The end of the input. Audio after the last run and the final partial hop have not been evaluated yet (a
   keyword at the very end would be missed): finish continues the stream on digital silence, run by run on the
   same grid, until the first run whose window ends at least num_samples / 2 samples after the last pushed
   sample, so that the end of the audio is also seen near the middle of a window, as a keyword is in a clip
   (at the default stride, every pushed sample is then within the middle half of some window). Callbacks run inside this
   call as in push; these last runs' times (and events) lie past the audio, by up to half a clip plus a run
   period. Like push, it depends only on the samples pushed, not on how they were cut, and allocates nothing.
   Nothing runs when no sample was pushed. Afterwards the stream takes no more samples (push of n > 0 returns
   BIFSMN_ERR_ARGUMENT) until bifsmn_stream_reset; a second finish does nothing, and position stays the number
   of samples pushed. */
BIFSMN_API int bifsmn_stream_finish(bifsmn_stream *stream);
/* Back to the state of creation: no samples, silence history, the detector's averages and timers cleared, not
   finished. */
BIFSMN_API int bifsmn_stream_reset(bifsmn_stream *stream);
BIFSMN_API void bifsmn_stream_free(bifsmn_stream *stream);
/* Samples pushed since creation or reset. */
BIFSMN_API int64_t bifsmn_stream_position(const bifsmn_stream *stream);
/* Samples per hop (the front end's hop_length): frames are this far apart, runs stride times that. */
BIFSMN_API int bifsmn_stream_hop(const bifsmn_stream *stream);
/* Samples a window's end precedes the earliest run that can evaluate it (see the timeline). */
BIFSMN_API int bifsmn_stream_latency(const bifsmn_stream *stream);
/* The features of the last run's window (n_mels x n_frames, as bifsmn_run_features takes them); all -100 dB
   silence before the first run. */
BIFSMN_API int bifsmn_stream_features(const bifsmn_stream *stream, float *features, size_t n_features);

/* The detector alone, on posteriors from anywhere (e.g. saved from a stream's on_posteriors, to sweep thresholds
   without rerunning the network): the same rule with a run period of stride hops of the model's front end. */
BIFSMN_API int bifsmn_detector_create(const bifsmn_model *model, int stride, const bifsmn_detector_config *config,
                                      bifsmn_detector **out, char *msg, size_t msg_len);
/* One run at `time` with num_classes posteriors: 1 with *event filled when it fired, 0 when not, < 0 on error. */
BIFSMN_API int bifsmn_detector_step(bifsmn_detector *detector, int64_t time, const float *posteriors,
                                    size_t n_posteriors, bifsmn_event *event);
/* The averages a of the last step (num_classes values). */
BIFSMN_API const float *bifsmn_detector_averaged(const bifsmn_detector *detector);
BIFSMN_API void bifsmn_detector_reset(bifsmn_detector *detector);
/* A reset, then one step per stored run: row i of posteriors (n_runs x num_classes, row-major; n_posteriors =
   num_classes) at times[i]. The first max_events events go into events (NULL when max_events is 0); returns how
   many fired, possibly more than max_events, or < 0 on error. A threshold sweep is one call per threshold. */
BIFSMN_API int bifsmn_detector_run(bifsmn_detector *detector, const int64_t *times, const float *posteriors,
                                   size_t n_runs, size_t n_posteriors, bifsmn_event *events, size_t max_events);
BIFSMN_API void bifsmn_detector_free(bifsmn_detector *detector);

/* ---- Standalone front end: log-mel features matching torchaudio MelSpectrogram + AmplitudeToDB. ---- */
typedef struct {
    int sample_rate;   /* Hz */
    int num_samples;   /* samples per clip */
    int n_fft;         /* power of two */
    int win_length;    /* periodic Hann window length <= n_fft, zero-padded to n_fft at the centre */
    int hop_length;
    int n_mels;        /* HTK mel scale, triangular filters without area normalisation */
    float f_min;       /* Hz */
    float f_max;       /* Hz, <= sample_rate / 2 */
    int normalized;    /* 1: divide the STFT by sqrt(sum(window^2)) */
    int to_db;         /* 1: 10 * log10(max(power, 1e-10)); 0: mel power */
    float top_db;      /* > 0 (with to_db): clamp each clip's dB map at its maximum - top_db; 0: no clamp */
    float pcm_scale;   /* int16 -> float factor, 1/32768 for soundfile's float conversion */
} bifsmn_frontend_config;

typedef struct bifsmn_frontend bifsmn_frontend;

/* The front end runs on the kernels a model load would choose (BIFSMN_IMPL_AUTO: BIFSMN_KERNEL is honoured). */
BIFSMN_API int bifsmn_frontend_create(const bifsmn_frontend_config *config, bifsmn_frontend **out);
BIFSMN_API void bifsmn_frontend_free(bifsmn_frontend *frontend);
/* 1 + num_samples / hop (centred STFT). */
BIFSMN_API int bifsmn_frontend_num_frames(const bifsmn_frontend *frontend);
/* out: n_mels x n_frames row-major. */
BIFSMN_API int bifsmn_frontend_run_pcm(bifsmn_frontend *frontend, const int16_t *pcm, size_t n_samples,
                                       float *out, size_t n_out);
BIFSMN_API int bifsmn_frontend_run_float(bifsmn_frontend *frontend, const float *x, size_t n_samples, float *out,
                                         size_t n_out);

/* ---- Introspection for tests and benchmarks: run one layer record alone. ---- */
typedef enum { BIFSMN_OP_CONV2D = 1, BIFSMN_OP_LINEAR = 2, BIFSMN_OP_DWCONV1D = 3 } bifsmn_op_type;

typedef struct {
    int type;          /* bifsmn_op_type */
    int binary;        /* 1: sign-binarised input and weights */
    int in_shape[3];   /* (time, height, channels): the engine's time-major, channels-last layout */
    int out_shape[3];
    int has_residual;  /* output += the residual input (after the activation) */
} bifsmn_op_info;

BIFSMN_API int bifsmn_num_ops(const bifsmn_model *model);
BIFSMN_API int bifsmn_op_get_info(const bifsmn_model *model, int index, bifsmn_op_info *info);
/* Runs op `index` on `in` (in_shape elements). out (out_shape elements) receives the float output, residual
   (out_shape elements) is required when the op has one; out_int (out_shape elements, may be NULL) receives a
   binary op's integer +-1 dot products before the affine, padded taps contributing 0. */
BIFSMN_API int bifsmn_op_run(bifsmn_model *model, int index, const float *in, const float *residual,
                             float *out, int32_t *out_int);

/* ---- Profiling. bifsmn_run_* execute a plan built at load: step 0 transposes the features, step i + 1 runs op
   i. Each step has a kind: "input", "conv2d", "linear", "dwconv1d" (full precision) or "bconv2d", "blinear",
   "bdwconv1d" (binary, each one fused kernel that writes only what later steps read). ---- */
BIFSMN_API int bifsmn_plan_length(const bifsmn_model *model);
/* NULL when step is out of range. */
BIFSMN_API const char *bifsmn_plan_step_kind(const bifsmn_model *model, int step);
/* Runs one step alone on the model's buffers as the last run left them (step 0 reads the features of the last
   bifsmn_run_pcm): repeating the steps of one kind measures that kind's share of a run. */
BIFSMN_API int bifsmn_plan_run_step(bifsmn_model *model, int step);

/* ---- Raw kernels of a chosen implementation, for tests and benchmarks. ---- */
/* 1 when implementation `impl` runs on this CPU and build (cpuid is a VM exit under a hypervisor: resolve a
   kernel set once rather than asking per call). */
BIFSMN_API int bifsmn_kernel_available(bifsmn_impl impl);

typedef struct bifsmn_kernel_set bifsmn_kernel_set;

/* The kernels of `impl` (AUTO: the choice a model load makes); BIFSMN_ERR_KERNEL when they do not run here. */
BIFSMN_API int bifsmn_kernel_set_create(bifsmn_impl impl, bifsmn_kernel_set **out);
BIFSMN_API void bifsmn_kernel_set_free(bifsmn_kernel_set *set);
BIFSMN_API const char *bifsmn_kernel_set_name(const bifsmn_kernel_set *set);
/* The kernel contracts of kernels/bitpack/bitpack.h, kernels/bgemm/bgemm.h and kernels/sgemm/sgemm.h. */
BIFSMN_API int bifsmn_kernel_bitpack(const bifsmn_kernel_set *set, const float *x, uint64_t *out, int rows, int K);
BIFSMN_API int bifsmn_kernel_bgemm(const bifsmn_kernel_set *set, const uint64_t *a, const uint64_t *w, int32_t *out,
                                   int M, int N, int K);
BIFSMN_API int bifsmn_kernel_sgemm(const bifsmn_kernel_set *set, const float *a, const float *w, const float *bias,
                                   float *c, int M, int N, int K);

#ifdef __cplusplus
}
#endif
#endif
