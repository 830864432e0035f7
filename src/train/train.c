/* Low-precision fine-tuning engine (train.h). The graph is interpreted node by node on CNHW
 * mini-batches (train/ops.h); every activation value owns a data and a gradient buffer sized
 * for max_batch, reshapes alias their input. */
#include "train/train.h"
#include "train/ops.h"
#include <math.h>
#include <string.h>

enum { K_NONE, K_CONV, K_RELU, K_LEAKY, K_ADD, K_MAXPOOL, K_AVGPOOL, K_GAP, K_SLICE, K_PAD, K_ALIAS };

typedef struct {
    float *d, *g;               /* [c][B][h][w] data and gradient (NULL for constants) */
    int c, h, w, alias;         /* per-image shape; alias: buffers belong to another value */
    int fq, exp, sgn;           /* fake-quantized to 8-bit DFP with this exponent/sign */
} tval;

typedef struct {
    int node, cout, cin, kh, kw, K;
    int wtype, N;               /* policy: weight type and cluster (input channels) */
    float *w, *b;               /* shadow [cout][K], [cout] (b NULL if the node has none) */
    float *wq;                  /* quantized weights used by the forward pass [cout][K] */
    float *gw, *gb, *vw, *vb;   /* gradients, momenta */
    float *fold;                /* first layer: per-input-channel factor 1/(255 std), else NULL */
    float *tmp;                 /* [cout][K] folded copy */
    int8_t *codes;
    float *scales;
} tw;

typedef struct {
    int kind, x, x2, y, wl;     /* input value(s), output value, weight layer */
    tt_conv cv;
    tt_pool pl;
    tt_slice sl;
    tt_pad pd;
    float alpha;
} tnode;

struct tern_trainer {
    tern_graph *g;
    tern_train_opts o;
    int maxb;
    tval *v;
    tnode *nd;
    int nn;
    tw *wl;
    int nw;
    float *col;
    size_t col_size;
    int logits, nclasses;       /* value holding the logits */
    float *dlogits;
};

void tern_train_opts_init(tern_train_opts *o) {
    memset(o, 0, sizeof *o);
    for (int c = 0; c < 3; c++) o->std[c] = 1.0f;
    o->momentum = 0.9f;
    o->wd = 1e-4f;
    o->quant_acts = 1;
    o->quant_weights = 1;
}

#define UNSUP(...) tern_errorf(TERN_STATUS_UNSUPPORTED, __VA_ARGS__)

static void shape_of(const tern_value *v, int *c, int *h, int *w) {
    *c = v->ndim > 1 ? (int)v->dims[1] : 1;
    *h = v->ndim > 2 ? (int)v->dims[2] : 1;
    *w = v->ndim > 3 ? (int)v->dims[3] : 1;
    for (int d = 4; d < v->ndim; d++) *w *= (int)v->dims[d];
}

