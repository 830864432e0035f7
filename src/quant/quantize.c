/* Model quantizer: FP32 graph + calibration images -> integer model (qmodel.h).
 *
 * 1. lower: map graph nodes to integer layers (conv/gemm with their activation fused, add with
 *    its ReLU fused, pools, pad/slice/concat; reshapes become aliases), one tensor per output;
 * 2. calibrate: run the FP32 graph on the calibration images and choose each tensor's exponent
 *    (max-abs, or the minimum squared error among the max-abs exponent and finer ones);
 * 3. build: quantize weights per policy and derive every integer parameter.
 */
#include "quant/quantize.h"
#include "exec/fp32.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

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

void tern_qopts_init(tern_qopts *o) {
    memset(o, 0, sizeof *o);
    o->wtype = TERN_WTYPE_TERNARY;
    o->cluster = 4;
    o->trule = TERN_TRULE_EXACT;
    o->calib_rule = TERN_CALIB_MSE;
    o->keep_ends_8bit = 1;
    o->depthwise_8bit = 1;
    for (int c = 0; c < 3; c++) o->std[c] = 1.0f;
    o->threads = 1;
    o->opt_images = 64;
    o->opt_damp = 1e-3f;
}

int tern_parse_wspec(const char *s, int *wtype, int *cluster) {
    char buf[32];
    snprintf(buf, sizeof buf, "%s", s);
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    if (!strcmp(buf, "t") || !strcmp(buf, "2")) *wtype = TERN_WTYPE_TERNARY;
    else if (!strcmp(buf, "4")) *wtype = TERN_WTYPE_INT4;
    else if (!strcmp(buf, "8")) *wtype = TERN_WTYPE_INT8;
    else return 0;
    if (colon) {
        if (!strcmp(colon + 1, "all")) *cluster = 0;
        else {
            char *end;
            long n = strtol(colon + 1, &end, 10);
            if (*end || n < 1 || n > 65536) return 0;
            *cluster = (int)n;
        }
    }
    return 1;
}

static int is_weight_node(const tern_node *n) {
    return n->op == TERN_OP_CONV || n->op == TERN_OP_GEMM || n->op == TERN_OP_MATMUL;
}

int tern_quant_weight_layers(const tern_graph *g, int *node_idx, int max) {
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (is_weight_node(&g->nodes[i])) {
            if (k < max) node_idx[k] = i;
            k++;
        }
    return k;
}

/* ---------------- 1. lowering ---------------- */

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

#define UNSUP(n, ...) tern_errorf(TERN_STATUS_UNSUPPORTED, __VA_ARGS__)

