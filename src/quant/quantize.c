/* Model quantizer: FP32 graph + calibration images -> integer model (qmodel.h).
 *
 * 1. lower: map graph nodes to integer layers (conv/gemm with their activation fused, add with
 *    its ReLU fused, pools, pad/slice/concat; reshapes become aliases), one tensor per output;
 * 2. calibrate: run the FP32 graph on the calibration images and choose each tensor's exponent
 *    (max-abs, or the minimum squared error among the max-abs exponent and finer ones);
 * 3. build: quantize weights per policy and derive every integer parameter.
 */
#include "quant/internal.h"
#include <string.h>

static enum tern_status ctx_init(qctx *q, const tern_graph *g, const tern_qopts *o) {
    memset(q, 0, sizeof *q);
    q->g = g;
    q->o = o;
    q->vmap = tern_malloc(sizeof(int) * (size_t)g->nvalues);
    q->val2qt = tern_malloc(sizeof(int) * (size_t)g->nvalues);
    q->fused = tern_calloc((size_t)g->nnodes + 1, 1);
    size_t nll = 1;   /* layers per node: at most 2 (PAD + pool), a long Concat one per input */
    for (int i = 0; i < g->nnodes; i++) nll += (size_t)TERN_MAX(2, g->nodes[i].nin);
    q->ll = tern_calloc(nll, sizeof *q->ll);
    if (!q->vmap || !q->val2qt || !q->fused || !q->ll) return TERN_STATUS_NOMEM;
    for (int v = 0; v < g->nvalues; v++) q->vmap[v] = -1;
    return TERN_STATUS_OK;
}

static void ctx_free(qctx *q) {
    free(q->vmap);
    free(q->val2qt);
    free(q->fused);
    free(q->qt);
    if (q->wl) {
        for (int i = 0; i < q->nll; i++)
            if (q->ll[i].widx >= 0) { free(q->wl[q->ll[i].widx].codes); free(q->wl[q->ll[i].widx].scales); free(q->wl[q->ll[i].widx].bias); }
        free(q->wl);
    }
    free(q->ll);
}

enum tern_status tern_quantize(const tern_graph *g, const tern_qopts *o, const uint8_t *calib, int ncalib, tern_qmodel **out) {
    *out = NULL;
    qctx q;
    tern_qmodel *m = tern_calloc(1, sizeof *m);
    enum tern_status st = ctx_init(&q, g, o);
    if (!st && !m) st = TERN_STATUS_NOMEM;
    if (st) goto done;
    if ((st = tern_q_lower(&q))) goto done;
    if (!tern_qcache_get_calib(o->cache, &q, calib, ncalib)) {
        if ((st = tern_q_calibrate(&q, calib, ncalib))) goto done;
        tern_qcache_put_calib(o->cache, &q, calib, ncalib);
    }
    if ((o->bias_corr || o->opt_scales || o->opt_round) && (st = tern_q_optimize(&q, calib, ncalib))) goto done;
    if ((st = tern_q_build(&q, m))) goto done;
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
    ctx_free(&q);
    if (st) tern_qmodel_free(m);
    else *out = m;
    return st;
}

enum tern_status tern_quant_plan(const tern_graph *g, const tern_qopts *o, tern_qplan **out) {
    *out = NULL;
    qctx q;
    tern_qplan *p = tern_calloc(1, sizeof *p);
    enum tern_status st = ctx_init(&q, g, o);
    if (!st && !p) st = TERN_STATUS_NOMEM;
    if (st || (st = tern_q_lower(&q))) goto done;
    p->nlayers = q.nll;
    p->nweight = q.nweight;
    p->ntensors = q.nqt;
    p->trule = o->trule;
    p->layers = tern_calloc((size_t)q.nll + 1, sizeof *p->layers);
    p->tensor_value = tern_malloc(sizeof(int) * (size_t)q.nqt);
    if (!p->layers || !p->tensor_value) { st = TERN_STATUS_NOMEM; goto done; }
    for (int t = 0; t < q.nqt; t++) p->tensor_value[t] = q.qt[t].value;
    for (int i = 0; i < q.nll; i++) {
        const low_layer *l = &q.ll[i];
        tern_qplan_layer *L = &p->layers[i];
        L->op = l->op;
        L->node = (int)(l->node - g->nodes);
        L->act = l->act ? (int)(l->act - g->nodes) : -1;
        L->widx = l->widx;
        if (l->widx >= 0) L->pol = tern_q_layer_policy(&q, l);
        L->nin = l->nin;
        memcpy(L->in, l->in, sizeof L->in);
        L->out = l->out;
    }
done:
    ctx_free(&q);
    if (st) tern_qplan_free(p);
    else *out = p;
    return st;
}

void tern_qplan_free(tern_qplan *p) {
    if (!p) return;
    free(p->layers);
    free(p->tensor_value);
    free(p);
}