static enum tern_status add_weight_layer(tern_trainer *t, int ni, tnode *tn, int is_first) {
    tern_graph *g = t->g;
    const tern_node *n = &g->nodes[ni];
    tval *X = &t->v[tn->x];
    tw *L = &t->wl[t->nw];
    memset(L, 0, sizeof *L);
    L->node = ni;
    const tern_value *wv = &g->values[n->in[1]];
    if (!wv->data || wv->dtype != TERN_DTYPE_F32) return UNSUP("%s: node '%s': weights must be float constants", g->path, n->name);
    if (n->op == TERN_OP_CONV) {
        if (n->a.group != 1) return UNSUP("%s: node '%s': grouped convolutions are not supported by the trainer", g->path, n->name);
        if (n->a.dilations[0] != 1 || n->a.dilations[1] != 1) return UNSUP("%s: node '%s': dilated convolutions are not supported by the trainer", g->path, n->name);
        L->cout = (int)wv->dims[0];
        L->cin = (int)wv->dims[1];
        L->kh = (int)wv->dims[2];
        L->kw = (int)wv->dims[3];
        if (L->cin != X->c) return UNSUP("%s: node '%s': channel mismatch", g->path, n->name);
        tn->cv = (tt_conv){L->cin, L->cout, L->kh, L->kw, (int)n->a.strides[0], (int)n->a.strides[1], (int)n->a.pads[0],
                           (int)n->a.pads[1], (int)n->a.pads[2], (int)n->a.pads[3], 1, X->h, X->w, 0, 0};
    } else if (n->op == TERN_OP_GEMM) {
        if (n->a.trans_a) return UNSUP("%s: node '%s': Gemm with transA is not supported by the trainer", g->path, n->name);
        int64_t k = n->a.trans_b ? wv->dims[1] : wv->dims[0];
        L->cout = (int)(n->a.trans_b ? wv->dims[0] : wv->dims[1]);
        L->cin = X->c;
        L->kh = X->h;
        L->kw = X->w;
        if (k != (int64_t)X->c * X->h * X->w) return UNSUP("%s: node '%s': input features do not match", g->path, n->name);
        tn->cv = (tt_conv){L->cin, L->cout, L->kh, L->kw, 1, 1, 0, 0, 0, 0, 1, X->h, X->w, 0, 0};
    } else
        return UNSUP("%s: node '%s': %s is not supported by the trainer", g->path, n->name, tern_ops[n->op].name);
    if (!tt_conv_geom(&tn->cv)) return UNSUP("%s: node '%s': bad geometry", g->path, n->name);
    L->K = L->cin * L->kh * L->kw;
    size_t WK = (size_t)L->cout * L->K;
    L->w = tern_malloc(sizeof(float) * WK);
    L->wq = tern_malloc(sizeof(float) * WK);
    L->gw = tern_malloc(sizeof(float) * WK);
    L->vw = tern_calloc(WK, sizeof(float));
    L->tmp = tern_malloc(sizeof(float) * WK);
    L->codes = tern_malloc(WK);
    L->scales = tern_malloc(sizeof(float) * WK);
    if (!L->w || !L->wq || !L->gw || !L->vw || !L->tmp || !L->codes || !L->scales) return TERN_STATUS_NOMEM;
    const float *src = wv->data;
    float alpha = n->op == TERN_OP_GEMM ? n->a.alpha : 1.0f, beta = n->op == TERN_OP_GEMM ? n->a.beta : 1.0f;
    if (n->op == TERN_OP_GEMM && !n->a.trans_b)
        for (int o = 0; o < L->cout; o++)
            for (int k = 0; k < L->K; k++) L->w[(size_t)o * L->K + k] = alpha * src[(size_t)k * L->cout + o];
    else
        for (size_t i = 0; i < WK; i++) L->w[i] = alpha * src[i];
    if (n->nin > 2 && n->in[2] >= 0) {
        const tern_value *bv = &g->values[n->in[2]];
        if (!bv->data || tern_value_numel(bv) != L->cout) return UNSUP("%s: node '%s': the trainer needs a bias of %d values", g->path, n->name, L->cout);
        L->b = tern_malloc(sizeof(float) * (size_t)L->cout);
        L->gb = tern_malloc(sizeof(float) * (size_t)L->cout);
        L->vb = tern_calloc((size_t)L->cout, sizeof(float));
        if (!L->b || !L->gb || !L->vb) return TERN_STATUS_NOMEM;
        for (int o = 0; o < L->cout; o++) L->b[o] = beta * ((const float *)bv->data)[o];
    }
    if (is_first) {
        L->fold = tern_malloc(sizeof(float) * (size_t)L->cin);
        if (!L->fold) return TERN_STATUS_NOMEM;
        for (int c = 0; c < L->cin; c++) L->fold[c] = 1.0f / (255.0f * t->o.std[c % 3]);
    }
    tn->wl = t->nw++;
    return TERN_STATUS_OK;
}

/* The plan's policy for weight node ni, or NULL. */
static const tern_wpolicy *plan_policy(const tern_qplan *p, int ni) {
    for (int i = 0; p && i < p->nlayers; i++)
        if (p->layers[i].node == ni && p->layers[i].widx >= 0) return &p->layers[i].pol;
    return NULL;
}

