/* Internal side of the public API (include/tern.h): what the CLI and the library's own
 * drivers need beyond it. Not installed. */
#ifndef TERN_API_INTERNAL_H
#define TERN_API_INTERNAL_H
#include "core/core.h"
#include "format/qmodel.h"
#include "graph/graph.h"
#include "quant/quantize.h"
#include "data/data.h"

/* A tern_model over an in-memory quantized model that stays the caller's (freed after the
 * handle): reports of a model just quantized, before or without saving it. */
enum tern_status tern_model_wrap(const tern_qmodel *qm, const tern_model_options *opts, tern_model **out);
const tern_qmodel *tern_model_qmodel(const tern_model *m);

/* The accuracy budget of `tern quantize --max-drop` (src/api/max_drop.c): quantizes g with q,
 * raising precision on the most sensitive layers until top-1 on the labelled split px/labels
 * (n images, FP32 logits fp [n][nclasses], FP32 top-1 fp_top1 %) is within max_drop - margin
 * points of FP32. q's layer rules are updated to the chosen policy. */
typedef struct tern_budget {
    const tern_graph *g;
    const uint8_t *calib;
    int ncalib;
    const uint8_t *px;          /* the drop split: [n][c][h][w] */
    const int *labels;
    int n, c, h, w, nclasses, batch, threads;
    const double *fp;           /* FP32 logits on the split [n][nclasses] */
    double fp_top1;
} tern_budget;
enum tern_status tern_max_drop_search(const tern_budget *b, tern_qopts *q, double max_drop, double margin, double min_repl,
                                      int quiet, tern_qmodel **out);

/* Indices offset + i*n/count of `count` items spread evenly over n (count <= 0: all; clipped to
 * what fits after offset). malloc'ed; NULL on OOM. */
int *tern_spread(int n, int *count, int offset);
/* Read calibration items idx[0..n) of ds into px ([n][per] bytes). If ds is labelled and those
 * images cover fewer than a fifth of the classes they could (min(n, classes)), warn on stderr
 * naming src: the post-training pass fits the images it sees, and images of a few classes fit
 * the model's other classes badly (docs/RESULTS.md: imagenette's 10 classes mixed into the
 * calibration cost Tiny Darknet 2.8 and SqueezeNet 4.4 points on held-out images). */
enum tern_status tern_calib_read(tern_dataset *ds, const char *src, const int *idx, int n, uint8_t *px, size_t per);
/* FP32 logits [n][classes] of n images px ([n][c][h][w] uint8) normalised (p/255 - mean) / std. */
enum tern_status tern_fp32_logits(const tern_graph *g, const float mean[3], const float std[3], const uint8_t *px, int n,
                                  int threads, double *logits);
/* --max-drop from a dataset: the split is drop_count items spread over those of ds that are not
 * calibration images (calib_idx), labelled; then tern_max_drop_search. */
enum tern_status tern_quantize_max_drop(const tern_graph *g, tern_qopts *q, tern_dataset *ds, const int *calib_idx,
                                        const uint8_t *calib_px, int ncalib, int drop_count, double max_drop, double margin,
                                        double min_repl, int quiet, tern_qmodel **out);

/* The preprocessing ONNX metadata_props record (g->meta), as text for messages: "" if none. */
void tern_graph_meta_str(const tern_graph *g, char *buf, size_t n);
#endif
