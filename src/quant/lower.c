/* Lowering: map graph nodes to integer layers (conv/gemm with their activation fused, add with
 * its ReLU fused, pools, pad/slice/concat; reshapes become aliases), one tensor per output. */
#include "quant/internal.h"
#include <string.h>

static int new_qt(qctx *q, int value, int is_signed, int c, int h, int w) {
    if (q->nqt == q->cap_qt) {
        int cap = q->cap_qt ? 2 * q->cap_qt : 64;
        qt_info *n = realloc(q->qt, sizeof *n * (size_t)cap);
        if (!n) return -1;
        q->qt = n;
        q->cap_qt = cap;
    }
    qt_info *t = &q->qt[q->nqt];
    memset(t, 0, sizeof *t);
    t->value = value;
    t->same_as = -1;
    t->is_signed = is_signed;
    t->c = c;
    t->h = h;
    t->w = w;
    return q->nqt++;
}

static low_layer *new_ll(qctx *q, int op, const tern_node *n) {
    low_layer *l = &q->ll[q->nll++];
    memset(l, 0, sizeof *l);
    l->op = op;
    l->node = n;
    l->widx = -1;
    return l;
}

/* The activation node fused into producer n, if its only consumer is one. */
static const tern_node *fusable_act(qctx *q, const tern_node *n, int allow_leaky) {
    const tern_graph *g = q->g;
    int v = n->out[0];
    if (v == g->output || tern_graph_consumers(g, v) != 1) return NULL;
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *c = &g->nodes[i];
        if (c->nin < 1 || c->in[0] != v) continue;
        if (c->op == TERN_OP_RELU || c->op == TERN_OP_CLIP || (allow_leaky && c->op == TERN_OP_LEAKYRELU)) {
            q->fused[i] = 1;
            return c;
        }
        return NULL;
    }
    return NULL;
}

static int act_unsigned(const tern_node *act) {
    return act && (act->op == TERN_OP_RELU || (act->op == TERN_OP_CLIP && act->a.clip_min >= 0));
}

/* ---- check before work: can the integer engine run this node? ----
 * One function per op (NULL: the op has no integer lowering). Each returns NULL if the node
 * lowers, else what is missing; tern_q_lower runs them over every node before it lowers anything,
 * so an unsupported model fails at once, naming the node, its op and the reason, instead of after
 * calibration. */
typedef const char *(*can_lower_fn)(const tern_graph *g, const tern_node *n, char *why, size_t nwhy);

static int is_act(const tern_graph *g, int v) { return v >= 0 && !g->values[v].data; }
static const tern_value *val(const tern_graph *g, int v) { return &g->values[v]; }

static const char *ok_any(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)g, (void)n, (void)why, (void)nwhy;
    return NULL;
}
static const char *ok_weight(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    const tern_value *y = val(g, n->out[0]);
    if (n->op != TERN_OP_CONV && (y->ndim != 2 || y->dims[0] != 1))
        return snprintf(why, nwhy, "only [batch, features] fully connected layers (output of rank %d)", y->ndim), why;
    if (!is_act(g, n->in[0])) return "the data input is a constant";
    return NULL;
}
/* Add, Mul: two activations of one shape, or (Mul) one of them per channel [1, C, 1, 1]. */
static const char *ok_binary(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)why, (void)nwhy;
    if (!is_act(g, n->in[0]) || !is_act(g, n->in[1]))
        return n->op == TERN_OP_MUL ? "a product with a constant (only products of two activations)" : "a sum with a constant (only sums of two activations)";
    const tern_value *a = val(g, n->in[0]), *b = val(g, n->in[1]);
    if (a->ndim == b->ndim && !memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->ndim)) return NULL;
    if (n->op == TERN_OP_MUL && a->ndim == 4 && b->ndim == 4) {
        const tern_value *big = a->dims[2] * a->dims[3] >= b->dims[2] * b->dims[3] ? a : b, *small = big == a ? b : a;
        if (small->dims[1] == big->dims[1] && small->dims[2] == 1 && small->dims[3] == 1) return NULL;
    }
    return n->op == TERN_OP_MUL ? "broadcasting other than one factor per channel ([N,C,H,W] * [N,C,1,1])" : "broadcasting (the integer Add takes two tensors of one shape)";
}
static const char *ok_pool(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)g;
    if (n->op == TERN_OP_GLOBALAVGPOOL) return NULL;
    const tern_attrs *a = &n->a;
    if (a->dilations[0] != 1 || a->dilations[1] != 1)
        return snprintf(why, nwhy, "dilations %lldx%lld (the integer pools take dilation 1)", (long long)a->dilations[0], (long long)a->dilations[1]), why;
    for (int i = 0; i < 4; i++)
        if (a->pads[i] >= a->kernel[i % 2])
            return snprintf(why, nwhy, "pad %lld not smaller than the window %lld", (long long)a->pads[i], (long long)a->kernel[i % 2]), why;
    return NULL;
}
static const char *ok_reducemean(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    if (val(g, n->in[0])->ndim == 4 && n->a.axes[0] == 12) return NULL;   /* axes {2, 3} (bit mask, see ops.c) */
    return snprintf(why, nwhy, "axes other than the spatial ones (H, W) of a 4-D tensor"), why;
}
/* The only node reading value v, or -1. */
static int sole_reader(const tern_graph *g, int v) {
    if (v < 0 || v == g->output || tern_graph_consumers(g, v) != 1) return -1;
    for (int i = 0; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i].nin; k++)
            if (g->nodes[i].in[k] == v) return i;
    return -1;
}

