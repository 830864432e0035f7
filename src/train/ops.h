/* Training kernels: forward and backward of the CNN ops tern fine-tunes, on float tensors in
 * channel-major "CNHW" layout: x[c][b][h][w] (b = image in the mini-batch). With that layout a
 * convolution over the whole batch is ONE im2col + SGEMM (col[K][B*Ho*Wo]), so OpenBLAS sees big
 * matrices even for 8x8 feature maps, and a fully connected layer over a c x h x w input is the
 * same convolution with an h x w kernel (the NCHW flatten order is the im2col row order).
 *
 * Every backward ACCUMULATES into the input gradients (dx += ...): a tensor read by several
 * nodes (residual blocks) gets the sum without extra buffers. Weight/bias gradients are
 * overwritten. Reductions run in a fixed order (no atomics), so results depend only on the
 * inputs (and on the OpenBLAS thread count, which fixes its partitioning). */
#ifndef TERN_TRAIN_OPS_H
#define TERN_TRAIN_OPS_H
#include "core/core.h"

typedef struct tt_conv {
    int cin, cout, kh, kw, sh, sw, pt, pl, pb, pr;  /* groups = 1, dilation = 1 */
    int B, H, W, Ho, Wo;                            /* batch and input/output spatial size */
} tt_conv;

/* Fill Ho/Wo from the rest; returns 0 if the geometry is empty/invalid. */
int tt_conv_geom(tt_conv *p);
/* Floats of im2col scratch: cin*kh*kw * B*Ho*Wo. */
size_t tt_conv_col_size(const tt_conv *p);
/* y[cout][B][Ho][Wo] = w[cout][cin*kh*kw] * im2col(x) + bias (bias may be NULL). */
void tt_conv_fwd(const tt_conv *p, const float *x, const float *w, const float *bias, float *y, float *col);
/* dx += (may be NULL), dw = , db = (may be NULL). col: scratch of tt_conv_col_size. */
void tt_conv_bwd(const tt_conv *p, const float *x, const float *w, const float *dy, float *dx, float *dw,
                 float *db, float *col);

/* n = number of elements */
void tt_relu_fwd(const float *x, float *y, size_t n);
void tt_relu_bwd(const float *y, const float *dy, float *dx, size_t n);      /* uses the output */
void tt_leaky_fwd(const float *x, float *y, size_t n, float alpha);
void tt_leaky_bwd(const float *x, const float *dy, float *dx, size_t n, float alpha);
void tt_add_fwd(const float *a, const float *b, float *y, size_t n);
void tt_add_bwd(const float *dy, float *da, float *db, size_t n);

/* Pools over planes: nplanes = C*B planes of h x w -> ho x wo. Max pads with -inf; average
 * divides by the window's count (count_include_pad: clipped to the padded extent, else valid
 * taps only). */
typedef struct tt_pool {
    int kh, kw, sh, sw, pt, pl, pb, pr, count_include_pad;
    int nplanes, h, w, ho, wo;
} tt_pool;
void tt_maxpool_fwd(const tt_pool *p, const float *x, float *y);
void tt_maxpool_bwd(const tt_pool *p, const float *x, const float *dy, float *dx); /* first max wins */
void tt_avgpool_fwd(const tt_pool *p, const float *x, float *y);
void tt_avgpool_bwd(const tt_pool *p, const float *dy, float *dx);
void tt_gap_fwd(const float *x, float *y, int nplanes, int hw);
void tt_gap_bwd(const float *dy, float *dx, int nplanes, int hw);

/* Slice / zero Pad of a [C][B][H][W] tensor along c, h, w (never the batch).
 * Slice: y[c][b][i][j] = x[c0+c*stc][b][h0+i*sth][w0+j*stw], output yc x yh x yw. */
typedef struct tt_slice {
    int C, B, H, W;                 /* input */
    int c0, h0, w0, stc, sth, stw;  /* starts and steps (>= 1) */
    int yc, yh, yw;                 /* output */
} tt_slice;
void tt_slice_fwd(const tt_slice *s, const float *x, float *y);
void tt_slice_bwd(const tt_slice *s, const float *dy, float *dx);
/* Pad: y is (C+c0+c1) x B x (H+h0+h1) x (W+w0+w1), zeros around x. */
typedef struct tt_pad {
    int C, B, H, W, c0, c1, h0, h1, w0, w1;
} tt_pad;
void tt_pad_fwd(const tt_pad *p, const float *x, float *y);
void tt_pad_bwd(const tt_pad *p, const float *dy, float *dx);

/* 8-bit dynamic fixed point fake quantisation in place: x = clamp(round(x * 2^f), lo, hi) * 2^-f
 * (lo, hi = -128, 127 signed, 0, 255 unsigned; round half to even like the calibrator).
 * Backward (straight-through, clipped): dx = dy where the value is inside (lo, hi) on the grid;
 * 0 where it saturated at hi (or at lo for signed tensors; an unsigned tensor's 0 is ReLU's
 * business). Returns nothing; the mask is recomputed from the quantized output. */
void tt_fq_fwd(float *x, size_t n, int exp, int is_signed);
void tt_fq_bwd(const float *y, float *dy, size_t n, int exp, int is_signed);  /* in place on dy */

/* Softmax cross-entropy over logits[k][B] (class-major, as the CNHW layout leaves them):
 * returns the mean loss over the batch; dlogits[k][B] = (softmax - onehot) / B; *correct =
 * number of rows whose argmax (first max) equals the label. Computed in double. */
double tt_softmax_ce(const float *logits, const int *labels, int K, int B, float *dlogits, int *correct);

/* Same with soft targets: target = (1 - alpha) one-hot + alpha softmax(teacher[k][B]) (knowledge
 * distillation from the FP32 model); teacher NULL = plain cross-entropy. */
double tt_softmax_ce_soft(const float *logits, const int *labels, const float *teacher, float alpha, int K, int B,
                          float *dlogits, int *correct);

/* Optional thread pool for the non-GEMM loops (im2col, col2im, pools); NULL = inline. */
void tt_set_pool(tern_pool *p);

#endif
