/* Graph passes run at import: shape inference with constant folding, BatchNorm folding into
 * the preceding Conv, removal of Identity/Dropout, and pruning of dead nodes. */
#include "graph/graph.h"
#include <math.h>
#include <string.h>

static void compact(tern_graph *g, const char *dead) {
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (dead[i]) tern_node_clear(&g->nodes[i]);
        else g->nodes[k++] = g->nodes[i];
    }
    g->nnodes = k;
}

static void replace_uses(tern_graph *g, int from, int to) {
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            if (g->nodes[i].in[j] == from) g->nodes[i].in[j] = to;
    if (g->output == from) g->output = to;
}

enum tern_status tern_graph_infer_and_fold(tern_graph *g) {
    char *dead = tern_calloc((size_t)(g->nnodes ? g->nnodes : 1), 1);
    if (!dead) return TERN_STATUS_NOMEM;
    enum tern_status st = TERN_STATUS_OK;
    for (int i = 0; i < g->nnodes && !st; i++) {
        tern_node *n = &g->nodes[i];
        const tern_op_info *op = &tern_ops[n->op];
        int all_const = 1;
        for (int j = 0; j < n->nin; j++) {
            if (n->in[j] < 0) continue;
            tern_value *v = &g->values[n->in[j]];
            if (!v->shape_known) {
                st = tern_errorf(TERN_STATUS_FORMAT, "node %s (%s): input %s is not produced before use", n->name, op->name, v->name);
                break;
            }
            if (!v->data) all_const = 0;
        }
        if (st) break;
        st = op->infer(g, n);
        if (st) break;
        if (op->fold && (all_const || n->op == TERN_OP_SHAPE) && n->op != TERN_OP_CONV) {
            st = op->fold(g, n);
            dead[i] = 1;
        } else if (!op->run_fp32) {
            st = tern_errorf(TERN_STATUS_UNSUPPORTED, "node %s (%s): only supported on constant inputs (shape subgraphs); here it reads an activation", n->name, op->name);
        } else {
            /* Executors scale dim 0 of every activation to the batch they run: an activation
             * must keep dim 0 as the batch (1 here), or its buffer would not match its data. */
            for (int j = 0; j < n->nout && !st; j++) {
                const tern_value *y = n->out[j] >= 0 ? &g->values[n->out[j]] : NULL;
                if (y && (y->ndim < 1 || y->dims[0] != 1))
                    st = tern_errorf(TERN_STATUS_UNSUPPORTED, "node %s (%s): output %s has %s; tern needs dimension 0 of every activation to stay the batch",
                                     n->name, op->name, y->name, y->ndim < 1 ? "no dimensions" : "dimension 0 other than the batch");
            }
        }
    }
    if (!st) compact(g, dead);
    free(dead);
    return st;
}

enum tern_status tern_graph_fold_batchnorm(tern_graph *g) {
    char *dead = tern_calloc((size_t)(g->nnodes ? g->nnodes : 1), 1);
    if (!dead) return TERN_STATUS_NOMEM;
    for (int i = 0; i < g->nnodes; i++) {
        tern_node *bn = &g->nodes[i];
        if (bn->op != TERN_OP_BATCHNORM) continue;
        int x = bn->in[0];
        tern_node *conv = NULL;
        for (int j = 0; j < i; j++)
            if (!dead[j] && g->nodes[j].out[0] == x && g->nodes[j].op == TERN_OP_CONV) conv = &g->nodes[j];
        if (!conv || tern_graph_consumers(g, x) != 1 || tern_graph_consumers(g, conv->in[1]) != 1) continue;
        tern_value *w = &g->values[conv->in[1]];
        int64_t cout = w->dims[0], per = tern_value_numel(w) / cout;
        const float *gamma = g->values[bn->in[1]].data, *beta = g->values[bn->in[2]].data;
        const float *mean = g->values[bn->in[3]].data, *var = g->values[bn->in[4]].data;
        if (conv->in[2] < 0 || tern_graph_consumers(g, conv->in[2]) != 1) {
            char name[300];
            snprintf(name, sizeof name, "%s.folded_bias", conv->name);
            int b = tern_graph_add_value(g, name);
            if (b < 0) { free(dead); return TERN_STATUS_NOMEM; }
            bn = &g->nodes[i]; /* values array may have moved; nodes did not */
            tern_value *bv = &g->values[b], *old = conv->in[2] >= 0 ? &g->values[conv->in[2]] : NULL;
            bv->ndim = 1;
            bv->dims[0] = cout;
            bv->shape_known = 1;
            bv->data = tern_calloc((size_t)cout, sizeof(float));
            if (!bv->data) { free(dead); return TERN_STATUS_NOMEM; }
            if (old) memcpy(bv->data, old->data, sizeof(float) * (size_t)cout);
            conv->in[2] = b;
            conv->nin = 3;
            w = &g->values[conv->in[1]];
        }
        float *wd = w->data, *bd = g->values[conv->in[2]].data;
        for (int64_t o = 0; o < cout; o++) {
            float s = gamma[o] / sqrtf(var[o] + bn->a.epsilon);
            for (int64_t k = 0; k < per; k++) wd[o * per + k] *= s;
            bd[o] = (bd[o] - mean[o]) * s + beta[o];
        }
        conv->out[0] = bn->out[0];
        dead[i] = 1;
    }
    compact(g, dead);
    free(dead);
    return TERN_STATUS_OK;
}