static enum tern_status lower(qctx *q) {
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

/* ---------------- 2. calibration ---------------- */

static int exp_maxabs(double maxabs, int is_signed) {
    int bits = is_signed ? 7 : 8;
    if (!(maxabs > 0)) return bits; /* all zero: any exponent; keep a neutral one */
    int il = (int)ceil(log2(maxabs));
    return bits - il;
}

static void observe(void *arg, const tern_node *n, const float *y, const int64_t *dims, int ndim) {
    qctx *q = arg;
    int t = q->val2qt[n->out[0]];
    if (t < 0) return;
    qt_info *qt = &q->qt[t];
    int64_t cnt = 1;
    for (int d = 0; d < ndim; d++) cnt *= dims[d];
    if (q->pass == 1) {
        double m = qt->maxabs;
        for (int64_t i = 0; i < cnt; i++) {
            double a = fabs((double)y[i]);
            if (a > m) m = a;
        }
        qt->maxabs = m;
        return;
    }
    int lo = qt->is_signed ? -128 : 0, hi = qt->is_signed ? 127 : 255;
    for (int c = 0; c < NCAND; c++) {
        double sc = ldexp(1.0, qt->f0 + c), inv = 1.0 / sc, s = 0;
        for (int64_t i = 0; i < cnt; i++) {
            double v = nearbyint((double)y[i] * sc);
            v = v < lo ? lo : v > hi ? hi : v;
            double e = (double)y[i] - v * inv;
            s += e * e;
        }
        qt->sse[c] += s;
    }
}

static enum tern_status calibrate(qctx *q, const uint8_t *calib, int ncalib) {
    const tern_graph *g = q->g;
    const tern_qopts *o = q->o;
    if (ncalib < 1) return tern_errorf(TERN_STATUS_INVALID_ARG, "calibration needs at least one image");
    for (int v = 0; v < g->nvalues; v++) q->val2qt[v] = -1;
    for (int t = 1; t < q->nqt; t++)
        if (q->qt[t].same_as < 0 && !q->qt[t].wide) q->val2qt[q->qt[t].value] = t;
    for (int t = 1; t < q->nqt; t++)
        if (q->qt[t].wide) q->val2qt[q->qt[t].value] = t; /* max only */
    tern_fp32_ctx *x = tern_fp32_ctx_new(g);
    const qt_info *t0 = &q->qt[0];
    int B = 32;
    size_t per = (size_t)t0->c * t0->h * t0->w, plane = (size_t)t0->h * t0->w;
    float *in = tern_malloc(sizeof(float) * per * (size_t)B);
    if (!x || !in) {
        tern_fp32_ctx_free(x);
        free(in);
        return TERN_STATUS_NOMEM;
    }
    x->observe = observe;
    x->observe_arg = q;
    tern_fp32_set_threads(o->threads);
    enum tern_status st = TERN_STATUS_OK;
    int passes = o->calib_rule == TERN_CALIB_MSE ? 2 : 1;
    for (q->pass = 1; q->pass <= passes && !st; q->pass++) {
        if (q->pass == 2)
            for (int t = 1; t < q->nqt; t++) {
                q->qt[t].f0 = exp_maxabs(q->qt[t].maxabs, q->qt[t].is_signed);
                if (q->qt[t].wide) q->val2qt[q->qt[t].value] = -1;
            }
        for (int s = 0; s < ncalib && !st; s += B) {
            int b = ncalib - s < B ? ncalib - s : B;
            for (int i = 0; i < b; i++)
                for (int c = 0; c < t0->c; c++)
                    for (size_t p = 0; p < plane; p++)
                        in[(size_t)i * per + c * plane + p] = ((float)calib[(size_t)(s + i) * per + c * plane + p] / 255.0f - o->mean[c % 3]) / o->std[c % 3];
            const float *y;
            int64_t yd[TERN_MAX_DIMS];
            int nd;
            st = tern_fp32_run(x, in, b, &y, yd, &nd);
        }
    }
    tern_fp32_ctx_free(x);
    free(in);
    if (st) return st;
    for (int t = 1; t < q->nqt; t++) {
        qt_info *qt = &q->qt[t];
        qt->f0 = exp_maxabs(qt->maxabs, qt->is_signed);
        qt->exp = qt->f0;
        if (passes == 2 && !qt->wide && qt->same_as < 0) {
            int best = 0;
            for (int c = 1; c < NCAND; c++)
                if (qt->sse[c] < qt->sse[best]) best = c;
            qt->exp = qt->f0 + best;
        }
    }
    return TERN_STATUS_OK;
}

/* ---------------- 3. building the integer model ---------------- */

/* r = m / 2^31 * 2^-shift with m in [2^30, 2^31) when possible. Returns 0 if r >= 1. */
static int to_mult(double r, int32_t *m, int8_t *shift) {
    if (!(r > 0)) { *m = 0; *shift = 0; return 1; }
    if (r >= 1.0) return 0;
    int e;
    double fr = frexp(r, &e); /* r = fr * 2^e, fr in [0.5, 1), e <= 0 */
    int s = -e;
    if (s > 31) { fr = ldexp(fr, 31 - s); s = 31; }
    double mm = nearbyint(ldexp(fr, 31));
    if (mm >= 2147483648.0) { mm /= 2; s--; }
    if (s < 0) return 0;
    *m = (int32_t)mm;
    *shift = (int8_t)s;
    return 1;
}

static void layer_policy(qctx *q, const low_layer *l, int nweight, int *wtype, int *cluster) {
    const tern_qopts *o = q->o;
    const tern_node *n = l->node;
    *wtype = o->wtype;
    *cluster = o->cluster;
    int depthwise = n->op == TERN_OP_CONV && n->a.group > 1 && n->a.group == q->qt[l->in[0]].c;
    if (o->keep_ends_8bit && (l->in[0] == 0 || l->widx == nweight - 1)) *wtype = TERN_WTYPE_INT8;
    if (o->depthwise_8bit && depthwise) *wtype = TERN_WTYPE_INT8;
    char idx[16];
    snprintf(idx, sizeof idx, "%d", l->widx);
    for (int r = 0; r < o->nrules; r++)
        if (!strcmp(o->rules[r].key, n->name) || !strcmp(o->rules[r].key, idx)) {
            *wtype = o->rules[r].wtype;
            *cluster = o->rules[r].cluster;
        }
}

/* Float weights [cout][cing*kh*kw] and bias [cout] of a weight node (Gemm/MatMul as convs
 * over the input's c x h x w, in the NCHW flatten order, which is OIHW). */
static enum tern_status weights_of(qctx *q, const low_layer *l, float **w, float **b) {
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
static void fold_input(const tern_qopts *o, float *w, float *bias, int cout, int groups, int cing, int khw) {
    int K = cing * khw;
    for (int oc = 0; oc < cout; oc++)
        for (int k = 0; k < K; k++) {
            int ci = (oc / (cout / groups)) * cing + k / khw;
            float s = 1.0f / (255.0f * o->std[ci % 3]);
            bias[oc] -= w[(size_t)oc * K + k] * o->mean[ci % 3] / o->std[ci % 3];
            w[(size_t)oc * K + k] *= s;
        }
}

/* ---------------- 2b. post-training optimisation of the weights ----------------
 *
 * For each weight layer in graph order, with x the layer's input in the network whose earlier
 * layers already carry their quantized weights (an FP32 simulation: weights s*q, float
 * activations) and y the FP32 network's pre-activation output of the same layer on the same
 * image, we minimise per output channel o
 *     E[(y_o - b_o - v_o . x)^2] + damp,      v_o = dequantized weights (scale_g * code_k)
 * a quadratic v^T H v - 2 v^T t with H = E[x x^T], t = E[x (y_o - b_o)]. With bias correction
 * the statistics are centred (covariances) and b_o = E[y_o] - v_o . E[x], the optimal bias for
 * the chosen v_o: this removes the mean output shift caused by quantization, including what the
 * earlier layers' quantization passed on. Scales: for fixed codes the objective is a quadratic in
 * the cluster scales, minimised exactly under a >= 0 (projected coordinate descent). Codes:
 * coordinate descent over single weights (ternary: any other value in {-1,0,1}; n-bit: +-1 steps),
 * each accepted only if it lowers the objective, alternating with the scale refit. */

#define OPT_MAX_ROWS 65536      /* positions sampled per layer (patches), spread over the images */

typedef struct {
    int K, cout;
    int64_t n;                  /* rows accumulated */
    double *sx, *sy, *syy;      /* [K], [cout], [cout] */
    double *gxx;                /* [K][K] */
    double *gxy;                /* [K][cout] */
} opt_stats;

static void stats_add(opt_stats *s, const float *X, const float *Y, int rows) {
    int K = s->K, C = s->cout;
    float *tmp = tern_malloc(sizeof(float) * (size_t)K * (K > C ? K : C));
    if (!tmp) return;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, K, rows, 1.0f, X, K, 0.0f, tmp, K);
    for (int i = 0; i < K; i++)
        for (int j = i; j < K; j++) s->gxx[(size_t)i * K + j] += tmp[(size_t)i * K + j];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, C, rows, 1.0f, X, K, Y, C, 0.0f, tmp, C);
    for (size_t i = 0; i < (size_t)K * C; i++) s->gxy[i] += tmp[i];
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < K; k++) s->sx[k] += X[(size_t)r * K + k];
        for (int c = 0; c < C; c++) {
            double y = Y[(size_t)r * C + c];
            s->sy[c] += y;
            s->syy[c] += y * y;
        }
    }
    s->n += rows;
    free(tmp);
}

/* Output error of channel oc with weights v[K] and the best bias: Var(y - v.x), from the raw
 * sums (for the --verbose report). */
static double row_err(const opt_stats *s, int oc, const float *v, double *var_y) {
    int K = s->K;
    double inv = 1.0 / (double)s->n, my = s->sy[oc] * inv, e = s->syy[oc] * inv - my * my;
    *var_y = e;
    for (int i = 0; i < K; i++) {
        if (v[i] == 0) continue;
        double mi = s->sx[i] * inv, hv = 0;
        for (int j = 0; j < K; j++) {
            if (v[j] == 0) continue;
            double g = i <= j ? s->gxx[(size_t)i * K + j] : s->gxx[(size_t)j * K + i];
            hv += (g * inv - mi * s->sx[j] * inv) * v[j];
        }
        e += v[i] * hv - 2 * v[i] * (s->gxy[(size_t)i * s->cout + oc] * inv - mi * my);
    }
    return e;
}

