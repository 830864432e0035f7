/* What one tern_quantize call hands to the next (tern_qcache, quantize.h): the --max-drop search
 * quantizes the same graph on the same calibration images many times, changing only per-layer
 * precision. Two things carry over unchanged:
 *  - the calibration exponents: the FP32 runs behind them depend on the images, the input
 *    normalisation and the calibration rule, not on any weight's precision;
 *  - the post-training pass's result for each weight layer, while every weight layer up to it
 *    has the precision it had: the pass runs in graph order, and a layer's statistics come from
 *    the network whose earlier layers are already quantized, so its result depends on those
 *    layers, its own precision and the pass's options only.
 * Reusing them gives the same bytes as quantizing afresh (tests/t_quantize.sh checks it). */
#include "quant/internal.h"
#include <string.h>

typedef struct {
    int valid, wtype, N, ncl, cout, K, dead;
    int8_t *codes;
    float *scales, *bias;
} cached_layer;

struct tern_qcache {
    /* calibration: its key, and the tensors' statistics and exponents */
    const tern_graph *g;
    const uint8_t *calib;
    int ncalib, calib_rule, nqt;
    float mean[3], std[3];
    qt_info *qt;
    /* the pass: its options, and per weight layer the precision it ran with and its result */
    tern_qopts pass;
    int nweight;
    cached_layer *wl;
};

tern_qcache *tern_qcache_new(void) { return tern_calloc(1, sizeof(tern_qcache)); }

static void drop_layers(tern_qcache *c) {
    for (int i = 0; c->wl && i < c->nweight; i++) { free(c->wl[i].codes); free(c->wl[i].scales); free(c->wl[i].bias); }
    free(c->wl);
    c->wl = NULL;
    c->nweight = 0;
}

void tern_qcache_free(tern_qcache *c) {
    if (!c) return;
    free(c->qt);
    drop_layers(c);
    free(c);
}

static int same_calib(const tern_qcache *c, const qctx *q, const uint8_t *calib, int ncalib) {
    const tern_qopts *o = q->o;
    return c->qt && c->g == q->g && c->calib == calib && c->ncalib == ncalib && c->calib_rule == (int)o->calib_rule &&
           c->nqt == q->nqt && !memcmp(c->mean, o->mean, sizeof c->mean) && !memcmp(c->std, o->std, sizeof c->std);
}

int tern_qcache_get_calib(tern_qcache *c, qctx *q, const uint8_t *calib, int ncalib) {
    if (!c || !same_calib(c, q, calib, ncalib)) return 0;
    memcpy(q->qt, c->qt, sizeof(qt_info) * (size_t)q->nqt);
    return 1;
}

void tern_qcache_put_calib(tern_qcache *c, const qctx *q, const uint8_t *calib, int ncalib) {
    if (!c) return;
    qt_info *t = tern_malloc(sizeof(qt_info) * (size_t)(q->nqt ? q->nqt : 1));
    if (!t) return; /* a cache that cannot grow only costs time */
    memcpy(t, q->qt, sizeof(qt_info) * (size_t)q->nqt);
    free(c->qt);
    c->qt = t;
    c->g = q->g;
    c->calib = calib;
    c->ncalib = ncalib;
    c->calib_rule = (int)q->o->calib_rule;
    c->nqt = q->nqt;
    memcpy(c->mean, q->o->mean, sizeof c->mean);
    memcpy(c->std, q->o->std, sizeof c->std);
    drop_layers(c); /* the pass's results rest on these exponents and images */
}

/* The options the pass's result depends on, besides each layer's precision. */
static int same_pass(const tern_qopts *a, const tern_qopts *b) {
    return a->trule == b->trule && a->bias_corr == b->bias_corr && a->opt_scales == b->opt_scales && a->opt_round == b->opt_round &&
           a->opt_images == b->opt_images && a->opt_flip == b->opt_flip && a->opt_damp == b->opt_damp &&
           a->opt_method == b->opt_method && a->opt_rows == b->opt_rows && a->opt_mix == b->opt_mix &&
           a->opt_actq == b->opt_actq;
}

int tern_qcache_pass_begin(tern_qcache *c, const qctx *q, const uint8_t *calib, int ncalib) {
    if (!c || q->o->export_to || !same_calib(c, q, calib, ncalib)) return 0;
    if (c->wl && (c->nweight != q->nweight || !same_pass(&c->pass, q->o))) drop_layers(c);
    if (!c->wl) {
        c->wl = tern_calloc((size_t)q->nweight + 1, sizeof *c->wl);
        if (!c->wl) return 0;
        c->nweight = q->nweight;
        c->pass = *q->o;
    }
    return 1;
}

int tern_qcache_layer_get(tern_qcache *c, int widx, const tern_wpolicy *pol, opt_layer *ol, int *ndead, int *dead_first) {
    cached_layer *e = &c->wl[widx];
    if (!e->valid || e->wtype != pol->wtype || e->N != pol->N || e->ncl != pol->ncl) return 0;
    if (!ol) return 1;          /* a layer the pass leaves to the build (grouped conv): same precision */
    if (!e->codes) return 0;
    ol->codes = tern_malloc((size_t)e->cout * e->K);
    ol->scales = tern_malloc(sizeof(float) * (size_t)e->cout * e->ncl);
    ol->bias = tern_malloc(sizeof(float) * (size_t)e->cout);
    if (!ol->codes || !ol->scales || !ol->bias) {
        free(ol->codes); free(ol->scales); free(ol->bias);
        ol->codes = NULL; ol->scales = ol->bias = NULL;
        return 0;
    }
    memcpy(ol->codes, e->codes, (size_t)e->cout * e->K);
    memcpy(ol->scales, e->scales, sizeof(float) * (size_t)e->cout * e->ncl);
    memcpy(ol->bias, e->bias, sizeof(float) * (size_t)e->cout);
    *ndead += e->dead;
    if (e->dead && *dead_first < 0) *dead_first = widx;
    return 1;
}

void tern_qcache_layer_put(tern_qcache *c, int widx, const tern_wpolicy *pol, const opt_layer *ol, int cout, int K, int dead) {
    cached_layer *e = &c->wl[widx];
    free(e->codes); free(e->scales); free(e->bias);
    memset(e, 0, sizeof *e);
    e->wtype = pol->wtype;
    e->N = pol->N;
    e->ncl = pol->ncl;
    if (ol && ol->codes) {
        e->codes = tern_malloc((size_t)cout * K);
        e->scales = tern_malloc(sizeof(float) * (size_t)cout * pol->ncl);
        e->bias = tern_malloc(sizeof(float) * (size_t)cout);
        if (!e->codes || !e->scales || !e->bias) {
            free(e->codes); free(e->scales); free(e->bias);
            memset(e, 0, sizeof *e);
            return;
        }
        memcpy(e->codes, ol->codes, (size_t)cout * K);
        memcpy(e->scales, ol->scales, sizeof(float) * (size_t)cout * pol->ncl);
        memcpy(e->bias, ol->bias, sizeof(float) * (size_t)cout);
        e->cout = cout;
        e->K = K;
        e->dead = dead;
    }
    e->valid = 1;
}

void tern_qcache_layer_drop(tern_qcache *c, int widx) {
    cached_layer *e = &c->wl[widx];
    free(e->codes); free(e->scales); free(e->bias);
    memset(e, 0, sizeof *e);
}