enum tern_status tern_trainer_new(tern_graph *g, const tern_train_opts *o, int max_batch, tern_trainer **out) {
    *out = NULL;
    tern_trainer *t = tern_calloc(1, sizeof *t);
    if (!t) return TERN_STATUS_NOMEM;
    t->g = g;
    t->o = *o;
    t->maxb = max_batch;
    t->v = tern_calloc((size_t)g->nvalues, sizeof *t->v);
    t->nd = tern_calloc((size_t)g->nnodes + 1, sizeof *t->nd);
    t->wl = tern_calloc((size_t)g->nnodes + 1, sizeof *t->wl);
    enum tern_status st = TERN_STATUS_NOMEM;
    if (!t->v || !t->nd || !t->wl) goto fail;
    const tern_value *in = &g->values[g->input];
    if (in->ndim != 4) { st = UNSUP("%s: the trainer needs an image input [N,C,H,W]", g->path); goto fail; }
    for (int i = 0; i < g->nvalues; i++) t->v[i].alias = -1;
    if (!o->plan && (o->quant_weights || o->quant_acts)) {
        st = tern_errorf(TERN_STATUS_INVALID_ARG, "%s: the trainer needs the quantizer's plan to quantize", g->path);
        goto fail;
    }
    /* values: shapes; allocation after aliasing is known */
    tval *X0 = &t->v[g->input];
    shape_of(in, &X0->c, &X0->h, &X0->w);
    X0->alias = g->input;
    t->nn = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *n = &g->nodes[i];
        tnode *tn = &t->nd[t->nn];
        memset(tn, 0, sizeof *tn);
        tn->x = n->nin > 0 ? n->in[0] : -1;
        tn->x2 = -1;
        tn->y = n->out[0];
        tn->wl = -1;
        if (tn->x < 0 || t->v[tn->x].alias < 0) { st = UNSUP("%s: node '%s' (%s) reads a value the trainer does not produce", g->path, n->name, tern_ops[n->op].name); goto fail; }
        tval *X = &t->v[tn->x], *Y = &t->v[tn->y];
        const tern_value *yv = &g->values[tn->y];
        shape_of(yv, &Y->c, &Y->h, &Y->w);
        Y->alias = tn->y;
        switch (n->op) {
        case TERN_OP_CONV: case TERN_OP_GEMM:
            tn->kind = K_CONV;
            if ((st = add_weight_layer(t, i, tn, tn->x == g->input))) goto fail;
            {
                tw *L = &t->wl[tn->wl];
                const tern_wpolicy *pol = plan_policy(o->plan, i);
                if (!pol && o->quant_weights) { st = UNSUP("%s: node '%s': not a weight layer of the quantizer's plan", g->path, n->name); goto fail; }
                L->wtype = pol ? pol->wtype : TERN_WTYPE_INT8;
                L->N = pol ? pol->N : L->cin;
                size_t cs = tt_conv_col_size(&tn->cv) * (size_t)max_batch;
                if (cs > t->col_size) t->col_size = cs;
                Y->c = L->cout;
                Y->h = tn->cv.Ho;
                Y->w = tn->cv.Wo;
            }
            break;
        case TERN_OP_RELU: tn->kind = K_RELU; break;
        case TERN_OP_LEAKYRELU: tn->kind = K_LEAKY; tn->alpha = n->a.alpha; break;
        case TERN_OP_ADD: {
            tn->kind = K_ADD;
            tn->x2 = n->in[1];
            if (tn->x2 < 0 || t->v[tn->x2].alias < 0) { st = UNSUP("%s: node '%s': Add of a constant is not supported by the trainer", g->path, n->name); goto fail; }
            tval *X2 = &t->v[tn->x2];
            if (X2->c != X->c || X2->h != X->h || X2->w != X->w) { st = UNSUP("%s: node '%s': Add with broadcasting is not supported by the trainer", g->path, n->name); goto fail; }
            break;
        }
        case TERN_OP_MAXPOOL: case TERN_OP_AVGPOOL:
            if (n->op == TERN_OP_MAXPOOL && (n->a.dilations[0] != 1 || n->a.dilations[1] != 1)) { st = UNSUP("%s: node '%s': dilated MaxPool", g->path, n->name); goto fail; }
            tn->kind = n->op == TERN_OP_MAXPOOL ? K_MAXPOOL : K_AVGPOOL;
            tn->pl = (tt_pool){(int)n->a.kernel[0], (int)n->a.kernel[1], (int)n->a.strides[0], (int)n->a.strides[1], (int)n->a.pads[0],
                               (int)n->a.pads[1], (int)n->a.pads[2], (int)n->a.pads[3], n->a.count_include_pad, 0, X->h, X->w, Y->h, Y->w};
            break;
        case TERN_OP_GLOBALAVGPOOL: tn->kind = K_GAP; break;
        case TERN_OP_SLICE:
            if (yv->ndim != 4 || n->a.rs_start[0] != 0 || n->a.rs_step[0] != 1 || n->a.rs_step[1] < 1 || n->a.rs_step[2] < 1 || n->a.rs_step[3] < 1) {
                st = UNSUP("%s: node '%s': only 4-D Slices of channels/rows/columns with positive steps", g->path, n->name);
                goto fail;
            }
            tn->kind = K_SLICE;
            tn->sl = (tt_slice){X->c, 0, X->h, X->w, (int)n->a.rs_start[1], (int)n->a.rs_start[2], (int)n->a.rs_start[3],
                                (int)n->a.rs_step[1], (int)n->a.rs_step[2], (int)n->a.rs_step[3], Y->c, Y->h, Y->w};
            break;
        case TERN_OP_PAD: {
            const int64_t *p = n->a.pad_list;
            if (yv->ndim != 4 || p[0] || p[4] || n->a.pad_value != 0.0f || p[1] < 0 || p[2] < 0 || p[3] < 0 || p[5] < 0 || p[6] < 0 || p[7] < 0) {
                st = UNSUP("%s: node '%s': only non-negative zero padding of channels/rows/columns", g->path, n->name);
                goto fail;
            }
            tn->kind = K_PAD;
            tn->pd = (tt_pad){X->c, 0, X->h, X->w, (int)p[1], (int)p[5], (int)p[2], (int)p[6], (int)p[3], (int)p[7]};
            break;
        }
        case TERN_OP_FLATTEN: case TERN_OP_RESHAPE: case TERN_OP_SQUEEZE: case TERN_OP_UNSQUEEZE: case TERN_OP_IDENTITY:
            if (tern_value_numel_per_image(yv) != (int64_t)X->c * X->h * X->w) { st = UNSUP("%s: node '%s': reshape changes the size", g->path, n->name); goto fail; }
            tn->kind = K_ALIAS;
            *Y = *X; /* same CNHW buffers, same per-image layout */
            Y->alias = X->alias;
            break;
        case TERN_OP_SOFTMAX:
            if (tn->y != g->output) { st = UNSUP("%s: node '%s': Softmax inside the network is not supported by the trainer", g->path, n->name); goto fail; }
            tn->kind = K_ALIAS;
            *Y = *X;
            Y->alias = X->alias;
            break;
        default:
            st = UNSUP("%s: node '%s': %s is not supported by the trainer", g->path, n->name, tern_ops[n->op].name);
            goto fail;
        }
        t->nn++;
    }
    /* allocate owned buffers */
    for (int i = 0; i < g->nvalues; i++) {
        tval *V = &t->v[i];
        if (V->alias != i) continue;
        size_t n = (size_t)V->c * V->h * V->w * (size_t)max_batch;
        V->d = tern_malloc(sizeof(float) * n);
        V->g = tern_malloc(sizeof(float) * n);
        if (!V->d || !V->g) { st = TERN_STATUS_NOMEM; goto fail; }
    }
    for (int i = 0; i < g->nvalues; i++)
        if (t->v[i].alias >= 0 && t->v[i].alias != i) {
            t->v[i].d = t->v[t->v[i].alias].d;
            t->v[i].g = t->v[t->v[i].alias].g;
        }
    t->logits = g->output;
    if (t->v[t->logits].alias < 0) { st = UNSUP("%s: the output is not produced by the trainer", g->path); goto fail; }
    t->nclasses = t->v[t->logits].c * t->v[t->logits].h * t->v[t->logits].w;
    t->col = tern_malloc(sizeof(float) * (t->col_size ? t->col_size : 1));
    t->dlogits = tern_malloc(sizeof(float) * (size_t)t->nclasses * max_batch);
    if (!t->col || !t->dlogits) { st = TERN_STATUS_NOMEM; goto fail; }
    *out = t;
    return TERN_STATUS_OK;