/* Optimise one output channel: codes c[K] and scales a[ncl] in place; H [K][K] (full), t [K]. */
static void opt_row(const double *H, const double *t, int K, int khw, int N, int ncl, int qmax, int ternary,
                    int do_scales, int do_round, int8_t *c, float *a, double *r, double *M, double *rg) {
    int per = ncl == 1 ? K : N * khw; /* weights per cluster */
    for (int round = 0; round < (do_round ? 4 : 1); round++) {
        if (do_scales) { /* exact least squares for the scales of the fixed codes, a >= 0 */
            memset(M, 0, sizeof(double) * (size_t)ncl * ncl);
            memset(rg, 0, sizeof(double) * (size_t)ncl);
            for (int k = 0; k < K; k++) {
                if (!c[k]) continue;
                int gk = k / per;
                rg[gk] += c[k] * t[k];
                const double *h = H + (size_t)k * K;
                for (int j = 0; j < K; j++)
                    if (c[j]) M[(size_t)gk * ncl + j / per] += (double)c[k] * c[j] * h[j];
            }
            for (int it = 0; it < 100; it++) {
                double change = 0;
                for (int g = 0; g < ncl; g++) {
                    double d = M[(size_t)g * ncl + g];
                    if (!(d > 0)) { a[g] = 0; continue; }
                    double num = rg[g];
                    for (int h = 0; h < ncl; h++)
                        if (h != g) num -= M[(size_t)g * ncl + h] * a[h];
                    double v = num / d;
                    if (v < 0) v = 0;
                    change += fabs(v - a[g]);
                    a[g] = (float)v;
                }
                if (change < 1e-9) break;
            }
        }
        if (!do_round || round == 3) break;
        /* r = H v - t */
        for (int i = 0; i < K; i++) {
            double acc = -t[i];
            const double *h = H + (size_t)i * K;
            for (int k = 0; k < K; k++)
                if (c[k]) acc += h[k] * a[k / per] * c[k];
            r[i] = acc;
        }
        int flips = 0;
        for (int sweep = 0; sweep < 4; sweep++) {
            int fl = 0;
            for (int k = 0; k < K; k++) {
                double ak = a[k / per];
                if (!(ak > 0)) continue;
                double hkk = H[(size_t)k * K + k], best = -1e-12 * ak * ak * hkk;
                int bc = c[k];
                for (int cand = c[k] - (ternary ? 2 : 1); cand <= c[k] + (ternary ? 2 : 1); cand++) {
                    if (cand == c[k] || cand < -qmax || cand > qmax) continue;
                    double d = ak * (cand - c[k]), df = 2 * d * r[k] + d * d * hkk;
                    if (df < best) { best = df; bc = cand; }
                }
                if (bc != c[k]) {
                    double d = ak * (bc - c[k]);
                    const double *h = H + (size_t)k * K;
                    for (int i = 0; i < K; i++) r[i] += d * h[i];
                    c[k] = (int8_t)bc;
                    fl++;
                }
            }
            flips += fl;
            if (!fl) break;
        }
        if (!flips) break;
    }
}

/* Write dequantized weights (folded domain) back into the simulation graph's copies, in the
 * layout of the node's own initializers (unfolding the first layer's input normalisation). */
static enum tern_status sim_store(qctx *q, tern_graph *gs, const low_layer *l, const float *wq_f, const float *b_f,
                                  int cout, int K, int khw, int **owned_n, float ***owned, int *nowned) {
    const tern_graph *g = q->g;
    const tern_node *n = l->node;
    const tern_qopts *o = q->o;
    float *w = tern_malloc(sizeof(float) * (size_t)cout * K), *b = tern_malloc(sizeof(float) * (size_t)cout);
    if (!w || !b) { free(w); free(b); return TERN_STATUS_NOMEM; }
    memcpy(w, wq_f, sizeof(float) * (size_t)cout * K);
    memcpy(b, b_f, sizeof(float) * (size_t)cout);
    if (l->in[0] == 0) { /* engine: y = sum w_f p + b_f with p = 255 (x std + mean) */
        int cing = K / khw;
        for (int oc = 0; oc < cout; oc++)
            for (int k = 0; k < K; k++) {
                int ci = k / khw;
                float wf = w[(size_t)oc * K + k];
                w[(size_t)oc * K + k] = wf * 255.0f * o->std[ci % 3];
                b[oc] += wf * 255.0f * o->mean[ci % 3];
            }
        (void)cing;
    }
    int wv = n->in[1], bv = n->nin > 2 ? n->in[2] : -1;
    float *dst = tern_malloc(sizeof(float) * (size_t)cout * K);
    if (!dst) { free(w); free(b); return TERN_STATUS_NOMEM; }
    float alpha = n->op == TERN_OP_GEMM ? n->a.alpha : 1.0f, beta = n->op == TERN_OP_GEMM ? n->a.beta : 1.0f;
    if (n->op == TERN_OP_CONV || (n->op == TERN_OP_GEMM && n->a.trans_b))
        for (size_t i = 0; i < (size_t)cout * K; i++) dst[i] = w[i] / alpha;
    else
        for (int oc = 0; oc < cout; oc++)
            for (int k = 0; k < K; k++) dst[(size_t)k * cout + oc] = w[(size_t)oc * K + k] / alpha;
    (*owned)[*nowned] = dst;
    (*owned_n)[(*nowned)++] = wv;
    gs->values[wv].data = dst;
    if (bv >= 0 && n->op != TERN_OP_MATMUL && tern_value_numel(&g->values[bv]) == cout && beta != 0) {
        float *bd = tern_malloc(sizeof(float) * (size_t)cout);
        if (!bd) { free(w); free(b); return TERN_STATUS_NOMEM; }
        for (int oc = 0; oc < cout; oc++) bd[oc] = b[oc] / beta;
        (*owned)[*nowned] = bd;
        (*owned_n)[(*nowned)++] = bv;
        gs->values[bv].data = bd;
    }
    free(w);
    free(b);
    return TERN_STATUS_OK;
}

