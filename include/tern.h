/* tern: ternary-weight, 8-bit dynamic-fixed-point CNN inference on CPUs. The one public header:
 * what is not declared here is not API.
 *
 * A worked example (examples/classify.c): classify a JPEG with a quantized model.
 *
 *     #include <tern.h>
 *     #include <stdio.h>
 *     #include <stdlib.h>
 *
 *     tern_model *m = NULL;
 *     if (tern_model_load("r56.tern", NULL, &m)) {           // NULL: default options
 *         fprintf(stderr, "%s\n", tern_last_error());          // says what and where
 *         return 1;
 *     }
 *     tern_model_info in;
 *     tern_model_describe(m, &in);                             // input shape, preprocessing, classes
 *     uint8_t *rgb; int h, w;
 *     tern_image_decode_file("cat.jpg", &rgb, &h, &w);         // HWC RGB, free with tern_free()
 *     uint8_t *x = malloc(tern_model_input_size(m));           // one image of model input
 *     tern_model_preprocess(m, rgb, h, w, 3, x);               // resize, crop, channel order
 *     int32_t *logits = malloc(sizeof(int32_t) * in.classes);
 *     tern_model_run(m, x, 1, logits);                         // batch of 1
 *     int top[5];
 *     tern_top_k(logits, in.classes, 5, top);
 *     for (int i = 0; i < 5; i++)                              // logit value = code * 2^-output_exp
 *         printf("%d %.4f\n", top[i], tern_logit_value(m, logits[top[i]]));
 *     free(x); free(logits); tern_free(rgb); tern_model_free(m);
 *
 * Build: cc app.c $(pkg-config --cflags --libs tern)   (link the static library with --static).
 *
 * Conventions. Every fallible call returns enum tern_status (0 = TERN_STATUS_OK); on failure
 * tern_last_error() says what went wrong and where (file, layer, option). Free functions accept
 * NULL. Output pointers are set to NULL (or zero) on failure.
 *
 * Ownership. Objects a tern_* call hands out (models, decoded images) belong to the caller and
 * are freed with the matching tern_*_free / tern_free. Buffers the caller passes in (pixels,
 * logits) stay the caller's; tern never keeps a pointer to them after the call returns. Strings
 * in an info struct point into the model and live as long as it.
 *
 * Thread safety. Different models may be used from different threads at once. One model may be
 * described, preprocessed into and queried (tern_model_describe, tern_model_layer, ...) from
 * several threads at once, but tern_model_run and tern_model_set_profiling on one model must not
 * overlap with any other call on that model (it owns its activation buffers); give each thread its
 * own model, or lock. The last-error message is per thread. tern_quantize_file calls may run in
 * several threads at once (they share only OpenBLAS's process-wide thread count).
 */
#ifndef TERN_H
#define TERN_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_VERSION_MAJOR 0
#define TERN_VERSION_MINOR 2
#define TERN_VERSION_PATCH 0

/* Marks the exported symbols of libtern.so (built with -fvisibility=hidden). */
#if defined(__GNUC__)
#define TERN_API __attribute__((visibility("default")))
#else
#define TERN_API
#endif

/* ---- status and errors ---- */
enum tern_status {
    TERN_STATUS_OK = 0,
    TERN_STATUS_IO,           /* file missing, unreadable, or write failed */
    TERN_STATUS_FORMAT,       /* malformed or corrupt input file (ONNX, .tern, image, dataset) */
    TERN_STATUS_UNSUPPORTED,  /* valid input that tern does not handle (op, attribute, type, CPU) */
    TERN_STATUS_INVALID_ARG,  /* bad argument or option */
    TERN_STATUS_SHAPE,        /* shapes do not fit (wrong image size, bad graph shapes) */
    TERN_STATUS_NOMEM,        /* out of memory */
    TERN_STATUS_NUMERIC,      /* NaN/Inf or out-of-range numbers */
    TERN_STATUS_INTERNAL      /* a bug in tern */
};

/* Short name of a status ("i/o error", "malformed input", ...); never NULL. */
TERN_API const char *tern_status_string(enum tern_status st);
TERN_API const char *tern_status_str(enum tern_status st);   /* the same; older name */
/* Message of the last failure on the calling thread ("" if none). Valid until the thread's
 * next failing tern call. */
TERN_API const char *tern_last_error(void);
/* "MAJOR.MINOR.PATCH" of the library actually linked (compare with TERN_VERSION_*). */
TERN_API const char *tern_version(void);
/* Free memory tern handed out (decoded images). NULL is a no-op. */
TERN_API void tern_free(void *p);