fail:
    tern_trainer_free(t);
    return st;
}

void tern_trainer_free(tern_trainer *t) {
    if (!t) return;
    if (t->v)
        for (int i = 0; i < t->g->nvalues; i++)
            if (t->v[i].alias == i) {
                free(t->v[i].d);
                free(t->v[i].g);
            }
    for (int i = 0; i < t->nw; i++) {
        tw *L = &t->wl[i];
        free(L->w); free(L->b); free(L->wq); free(L->gw); free(L->gb); free(L->vw); free(L->vb);
        free(L->fold); free(L->tmp); free(L->codes); free(L->scales);
    }
    free(t->v);
    free(t->nd);
    free(t->wl);
    free(t->col);
    free(t->dlogits);
    free(t);
}

enum tern_status tern_trainer_set_exponents(tern_trainer *t, const tern_qmodel *m) {
    const tern_graph *g = t->g;
    for (int i = 0; i < g->nvalues; i++) t->v[i].fq = 0;
    if (!t->o.quant_acts) return TERN_STATUS_OK;
    const tern_qplan *p = t->o.plan;
    if (p->ntensors > m->ntensors) return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: the model does not match the trainer's plan", g->path);
    for (int ti = 1; ti < p->ntensors; ti++) { /* tensor 0 is the raw-pixel input */
        int v = p->tensor_value[ti];
        const tern_qtensor *qt = &m->tensors[ti];
        if (qt->wide || v < 0 || v >= g->nvalues) continue;
        tval *V = &t->v[v];
        if (V->alias != v) continue; /* aliases share their source's quantisation */
        V->fq = 1;
        V->exp = qt->exp;
        V->sgn = qt->is_signed;
    }
    return TERN_STATUS_OK;
}

