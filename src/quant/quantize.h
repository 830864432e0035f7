/* The model quantizer (method.md): lowers an FP32 graph to the integer model, choosing each
 * weight layer's precision by policy, calibrating one 8-bit dynamic-fixed-point exponent per
 * tensor on calibration images, and deriving every integer parameter (cluster scale mantissas,
 * biases at the accumulator's scale, requantisation multipliers and shifts). */
#ifndef TERN_QUANTIZE_H
#define TERN_QUANTIZE_H
#include "format/qmodel.h"
#include "graph/graph.h"
#include "quant/wquant.h"

enum tern_calib_rule { TERN_CALIB_MSE = 0, TERN_CALIB_MAXABS = 1 };

typedef struct tern_layer_rule {
    char key[64];               /* layer name, or its index in the weight-layer table */
    int wtype;                  /* enum tern_wtype */
    int cluster;                /* N; 0 = all input channels */
} tern_layer_rule;

typedef struct tern_qopts {
    int wtype;                  /* default weight type of the "body" layers (TERNARY) */
    int cluster;                /* default N (4); 0 = all */
    enum tern_trule trule;
    enum tern_calib_rule calib_rule;
    int keep_ends_8bit;         /* first conv and last layer 8-bit (default 1) */
    int depthwise_8bit;         /* depthwise convs 8-bit (default 1) */
    int nrules;
    tern_layer_rule rules[64];  /* per-layer overrides, applied in order */
    float mean[3], std[3];      /* input normalisation to fold: (p/255 - mean) / std */
    int bgr, resize_short, crop;/* preprocessing, recorded as metadata */
    int threads;
    int verbose;
    /* Post-training accuracy improvements (all off by default; see optimize() in quantize.c).
     * They run layer by layer in graph order on opt_images calibration images; each layer's
     * input comes from the network whose earlier layers are already quantized (FP32 simulation),
     * its target is the FP32 network's own pre-activation output. */
    int bias_corr;              /* per output channel bias = E[y_fp] - E[wq . x_q] */
    int opt_scales;             /* least-squares refit of each cluster's scale for its codes */
    int opt_round;              /* coordinate-descent choice of codes (-1/0/+1, or +-1 steps) */
    int opt_images;             /* images used by the above (default 64; capped by ncalib) */
    int opt_flip;               /* also use each of those images mirrored left-right (twice the data) */
    float opt_damp;             /* ridge term, relative to the mean input power (default 1e-3) */
    /* If set, the options' result (each optimised layer's weights as scale x code and its bias, in
     * the layout of the node's own initializers) is also written into this graph's constants: an
     * import of the same model, not g itself. tern finetune starts training from it. */
    tern_graph *export_to;
} tern_qopts;

void tern_qopts_init(tern_qopts *o);
/* Parse "t", "t:16", "4", "4:8", "8", "t:all" into wtype/cluster. */
int tern_parse_wspec(const char *s, int *wtype, int *cluster);

/* calib: ncalib images [ncalib][C][H][W] uint8. */
enum tern_status tern_quantize(const tern_graph *g, const tern_qopts *o, const uint8_t *calib, int ncalib,
                               tern_qmodel **out);

/* Weight layers of a graph in the order of the report table (for --layer INDEX). */
int tern_quant_weight_layers(const tern_graph *g, int *node_idx, int max);

#endif