/* Channel shuffle: Reshape [1,C,H,W] -> [1,G,C/G,H,W], Transpose perm [0,2,1,3,4], Reshape back
 * to [1,C,H,W], each read only by the next. Returns G and the later two nodes, or 0. */
int tern_q_shuffle_of(const tern_graph *g, const tern_node *r1, int *ti, int *r2i) {
    if (r1->op != TERN_OP_RESHAPE) return 0;
    const tern_value *x = val(g, r1->in[0]), *y = val(g, r1->out[0]);
    if (x->ndim != 4 || y->ndim != 5 || y->dims[1] < 2 || y->dims[1] * y->dims[2] != x->dims[1] ||
        y->dims[3] != x->dims[2] || y->dims[4] != x->dims[3])
        return 0;
    int t = sole_reader(g, r1->out[0]);
    if (t < 0 || g->nodes[t].op != TERN_OP_TRANSPOSE || g->nodes[t].a.nperm != 5) return 0;
    static const int64_t shuf[5] = {0, 2, 1, 3, 4};
    if (memcmp(g->nodes[t].a.perm, shuf, sizeof shuf)) return 0;
    int r2 = sole_reader(g, g->nodes[t].out[0]);
    if (r2 < 0 || (g->nodes[r2].op != TERN_OP_RESHAPE && g->nodes[r2].op != TERN_OP_FLATTEN)) return 0;
    const tern_value *z = val(g, g->nodes[r2].out[0]);
    if (z->ndim != 4 || memcmp(z->dims, x->dims, sizeof(int64_t) * 4)) return 0;
    *ti = t;
    *r2i = r2;
    return (int)y->dims[1];
}

static const char *ok_reshape(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)why, (void)nwhy;
    int ti, r2i;
    if (tern_q_shuffle_of(g, n, &ti, &r2i)) return NULL;
    const tern_value *x = val(g, n->in[0]), *y = val(g, n->out[0]);
    if (y->dims[0] != 1) return "a reshape that moves the batch dimension";
    if (n->op == TERN_OP_RESHAPE && y->ndim >= 3 && x->ndim == 4 &&
        !(y->ndim == 4 && y->dims[1] == x->dims[1] && y->dims[2] == x->dims[2] && y->dims[3] == x->dims[3]))
        return "a reshape other than flattening (e.g. a channel shuffle's Reshape-Transpose-Reshape)";
    return NULL;
}
static const char *ok_softmax(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)why, (void)nwhy;
    return n->out[0] == g->output ? NULL : "Softmax inside the network (only a trailing Softmax, dropped: top-k is unchanged)";
}
static const char *ok_slice_pad(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)why, (void)nwhy;
    if (val(g, n->in[0])->ndim != 4) return "a tensor of rank other than 4";
    if (n->op == TERN_OP_SLICE && (n->a.rs_start[0] != 0 || n->a.rs_step[0] != 1 || n->a.rs_step[1] < 1 || n->a.rs_step[2] < 1 || n->a.rs_step[3] < 1))
        return "a slice of the batch axis or with negative steps";
    if (n->op == TERN_OP_PAD && (n->a.pad_list[0] || n->a.pad_list[4] || n->a.pad_value != 0.0f))
        return "padding other than zeros around channels, rows and columns";
    return NULL;
}
static const char *ok_concat(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)why, (void)nwhy;
    if (n->a.axis != 1 || val(g, n->in[0])->ndim != 4) return "a concatenation along an axis other than the channels of a 4-D tensor";
    for (int k = 0; k < n->nin; k++)
        if (!is_act(g, n->in[k])) return "a constant input";
    return NULL;
}