static enum tern_status quantize_weights(tern_trainer *t) {
    for (int i = 0; i < t->nw; i++) {
        tw *L = &t->wl[i];
        size_t WK = (size_t)L->cout * L->K;
        if (!t->o.quant_weights) { memcpy(L->wq, L->w, sizeof(float) * WK); continue; }
        const float *src = L->w;
        int khw = L->kh * L->kw;
        if (L->fold) {
            for (int o = 0; o < L->cout; o++)
                for (int k = 0; k < L->K; k++) L->tmp[(size_t)o * L->K + k] = L->w[(size_t)o * L->K + k] * L->fold[k / khw];
            src = L->tmp;
        }
        enum tern_status st = tern_wquant_tensor(src, L->cout, L->cin, khw, (enum tern_wtype)L->wtype, L->N, t->o.plan->trule,
                                                 t->g->nodes[L->node].name, L->codes, L->scales);
        if (st) return st;
        int ncl = tern_wpolicy_resolve(L->wtype, L->N, L->cin).ncl;
        for (int o = 0; o < L->cout; o++)
            for (int k = 0; k < L->K; k++) {
                int gi = L->wtype == TERN_WTYPE_INT8 ? 0 : (k / khw) / L->N;
                float q = L->scales[(size_t)o * ncl + gi] * L->codes[(size_t)o * L->K + k];
                L->wq[(size_t)o * L->K + k] = L->fold ? q / L->fold[k / khw] : q;
            }
    }
    return TERN_STATUS_OK;
}

static size_t vsize(const tval *V, int B) { return (size_t)V->c * V->h * V->w * (size_t)B; }

