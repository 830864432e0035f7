/* Calibration: run the FP32 graph on the calibration images and choose each tensor's exponent
 * (max-abs, or the minimum squared error among the max-abs exponent and finer ones). */
#include "quant/internal.h"
#include "graph/fp32.h"
#include <math.h>
#include <stdint.h>

static int exp_maxabs(double maxabs, int is_signed) {
    int bits = is_signed ? 7 : 8;
    if (!(maxabs > 0)) return bits; /* all zero: any exponent; keep a neutral one */
    if (!(maxabs < INFINITY)) return bits; /* Inf/NaN: tern_q_calibrate fails on it */
    int il = (int)ceil(log2(maxabs));
    return bits - il;
}

/* Squared errors of y[n] coded at the nc exponents f0 .. f0 + nc - 1 (8-bit, signed or not),
 * added to sum[0..nc-1]. Clamping before rounding gives the same code (the bounds are integers);
 * the clamped value is small, so adding and subtracting 1.5 * 2^52 rounds it to nearest-even
 * exactly as nearbyint() does in the default rounding mode. Per exponent, eight running sums
 * (lane i % 8), added in a fixed tree at the end: an order fixed by the data alone, which
 * vectorises; contraction to FMA is off, so every clone (picked by the loader for the CPU) gives
 * the same bits. The data is walked once, in blocks that stay in L1 while every exponent's sums
 * take them (each exponent's sums see the elements in the same order as a pass of their own). */
#define WLO 3                   /* exponents summed below the provisional max-abs one (see calib_pass) */
#define NWIN (NCAND + WLO)
#define SSE_BLOCK 2048
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3", "fp-contract=off")))
static void sse_add(const float *restrict y, int64_t n, int f0, int nc, int is_signed, double *restrict sum) {
    const double lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255, magic = 6755399441055744.0;
    double acc[NWIN][8] = {{0}};
    for (int64_t b = 0; b < n; b += SSE_BLOCK) {
        int64_t e_end = n - b < SSE_BLOCK ? n : b + SSE_BLOCK;
        for (int c = 0; c < nc; c++) {
            double sc = ldexp(1.0, f0 + c), inv = 1.0 / sc, *a = acc[c];
            int64_t i = b;
            for (; i + 8 <= e_end; i += 8)
                for (int j = 0; j < 8; j++) {
                    double t = (double)y[i + j] * sc;
                    t = t < lo ? lo : t > hi ? hi : t;
                    double e = (double)y[i + j] - ((t + magic) - magic) * inv;
                    a[j] += e * e;
                }
            for (int j = 0; i < e_end; i++, j++) { /* only in the last block: lanes from 0 as i % 8 */
                double t = (double)y[i] * sc;
                t = t < lo ? lo : t > hi ? hi : t;
                double e = (double)y[i] - ((t + magic) - magic) * inv;
                a[j] += e * e;
            }
        }
    }
    for (int c = 0; c < nc; c++) {
        const double *a = acc[c];
        sum[c] += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    }
}

/* One pass does both rules' work when it can: the max-abs exponent f0 only falls as images come
 * in, so from the first batch on each tensor also sums the squared error of the WLO exponents
 * below its provisional f0 (from the maximum so far) and the NCAND from it up. If the final f0 is
 * still inside that window, those sums are exactly what a second pass would compute (same
 * batches, same order); only tensors whose maximum grew more than 2^WLO-fold need the second pass. */
typedef struct {
    qctx *q;
    int *fp;                    /* [nqt] provisional f0 (INT32_MIN: not yet seen) */
    double *win;                /* [nqt][NWIN] sums for exponents fp - WLO .. fp + NCAND - 1 */
} calib_pass;

static void observe(void *arg, const tern_node *n, const float *y, const int64_t *dims, int ndim) {
    calib_pass *cp = arg;
    qctx *q = cp->q;
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
            if (!(a < INFINITY)) { m = INFINITY; break; } /* Inf or NaN: reported after the pass */
        }
        qt->maxabs = m;
        if (!cp->win || qt->wide) return;
        if (cp->fp[t] == INT32_MIN) cp->fp[t] = exp_maxabs(m, qt->is_signed);
        sse_add(y, cnt, cp->fp[t] - WLO, NWIN, qt->is_signed, cp->win + (size_t)t * NWIN);
        return;
    }
    sse_add(y, cnt, qt->f0, NCAND, qt->is_signed, qt->sse);
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
    int B = 32, mse = o->calib_rule == TERN_CALIB_MSE;
    size_t per = (size_t)t0->c * t0->h * t0->w, plane = (size_t)t0->h * t0->w;
    float *in = tern_malloc(sizeof(float) * per * (size_t)B);
    calib_pass cp = {.q = q};
    if (mse) {
        cp.fp = tern_malloc(sizeof(int) * (size_t)q->nqt);
        cp.win = tern_calloc((size_t)q->nqt * NWIN, sizeof(double));
    }
    if (!x || !in || (mse && (!cp.fp || !cp.win))) {
        tern_fp32_ctx_free(x);
        free(in);
        free(cp.fp);
        free(cp.win);
        return TERN_STATUS_NOMEM;
    }
    for (int t = 0; mse && t < q->nqt; t++) cp.fp[t] = INT32_MIN;
    x->observe = observe;
    x->observe_arg = &cp;
    tern_fp32_set_threads(o->threads);
    enum tern_status st = TERN_STATUS_OK;
    int passes = mse ? 2 : 1;
    for (q->pass = 1; q->pass <= passes && !st; q->pass++) {
        if (q->pass == 2) {
            int need = 0;
            for (int t = 1; t < q->nqt; t++) {
                qt_info *qt = &q->qt[t];
                qt->f0 = exp_maxabs(qt->maxabs, qt->is_signed);
                if (q->val2qt[qt->value] != t || qt->wide) { if (qt->wide) q->val2qt[qt->value] = -1; continue; }
                int off = qt->f0 - (cp.fp[t] - WLO);
                if (cp.fp[t] != INT32_MIN && off >= 0 && off + NCAND <= NWIN) {
                    for (int c = 0; c < NCAND; c++) qt->sse[c] = cp.win[(size_t)t * NWIN + off + c];
                    q->val2qt[qt->value] = -1; /* done */
                } else need = 1;
            }
            if (!need) break;
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
    free(cp.fp);
    free(cp.win);
    if (st) return st;
    for (int t = 1; t < q->nqt; t++) /* before exp_maxabs: ceil(log2(Inf)) as an int is undefined */
        if (!(q->qt[t].maxabs < INFINITY))
            return tern_errorf(TERN_STATUS_NUMERIC, "%s: activation '%s' reaches Inf or NaN on the calibration images (weights too large?); cannot choose its scale",
                               g->path, g->values[q->qt[t].value].name);
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