static const char *no_bn(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)g, (void)n, (void)why, (void)nwhy;
    return "a BatchNormalization on a tensor that is not [N,C,H,W] (a Conv's BN is folded into it, any other 4-D one runs as a 1x1 depthwise conv)";
}

static const char *no_prelu(const tern_graph *g, const tern_node *n, char *why, size_t nwhy) {
    (void)g, (void)n, (void)why, (void)nwhy;
    return "a PRelu with one slope per channel (a PRelu of one slope runs as LeakyRelu)";
}

static const can_lower_fn can_lower[TERN_OP_COUNT] = {
    [TERN_OP_PRELU] = no_prelu,
    [TERN_OP_BATCHNORM] = no_bn,
    [TERN_OP_CONV] = ok_weight, [TERN_OP_GEMM] = ok_weight, [TERN_OP_MATMUL] = ok_weight,
    [TERN_OP_ADD] = ok_binary, [TERN_OP_MUL] = ok_binary,
    [TERN_OP_RELU] = ok_any, [TERN_OP_CLIP] = ok_any, [TERN_OP_LEAKYRELU] = ok_any, [TERN_OP_SIGMOID] = ok_any,
    [TERN_OP_HARDSIGMOID] = ok_any, [TERN_OP_HARDSWISH] = ok_any, [TERN_OP_TANH] = ok_any, [TERN_OP_GELU] = ok_any,
    [TERN_OP_MAXPOOL] = ok_pool, [TERN_OP_AVGPOOL] = ok_pool, [TERN_OP_GLOBALAVGPOOL] = ok_pool,
    [TERN_OP_REDUCEMEAN] = ok_reducemean,
    [TERN_OP_FLATTEN] = ok_reshape, [TERN_OP_RESHAPE] = ok_reshape, [TERN_OP_SQUEEZE] = ok_reshape,
    [TERN_OP_UNSQUEEZE] = ok_reshape, [TERN_OP_IDENTITY] = ok_reshape,
    [TERN_OP_SOFTMAX] = ok_softmax, [TERN_OP_SLICE] = ok_slice_pad, [TERN_OP_PAD] = ok_slice_pad,
    [TERN_OP_CONCAT] = ok_concat,
};

enum tern_status tern_q_check(const tern_graph *g) {
    char *covered = tern_calloc((size_t)g->nnodes + 1, 1);   /* inside a pattern checked at its first node */
    if (!covered) return TERN_STATUS_NOMEM;
    for (int i = 0; i < g->nnodes; i++) {
        int ti, r2i;
        if (tern_q_shuffle_of(g, &g->nodes[i], &ti, &r2i)) covered[ti] = covered[r2i] = 1;
    }
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *n = &g->nodes[i];
        if (covered[i]) continue;
        char why[200];
        const char *r = can_lower[n->op] ? can_lower[n->op](g, n, why, sizeof why) : "the integer engine has no such layer";
        if (r) {
            free(covered);
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: node '%s' (%s) cannot run on the integer engine: %s", g->path,
                               n->name, tern_ops[n->op].name, r);
        }
    }
    free(covered);
    return TERN_STATUS_OK;
}

/* The Sigmoid node whose output only Mul node n reads, times the Sigmoid's own input: SiLU,
 * x * sigmoid(x), lowered as one lookup table. Returns the Sigmoid's node index or -1. */
static int silu_sigmoid(const tern_graph *g, const tern_node *n) {
    if (n->op != TERN_OP_MUL) return -1;
    for (int k = 0; k < 2; k++) {
        int s = n->in[k], x = n->in[1 - k];
        if (s < 0 || tern_graph_consumers(g, s) != 1) continue;
        for (int i = 0; i < g->nnodes; i++)
            if (g->nodes[i].op == TERN_OP_SIGMOID && g->nodes[i].out[0] == s && g->nodes[i].in[0] == x) return i;
    }
    return -1;
}