static void forward(tern_trainer *t, const float *x, int B) {
    tval *X0 = &t->v[t->g->input];
    size_t per = (size_t)X0->h * X0->w;
    for (int b = 0; b < B; b++) /* NCHW -> CNHW */
        for (int c = 0; c < X0->c; c++) memcpy(X0->d + ((size_t)c * B + b) * per, x + ((size_t)b * X0->c + c) * per, sizeof(float) * per);
    for (int i = 0; i < t->nn; i++) {
        tnode *tn = &t->nd[i];
        tval *X = &t->v[tn->x], *Y = &t->v[tn->y];
        size_t n = vsize(Y, B);
        switch (tn->kind) {
        case K_CONV: {
            tw *L = &t->wl[tn->wl];
            tn->cv.B = B;
            tt_conv_fwd(&tn->cv, X->d, L->wq, L->b, Y->d, t->col);
            break;
        }
        case K_RELU: tt_relu_fwd(X->d, Y->d, n); break;
        case K_LEAKY: tt_leaky_fwd(X->d, Y->d, n, tn->alpha); break;
        case K_ADD: tt_add_fwd(X->d, t->v[tn->x2].d, Y->d, n); break;
        case K_MAXPOOL: tn->pl.nplanes = X->c * B; tt_maxpool_fwd(&tn->pl, X->d, Y->d); break;
        case K_AVGPOOL: tn->pl.nplanes = X->c * B; tt_avgpool_fwd(&tn->pl, X->d, Y->d); break;
        case K_GAP: tt_gap_fwd(X->d, Y->d, X->c * B, X->h * X->w); break;
        case K_SLICE: tn->sl.B = B; tt_slice_fwd(&tn->sl, X->d, Y->d); break;
        case K_PAD: tn->pd.B = B; tt_pad_fwd(&tn->pd, X->d, Y->d); break;
        default: break;
        }
        if (Y->fq && t->o.quant_acts && tn->kind != K_ALIAS) tt_fq_fwd(Y->d, n, Y->exp, Y->sgn);
    }
}

static void backward(tern_trainer *t, int B) {
    const tern_graph *g = t->g;
    for (int i = 0; i < g->nvalues; i++)
        if (t->v[i].alias == i && i != g->input) memset(t->v[i].g, 0, sizeof(float) * vsize(&t->v[i], B));
    tval *Lg = &t->v[t->logits];
    memcpy(Lg->g, t->dlogits, sizeof(float) * (size_t)t->nclasses * B);
    for (int i = t->nn - 1; i >= 0; i--) {
        tnode *tn = &t->nd[i];
        tval *X = &t->v[tn->x], *Y = &t->v[tn->y];
        size_t n = vsize(Y, B);
        if (tn->kind == K_ALIAS) continue;
        if (Y->fq && t->o.quant_acts) tt_fq_bwd(Y->d, Y->g, n, Y->exp, Y->sgn);
        float *dx = tn->x == g->input ? NULL : X->g;
        switch (tn->kind) {
        case K_CONV: {
            tw *L = &t->wl[tn->wl];
            tn->cv.B = B;
            tt_conv_bwd(&tn->cv, X->d, L->wq, Y->g, dx, L->gw, L->gb, t->col);
            break;
        }
        case K_RELU: if (dx) tt_relu_bwd(Y->d, Y->g, dx, n); break;
        case K_LEAKY: if (dx) tt_leaky_bwd(X->d, Y->g, dx, n, tn->alpha); break;
        case K_ADD: tt_add_bwd(Y->g, X->g, t->v[tn->x2].g, n); break;
        case K_MAXPOOL: tn->pl.nplanes = X->c * B; if (dx) tt_maxpool_bwd(&tn->pl, X->d, Y->g, dx); break;
        case K_AVGPOOL: tn->pl.nplanes = X->c * B; if (dx) tt_avgpool_bwd(&tn->pl, Y->g, dx); break;
        case K_GAP: if (dx) tt_gap_bwd(Y->g, dx, X->c * B, X->h * X->w); break;
        case K_SLICE: tn->sl.B = B; if (dx) tt_slice_bwd(&tn->sl, Y->g, dx); break;
        case K_PAD: tn->pd.B = B; if (dx) tt_pad_bwd(&tn->pd, Y->g, dx); break;
        default: break;
        }
    }
}