/* ---- a quantized model (.tern) on the integer engine ---- */
typedef struct tern_model tern_model;

enum tern_kernels {           /* kernel level */
    TERN_KERNELS_AUTO = 0,    /* the best the CPU has (the TERN_ISA environment variable can lower it) */
    TERN_KERNELS_REF,         /* scalar reference kernels: they define every result */
    TERN_KERNELS_AVX2,
    TERN_KERNELS_AVX512VNNI
};

typedef struct tern_model_options {
    size_t size;              /* sizeof(tern_model_options): set by tern_model_options_init */
    int threads;              /* threads of tern_model_run; 0 = automatic (the CPUs online) */
    int max_batch;            /* images per engine pass; larger batches run in passes of this
                                 size (buffers are planned for it once); 0 = automatic (64) */
    enum tern_kernels kernels;/* 0 = automatic; asking for more than the CPU has is an error */
} tern_model_options;
TERN_API void tern_model_options_init(tern_model_options *o);

/* Load and validate a .tern file (every field checked; a malformed file is TERN_STATUS_FORMAT
 * naming what is wrong). The engine (weights packed for the chosen kernels, buffers planned for
 * max_batch) is built by the first tern_model_run or tern_model_set_profiling, so describing a
 * model costs no activation memory; runs never allocate after that. opts may be NULL (automatic). */
TERN_API enum tern_status tern_model_load(const char *path, const tern_model_options *opts, tern_model **out);
/* The same from a .tern image in memory (copied: data may be freed after the call). name is used
 * in error messages (may be NULL). */
TERN_API enum tern_status tern_model_load_memory(const void *data, size_t len, const char *name,
                                                 const tern_model_options *opts, tern_model **out);
TERN_API void tern_model_free(tern_model *m);

/* What a model takes and gives, and the preprocessing it was calibrated with. */
typedef struct tern_model_info {
    int channels, height, width;  /* input: one image is channels x height x width uint8, planar */
    int classes;                  /* logits per image */
    int layers;                   /* entries of tern_model_layer */
    int output_exp;               /* logit value = int32 logit * 2^-output_exp */
    /* recorded preprocessing: what tern_model_preprocess applies */
    int bgr;                      /* channels are fed B,G,R (else R,G,B) */
    int resize_short;             /* shorter side resized to this first (bilinear), 0 = none */
    int crop;                     /* then centre crop crop x crop, 0 = none */
    /* normalisation the first layer applies to pixels p (folded in: feed raw pixels):
     * (p/255 - mean[c]) / std[c], c in the order the channels are fed */
    float mean[3], std[3];
    const char *source;           /* the ONNX file it was quantized from */
    const char *kernels;          /* kernel level in use: "ref", "avx2", "avx512vnni" */
    int threads, max_batch;       /* as resolved from the options */
} tern_model_info;
TERN_API enum tern_status tern_model_describe(const tern_model *m, tern_model_info *info);
/* Bytes of one image of model input (channels * height * width). */
TERN_API size_t tern_model_input_size(const tern_model *m);

/* Turn a decoded 8-bit image into one image of model input, applying the recorded
 * preprocessing: resize the shorter side, centre crop, channel order. image: height x width
 * pixels, interleaved (HWC, as image decoders and numpy give them) with `channels` bytes per pixel:
 * 3 = R,G,B; 4 = R,G,B,A (alpha ignored); 1 = grey (copied to every channel). input:
 * tern_model_input_size(m) bytes. Without recorded resize/crop the image must already have the
 * model's height and width, else TERN_STATUS_SHAPE. */
TERN_API enum tern_status tern_model_preprocess(const tern_model *m, const uint8_t *image, int height, int width,
                                                int channels, uint8_t *input);

/* Run a batch: input is batch x tern_model_input_size(m) bytes (preprocessed images one after the
 * other), logits batch x classes int32 (value = logit * 2^-output_exp). Integer arithmetic only;
 * the result is bit-identical for every kernel level and thread count. */
TERN_API enum tern_status tern_model_run(tern_model *m, const uint8_t *input, int batch, int32_t *logits);
/* The k best classes of one image's logits, best first (ties: lower class first); k <= n. */
TERN_API void tern_top_k(const int32_t *logits, int n, int k, int *classes);
/* A logit's value: logit * 2^-output_exp. */
TERN_API double tern_logit_value(const tern_model *m, int32_t logit);