/* An AveragePool whose padding counts in the divisor (count_include_pad with pads) is lowered as
 * a zero PAD layer and a pool without pads: every window of the padded tensor then holds its
 * taps, and a window cut by ceil_mode is cut at the padded edge, as ONNX and PyTorch count it. */
int tern_q_pool_prepad(const tern_node *n) {
    return n->op == TERN_OP_AVGPOOL && n->a.count_include_pad && (n->a.pads[0] || n->a.pads[1] || n->a.pads[2] || n->a.pads[3]);
}

enum tern_status tern_q_lower(qctx *q) {
    const tern_graph *g = q->g;
    const tern_value *in = &g->values[g->input];
    if (in->ndim != 4) return UNSUP(NULL, "%s: the integer engine needs an image input [N,C,H,W]", g->path);
    if (new_qt(q, g->input, 0, (int)in->dims[1], (int)in->dims[2], (int)in->dims[3]) < 0) return TERN_STATUS_NOMEM;
    q->vmap[g->input] = 0;
    enum tern_status st = tern_q_check(g);
    if (st) return st;
    for (int i = 0; i < g->nnodes; i++) {   /* SiLU: the Sigmoid goes into its Mul's table */
        int s = silu_sigmoid(g, &g->nodes[i]);
        if (s >= 0) q->fused[s] = 1;
    }
    int widx = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *n = &g->nodes[i];
        if (q->fused[i]) continue;
        const int silu = silu_sigmoid(g, n);
        const int xin = silu >= 0 ? g->nodes[silu].in[0] : n->nin > 0 ? n->in[0] : -1;
        int x = xin >= 0 ? q->vmap[xin] : -1;
        if (x < 0) return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: node '%s' (%s) reads a tensor the integer engine cannot produce", g->path, n->name, tern_ops[n->op].name);
        const tern_value *yv = &g->values[n->out[0]];
        low_layer *l;
        switch (n->op) {
        case TERN_OP_CONV: case TERN_OP_GEMM: case TERN_OP_MATMUL: {
            const tern_node *act = fusable_act(q, n, 1);
            int ov = act ? act->out[0] : n->out[0];
            int c, h = 1, w = 1;
            if (n->op == TERN_OP_CONV) { c = (int)yv->dims[1]; h = (int)yv->dims[2]; w = (int)yv->dims[3]; }
            else {
                if (yv->ndim != 2 || yv->dims[0] != 1) return UNSUP(n, "%s: node '%s': only [batch, features] fully connected layers are supported", g->path, n->name);
                c = (int)yv->dims[1];
                const qt_info *xt = &q->qt[x];
                const tern_value *bv = &g->values[n->in[1]];
                int64_t k = n->op == TERN_OP_GEMM && n->a.trans_b ? bv->dims[1] : bv->dims[0];
                if (k != (int64_t)xt->c * xt->h * xt->w) return UNSUP(n, "%s: node '%s': input features do not match", g->path, n->name);
            }
            int t = new_qt(q, ov, !act_unsigned(act), c, h, w);
            if (t < 0) return TERN_STATUS_NOMEM;
            l = new_ll(q, TERN_QOP_CONV, n);
            l->act = act;
            l->nin = 1;
            l->in[0] = x;
            l->out = t;
            l->widx = widx++;
            q->vmap[ov] = t;
            break;
        }
        case TERN_OP_ADD: {
            int y = n->in[1] >= 0 ? q->vmap[n->in[1]] : -1;
            const tern_value *av = &g->values[n->in[0]], *bv = &g->values[n->in[1]];
            if (y < 0 || av->ndim != bv->ndim || memcmp(av->dims, bv->dims, sizeof(int64_t) * (size_t)av->ndim))
                return UNSUP(n, "%s: node '%s' (Add): the integer engine adds two activations of the same shape only", g->path, n->name);
            const tern_node *act = fusable_act(q, n, 0);
            int ov = act ? act->out[0] : n->out[0];
            int t = new_qt(q, ov, !act_unsigned(act), q->qt[x].c, q->qt[x].h, q->qt[x].w);
            if (t < 0) return TERN_STATUS_NOMEM;
            l = new_ll(q, TERN_QOP_ADD, n);
            l->act = act;
            l->nin = 2;
            l->in[0] = x;
            l->in[1] = y;
            l->out = t;
            q->vmap[ov] = t;
            break;
        }
        case TERN_OP_SIGMOID: case TERN_OP_HARDSIGMOID: case TERN_OP_HARDSWISH: case TERN_OP_TANH: case TERN_OP_LEAKYRELU: case TERN_OP_GELU:
        lut: {   /* element-wise: a lookup table from input code to output code, built after calibration */
            int uns = n->op == TERN_OP_SIGMOID || n->op == TERN_OP_HARDSIGMOID;
            int t = new_qt(q, n->out[0], !uns, q->qt[x].c, q->qt[x].h, q->qt[x].w);
            if (t < 0) return TERN_STATUS_NOMEM;
            l = new_ll(q, TERN_QOP_LUT, n);
            l->nin = 1;
            l->in[0] = x;
            l->out = t;
            q->vmap[n->out[0]] = t;
            break;
        }
        case TERN_OP_MUL: {
            if (silu >= 0) goto lut;   /* x * sigmoid(x): one table (tern_q_lut_f) */
            int a = x, b = q->vmap[n->in[1]];
            if (b < 0) return UNSUP(n, "%s: node '%s' (Mul): input not available", g->path, n->name);
            if (q->qt[a].h * q->qt[a].w < q->qt[b].h * q->qt[b].w) { int tmp = a; a = b; b = tmp; }   /* b: per channel */
            int t = new_qt(q, n->out[0], q->qt[a].is_signed || q->qt[b].is_signed, q->qt[a].c, q->qt[a].h, q->qt[a].w);
            if (t < 0) return TERN_STATUS_NOMEM;
            l = new_ll(q, TERN_QOP_MUL, n);
            l->nin = 2;
            l->in[0] = a;
            l->in[1] = b;
            l->out = t;
            q->vmap[n->out[0]] = t;
            break;
        }
        case TERN_OP_REDUCEMEAN: {   /* over H, W (tern_q_check): a global average pool */
            int t = new_qt(q, n->out[0], q->qt[x].is_signed, q->qt[x].c, 1, 1);
            if (t < 0) return TERN_STATUS_NOMEM;
            l = new_ll(q, TERN_QOP_GLOBALAVGPOOL, n);
            l->nin = 1;
            l->in[0] = x;
            l->out = t;
            q->vmap[n->out[0]] = t;
            break;
        }
        case TERN_OP_RELU: case TERN_OP_CLIP: {
            int t = new_qt(q, n->out[0], !act_unsigned(n), q->qt[x].c, q->qt[x].h, q->qt[x].w);
            if (t < 0) return TERN_STATUS_NOMEM;
            q->qt[t].same_as = x;
            l = new_ll(q, TERN_QOP_REQUANT, n);
            l->act = n;
            l->nin = 1;
            l->in[0] = x;
            l->out = t;
            q->vmap[n->out[0]] = t;
            break;
        }
        case TERN_OP_MAXPOOL: case TERN_OP_AVGPOOL: case TERN_OP_GLOBALAVGPOOL: {
            if (tern_q_pool_prepad(n)) { /* the padding counts: pad with zeros, then pool without pads */
                const qt_info *xt = &q->qt[x];
                int t = new_qt(q, q->qt[x].value, xt->is_signed, xt->c, xt->h + (int)(n->a.pads[0] + n->a.pads[2]),
                               xt->w + (int)(n->a.pads[1] + n->a.pads[3]));
                if (t < 0) return TERN_STATUS_NOMEM;
                q->qt[t].same_as = x;
                l = new_ll(q, TERN_QOP_PAD, n);
                l->nin = 1;
                l->in[0] = x;
                l->out = t;
                x = t;
            }
            int t = new_qt(q, n->out[0], q->qt[x].is_signed, (int)yv->dims[1], (int)yv->dims[2], (int)yv->dims[3]);
            if (t < 0) return TERN_STATUS_NOMEM;
            if (n->op == TERN_OP_MAXPOOL) q->qt[t].same_as = x;
            l = new_ll(q, n->op == TERN_OP_MAXPOOL ? TERN_QOP_MAXPOOL : n->op == TERN_OP_AVGPOOL ? TERN_QOP_AVGPOOL : TERN_QOP_GLOBALAVGPOOL, n);
            l->nin = 1;
            l->in[0] = x;
            l->out = t;
            q->vmap[n->out[0]] = t;
            break;
        }
        case TERN_OP_RESHAPE: {
            int ti, r2i;
            if (!tern_q_shuffle_of(g, n, &ti, &r2i)) goto reshape;
            q->fused[ti] = q->fused[r2i] = 1;   /* the whole shuffle: one channel permutation */
            int ov = g->nodes[r2i].out[0];
            int t = new_qt(q, ov, q->qt[x].is_signed, q->qt[x].c, q->qt[x].h, q->qt[x].w);
            if (t < 0) return TERN_STATUS_NOMEM;
            q->qt[t].same_as = x;
            l = new_ll(q, TERN_QOP_CHANPERM, n);
            l->nin = 1;
            l->in[0] = x;
            l->out = t;
            q->vmap[ov] = t;
            break;
        }
        case TERN_OP_FLATTEN: case TERN_OP_SQUEEZE: case TERN_OP_UNSQUEEZE: case TERN_OP_IDENTITY:
        reshape:
            if (yv->dims[0] != 1) return UNSUP(n, "%s: node '%s': reshapes that move the batch dimension are not supported", g->path, n->name);
            if (yv->ndim >= 3 && (n->op == TERN_OP_RESHAPE) &&
                !(yv->ndim == 4 && yv->dims[1] == q->qt[x].c && yv->dims[2] == q->qt[x].h && yv->dims[3] == q->qt[x].w))
                return UNSUP(n, "%s: node '%s': only flattening reshapes are supported by the integer engine", g->path, n->name);
            q->vmap[n->out[0]] = x; /* NHWC data stays; the next FC reads it as a HxW conv */
            break;
        case TERN_OP_SOFTMAX:
            if (n->out[0] != g->output) return UNSUP(n, "%s: node '%s': Softmax inside the network is not supported by the integer engine", g->path, n->name);
            q->vmap[n->out[0]] = x; /* ranking of logits is unchanged */
            break;
        case TERN_OP_SLICE: case TERN_OP_PAD: {
            const tern_value *xv = &g->values[n->in[0]];
            if (xv->ndim != 4) return UNSUP(n, "%s: node '%s': only 4-D tensors", g->path, n->name);
            if (n->op == TERN_OP_SLICE && (n->a.rs_start[0] != 0 || n->a.rs_step[0] != 1 || n->a.rs_step[1] < 1 || n->a.rs_step[2] < 1 || n->a.rs_step[3] < 1))
                return UNSUP(n, "%s: node '%s': Slice on the batch axis or with negative steps is not supported by the integer engine", g->path, n->name);
            if (n->op == TERN_OP_PAD && (n->a.pad_list[0] || n->a.pad_list[4] || n->a.pad_value != 0.0f))
                return UNSUP(n, "%s: node '%s': Pad must be zero padding of channels/rows/columns for the integer engine", g->path, n->name);
            int t = new_qt(q, n->out[0], q->qt[x].is_signed, (int)yv->dims[1], (int)yv->dims[2], (int)yv->dims[3]);
            if (t < 0) return TERN_STATUS_NOMEM;
            q->qt[t].same_as = x;
            l = new_ll(q, n->op == TERN_OP_SLICE ? TERN_QOP_SLICE : TERN_QOP_PAD, n);
            l->nin = 1;
            l->in[0] = x;
            l->out = t;
            q->vmap[n->out[0]] = t;
            break;
        }
        case TERN_OP_CONCAT: {
            /* more inputs than a layer holds: a chain of concats, each taking the previous one's
             * output and up to TERN_MAX_QIN - 1 more inputs; every link shares the final exponent */
            if (n->a.axis != 1) return UNSUP(n, "%s: node '%s': Concat along channels only", g->path, n->name);
            int sgn = 0, nlinks = n->nin <= TERN_MAX_QIN ? 1 : 1 + (n->nin - TERN_MAX_QIN + TERN_MAX_QIN - 2) / (TERN_MAX_QIN - 1);
            for (int k = 0; k < n->nin; k++) {
                if (q->vmap[n->in[k]] < 0) return UNSUP(n, "%s: node '%s': input not available", g->path, n->name);
                sgn |= q->qt[q->vmap[n->in[k]]].is_signed;
            }
            int t = new_qt(q, n->out[0], sgn, (int)yv->dims[1], (int)yv->dims[2], (int)yv->dims[3]);
            if (t < 0) return TERN_STATUS_NOMEM;
            int next = 0, prev = -1;
            for (int link = 0; link < nlinks; link++) {
                l = new_ll(q, TERN_QOP_CONCAT, n);
                if (prev >= 0) l->in[l->nin++] = prev;
                int c = prev >= 0 ? q->qt[prev].c : 0;
                while (next < n->nin && l->nin < TERN_MAX_QIN) {
                    l->in[l->nin] = q->vmap[n->in[next++]];
                    c += q->qt[l->in[l->nin++]].c;
                }
                if (link == nlinks - 1) l->out = t;
                else {
                    int u = new_qt(q, n->out[0], sgn, c, (int)yv->dims[2], (int)yv->dims[3]);
                    if (u < 0) return TERN_STATUS_NOMEM;
                    q->qt[u].same_as = t;
                    l->out = prev = u;
                }
            }
            q->vmap[n->out[0]] = t;
            break;
        }
        default:
            return UNSUP(n, "%s: node '%s': %s is not supported by the integer engine", g->path, n->name, tern_ops[n->op].name);
        }
    }
    q->nweight = widx;
    int out = q->vmap[g->output];
    if (out <= 0) return UNSUP(NULL, "%s: the output is not produced by the integer engine", g->path);
    /* the logits are int32 when a conv/FC or global pool produces them */
    for (int i = 0; i < q->nll; i++)
        if (q->ll[i].out == out && (q->ll[i].op == TERN_QOP_CONV || q->ll[i].op == TERN_QOP_GLOBALAVGPOOL)) {
            q->qt[out].wide = 1;
            q->qt[out].is_signed = 1;
        }
    return TERN_STATUS_OK;
}