enum tern_status tern_trainer_forward(tern_trainer *t, const float *x, int B, const float **logits, int *nclasses) {
    if (B < 1 || B > t->maxb) return tern_errorf(TERN_STATUS_INVALID_ARG, "trainer: batch %d outside 1..%d", B, t->maxb);
    enum tern_status st = quantize_weights(t);
    if (st) return st;
    forward(t, x, B);
    *logits = t->v[t->logits].d;
    if (nclasses) *nclasses = t->nclasses;
    return TERN_STATUS_OK;
}

enum tern_status tern_trainer_step(tern_trainer *t, const float *x, const int *labels, int B, float lr, double *loss, int *correct) {
    return tern_trainer_step_distill(t, x, labels, NULL, 0, B, lr, loss, correct);
}

enum tern_status tern_trainer_step_distill(tern_trainer *t, const float *x, const int *labels, const float *teacher, float alpha,
                                           int B, float lr, double *loss, int *correct) {
    const float *lg;
    enum tern_status st = tern_trainer_forward(t, x, B, &lg, NULL);
    if (st) return st;
    double l = tt_softmax_ce_soft(lg, labels, teacher, alpha, t->nclasses, B, t->dlogits, correct);
    if (loss) *loss = l;
    if (!isfinite(l)) return tern_errorf(TERN_STATUS_NUMERIC, "trainer: the loss is not finite (learning rate too high?)");
    backward(t, B);
    /* SGD with momentum (PyTorch form): v = m v + (g + wd w); w -= lr v. Straight-through: the
     * gradient of the quantized weights is applied to the shadow weights. */
    float m = t->o.momentum, wd = t->o.wd;
    for (int i = 0; i < t->nw; i++) {
        tw *L = &t->wl[i];
        size_t WK = (size_t)L->cout * L->K;
        for (size_t k = 0; k < WK; k++) {
            L->vw[k] = m * L->vw[k] + L->gw[k] + wd * L->w[k];
            L->w[k] -= lr * L->vw[k];
        }
        if (L->b)
            for (int o = 0; o < L->cout; o++) {
                L->vb[o] = m * L->vb[o] + L->gb[o];
                L->b[o] -= lr * L->vb[o];
            }
    }
    return TERN_STATUS_OK;
}

enum tern_status tern_trainer_write_back(tern_trainer *t, int quantized) {
    if (quantized) {
        enum tern_status st = quantize_weights(t);
        if (st) return st;
    }
    tern_graph *g = t->g;
    for (int i = 0; i < t->nw; i++) {
        tw *L = &t->wl[i];
        tern_node *n = &g->nodes[L->node];
        float *dst = g->values[n->in[1]].data;
        const float *src = quantized ? L->wq : L->w;
        if (n->op == TERN_OP_GEMM && !n->a.trans_b)
            for (int o = 0; o < L->cout; o++)
                for (int k = 0; k < L->K; k++) dst[(size_t)k * L->cout + o] = src[(size_t)o * L->K + k];
        else
            memcpy(dst, src, sizeof(float) * (size_t)L->cout * L->K);
        if (L->b) memcpy(g->values[n->in[2]].data, L->b, sizeof(float) * (size_t)L->cout);
        if (n->op == TERN_OP_GEMM) n->a.alpha = n->a.beta = 1.0f;
    }
    return TERN_STATUS_OK;
}

/* Per-output-channel sums and sums of squares of every weight layer's output (pre-activation);
 * layer l's channels start at l * C. */
static void layer_stats(tern_trainer *t, int only, int B, int C, double *sum, double *sq) {
    for (int i = 0; i < t->nn; i++) {
        const tnode *tn = &t->nd[i];
        if (tn->kind != K_CONV || (only >= 0 && tn->wl != only)) continue;
        const tw *L = &t->wl[tn->wl];
        size_t N = (size_t)B * tn->cv.Ho * tn->cv.Wo;
        const float *y = t->v[tn->y].d;
        double *s = sum + (size_t)tn->wl * C, *q = sq + (size_t)tn->wl * C;
        for (int o = 0; o < L->cout; o++) {
            double a = 0, b = 0;
            for (size_t k = 0; k < N; k++) {
                double v = y[(size_t)o * N + k];
                a += v;
                b += v * v;
            }
            s[o] += a;
            q[o] += b;
        }
    }
}

