/* FP32 kernels for the op table. Straightforward loops, except convolution and the fully
 * connected layers, which are (im2col +) SGEMM: deterministic by default, OpenBLAS when the
 * process asked for speed over reproducibility (see fp32.h). */
#include "graph/fp32.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

#define IN(k) (x->buf[n->in[k]])
#define OUT (x->buf[n->out[0]])
#define DIMS(v) (x->dims[v])

static int64_t numel_of(const tern_fp32_ctx *x, int v) {
    int64_t c = 1;
    for (int d = 0; d < x->g->values[v].ndim; d++) c *= x->dims[v][d];
    return c;
}

/* C = A[M][K] * op(B) */
static void sgemm(tern_fp32_ctx *x, int64_t M, int64_t N, int64_t K, const float *A, const float *B, int transb, float *C) {
    int ldb = transb ? (int)K : (int)N;
    if (tern_fp32_uses_openblas()) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)K,
                    B, ldb, 0.0f, C, (int)N);
        return;
    }
    enum tern_status st = tern_sgemm_det((int)M, (int)N, (int)K, A, (int)K, B, ldb, transb, C, (int)N, x->gemm_pool);
    TERN_ASSERT(st == TERN_STATUS_OK);
}

static float *col_buffer(tern_fp32_ctx *x, size_t n) {
    if (x->col_size < n) {
        free(x->col);
        x->col = malloc(n * sizeof(float));
        x->col_size = x->col ? n : 0;
        TERN_ASSERT(x->col);
    }
    return x->col;
}

void tern_fp32_conv(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *xd = DIMS(n->in[0]), *wd = x->g->values[n->in[1]].dims, *yd = DIMS(n->out[0]);
    const tern_attrs *a = &n->a;
    int64_t N = xd[0], C = xd[1], H = xd[2], W = xd[3], O = yd[1], OH = yd[2], OW = yd[3];
    int64_t G = a->group, Cg = C / G, Og = O / G, KH = wd[2], KW = wd[3], K = Cg * KH * KW, P = OH * OW;
    const float *w = IN(1), *b = n->in[2] >= 0 ? IN(2) : NULL;
    int direct = KH == 1 && KW == 1 && a->strides[0] == 1 && a->strides[1] == 1 && !a->pads[0] && !a->pads[1] && !a->pads[2] && !a->pads[3];
    float *col = direct ? NULL : col_buffer(x, (size_t)(K * P));
    for (int64_t img = 0; img < N; img++)
        for (int64_t gi = 0; gi < G; gi++) {
            const float *xin = IN(0) + (img * C + gi * Cg) * H * W;
            float *y = OUT + (img * O + gi * Og) * P;
            if (!direct) {
                int64_t sh = a->strides[0], sw = a->strides[1], dh = a->dilations[0], dw = a->dilations[1];
                for (int64_t c = 0; c < Cg; c++)
                    for (int64_t ky = 0; ky < KH; ky++)
                        for (int64_t kx = 0; kx < KW; kx++) {
                            float *row = col + ((c * KH + ky) * KW + kx) * P;
                            /* valid output columns: 0 <= ox*sw - pl + kx*dw < W */
                            int64_t off = kx * dw - a->pads[1];
                            int64_t x0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
                            int64_t x1 = W - off <= 0 ? 0 : (W - off + sw - 1) / sw;
                            if (x1 > OW) x1 = OW;
                            if (x0 > x1) x0 = x1;
                            for (int64_t oy = 0; oy < OH; oy++) {
                                int64_t iy = oy * sh - a->pads[0] + ky * dh;
                                float *r = row + oy * OW;
                                if (iy < 0 || iy >= H) {
                                    memset(r, 0, sizeof(float) * (size_t)OW);
                                    continue;
                                }
                                const float *src = xin + (c * H + iy) * W + off;
                                for (int64_t ox = 0; ox < x0; ox++) r[ox] = 0.0f;
                                if (sw == 1) memcpy(r + x0, src + x0, sizeof(float) * (size_t)(x1 - x0));
                                else for (int64_t ox = x0; ox < x1; ox++) r[ox] = src[ox * sw];
                                for (int64_t ox = x1; ox < OW; ox++) r[ox] = 0.0f;
                            }
                        }
            }
            sgemm(x, Og, P, K, w + gi * Og * K, direct ? xin : col, 0, y);
            if (b)
                for (int64_t o = 0; o < Og; o++)
                    for (int64_t p = 0; p < P; p++) y[o * P + p] += b[gi * Og + o];
        }
}