static enum tern_status optimize(qctx *q, const uint8_t *calib, int ncalib) {
    const tern_graph *g = q->g;
    const tern_qopts *o = q->o;
    int nweight = 0;
    for (int i = 0; i < q->nll; i++) nweight += q->ll[i].widx >= 0;
    q->wl = tern_calloc((size_t)nweight + 1, sizeof *q->wl);
    tern_graph gs = *g; /* the simulation: same nodes, values whose weights we replace */
    gs.values = tern_malloc(sizeof(tern_value) * (size_t)g->nvalues);
    int *owned_n = tern_malloc(sizeof(int) * (size_t)(2 * nweight + 2));
    float **owned = tern_calloc((size_t)(2 * nweight + 2), sizeof(float *));
    int nowned = 0;
    const qt_info *t0 = &q->qt[0];
    int nsrc = o->opt_images > 0 && o->opt_images < ncalib ? o->opt_images : ncalib;
    int nimg = o->opt_flip ? 2 * nsrc : nsrc; /* with --opt-flip, every image also mirrored */
    int B = 16;
    size_t per = (size_t)t0->c * t0->h * t0->w, plane = (size_t)t0->h * t0->w;
    float *in = tern_malloc(sizeof(float) * per * (size_t)B);
    enum tern_status st = TERN_STATUS_OK;
    if (!q->wl || !gs.values || !owned_n || !owned || !in) { st = TERN_STATUS_NOMEM; goto out; }
    memcpy(gs.values, g->values, sizeof(tern_value) * (size_t)g->nvalues);
    double t_start = tern_now();
    for (int li = 0; li < q->nll && !st; li++) {
        const low_layer *l = &q->ll[li];
        if (l->widx < 0) continue;
        const tern_node *n = l->node;
        const qt_info *xt = &q->qt[l->in[0]], *yt = &q->qt[l->out];
        int wtype, cluster;
        layer_policy(q, l, nweight, &wtype, &cluster);
        int groups = n->op == TERN_OP_CONV ? (int)n->a.group : 1;
        if (groups != 1) continue; /* grouped convs keep the plain quantizer */
        int kh = n->op == TERN_OP_CONV ? (int)n->a.kernel[0] : xt->h, kw = n->op == TERN_OP_CONV ? (int)n->a.kernel[1] : xt->w;
        int khw = kh * kw, cing = xt->c, K = cing * khw, cout = yt->c;
        int N = wtype == TERN_WTYPE_INT8 || cluster <= 0 || cluster > cing ? cing : cluster;
        int ncl = wtype == TERN_WTYPE_INT8 ? 1 : (cing + N - 1) / N;
        int qmax = wtype == TERN_WTYPE_TERNARY ? 1 : wtype == TERN_WTYPE_INT4 ? 7 : 127;
        float *w = NULL, *bias = NULL, *wq = NULL, *X = NULL, *Y = NULL;
        double *H = NULL, *tv = NULL, *r = NULL, *M = NULL, *rg = NULL;
        opt_stats S = {0};
        tern_fp32_ctx *xf = NULL, *xq = NULL;
        opt_layer *ol = &q->wl[l->widx];
        if ((st = weights_of(q, l, &w, &bias))) goto next;
        if (l->in[0] == 0) fold_input(o, w, bias, cout, 1, cing, khw);
        ol->codes = tern_malloc((size_t)cout * K);
        ol->scales = tern_malloc(sizeof(float) * (size_t)cout * ncl);
        ol->bias = tern_malloc(sizeof(float) * (size_t)cout);
        wq = tern_malloc(sizeof(float) * (size_t)cout * K);
        if (!ol->codes || !ol->scales || !ol->bias || !wq) { st = TERN_STATUS_NOMEM; goto next; }
        if ((st = tern_wquant_tensor(w, cout, cing, khw, (enum tern_wtype)wtype, N, o->trule, n->name, ol->codes, ol->scales))) goto next;
        memcpy(ol->bias, bias, sizeof(float) * (size_t)cout);
        /* statistics: FP32 target y (graph cut after this node) and simulated input x (cut before) */
        int ni = (int)(n - g->nodes);
        tern_graph gf = *g, gq = gs;
        gf.nnodes = ni + 1;
        gf.output = n->out[0];
        gq.nnodes = ni;
        gq.output = n->in[0];
        xf = tern_fp32_ctx_new(&gf);
        xq = tern_fp32_ctx_new(&gq);
        int oh = yt->h, ow = yt->w, npos = oh * ow;
        int64_t total = (int64_t)nimg * npos;
        int stride = (int)((total + OPT_MAX_ROWS - 1) / OPT_MAX_ROWS);
        if (stride < 1) stride = 1;
        int maxrows = B * ((npos + stride - 1) / stride + 1);
        S.K = K;
        S.cout = cout;
        S.sx = tern_calloc((size_t)K, sizeof(double));
        S.sy = tern_calloc((size_t)cout, sizeof(double));
        S.syy = tern_calloc((size_t)cout, sizeof(double));
        S.gxx = tern_calloc((size_t)K * K, sizeof(double));
        S.gxy = tern_calloc((size_t)K * cout, sizeof(double));
        X = tern_malloc(sizeof(float) * (size_t)maxrows * K);
        Y = tern_malloc(sizeof(float) * (size_t)maxrows * cout);
        if (!xf || !xq || !S.sx || !S.sy || !S.syy || !S.gxx || !S.gxy || !X || !Y) { st = TERN_STATUS_NOMEM; goto next; }
        int sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0;
        if (n->op == TERN_OP_CONV) {
            sh = (int)n->a.strides[0]; sw = (int)n->a.strides[1];
            dh = (int)n->a.dilations[0]; dw = (int)n->a.dilations[1];
            pt = (int)n->a.pads[0]; pl = (int)n->a.pads[1];
        }
        for (int s0 = 0; s0 < nimg && !st; s0 += B) {
            int b = nimg - s0 < B ? nimg - s0 : B;
            for (int i = 0; i < b; i++) {
                int v = s0 + i, flip = o->opt_flip ? v & 1 : 0, img = (int)((int64_t)(o->opt_flip ? v >> 1 : v) * ncalib / nsrc);
                int W = t0->w;
                for (int c = 0; c < t0->c; c++)
                    for (size_t p = 0; p < plane; p++) {
                        size_t sp = flip ? p - p % W + (W - 1 - p % W) : p;
                        in[(size_t)i * per + c * plane + p] = ((float)calib[(size_t)img * per + c * plane + sp] / 255.0f - o->mean[c % 3]) / o->std[c % 3];
                    }
            }
            const float *yf, *xs;
            int64_t yd[TERN_MAX_DIMS], xd[TERN_MAX_DIMS];
            int ynd, xnd;
            if ((st = tern_fp32_run(xf, in, b, &yf, yd, &ynd))) break;
            if ((st = tern_fp32_run(xq, in, b, &xs, xd, &xnd))) break;
            int ih = xt->h, iw = xt->w, rows = 0;
            for (int i = 0; i < b; i++) {
                const float *xi = xs + (size_t)i * cing * ih * iw, *yi = yf + (size_t)i * cout * npos;
                for (int p = (s0 + i) % stride; p < npos; p += stride) {
                    float *xr = X + (size_t)rows * K, *yr = Y + (size_t)rows * cout;
                    if (n->op == TERN_OP_CONV) {
                        int oy = p / ow, ox = p % ow;
                        for (int ci = 0; ci < cing; ci++)
                            for (int ky = 0; ky < kh; ky++)
                                for (int kx = 0; kx < kw; kx++) {
                                    int iy = oy * sh - pt + ky * dh, ix = ox * sw - pl + kx * dw;
                                    float v = iy >= 0 && iy < ih && ix >= 0 && ix < iw ? xi[((size_t)ci * ih + iy) * iw + ix] : 0.0f;
                                    if (l->in[0] == 0) v = 255.0f * (v * o->std[ci % 3] + o->mean[ci % 3]);
                                    xr[(ci * kh + ky) * kw + kx] = v;
                                }
                    } else
                        memcpy(xr, xi, sizeof(float) * (size_t)K);
                    for (int oc = 0; oc < cout; oc++) yr[oc] = yi[(size_t)oc * npos + p];
                    rows++;
                }
            }
            stats_add(&S, X, Y, rows);
        }
        if (st) goto next;
        /* H (symmetric, full), damped */
        H = tern_malloc(sizeof(double) * (size_t)K * K);
        tv = tern_malloc(sizeof(double) * (size_t)K);
        r = tern_malloc(sizeof(double) * (size_t)K);
        M = tern_malloc(sizeof(double) * (size_t)ncl * ncl);
        rg = tern_malloc(sizeof(double) * (size_t)ncl);
        if (!H || !tv || !r || !M || !rg) { st = TERN_STATUS_NOMEM; goto next; }
        double inv = 1.0 / (double)S.n, dsum = 0;
        for (int i = 0; i < K; i++)
            for (int j = i; j < K; j++) {
                double v = S.gxx[(size_t)i * K + j] * inv;
                if (o->bias_corr) v -= S.sx[i] * inv * S.sx[j] * inv;
                H[(size_t)i * K + j] = H[(size_t)j * K + i] = v;
            }
        for (int i = 0; i < K; i++) dsum += H[(size_t)i * K + i];
        for (int i = 0; i < K; i++) H[(size_t)i * K + i] += o->opt_damp * dsum / K;
        double e_fp = 0, e_plain = 0, e_opt = 0, vy = 0;
        if (o->verbose)
            for (int oc = 0; oc < cout; oc++) {
                float *v = wq + (size_t)oc * K;
                for (int k = 0; k < K; k++) v[k] = ol->scales[(size_t)oc * ncl + (wtype == TERN_WTYPE_INT8 ? 0 : (k / khw) / N)] * ol->codes[(size_t)oc * K + k];
                e_plain += row_err(&S, oc, v, &vy);
                e_fp += row_err(&S, oc, w + (size_t)oc * K, &vy);
            }
        for (int oc = 0; oc < cout; oc++) {
            double my = S.sy[oc] * inv;
            for (int k = 0; k < K; k++) {
                double e = S.gxy[(size_t)k * cout + oc] * inv, mx = S.sx[k] * inv;
                tv[k] = o->bias_corr ? e - mx * my : e - mx * bias[oc];
            }
            int8_t *c = ol->codes + (size_t)oc * K;
            float *a = ol->scales + (size_t)oc * ncl;
            if (o->opt_scales || o->opt_round)
                opt_row(H, tv, K, khw, N, ncl, qmax, wtype == TERN_WTYPE_TERNARY, o->opt_scales, o->opt_round, c, a, r, M, rg);
            if (o->bias_corr) {
                double d = 0;
                for (int k = 0; k < K; k++) d += (double)a[wtype == TERN_WTYPE_INT8 ? 0 : (k / khw) / N] * c[k] * S.sx[k] * inv;
                ol->bias[oc] = (float)(my - d);
            }
        }
        for (int oc = 0; oc < cout; oc++)
            for (int k = 0; k < K; k++)
                wq[(size_t)oc * K + k] = ol->scales[(size_t)oc * ncl + (wtype == TERN_WTYPE_INT8 ? 0 : (k / khw) / N)] * ol->codes[(size_t)oc * K + k];
        if (o->verbose) {
            double v_all = 0;
            for (int oc = 0; oc < cout; oc++) {
                e_opt += row_err(&S, oc, wq + (size_t)oc * K, &vy);
                v_all += vy;
            }
            /* output SQNR on the optimisation images, best bias: FP32 weights (the input's error
             * alone), plain quantizer, after the options */
            fprintf(stderr, "optimize: layer %d %s (%s:%d) K %d, %lld rows, SQNR dB: fp-w %.1f plain %.1f opt %.1f, %.1f s\n", l->widx, n->name,
                    wtype == TERN_WTYPE_TERNARY ? "t" : wtype == TERN_WTYPE_INT4 ? "4" : "8", N, K, (long long)S.n,
                    10 * log10(v_all / e_fp), 10 * log10(v_all / e_plain), 10 * log10(v_all / e_opt), tern_now() - t_start);
        }
        st = sim_store(q, &gs, l, wq, ol->bias, cout, K, khw, &owned_n, &owned, &nowned);
    next:
        if (st && ol->codes) { free(ol->codes); ol->codes = NULL; }
        tern_fp32_ctx_free(xf);
        tern_fp32_ctx_free(xq);
        free(w); free(bias); free(wq); free(X); free(Y);
        free(H); free(tv); free(r); free(M); free(rg);
        free(S.sx); free(S.sy); free(S.syy); free(S.gxx); free(S.gxy);
    }
    for (int i = 0; !st && o->export_to && i < nowned; i++) {
        tern_value *v = &o->export_to->values[owned_n[i]];
        size_t nb = sizeof(float) * (size_t)tern_value_numel(&g->values[owned_n[i]]);
        if (o->export_to->nvalues != g->nvalues || !v->data || tern_value_numel(v) != tern_value_numel(&g->values[owned_n[i]]))
            st = tern_errorf(TERN_STATUS_INVALID_ARG, "quantize: the export graph does not match '%s'", g->path);
        else memcpy(v->data, owned[i], nb);
    }
out:
    for (int i = 0; i < nowned; i++) free(owned[i]);
    free(owned);
    free(owned_n);
    free(gs.values);
    free(in);
    return st;
}