/* A BatchNormalization left after folding (no Conv in front of it: DenseNet's pre-activation BN
 * behind a Concat) on a 4-D tensor becomes what it computes, a per-channel affine map: a 1x1
 * depthwise Conv (group = C) with weight gamma / sqrt(var + eps) and bias beta - mean * weight.
 * The integer engine then runs it as any depthwise conv (8-bit weights by policy), its ReLU fused. */
enum tern_status tern_graph_bn_to_conv(tern_graph *g) {
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].op != TERN_OP_BATCHNORM) continue;
        const tern_value *x = &g->values[g->nodes[i].in[0]];
        if (x->ndim != 4 || x->dims[1] < 1) continue;
        int64_t c = x->dims[1];
        char name[300];
        snprintf(name, sizeof name, "%s.as_conv_weight", g->nodes[i].name);
        int wv = tern_graph_add_value(g, name);
        snprintf(name, sizeof name, "%s.as_conv_bias", g->nodes[i].name);
        int bv = wv < 0 ? -1 : tern_graph_add_value(g, name);
        if (bv < 0) return TERN_STATUS_NOMEM;
        tern_node *bn = &g->nodes[i];   /* values may have moved; nodes did not */
        tern_value *w = &g->values[wv], *b = &g->values[bv];
        w->ndim = 4, w->dims[0] = c, w->dims[1] = w->dims[2] = w->dims[3] = 1, w->shape_known = 1;
        b->ndim = 1, b->dims[0] = c, b->shape_known = 1;
        float *wd = tern_malloc(sizeof(float) * (size_t)c), *bd = tern_malloc(sizeof(float) * (size_t)c);
        if (!wd || !bd) { free(wd); free(bd); return TERN_STATUS_NOMEM; }
        w->data = wd, b->data = bd;
        const float *gamma = g->values[bn->in[1]].data, *beta = g->values[bn->in[2]].data;
        const float *mean = g->values[bn->in[3]].data, *var = g->values[bn->in[4]].data;
        for (int64_t o = 0; o < c; o++) {
            float s = gamma[o] / sqrtf(var[o] + bn->a.epsilon);
            wd[o] = s;
            bd[o] = beta[o] - mean[o] * s;
        }
        bn->op = TERN_OP_CONV;
        bn->nin = 3;
        bn->in[1] = wv;
        bn->in[2] = bv;
        bn->in[3] = bn->in[4] = -1;
        bn->nout = 1;
        bn->out[1] = -1;
        bn->a.kernel[0] = bn->a.kernel[1] = 1;
        bn->a.strides[0] = bn->a.strides[1] = 1;
        bn->a.dilations[0] = bn->a.dilations[1] = 1;
        memset(bn->a.pads, 0, sizeof bn->a.pads);
        bn->a.auto_pad = 0;
        bn->a.group = c;
    }
    return TERN_STATUS_OK;
}

/* A PRelu with one slope (PyTorch's nn.PReLU() default) is a LeakyRelu: the integer engine fuses
 * it into the conv in front of it or runs it as a lookup table. One slope per channel stays a
 * PRelu (FP32 only; tern quantize names it). */
enum tern_status tern_graph_prelu_to_leaky(tern_graph *g) {
    for (int i = 0; i < g->nnodes; i++) {
        tern_node *n = &g->nodes[i];
        if (n->op != TERN_OP_PRELU || tern_value_numel(&g->values[n->in[1]]) != 1) continue;
        n->a.alpha = ((const float *)g->values[n->in[1]].data)[0];
        n->op = TERN_OP_LEAKYRELU;
        n->in[1] = -1;
        n->nin = 1;
    }
    return TERN_STATUS_OK;
}

/* A one-element float constant within 1e-5 of want. */
static int is_scalar(const tern_graph *g, int v, double want) {
    if (v < 0 || !g->values[v].data || g->values[v].dtype != TERN_DTYPE_F32 || tern_value_numel(&g->values[v]) != 1) return 0;
    return fabs(((const float *)g->values[v].data)[0] - want) < 1e-5;
}
/* The node producing value v, if only node `reader` reads v. */
static int sole_producer(const tern_graph *g, int v) {
    if (v < 0 || g->values[v].data || v == g->output || tern_graph_consumers(g, v) != 1) return -1;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].out[0] == v) return i;
    return -1;
}

