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
    int opt_images;             /* images used by the above (capped by ncalib); 0 (default): a quarter
                                 * of the model's classes, 64..256 (tern_q_opt_images) */
    int opt_flip;               /* also use each of those images mirrored left-right (twice the data) */
    float opt_damp;             /* ridge term, relative to the mean input power (default 1e-3) */
    /* If set, the options' result (each optimised layer's weights as scale x code and its bias, in
     * the layout of the node's own initializers) is also written into this graph's constants: an
     * import of the same model, not g itself. tern finetune starts training from it. */
    tern_graph *export_to;
    int opt_method;             /* code choice of opt_round: enum tern_opt_method */
    int opt_rows;               /* positions (patches) sampled per layer for the statistics (0: 65536) */
    float opt_mix;              /* target of the scale refit and code search: (1 - mix) x the FP32
                                 * network's output + mix x the FP32 weights on the simulated input
                                 * (0: the FP32 output alone, the default; 1: GPTQ's symmetric target) */
    int opt_actq;               /* the simulation rounds every lowered activation to its calibrated 8-bit DFP
                                 * grid (as the integer engine does), so the statistics and the bias
                                 * correction see the inputs the engine feeds each layer (0: float) */
    struct tern_qcache *cache;  /* if set: results carried from one tern_quantize call to the next */
} tern_qopts;

/* What tern_quantize calls on the same graph and calibration images (the same buffer) can share
 * when only per-layer precision changes between them, as in the --max-drop search: the
 * calibration exponents, and the post-training pass's result for every weight layer up to the
 * first whose precision changed (src/quant/cache.c). The bytes are those of a fresh run. One
 * cache serves one sequence of calls, not several threads at once. */
typedef struct tern_qcache tern_qcache;
tern_qcache *tern_qcache_new(void);
void tern_qcache_free(tern_qcache *c);

/* How opt_round chooses the codes (src/quant/optimize.c): coordinate descent from the plain
 * quantizer's codes; GPTQ error feedback (src/quant/gptq.h); GPTQ, then coordinate descent. */
enum tern_opt_method { TERN_OPT_CD = 0, TERN_OPT_GPTQ = 1, TERN_OPT_GPTQ_CD = 2 };

void tern_qopts_init(tern_qopts *o);
/* Parse "t", "t:16", "4", "4:8", "8", "t:all" into wtype/cluster. */
int tern_parse_wspec(const char *s, int *wtype, int *cluster);
/* Append the per-layer override "NAME_OR_INDEX=SPEC" (SPEC as tern_parse_wspec; a spec without
 * ":N" keeps the current default N). Returns 0 with the reason in the last error if malformed
 * or if the table is full. */
int tern_qopts_add_rule(tern_qopts *o, const char *rule);

/* calib: ncalib images [ncalib][C][H][W] uint8. */
enum tern_status tern_quantize(const tern_graph *g, const tern_qopts *o, const uint8_t *calib, int ncalib,
                               tern_qmodel **out);

/* A weight layer's resolved precision, the one rule every user of the policy applies:
 * N = input channels per cluster (cing for 8-bit weights and for "all"), ncl = clusters per
 * output channel, qmax = largest code magnitude. */
typedef struct tern_wpolicy {
    int wtype, N, ncl, qmax;
} tern_wpolicy;
tern_wpolicy tern_wpolicy_resolve(int wtype, int cluster, int cing);

/* The quantizer's plan for a graph: the integer layers it lowers the graph to, in execution
 * order, with each weight layer's precision after every rule and override. Tensor ids are those
 * of the tern_qmodel that tern_quantize() builds from the same graph and options (its extra
 * Concat alignment tensors come after them), so a model's exponents are read by those ids.
 * Available without calibration data (lowering and policy only). */
typedef struct tern_qplan_layer {
    int op;                     /* enum tern_qop */
    int node;                   /* graph node index */
    int act;                    /* graph node index of the fused activation, or -1 */
    int widx;                   /* weight-layer ordinal (the report's and --layer's index), or -1 */
    tern_wpolicy pol;           /* weight layers only */
    int nin, in[TERN_MAX_QIN], out; /* tensor ids */
} tern_qplan_layer;

typedef struct tern_qplan {
    int nlayers, nweight;
    tern_qplan_layer *layers;   /* [nlayers] */
    int ntensors;
    int *tensor_value;          /* [ntensors] graph value whose FP32 data the tensor holds */
    enum tern_trule trule;      /* the ternary rule the weights are quantized with */
} tern_qplan;

enum tern_status tern_quant_plan(const tern_graph *g, const tern_qopts *o, tern_qplan **out);
void tern_qplan_free(tern_qplan *p);

/* The images the post-training pass uses: opt_images, or by default a quarter of the classes
 * (64..256); never more than ncalib. */
int tern_q_opt_images(const tern_qopts *o, const tern_graph *g, int ncalib);

/* Weight layers of a graph in the order of the report table (for --layer INDEX). */
int tern_quant_weight_layers(const tern_graph *g, int *node_idx, int max);

#endif