static enum tern_status build_conv(qctx *q, const low_layer *l, int nweight, tern_qlayer *L, tern_qmodel *m) {
    const tern_node *n = l->node;
    const tern_qopts *o = q->o;
    const qt_info *xt = &q->qt[l->in[0]], *yt = &q->qt[l->out];
    tern_qconv *c = &L->conv;
    c->cin = xt->c;
    c->cout = yt->c;
    c->groups = 1;
    c->kh = c->kw = c->sh = c->sw = c->dh = c->dw = 1;
    if (n->op == TERN_OP_CONV) {
        c->groups = (int)n->a.group;
        c->kh = (int)n->a.kernel[0];
        c->kw = (int)n->a.kernel[1];
        c->sh = (int)n->a.strides[0];
        c->sw = (int)n->a.strides[1];
        c->dh = (int)n->a.dilations[0];
        c->dw = (int)n->a.dilations[1];
        c->pad_t = (int)n->a.pads[0];
        c->pad_l = (int)n->a.pads[1];
        c->pad_b = (int)n->a.pads[2];
        c->pad_r = (int)n->a.pads[3];
    } else { /* fully connected over the whole c x h x w input */
        c->kh = xt->h;
        c->kw = xt->w;
    }
    int cing = c->cin / c->groups, khw = c->kh * c->kw, K = cing * khw, cout = c->cout;
    int wtype, cluster;
    layer_policy(q, l, nweight, &wtype, &cluster);
    int N = wtype == TERN_WTYPE_INT8 || cluster <= 0 || cluster > cing ? cing : cluster;
    c->wtype = wtype;
    c->cluster = N;
    int ncl = wtype == TERN_WTYPE_INT8 ? 1 : (cing + N - 1) / N;
    float *w = NULL, *bias = NULL, *scales = NULL, *wq = NULL;
    int8_t *codes = NULL;
    int16_t *cs = NULL;
    int32_t *B = NULL, *mpos = NULL, *mneg = NULL;
    int8_t *shift = NULL;
    uint8_t *padv = NULL;
    enum tern_status st = weights_of(q, l, &w, &bias);
    if (st) goto done;
    int fi = m->tensors[l->in[0]].exp; /* resolved exponents live in m (shared ones included) */
    if (l->in[0] == 0) { /* fold (p/255 - mean)/std into the first layer; pad with the mean pixel */
        padv = tern_malloc((size_t)c->cin);
        if (!padv) { st = TERN_STATUS_NOMEM; goto done; }
        for (int ci = 0; ci < c->cin; ci++) {
            double pv = nearbyint(255.0 * o->mean[ci % 3]);
            padv[ci] = (uint8_t)(pv < 0 ? 0 : pv > 255 ? 255 : pv);
        }
        fold_input(o, w, bias, cout, c->groups, cing, khw);
    }
    codes = tern_malloc((size_t)cout * K);
    scales = tern_malloc(sizeof(float) * (size_t)cout * ncl);
    wq = tern_malloc(sizeof(float) * (size_t)cout * K);
    cs = tern_malloc(sizeof(int16_t) * (size_t)cout * ncl);
    B = tern_malloc(sizeof(int32_t) * (size_t)cout);
    mpos = tern_malloc(sizeof(int32_t) * (size_t)cout);
    mneg = tern_malloc(sizeof(int32_t) * (size_t)cout);
    shift = tern_malloc((size_t)cout);
    if (!codes || !scales || !wq || !cs || !B || !mpos || !mneg || !shift) { st = TERN_STATUS_NOMEM; goto done; }
    const opt_layer *ol = q->wl && l->widx >= 0 && q->wl[l->widx].codes ? &q->wl[l->widx] : NULL;
    if (ol) { /* optimize() already chose codes, scales and bias for this layer */
        memcpy(codes, ol->codes, (size_t)cout * K);
        memcpy(scales, ol->scales, sizeof(float) * (size_t)cout * ncl);
        memcpy(bias, ol->bias, sizeof(float) * (size_t)cout);
    } else {
        st = tern_wquant_tensor(w, cout, cing, khw, (enum tern_wtype)wtype, N, o->trule, n->name, codes, scales);
        if (st) goto done;
    }
    int64_t zeros = 0;
    for (int oc = 0; oc < cout; oc++)
        for (int k = 0; k < K; k++) {
            int g = wtype == TERN_WTYPE_INT8 ? 0 : (k / khw) / N;
            wq[(size_t)oc * K + k] = scales[(size_t)oc * ncl + g] * codes[(size_t)oc * K + k];
            zeros += codes[(size_t)oc * K + k] == 0;
        }
    L->sqnr_db = (float)tern_sqnr_db(w, wq, (size_t)cout * K);
    L->zero_frac = (float)((double)zeros / ((double)cout * K));
    int fo = yt->wide ? m->tensors[l->out].exp + 16 : m->tensors[l->out].exp; /* wide logits: as fine as requantisation allows */
    double xmax = xt->is_signed ? 128.0 : 255.0;
    const tern_node *act = l->act;
    double alpha = act && act->op == TERN_OP_LEAKYRELU ? act->a.alpha : 1.0;
    for (;;) { /* a wide output takes the finest exponent every channel can be requantised to */
        int ok = 1;
        for (int oc = 0; oc < cout && ok; oc++) {
            const float *s = scales + (size_t)oc * ncl;
            double smax = 0, load = 0;
            for (int g = 0; g < ncl; g++) smax = s[g] > smax ? s[g] : smax;
            for (int g = 0; g < ncl; g++) {
                int nz = 0, k0 = g * N * khw, k1 = (g + 1) * N * khw < K ? (g + 1) * N * khw : K;
                if (wtype == TERN_WTYPE_INT8) { k0 = 0; k1 = K; }
                for (int k = k0; k < k1; k++) nz += abs(codes[(size_t)oc * K + k]);
                load += smax > 0 ? nz * s[g] / smax : 0;
            }
            double cmax;
            if (wtype == TERN_WTYPE_INT8) cmax = 1;
            else {
                cmax = load > 0 ? floor(536870912.0 / (xmax * load)) : 32767;
                cmax = cmax > 32767 ? 32767 : cmax < 1 ? 1 : cmax;
            }
            double S = smax > 0 ? smax / cmax : 1.0 / 1024;
            double r = S * ldexp(1.0, fo - fi);
            for (int g = 0; g < ncl; g++) {
                double v = smax > 0 ? nearbyint(s[g] / S) : 0;
                cs[(size_t)oc * ncl + g] = (int16_t)(v > 32767 ? 32767 : v);
            }
            double bb = nearbyint(bias[oc] * ldexp(1.0, fi) / S);
            B[oc] = (int32_t)(bb > 536870912.0 ? 536870912.0 : bb < -536870912.0 ? -536870912.0 : bb);
            if (!to_mult(r, &mpos[oc], &shift[oc])) ok = 0;
            else mneg[oc] = act && act->op == TERN_OP_RELU ? 0 : act && act->op == TERN_OP_CLIP ? mpos[oc] : (int32_t)nearbyint(alpha * mpos[oc]);
        }
        if (ok) break;
        /* the output cannot be finer than the accumulator allows: take the finest that fits */
        if (--fo < -64) {
            st = tern_errorf(TERN_STATUS_NUMERIC, "layer '%s': no output exponent fits the weight scales", n->name);
            goto done;
        }
    }
    m->tensors[l->out].exp = fo;
    if (yt->wide) { c->qmin = INT32_MIN; c->qmax = INT32_MAX; c->out_wide = 1; }
    else if (!yt->is_signed) { c->qmin = 0; c->qmax = 255; }
    else { c->qmin = -128; c->qmax = 127; }
    if (act && act->op == TERN_OP_CLIP && !yt->wide) {
        double lo = nearbyint(act->a.clip_min * ldexp(1.0, fo)), hi = nearbyint(act->a.clip_max * ldexp(1.0, fo));
        if (lo > c->qmin) c->qmin = (int)lo;
        if (hi < c->qmax) c->qmax = (int)hi;
        if (c->qmin > c->qmax) c->qmin = c->qmax;
    }
    c->in_signed = xt->is_signed;
    c->w = codes;
    c->cscale = cs;
    c->bias = B;
    c->mpos = mpos;
    c->mneg = mneg;
    c->shift = shift;
    c->pad_value = padv;
    codes = NULL, cs = NULL, B = mpos = mneg = NULL, shift = NULL, padv = NULL;
    L->macs = (int64_t)cout * yt->h * yt->w * K;
done:
    free(w);
    free(bias);
    free(scales);
    free(wq);
    free(codes);
    free(cs);
    free(B);
    free(mpos);
    free(mneg);
    free(shift);
    free(padv);
    return st;
}