/* One row of the model's layer table (what `tern info` and `tern bench` print). */
typedef struct tern_layer_info {
    const char *name;             /* source node name */
    const char *op;               /* "conv", "add", "maxpool", "avgpool", "gap", "pad", "slice", "concat", "requant", ... */
    int out_c, out_h, out_w;      /* output per image */
    int out_exp;                  /* output value = code * 2^-out_exp */
    int out_signed, out_wide;     /* int8 (else uint8) codes; int32 (the logits) */
    /* weight layers only (weights == 0 for the others): */
    char weights;                 /* 't' ternary, '4', '8' bits */
    int cluster;                  /* input channels per scale cluster */
    int cluster_all;              /* one cluster spans all input channels of a group */
    int clusters;                 /* scale clusters in the layer */
    float zero_frac, sqnr_db;     /* zero codes; weight SQNR in dB */
    double mult_replaced;         /* fraction of the layer's multiplications replaced by additions */
    int64_t macs;                 /* multiply-accumulates per image */
    const char *kernel;           /* conv kernel in use, NULL for other ops */
    int64_t time_ns;              /* time in this layer over the profiled runs (0 if not profiled) */
} tern_layer_info;
TERN_API enum tern_status tern_model_layer(const tern_model *m, int i, tern_layer_info *info);
/* Per-layer timing of the following runs (on: 1) into tern_layer_info.time_ns: the calling
 * thread's CPU time for a one-thread model, else wall time. */
TERN_API enum tern_status tern_model_set_profiling(tern_model *m, int on);

/* ---- images ---- */
/* Decode an image file (JPEG, PNG, BMP, ...) into interleaved R,G,B: *rgb is height x width x 3
 * bytes, to free with tern_free(). */
TERN_API enum tern_status tern_image_decode_file(const char *path, uint8_t **rgb, int *height, int *width);

/* ---- quantization: FP32 ONNX -> .tern ---- */
/* Everything `tern quantize` can set. Initialise with tern_quantize_options_init, then change
 * fields; the size field lets a newer library take a struct from an older header. */
typedef struct tern_quantize_options {
    size_t size;                  /* sizeof(tern_quantize_options): set by init */
    /* calibration data: a CIFAR-10 .bin file or a folder of images (never the test set) */
    const char *calib;
    const char *labels;           /* class ids for an image folder (needed by max_drop), or NULL */
    int calib_count;              /* images spread over the data (500) */
    int calib_offset;             /* start of the spread (0) */
    /* weight policy */
    char weights;                 /* body layers: 't' ternary (default), '4', '8' */
    int cluster;                  /* input channels per scale cluster (4); 0 = all */
    int twn_rule;                 /* ternary threshold: 0 = exact least squares (default), 1 = TWN */
    int all_layers;               /* 1: first and last layers by `weights` too (default 0: 8-bit) */
    const char *const *layer_rules; /* per-layer overrides "KEY=SPEC" (KEY: name or weight-layer
                                     * index; SPEC: t[:N], 4[:N], 8, t:all), applied in order */
    int nlayer_rules;
    /* activations */
    int calib_maxabs;             /* 0 = MSE-optimal exponents (default), 1 = max-abs */
    /* post-training corrections (0 = off) */
    int bias_corr, opt_scales, opt_round;
    int opt_images;               /* images they use; 0 (default) = a quarter of the classes, 64..256 */
    int opt_flip;                 /* also mirrored images */
    float opt_damp;               /* ridge term relative to the mean input power (0.001) */
    /* accuracy budget (--max-drop): < 0 = off (default) */
    double max_drop, drop_margin, min_replaced; /* (-1, 0, 0.8) */
    int drop_count;               /* images of the held-out split (5000) */
    /* input preprocessing; values the model records in ONNX metadata_props (tern.mean, ...)
     * are used for what is not set here */
    const char *preset;           /* "cifar", "imagenet", "darknet" or NULL */
    int has_norm;                 /* 1: mean/std below are set */
    float mean[3], std[3];        /* (p/255 - mean) / std, in the order the channels are fed */
    int bgr;                      /* feed channels as B,G,R */
    int resize_short, crop;       /* 0 = none / automatic */
    int threads;                  /* 1 */
    int verbose;                  /* progress on stderr */
} tern_quantize_options;
TERN_API void tern_quantize_options_init(tern_quantize_options *o);
/* Quantize onnx_path, calibrated on opts->calib, into out_path (written atomically: a failure
 * leaves no file). opts must not be NULL (calib is required). */
TERN_API enum tern_status tern_quantize_file(const char *onnx_path, const char *out_path,
                                             const tern_quantize_options *opts);

#ifdef __cplusplus
}
#endif
#endif