void tern_fp32_gemm(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *ad = DIMS(n->in[0]), *bd = x->g->values[n->in[1]].dims;
    int64_t M = ad[0], K = ad[1], N = n->a.trans_b ? bd[0] : bd[1];
    float *y = OUT;
    sgemm(x, M, N, K, IN(0), IN(1), n->a.trans_b, y); /* then y = alpha * y + beta * C */
    const float *c = n->in[2] >= 0 ? IN(2) : NULL;
    int64_t cn = c ? tern_value_numel(&x->g->values[n->in[2]]) : 0;
    if (n->a.alpha != 1.0f || c)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) y[i * N + j] = n->a.alpha * y[i * N + j] + (c ? n->a.beta * c[cn == 1 ? 0 : j] : 0.0f);
}

void tern_fp32_matmul(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *bd = x->g->values[n->in[1]].dims;
    int64_t K = bd[0], N = bd[1], M = numel_of(x, n->in[0]) / K;
    sgemm(x, M, N, K, IN(0), IN(1), 0, OUT);
}

/* Per-channel affine over dim 1. */
void tern_fp32_batchnorm(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *d = DIMS(n->in[0]);
    int nd = x->g->values[n->in[0]].ndim;
    int64_t N = d[0], C = nd > 1 ? d[1] : 1, inner = 1;
    for (int i = 2; i < nd; i++) inner *= d[i];
    const float *g = IN(1), *b = IN(2), *m = IN(3), *v = IN(4), *in = IN(0);
    float *y = OUT;
    for (int64_t c = 0; c < C; c++) {
        float s = g[c] / sqrtf(v[c] + n->a.epsilon), t = b[c] - m[c] * s;
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < inner; k++) {
                int64_t o = (i * C + c) * inner + k;
                y[o] = in[o] * s + t;
            }
    }
}

void tern_fp32_unary(tern_fp32_ctx *x, const tern_node *n) {
    int64_t cnt = numel_of(x, n->in[0]);
    const float *in = IN(0);
    float *y = OUT;
    switch (n->op) {
    case TERN_OP_RELU: for (int64_t i = 0; i < cnt; i++) y[i] = in[i] > 0 ? in[i] : 0.0f; break;
    case TERN_OP_LEAKYRELU: for (int64_t i = 0; i < cnt; i++) y[i] = in[i] > 0 ? in[i] : in[i] * n->a.alpha; break;
    case TERN_OP_CLIP:
        for (int64_t i = 0; i < cnt; i++) y[i] = in[i] < n->a.clip_min ? n->a.clip_min : in[i] > n->a.clip_max ? n->a.clip_max : in[i];
        break;
    case TERN_OP_SIGMOID: for (int64_t i = 0; i < cnt; i++) y[i] = 1.0f / (1.0f + expf(-in[i])); break;
    case TERN_OP_IDENTITY: memcpy(y, in, sizeof(float) * (size_t)cnt); break;
    default: for (int64_t i = 0; i < cnt; i++) y[i] = tern_unary_f32(n, in[i]); break;
    }
}

void tern_fp32_prelu(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *d = x->dims[n->in[0]];
    int nd = x->g->values[n->in[0]].ndim;
    int64_t C = nd > 1 ? d[1] : 1, inner = 1, N = d[0];
    for (int i = 2; i < nd; i++) inner *= d[i];
    const float *in = IN(0), *s = IN(1);
    int64_t ns = tern_value_numel(&x->g->values[n->in[1]]);   /* 1 or C (infer_prelu) */
    float *y = OUT;
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = 0; c < C; c++) {
            float a = s[ns == 1 ? 0 : c];
            for (int64_t k = 0; k < inner; k++) {
                int64_t o = (i * C + c) * inner + k;
                y[o] = in[o] > 0 ? in[o] : in[o] * a;
            }
        }
}

void tern_fp32_binary(tern_fp32_ctx *x, const tern_node *n) {
    const tern_value *a = &x->g->values[n->in[0]], *b = &x->g->values[n->in[1]], *y = &x->g->values[n->out[0]];
    tern_nd_binary(n->op, TERN_DTYPE_F32, IN(0), DIMS(n->in[0]), a->ndim, IN(1), DIMS(n->in[1]), b->ndim, DIMS(n->out[0]), y->ndim, OUT);
}