/* Multipliers for windows of 1..n taps (global pools: only n, stored at index 1). */
static enum tern_status pool_mults(tern_qlayer *L, int n, int global, int fi, int fo) {
    L->nmult = global ? 2 : n + 1;
    L->mult = tern_calloc((size_t)L->nmult, sizeof(int32_t));
    L->mshift = tern_calloc((size_t)L->nmult, 1);
    if (!L->mult || !L->mshift) return TERN_STATUS_NOMEM;
    for (int k = global ? n : 1; k <= n; k++)
        if (!to_mult(ldexp(1.0, fo - fi) / k, &L->mult[global ? 1 : k], &L->mshift[global ? 1 : k]))
            return tern_errorf(TERN_STATUS_NUMERIC, "layer '%s': pooling output exponent too fine", L->name);
    return TERN_STATUS_OK;
}

static int add_layer(tern_qmodel *m, int op, const char *name) {
    tern_qlayer *L = &m->layers[m->nlayers];
    memset(L, 0, sizeof *L);
    L->op = op;
    snprintf(L->name, sizeof L->name, "%s", name);
    return m->nlayers++;
}

static int add_tensor(tern_qmodel *m, const tern_qtensor *t) {
    m->tensors[m->ntensors] = *t;
    return m->ntensors++;
}