enum tern_status tern_trainer_correct_stats(tern_trainer *t, const float *x, int n) {
    int B = t->maxb, nw = t->nw, C = 1; /* C: the widest layer's channels (no fixed cap) */
    for (int l = 0; l < nw; l++) C = t->wl[l].cout > C ? t->wl[l].cout : C;
    double *s0 = tern_calloc((size_t)nw * C, sizeof(double)), *q0 = tern_calloc((size_t)nw * C, sizeof(double));
    double *s1 = tern_calloc((size_t)nw * C, sizeof(double)), *q1 = tern_calloc((size_t)nw * C, sizeof(double));
    tern_train_opts saved = t->o;
    enum tern_status st = TERN_STATUS_NOMEM;
    if (!s0 || !q0 || !s1 || !q1) goto done;
    const tval *X0 = &t->v[t->g->input];
    size_t per = (size_t)X0->c * X0->h * X0->w;
    /* reference: FP32 weights, float activations */
    t->o.quant_weights = 0;
    t->o.quant_acts = 0;
    for (int s = 0; s < n; s += B) {
        int b = n - s < B ? n - s : B;
        if ((st = quantize_weights(t))) goto done;
        forward(t, x + per * (size_t)s, b);
        layer_stats(t, -1, b, C, s0, q0);
    }
    t->o.quant_weights = saved.quant_weights;
    t->o.quant_acts = saved.quant_acts;
    for (int l = 0; l < nw; l++) {
        tw *L = &t->wl[l];
        memset(s1 + (size_t)l * C, 0, sizeof(double) * (size_t)C);
        memset(q1 + (size_t)l * C, 0, sizeof(double) * (size_t)C);
        int64_t m = 0;
        for (int s = 0; s < n; s += B) {
            int b = n - s < B ? n - s : B;
            if ((st = quantize_weights(t))) goto done;
            forward(t, x + per * (size_t)s, b);
            layer_stats(t, l, b, C, s1, q1);
        }
        for (int i = 0; i < t->nn; i++)
            if (t->nd[i].kind == K_CONV && t->nd[i].wl == l) m = (int64_t)n * t->nd[i].cv.Ho * t->nd[i].cv.Wo;
        for (int o = 0; o < L->cout; o++) {
            size_t k = (size_t)l * C + o;
            double mf = s0[k] / m, vf = q0[k] / m - mf * mf, mq = s1[k] / m, vq = q1[k] / m - mq * mq;
            if (!(vq > 1e-12) || !(vf > 1e-12)) continue;
            double sc = sqrt(vf / vq);
            sc = sc < 0.1 ? 0.1 : sc > 10 ? 10 : sc;
            for (int j = 0; j < L->K; j++) L->w[(size_t)o * L->K + j] *= (float)sc;
            if (L->b) L->b[o] = (float)(mf - sc * (mq - L->b[o]));
        }
    }
    st = TERN_STATUS_OK;
done:
    t->o = saved;
    free(s0); free(q0); free(s1); free(q1);
    return st;
}

int tern_trainer_params(const tern_trainer *t, int *values, int max) {
    int k = 0;
    for (int i = 0; i < t->nw; i++) {
        const tern_node *n = &t->g->nodes[t->wl[i].node];
        if (k < max) values[k] = n->in[1];
        k++;
        if (t->wl[i].b) {
            if (k < max) values[k] = n->in[2];
            k++;
        }
    }
    return k;
}

int tern_trainer_nweights(const tern_trainer *t) { return t->nw; }

float *tern_trainer_weights(tern_trainer *t, int i, int *cout, int *K, float **bias) {
    if (i < 0 || i >= t->nw) return NULL;
    if (cout) *cout = t->wl[i].cout;
    if (K) *K = t->wl[i].K;
    if (bias) *bias = t->wl[i].b;
    return t->wl[i].w;
}
