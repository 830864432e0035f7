/* Low-precision fine-tuning (method.md, last section): FP32 shadow weights, a forward pass with
 * the weights quantized by the model quantizer's own rules (tern_wquant_tensor, re-derived every
 * step) with each layer's precision taken from the quantizer's plan (tern_quant_plan: the same
 * defaults and --layer overrides as tern quantize), and activations fake-quantized to 8-bit
 * dynamic fixed point with the exponents of a tern_quantize() model of the same graph and
 * options (so the calibration rule is src/quant's); straight-through gradients through both quantizers; SGD with momentum and
 * weight decay. Ops: Conv (groups 1), Gemm, Relu, LeakyRelu, Add, MaxPool, AveragePool,
 * GlobalAveragePool, Slice, Pad, Flatten/Reshape/Identity/Softmax(at the output).
 *
 * The first conv is quantized as the integer model will hold it: with the input normalisation
 * (p/255 - mean)/std folded in, so the codes trained are the codes shipped. */
#ifndef TERN_TRAIN_H
#define TERN_TRAIN_H
#include "format/qmodel.h"
#include "graph/graph.h"
#include "quant/quantize.h"

typedef struct tern_train_opts {
    /* The quantizer's plan of the graph (tern_quant_plan with the options the model will be
     * quantized with): each weight layer's precision and the tensor ids of set_exponents. Not
     * owned; must outlive the trainer. Required unless both quant_weights and quant_acts are 0. */
    const tern_qplan *plan;
    float mean[3], std[3];      /* input normalisation (folded into the first conv by the quantizer) */
    float momentum, wd;         /* SGD momentum, weight decay (weights only, not biases) */
    int quant_acts;             /* fake-quantize activations (default 1) */
    int quant_weights;          /* quantize weights in the forward pass (default 1) */
} tern_train_opts;

void tern_train_opts_init(tern_train_opts *o);

typedef struct tern_trainer tern_trainer;

/* g: the FP32 graph (BatchNorm folded, as imported); the trainer copies its weights and writes
 * them back into g on tern_trainer_write_back (g must outlive the trainer). max_batch: the
 * largest mini-batch step() will get. */
enum tern_status tern_trainer_new(tern_graph *g, const tern_train_opts *o, int max_batch, tern_trainer **out);
void tern_trainer_free(tern_trainer *t);

/* Take the activation exponents (and signedness) from m = tern_quantize(g, ...) of this graph with
 * the options of the plan: every tensor the integer engine holds as 8 bits is fake-quantized
 * with its exponent (read by the plan's tensor ids). */
enum tern_status tern_trainer_set_exponents(tern_trainer *t, const tern_qmodel *m);

/* Statistics correction before training (the BatchNorm re-estimation a folded network cannot do):
 * layer by layer, scale each output channel's shadow weights and shift its bias so that the
 * quantized network's pre-activation mean and variance over images x ([n][C][H][W], normalised)
 * match the FP32 network's. Per-channel scaling is exact under every weight quantizer (codes
 * unchanged, scales multiplied), so it only moves what quantization broke. */
enum tern_status tern_trainer_correct_stats(tern_trainer *t, const float *x, int n);

/* One SGD step on images x ([B][C][H][W] float, normalised) with labels; lr for this step.
 * *loss = mean cross-entropy, *correct = top-1 hits, both of the forward pass before the update. */
enum tern_status tern_trainer_step(tern_trainer *t, const float *x, const int *labels, int B, float lr,
                                   double *loss, int *correct);
/* The same with knowledge distillation: the target is (1 - alpha) one-hot + alpha softmax of
 * teacher logits ([nclasses][B], e.g. from an FP32 trainer's tern_trainer_forward). */
enum tern_status tern_trainer_step_distill(tern_trainer *t, const float *x, const int *labels, const float *teacher, float alpha,
                                           int B, float lr, double *loss, int *correct);
/* Forward only (quantized as in training); *logits = [nclasses][B] class-major, valid until the
 * next call. */
enum tern_status tern_trainer_forward(tern_trainer *t, const float *x, int B, const float **logits, int *nclasses);

/* Write the weights into the graph: quantized != 0 writes the quantized weights (scale * code,
 * what the forward pass used; tern_quantize with the same policy re-derives exactly these
 * codes), else the FP32 shadow weights. Gemm alpha/beta become 1. */
enum tern_status tern_trainer_write_back(tern_trainer *t, int quantized);

/* Number of weight layers and, for tests, direct access to layer i's shadow weights
 * ([cout][K], K = cin*kh*kw) and bias (NULL if none). */
int tern_trainer_nweights(const tern_trainer *t);
float *tern_trainer_weights(tern_trainer *t, int i, int *cout, int *K, float **bias);

/* Graph value ids of the trained constants (weights, biases); returns how many (<= max). */
int tern_trainer_params(const tern_trainer *t, int *values, int max);

#endif