static enum tern_status build(qctx *q, tern_qmodel *m) {
    const tern_graph *g = q->g;
    int nweight = 0;
    for (int i = 0; i < q->nll; i++) nweight += q->ll[i].widx >= 0;
    int ncat = 0;
    for (int i = 0; i < q->nll; i++) ncat += q->ll[i].op == TERN_QOP_CONCAT ? q->ll[i].nin : 0;
    m->tensors = tern_calloc((size_t)(q->nqt + ncat), sizeof *m->tensors);
    m->layers = tern_calloc((size_t)(q->nll + ncat), sizeof *m->layers);
    if (!m->tensors || !m->layers) return TERN_STATUS_NOMEM;
    for (int t = 0; t < q->nqt; t++) {
        qt_info *qt = &q->qt[t];
        m->tensors[t] = (tern_qtensor){qt->c, qt->h, qt->w, qt->is_signed, t == 0 ? 0 : qt->exp, qt->wide};
    }
    m->ntensors = q->nqt;
    m->output = q->vmap[g->output];
    m->nclasses = m->tensors[m->output].c * m->tensors[m->output].h * m->tensors[m->output].w;
    for (int i = 0; i < q->nll; i++) {
        const low_layer *l = &q->ll[i];
        const tern_node *n = l->node;
        if (q->qt[l->out].same_as >= 0) m->tensors[l->out].exp = m->tensors[q->qt[l->out].same_as].exp;
        const tern_qtensor *tx = &m->tensors[l->in[0]], *ty = &m->tensors[l->out];
        int fi = tx->exp, fo = ty->exp;
        if (l->op == TERN_QOP_AVGPOOL || l->op == TERN_QOP_GLOBALAVGPOOL) {
            /* a mean has no more resolution than sum/n: cap the exponent so the factor is < 1 */
            int n1 = l->op == TERN_QOP_GLOBALAVGPOOL ? tx->h * tx->w : 1, lg = 0;
            while ((1 << lg) < n1) lg++;
            if (ty->wide) fo = fi + lg - 1;
            else if (fo > fi + lg - 1) fo = fi + lg - 1;
            m->tensors[l->out].exp = fo;
        }
        int li = add_layer(m, l->op, n->name);
        tern_qlayer *L = &m->layers[li];
        L->nin = l->nin;
        memcpy(L->in, l->in, sizeof L->in);
        L->out = l->out;
        L->qmin = ty->wide ? INT32_MIN : ty->is_signed ? -128 : 0;
        L->qmax = ty->wide ? INT32_MAX : ty->is_signed ? 127 : 255;
        enum tern_status st = TERN_STATUS_OK;
        switch (l->op) {
        case TERN_QOP_CONV:
            st = build_conv(q, l, nweight, L, m);
            break;
        case TERN_QOP_ADD: {
            int fb = m->tensors[l->in[1]].exp, F = fi > fb ? fi : fb;
            if (fo > F) F = fo;
            L->la = F - fi;
            L->lb = F - fb;
            L->rs = F - fo;
            if (L->la > 24 || L->lb > 24 || L->rs > 40) st = tern_errorf(TERN_STATUS_NUMERIC, "layer '%s': exponents too far apart", n->name);
            break;
        }
        case TERN_QOP_REQUANT:
            L->la = fo > fi ? fo - fi : 0;
            L->rs = fi > fo ? fi - fo : 0;
            if (l->act && l->act->op == TERN_OP_CLIP) {
                double lo = nearbyint(l->act->a.clip_min * ldexp(1.0, fo)), hi = nearbyint(l->act->a.clip_max * ldexp(1.0, fo));
                if (lo > L->qmin) L->qmin = (int)lo;
                if (hi < L->qmax) L->qmax = (int)hi;
            }
            break;
        case TERN_QOP_MAXPOOL: case TERN_QOP_AVGPOOL:
            L->kh = (int)n->a.kernel[0];
            L->kw = (int)n->a.kernel[1];
            L->sh = (int)n->a.strides[0];
            L->sw = (int)n->a.strides[1];
            L->pad_t = (int)n->a.pads[0];
            L->pad_l = (int)n->a.pads[1];
            L->pad_b = (int)n->a.pads[2];
            L->pad_r = (int)n->a.pads[3];
            if (l->op == TERN_QOP_AVGPOOL) st = pool_mults(L, L->kh * L->kw, 0, fi, fo);
            break;
        case TERN_QOP_GLOBALAVGPOOL:
            st = pool_mults(L, tx->h * tx->w, 1, fi, fo);
            break;
        case TERN_QOP_PAD: {
            const int64_t *p = n->a.pad_list; /* [n c h w] begins then ends */
            L->pad_c0 = (int)p[1]; L->pad_h0 = (int)p[2]; L->pad_w0 = (int)p[3];
            L->pad_c1 = (int)p[5]; L->pad_h1 = (int)p[6]; L->pad_w1 = (int)p[7];
            break;
        }
        case TERN_QOP_SLICE:
            L->start_c = (int)n->a.rs_start[1]; L->step_c = (int)n->a.rs_step[1];
            L->start_h = (int)n->a.rs_start[2]; L->step_h = (int)n->a.rs_step[2];
            L->start_w = (int)n->a.rs_start[3]; L->step_w = (int)n->a.rs_step[3];
            break;
        case TERN_QOP_CONCAT:
            for (int k = 0; k < l->nin; k++) {
                const tern_qtensor *tk = &m->tensors[l->in[k]];
                if (tk->exp == fo && tk->is_signed == ty->is_signed) continue;
                /* align this input first: a requant layer placed before the concat */
                tern_qtensor nt = *tk;
                nt.exp = fo;
                nt.is_signed = ty->is_signed;
                int t = add_tensor(m, &nt);
                tern_qlayer saved = *L;
                L->op = TERN_QOP_REQUANT;
                snprintf(L->name, sizeof L->name, "%.50s.align%d", n->name, k);
                L->nin = 1;
                L->in[0] = saved.in[k];
                L->out = t;
                L->la = fo > tk->exp ? fo - tk->exp : 0;
                L->rs = tk->exp > fo ? tk->exp - fo : 0;
                li = add_layer(m, TERN_QOP_CONCAT, n->name);
                L = &m->layers[li];
                *L = saved;
                L->in[k] = t;
            }
            break;
        }
        if (st) return st;
    }
    return TERN_STATUS_OK;
}