void tern_fp32_pool(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *xd = DIMS(n->in[0]), *yd = DIMS(n->out[0]);
    int64_t NC = xd[0] * xd[1], H = xd[2], W = xd[3], OH = yd[2], OW = yd[3];
    const float *in = IN(0);
    float *y = OUT;
    if (n->op == TERN_OP_GLOBALAVGPOOL) {
        for (int64_t i = 0; i < NC; i++) {
            double s = 0;
            for (int64_t k = 0; k < H * W; k++) s += in[i * H * W + k];
            y[i] = (float)(s / (double)(H * W));
        }
        return;
    }
    const tern_attrs *a = &n->a;
    for (int64_t i = 0; i < NC; i++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                float m = -INFINITY, s = 0;
                int64_t cnt = 0, y0 = oy * a->strides[0] - a->pads[0], x0 = ox * a->strides[1] - a->pads[1];
                for (int64_t ky = 0; ky < a->kernel[0]; ky++)
                    for (int64_t kx = 0; kx < a->kernel[1]; kx++) {
                        int64_t iy = y0 + ky * a->dilations[0], ix = x0 + kx * a->dilations[1];
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        float v = in[(i * H + iy) * W + ix];
                        m = v > m ? v : m;
                        s += v;
                        cnt++;
                    }
                if (n->op == TERN_OP_MAXPOOL) y[(i * OH + oy) * OW + ox] = m;
                else {
                    int64_t div = cnt;
                    if (a->count_include_pad) { /* window clipped to the padded extent */
                        int64_t ye = TERN_MIN(y0 + a->kernel[0], H + a->pads[2]), xe = TERN_MIN(x0 + a->kernel[1], W + a->pads[3]);
                        div = (ye - y0) * (xe - x0);
                    }
                    y[(i * OH + oy) * OW + ox] = div ? s / (float)div : 0.0f;
                }
            }
}

void tern_fp32_reshape(tern_fp32_ctx *x, const tern_node *n) {
    memcpy(OUT, IN(0), sizeof(float) * (size_t)numel_of(x, n->in[0]));
}

void tern_fp32_slice(tern_fp32_ctx *x, const tern_node *n) {
    const tern_value *v = &x->g->values[n->in[0]];
    if (numel_of(x, n->out[0]) == 0) return;
    tern_nd_slice(IN(0), DIMS(n->in[0]), v->ndim, 4, n->a.rs_start, n->a.rs_step, DIMS(n->out[0]), OUT);
}

void tern_fp32_pad(tern_fp32_ctx *x, const tern_node *n) {
    const tern_value *v = &x->g->values[n->in[0]];
    tern_nd_pad(IN(0), DIMS(n->in[0]), v->ndim, 4, n->a.pad_list, DIMS(n->out[0]), &n->a.pad_value, OUT);
}

void tern_fp32_concat(tern_fp32_ctx *x, const tern_node *n) {
    int ndim = x->g->values[n->in[0]].ndim, axis = (int)n->a.axis;
    int64_t at = 0;
    for (int i = 0; i < n->nin; i++) {
        tern_nd_concat_part(IN(i), DIMS(n->in[i]), ndim, 4, axis, at, DIMS(n->out[0]), OUT);
        at += DIMS(n->in[i])[axis];
    }
}

void tern_fp32_softmax(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *d = DIMS(n->in[0]);
    int nd = x->g->values[n->in[0]].ndim, axis = (int)(n->a.axis < 0 ? n->a.axis + nd : n->a.axis);
    int64_t outer = 1, len = 1, inner = 1;
    for (int i = 0; i < nd; i++) {
        if (i < axis) outer *= d[i];
        else if (i == axis || n->a.ceil_mode) len *= d[i];
        else inner *= d[i];
    }
    const float *in = IN(0);
    float *y = OUT;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
            const float *p = in + o * len * inner + k;
            float *q = y + o * len * inner + k, m = -INFINITY;
            double s = 0;
            for (int64_t i = 0; i < len; i++) m = p[i * inner] > m ? p[i * inner] : m;
            for (int64_t i = 0; i < len; i++) s += (q[i * inner] = expf(p[i * inner] - m));
            for (int64_t i = 0; i < len; i++) q[i * inner] = (float)(q[i * inner] / s);
        }
}

void tern_fp32_transpose(tern_fp32_ctx *x, const tern_node *n) {
    tern_nd_transpose(IN(0), DIMS(n->in[0]), x->g->values[n->in[0]].ndim, 4, n->a.perm, OUT);
}

/* ReduceMean over the axes the shape inference resolved (bit i of n->a.axes[0] set: axis i is
 * reduced, see infer_reducemean): every input element is added into its output cell. */
void tern_fp32_reducemean(tern_fp32_ctx *x, const tern_node *n) {
    const int64_t *d = DIMS(n->in[0]);
    int nd = x->g->values[n->in[0]].ndim;
    int64_t mask = n->a.axes[0], cnt = numel_of(x, n->in[0]), ycnt = numel_of(x, n->out[0]), red = 1;
    for (int i = 0; i < nd; i++)
        if (mask >> i & 1) red *= d[i];
    const float *in = IN(0);
    float *y = OUT;
    memset(y, 0, sizeof(float) * (size_t)ycnt);
    int64_t idx[TERN_MAX_DIMS] = {0};
    for (int64_t e = 0; e < cnt; e++) {
        int64_t o = 0;
        for (int i = 0; i < nd; i++)
            if (!(mask >> i & 1)) o = o * d[i] + idx[i];
        y[o] += in[e];
        for (int i = nd - 1; i >= 0 && ++idx[i] == d[i]; i--) idx[i] = 0;
    }
    for (int64_t o = 0; o < ycnt; o++) y[o] /= (float)red;
}
