/* Shared pieces of the tern CLI: option parsing, models behind one interface (ONNX via the FP32
 * executor, .tern via the integer engine), datasets, progress bar, top-k. */
#ifndef TERN_CLI_H
#define TERN_CLI_H
#include "core/core.h"
#include "data/data.h"
#include <stdio.h>

typedef struct cli_opts {
    const char *data, *labels, *names, *out, *calib, *dump;
    tern_preproc pp;
    float mean[3], std[3];      /* FP32 input normalisation: (p/255 - mean) / std, channels in fed order */
    int have_pp;                /* resize/crop given explicitly */
    int have_norm;              /* mean/std given explicitly (or by a preset) */
    int count, offset, batch, threads, json, topk, quiet;
    const char *preset;
} cli_opts;

void cli_opts_init(cli_opts *o);
/* Parse one common option at argv[*i]; returns 1 if consumed (advancing *i), 0 if not ours,
 * -1 on a bad value (message printed). */
int cli_parse_common(cli_opts *o, int argc, char **argv, int *i);
const char *cli_common_help(void);
/* Apply --preset cifar|imagenet|darknet (or nothing). */
int cli_apply_preset(cli_opts *o);

/* A loaded model of either kind: .tern files through the public API (include/tern.h), ONNX
 * through the FP32 executor. */
typedef struct cli_model cli_model;
struct cli_model {
    int c, h, w, nclasses;
    const char *kind;           /* "fp32" or "int8" */
    void *impl;
    /* scores: [batch][nclasses]; float logits for FP32, int32 logits for the integer engine,
     * both written as double for ranking (exact: top-k of the integers). */
    enum tern_status (*run)(cli_model *m, const uint8_t *pixels, int batch, double *scores);
    void (*free)(cli_model *m);
    const cli_opts *opts;
    tern_preproc pp;            /* the model's own preprocessing (.tern files, ONNX metadata_props) */
    int has_pp;
    double scale;               /* a score's value: score * scale (2^-exp of the integer logits; 1 for FP32) */
    float mean[3], std[3];      /* normalisation: FP32 the one applied (options, else metadata); .tern recorded */
    struct tern_model *tm;      /* .tern: the public handle */
};
enum tern_status cli_model_load(const char *path, const cli_opts *o, cli_model **out);
void cli_model_free(cli_model *m);

/* Dataset with the model's input size; preprocessing defaults to resizing the shorter side to
 * the model's input and centre-cropping when the dataset's images are of another size. */
enum tern_status cli_dataset_open(const cli_opts *o, const cli_model *m, tern_dataset **ds);
/* Indices offset + i*n/count of `count` items spread evenly over a dataset of n (count <= 0: all). */
int *cli_subset(int n, int *count, int offset);

void cli_progress(const char *what, int done, int total, double t0, int quiet);
void cli_topk(const double *scores, int n, int k, int *idx);
/* Preprocessing as text ("resize 256, crop 224, fed B,G,R, mean ..., std ..."). */
void cli_pp_str(const tern_preproc *pp, const float *mean, const float *std, char *buf, size_t n);
int cli_fail(const char *what);     /* prints "tern: what: <last error>", returns 1 */

/* The preprocessing a dataset gets for model m (explicit options, else the model's own). */
tern_preproc cli_effective_pp(const cli_opts *o, const cli_model *m);
struct tern_graph;
const struct tern_graph *cli_model_graph(const cli_model *m);   /* FP32 models only */
struct tern_qmodel;
void cli_report_qmodel(const struct tern_qmodel *m, const char *tern_path, const char *onnx_path, int json);
void cli_report_model(const struct tern_model *m, const char *tern_path, const char *onnx_path, int json);
double cli_qmodel_mult_replaced(const struct tern_qmodel *m);   /* MAC-weighted fraction, method.md */

int cmd_info(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
#endif