enum tern_status tern_quantize(const tern_graph *g, const tern_qopts *o, const uint8_t *calib, int ncalib, tern_qmodel **out) {
    *out = NULL;
    qctx q = {.g = g, .o = o};
    q.vmap = tern_malloc(sizeof(int) * (size_t)g->nvalues);
    q.val2qt = tern_malloc(sizeof(int) * (size_t)g->nvalues);
    q.fused = tern_calloc((size_t)g->nnodes + 1, 1);
    q.ll = tern_calloc((size_t)g->nnodes + 1, sizeof *q.ll);
    tern_qmodel *m = tern_calloc(1, sizeof *m);
    enum tern_status st = TERN_STATUS_NOMEM;
    if (!q.vmap || !q.val2qt || !q.fused || !q.ll || !m) goto done;
    for (int v = 0; v < g->nvalues; v++) q.vmap[v] = -1;
    if ((st = lower(&q))) goto done;
    if ((st = calibrate(&q, calib, ncalib))) goto done;
    if ((o->bias_corr || o->opt_scales || o->opt_round) && (st = optimize(&q, calib, ncalib))) goto done;
    if ((st = build(&q, m))) goto done;
    const tern_qtensor *t0 = &m->tensors[0];
    m->in_c = t0->c;
    m->in_h = t0->h;
    m->in_w = t0->w;
    m->bgr = o->bgr;
    m->resize_short = o->resize_short;
    m->crop = o->crop;
    memcpy(m->mean, o->mean, sizeof m->mean);
    memcpy(m->std, o->std, sizeof m->std);
    const char *base = strrchr(g->path, '/');
    snprintf(m->source, sizeof m->source, "%s", base ? base + 1 : g->path);
    st = tern_qmodel_validate(m, "quantized model");
done:
    free(q.vmap);
    free(q.val2qt);
    free(q.fused);
    free(q.qt);
    if (q.wl) {
        for (int i = 0; i < q.nll; i++)
            if (q.ll[i].widx >= 0) { free(q.wl[q.ll[i].widx].codes); free(q.wl[q.ll[i].widx].scales); free(q.wl[q.ll[i].widx].bias); }
        free(q.wl);
    }
    free(q.ll);
    if (st) tern_qmodel_free(m);
    else *out = m;
    return st;
}