/* Float weights [cout][cing*kh*kw] and bias [cout] of a weight node (Gemm/MatMul as convs
 * over the input's c x h x w, in the NCHW flatten order, which is OIHW). */
enum tern_status tern_q_weights_of(qctx *q, const low_layer *l, float **w, float **b) {
    const tern_graph *g = q->g;
    const tern_node *n = l->node;
    const qt_info *xt = &q->qt[l->in[0]], *yt = &q->qt[l->out];
    int64_t cout = yt->c, K = n->op == TERN_OP_CONV ? tern_value_numel(&g->values[n->in[1]]) / cout : (int64_t)xt->c * xt->h * xt->w;
    *w = tern_malloc(sizeof(float) * (size_t)(cout * K));
    *b = tern_calloc((size_t)cout, sizeof(float));
    if (!*w || !*b) return TERN_STATUS_NOMEM;
    const float *src = g->values[n->in[1]].data;
    if (n->op == TERN_OP_CONV || (n->op == TERN_OP_GEMM && n->a.trans_b))
        memcpy(*w, src, sizeof(float) * (size_t)(cout * K));
    else
        for (int64_t o = 0; o < cout; o++)
            for (int64_t k = 0; k < K; k++) (*w)[o * K + k] = src[k * cout + o];
    float alpha = n->op == TERN_OP_GEMM ? n->a.alpha : 1.0f, beta = n->op == TERN_OP_GEMM ? n->a.beta : 1.0f;
    if (alpha != 1.0f)
        for (int64_t i = 0; i < cout * K; i++) (*w)[i] *= alpha;
    if (n->in[2] >= 0 && n->op != TERN_OP_MATMUL) {
        const tern_value *bv = &g->values[n->in[2]];
        int64_t bn = tern_value_numel(bv);
        for (int64_t o = 0; o < cout; o++) (*b)[o] = beta * ((const float *)bv->data)[bn == 1 ? 0 : o];
    }
    return TERN_STATUS_OK;
}

/* Fold (p/255 - mean)/std into a first layer's weights w[cout][cing*khw] and bias. */
void tern_q_fold_input(const tern_qopts *o, float *w, float *bias, int cout, int groups, int cing, int khw) {
    int K = cing * khw;
    for (int oc = 0; oc < cout; oc++)
        for (int k = 0; k < K; k++) {
            int ci = (oc / (cout / groups)) * cing + k / khw;
            float s = 1.0f / (255.0f * o->std[ci % 3]);
            bias[oc] -= w[(size_t)oc * K + k] * o->mean[ci % 3] / o->std[ci % 3];
            w[(size_t)oc * K + k] *= s;
        }
}

