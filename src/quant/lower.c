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

enum tern_status tern_q_lower(qctx *q) {
    const tern_graph *g = q->g;
    const tern_value *in = &g->values[g->input];
    if (in->ndim != 4) return UNSUP(NULL, "%s: the integer engine needs an image input [N,C,H,W]", g->path);
    if (new_qt(q, g->input, 0, (int)in->dims[1], (int)in->dims[2], (int)in->dims[3]) < 0) return TERN_STATUS_NOMEM;
    q->vmap[g->input] = 0;
    int widx = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *n = &g->nodes[i];
        if (q->fused[i]) continue;
        int x = n->nin > 0 && n->in[0] >= 0 ? q->vmap[n->in[0]] : -1;
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
            if (n->op == TERN_OP_AVGPOOL && n->a.count_include_pad && (n->a.pads[0] || n->a.pads[1] || n->a.pads[2] || n->a.pads[3]))
                return UNSUP(n, "%s: node '%s': AveragePool with count_include_pad and padding is not supported by the integer engine", g->path, n->name);
            if (n->op == TERN_OP_MAXPOOL && (n->a.dilations[0] != 1 || n->a.dilations[1] != 1))
                return UNSUP(n, "%s: node '%s': dilated MaxPool is not supported by the integer engine", g->path, n->name);
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
        case TERN_OP_FLATTEN: case TERN_OP_RESHAPE: case TERN_OP_SQUEEZE: case TERN_OP_UNSQUEEZE: case TERN_OP_IDENTITY:
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
            if (n->a.axis != 1 || n->nin > TERN_MAX_QIN) return UNSUP(n, "%s: node '%s': Concat along channels only (at most %d inputs)", g->path, n->name, TERN_MAX_QIN);
            int sgn = 0;
            l = new_ll(q, TERN_QOP_CONCAT, n);
            l->nin = n->nin;
            for (int k = 0; k < n->nin; k++) {
                l->in[k] = q->vmap[n->in[k]];
                if (l->in[k] < 0) return UNSUP(n, "%s: node '%s': input not available", g->path, n->name);
                sgn |= q->qt[l->in[k]].is_signed;
            }
            int t = new_qt(q, n->out[0], sgn, (int)yv->dims[1], (int)yv->dims[2], (int)yv->dims[3]);
            if (t < 0) return TERN_STATUS_NOMEM;
            l->out = t;
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

