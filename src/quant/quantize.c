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
    if ((st = tern_q_lower(&q))) goto done;
    if ((st = tern_q_calibrate(&q, calib, ncalib))) goto done;
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
