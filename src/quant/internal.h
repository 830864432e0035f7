/* Internal to src/quant: the state the quantizer's stages share. The stages, in order:
 *   lower.c      graph nodes -> integer layers (activations fused), one tensor per output;
 *                also the float weights of a lowered weight layer
 *   calibrate.c  FP32 runs on the calibration images -> each tensor's DFP exponent
 *   optimize.c   optional post-training optimisation of codes, scales and biases
 *   build.c      quantized weights and every integer parameter -> tern_qmodel
 *   policy.c     options, the weight spec syntax and each weight layer's precision
 *   quantize.c   the driver (tern_quantize) */
#ifndef TERN_QUANT_INTERNAL_H
#define TERN_QUANT_INTERNAL_H
#include "quant/quantize.h"

#define NCAND 6                 /* MSE rule: exponents f0 .. f0+NCAND-1, f0 from max-abs */

typedef struct {
    int value;                  /* graph value whose FP32 data defines the tensor */
    int same_as;                /* tensor whose exponent this one shares, or -1 */
    int is_signed, c, h, w, wide, exp;
    double maxabs, sse[NCAND];
    int f0;
} qt_info;

typedef struct {
    int op;
    const tern_node *node, *act;
    int nin, in[TERN_MAX_QIN], out;
    int widx;                   /* weight-layer ordinal for CONV, else -1 */
} low_layer;

typedef struct {
    const tern_graph *g;
    const tern_qopts *o;
    qt_info *qt;
    int nqt, cap_qt;
    low_layer *ll;
    int nll;
    int nweight;                /* weight layers among them (widx 0 .. nweight-1) */
    int *vmap;                  /* graph value -> tensor id */
    char *fused;                /* graph node index -> consumed by a fusion */
    int pass;                   /* calibration pass 1 (max) or 2 (sse) */
    int *val2qt;                /* graph value -> tensor id whose stats it feeds, or -1 */
    struct opt_layer *wl;       /* [weight layers] results of optimize(), or NULL */
} qctx;

/* A weight layer quantized ahead of the build by optimize(): in the folded (integer input) domain. */
typedef struct opt_layer {
    int8_t *codes;              /* [cout][K] */
    float *scales;              /* [cout][ncl] */
    float *bias;                /* [cout] */
} opt_layer;

#define UNSUP(n, ...) tern_errorf(TERN_STATUS_UNSUPPORTED, __VA_ARGS__)

/* lower.c */
enum tern_status tern_q_lower(qctx *q);
/* 1 if pool node n is lowered as PAD + pool (count_include_pad with pads; see lower.c). */
int tern_q_pool_prepad(const tern_node *n);
/* Channel shuffle starting at Reshape r1: its group count, the Transpose and the last Reshape. */
int tern_q_shuffle_of(const tern_graph *g, const tern_node *r1, int *ti, int *r2i);
/* Check before work: every node lowers (else a clear error naming it); tern_q_lower runs it first. */
enum tern_status tern_q_check(const tern_graph *g);
/* Float weights [cout][cing*kh*kw] and bias [cout] of a lowered weight layer (caller frees). */
enum tern_status tern_q_weights_of(qctx *q, const low_layer *l, float **w, float **b);
/* Fold (p/255 - mean)/std into a first layer's weights w[cout][cing*khw] and bias. */
void tern_q_fold_input(const tern_qopts *o, float *w, float *bias, int cout, int groups, int cing, int khw);
/* calibrate.c */
enum tern_status tern_q_calibrate(qctx *q, const uint8_t *calib, int ncalib);
/* optimize.c */
enum tern_status tern_q_optimize(qctx *q, const uint8_t *calib, int ncalib);
/* cache.c: a tern_qcache's two parts. get: 1 and q's state filled if the cache holds it for
 * these images and options; put: store what this run computed. A weight layer's result is kept
 * with the precision it ran with; layer_get (ol NULL: only compare the precision) also adds its
 * "many dead inputs" flag to *ndead / *dead_first; layer_drop forgets one. */
int tern_qcache_get_calib(tern_qcache *c, qctx *q, const uint8_t *calib, int ncalib);
void tern_qcache_put_calib(tern_qcache *c, const qctx *q, const uint8_t *calib, int ncalib);
int tern_qcache_pass_begin(tern_qcache *c, const qctx *q, const uint8_t *calib, int ncalib);
int tern_qcache_layer_get(tern_qcache *c, int widx, const tern_wpolicy *pol, opt_layer *ol, int *ndead, int *dead_first);
void tern_qcache_layer_put(tern_qcache *c, int widx, const tern_wpolicy *pol, const opt_layer *ol, int cout, int K, int dead);
void tern_qcache_layer_drop(tern_qcache *c, int widx);
/* build.c */
enum tern_status tern_q_build(qctx *q, tern_qmodel *m);
/* The exponent of an average pool's (or global pool's, over in_h x in_w) output: a mean has no more
 * resolution than sum/n, so fo is capped to make the factor < 1 (a wide output takes the cap). */
static inline int tern_q_mean_exp(int op, int in_h, int in_w, int fi, int fo, int wide) {
    int n1 = op == TERN_QOP_GLOBALAVGPOOL ? in_h * in_w : 1, lg = 0;
    while ((1 << lg) < n1) lg++;
    return wide || fo > fi + lg - 1 ? fi + lg - 1 : fo;
}
/* policy.c: the precision of weight layer l: the defaults, the
 * first/last and depthwise rules, then the per-layer overrides in order */
tern_wpolicy tern_q_layer_policy(qctx *q, const low_layer *l);

#endif
