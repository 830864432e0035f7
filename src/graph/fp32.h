/* FP32 reference executor: runs an imported graph on float NCHW batches.
 * Used for FP32 baselines, for calibration (activation statistics) and as the accuracy
 * reference for the integer engine. Convolutions are im2col + OpenBLAS SGEMM. */
#ifndef TERN_FP32_H
#define TERN_FP32_H
#include "graph/graph.h"

typedef struct tern_fp32_ctx {
    const tern_graph *g;
    int batch;
    float **buf;                            /* [nvalues] runtime data; constants alias value data */
    int64_t (*dims)[TERN_MAX_DIMS];         /* [nvalues] runtime shapes (dims[0] = batch) */
    float *col;                             /* im2col scratch */
    size_t col_size;                        /* in floats */
    /* Optional observer, called after each node with its output (for calibration). */
    void (*observe)(void *arg, const tern_node *n, const float *y, const int64_t *dims, int ndim);
    void *observe_arg;
    void *pool;                             /* recycled activation buffers (fp32.c) */
    int npool, cap_pool;
    int keep_all;                           /* keep every activation until the end (for tests) */
} tern_fp32_ctx;

/* Run the graph on input x ([batch, C, H, W] float). On success *y points at the output inside
 * the context (valid until the next run or free) and ydims/yndim give its shape. */
enum tern_status tern_fp32_run(tern_fp32_ctx *x, const float *in, int batch, const float **y,
                               int64_t *ydims, int *yndim);
tern_fp32_ctx *tern_fp32_ctx_new(const tern_graph *g);
void tern_fp32_ctx_free(tern_fp32_ctx *x);
void tern_fp32_set_threads(int n);           /* OpenBLAS threads */

/* Per-op kernels (src/graph/fp32_ops.c), referenced from the op table. */
void tern_fp32_conv(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_gemm(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_matmul(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_batchnorm(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_unary(tern_fp32_ctx *x, const tern_node *n);   /* Relu, LeakyRelu, Clip, Sigmoid, Identity */
void tern_fp32_binary(tern_fp32_ctx *x, const tern_node *n);  /* Add, Sub, Mul, Div */
void tern_fp32_pool(tern_fp32_ctx *x, const tern_node *n);    /* MaxPool, AveragePool, GlobalAveragePool */
void tern_fp32_reshape(tern_fp32_ctx *x, const tern_node *n); /* Flatten, Reshape, Squeeze, Unsqueeze */
void tern_fp32_slice(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_pad(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_concat(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_softmax(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_transpose(tern_fp32_ctx *x, const tern_node *n);

#endif
