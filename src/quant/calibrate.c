/* Calibration: run the FP32 graph on the calibration images and choose each tensor's exponent
 * (max-abs, or the minimum squared error among the max-abs exponent and finer ones). */
#include "quant/internal.h"
#include "graph/fp32.h"
#include <math.h>

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

enum tern_status tern_q_calibrate(qctx *q, const uint8_t *calib, int ncalib) {
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

