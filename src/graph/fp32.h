/* FP32 reference executor: runs an imported graph on float NCHW batches.
 * Used for FP32 baselines, for calibration (activation statistics) and as the accuracy
 * reference for the integer engine. Convolutions are im2col + SGEMM.
 *
 * The SGEMM is deterministic by default (tern_sgemm_det: the same bits on any x86-64 CPU and at
 * any thread count), because calibration, the post-training statistics and the accuracy budget
 * run this executor and their results end up in the .tern file. OpenBLAS, faster but with
 * CPU- and thread-dependent summation order, is for speed-only uses (FP32 eval and bench): a
 * process opts in with tern_fp32_set_openblas(1). Splitting a batch over threads (below) does
 * not change any result either: every image's GEMMs are computed alone. */
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
    void *par;                              /* batch-parallel runs: threads, sub-contexts (fp32.c) */
    tern_pool *gemm_pool;                   /* threads of the deterministic SGEMM in unsplit runs */
    int gemm_single;                        /* a part of a split batch: its SGEMM on one thread */
} tern_fp32_ctx;

/* Run the graph on input x ([batch, C, H, W] float). On success *y points at the output inside
 * the context (valid until the next run or free) and ydims/yndim give its shape. */
enum tern_status tern_fp32_run(tern_fp32_ctx *x, const float *in, int batch, const float **y,
                               int64_t *ydims, int *yndim);
tern_fp32_ctx *tern_fp32_ctx_new(const tern_graph *g);
void tern_fp32_ctx_free(tern_fp32_ctx *x);
/* Threads for the runs that follow: a batch (without observer or keep_all) is split over them,
 * each part run by its own context; OpenBLAS always runs single-threaded. */
void tern_fp32_set_threads(int n);
void tern_fp32_set_openblas(int on);         /* 1: OpenBLAS SGEMM (not reproducible across CPUs); 0: deterministic (default) */
int tern_fp32_uses_openblas(void);

/* C[M][N] = A[M][K] * op(B), op(B) = B[K][N] (ldb) or, with transb, B[N][K] transposed; every
 * element the sequential float sum over k in order (src/graph/sgemm_det.c); threads (pool, may
 * be NULL) split the columns. */
enum tern_status tern_sgemm_det(int M, int N, int K, const float *A, int lda, const float *B, int ldb, int transb,
                                float *C, int ldc, tern_pool *pool);
void tern_sgemm_det_kern_6x16__avx2(int kc, const float *a, const float *b, float *acc); /* sgemm_det_avx2.c */

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
void tern_fp32_reducemean(tern_fp32_ctx *x, const tern_node *n);
void tern_fp32_prelu(tern_fp32_ctx *x, const tern_node *n);      /* slope: one, or one per channel */

#endif