/* GELU as opsets before 20 spell it (PyTorch's nn.GELU export): Div(x, sqrt 2) or Mul(x, 1/sqrt 2)
 * -> Erf -> Add(1) -> Mul(x) -> Mul(0.5), each intermediate read only by the next, becomes one
 * Gelu node on x (an element-wise function: the integer engine runs it as a lookup table). */
enum tern_status tern_graph_fuse_gelu(tern_graph *g) {
    char *dead = tern_calloc((size_t)(g->nnodes ? g->nnodes : 1), 1);
    if (!dead) return TERN_STATUS_NOMEM;
    for (int i = 0; i < g->nnodes; i++) {
        tern_node *half = &g->nodes[i];
        if (half->op != TERN_OP_MUL || half->nin != 2) continue;
        int hk = is_scalar(g, half->in[1], 0.5) ? 1 : is_scalar(g, half->in[0], 0.5) ? 0 : -1;
        if (hk < 0) continue;
        int m = sole_producer(g, half->in[1 - hk]);
        if (m < 0 || g->nodes[m].op != TERN_OP_MUL || g->nodes[m].nin != 2) continue;
        for (int xk = 0; xk < 2; xk++) {
            int x = g->nodes[m].in[xk], a = sole_producer(g, g->nodes[m].in[1 - xk]);
            if (a < 0 || g->nodes[a].op != TERN_OP_ADD || g->nodes[a].nin != 2) continue;
            int ak = is_scalar(g, g->nodes[a].in[1], 1.0) ? 1 : is_scalar(g, g->nodes[a].in[0], 1.0) ? 0 : -1;
            int e = ak < 0 ? -1 : sole_producer(g, g->nodes[a].in[1 - ak]);
            if (e < 0 || g->nodes[e].op != TERN_OP_ERF) continue;
            int d = sole_producer(g, g->nodes[e].in[0]);
            if (d < 0 || g->nodes[d].nin != 2 || g->nodes[d].in[0] != x ||
                !((g->nodes[d].op == TERN_OP_DIV && is_scalar(g, g->nodes[d].in[1], 1.41421356237)) ||
                  (g->nodes[d].op == TERN_OP_MUL && is_scalar(g, g->nodes[d].in[1], 0.70710678118))))
                continue;
            half->op = TERN_OP_GELU;
            half->in[0] = x;
            half->in[1] = -1;
            half->nin = 1;
            dead[m] = dead[a] = dead[e] = dead[d] = 1;
            break;
        }
    }
    compact(g, dead);
    free(dead);
    return TERN_STATUS_OK;
}

enum tern_status tern_graph_remove_identity(tern_graph *g) {
    char *dead = tern_calloc((size_t)(g->nnodes ? g->nnodes : 1), 1);
    if (!dead) return TERN_STATUS_NOMEM;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == TERN_OP_IDENTITY) {
            replace_uses(g, g->nodes[i].out[0], g->nodes[i].in[0]);
            dead[i] = 1;
        }
    compact(g, dead);
    free(dead);
    return TERN_STATUS_OK;
}

void tern_graph_prune(tern_graph *g) {
    char *need = calloc((size_t)g->nvalues + 1, 1), *dead = calloc((size_t)g->nnodes + 1, 1);
    if (!need || !dead) { free(need); free(dead); return; }
    if (g->output >= 0) need[g->output] = 1;
    for (int i = g->nnodes - 1; i >= 0; i--) {
        tern_node *n = &g->nodes[i];
        int used = 0;
        for (int j = 0; j < n->nout; j++) used |= n->out[j] >= 0 && need[n->out[j]];
        if (!used) { dead[i] = 1; continue; }
        for (int j = 0; j < n->nin; j++) if (n->in[j] >= 0) need[n->in[j]] = 1;
    }
    compact(g, dead);
    free(need);
    free(dead);
}

enum tern_status tern_graph_check_finite(const tern_graph *g) {
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *n = &g->nodes[i];
        for (int j = 0; j < n->nin; j++) {
            if (n->in[j] < 0) continue;
            const tern_value *v = &g->values[n->in[j]];
            if (!v->data || v->dtype != TERN_DTYPE_F32) continue;
            int64_t cnt = tern_value_numel(v);
            const float *d = v->data;
            for (int64_t k = 0; k < cnt; k++) {
                if (isfinite(d[k])) continue;
                if (n->op == TERN_OP_CLIP && j > 0 && !isnan(d[k])) break; /* an open bound */
                return tern_errorf(TERN_STATUS_NUMERIC, "%s: node '%s' (%s): constant '%s' holds %s at element %lld%s",
                                   g->path, n->name, tern_ops[n->op].name, v->name, isnan(d[k]) ? "NaN" : d[k] > 0 ? "+Inf" : "-Inf",
                                   (long long)k, n->op == TERN_OP_CONV ? " (after BatchNorm folding, if any)" : "");
            }
        }
    }
    return TERN_STATUS_OK;
}
