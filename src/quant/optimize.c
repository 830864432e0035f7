/* Post-training optimisation of the weights.
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

#include "quant/internal.h"
#include "graph/fp32.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

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

enum tern_status tern_q_optimize(qctx *q, const uint8_t *calib, int ncalib) {
    const tern_graph *g = q->g;
    const tern_qopts *o = q->o;
    int nweight = q->nweight;
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
        tern_wpolicy pol = tern_q_layer_policy(q, l);
        int groups = n->op == TERN_OP_CONV ? (int)n->a.group : 1;
        if (groups != 1) continue; /* grouped convs keep the plain quantizer */
        int kh = n->op == TERN_OP_CONV ? (int)n->a.kernel[0] : xt->h, kw = n->op == TERN_OP_CONV ? (int)n->a.kernel[1] : xt->w;
        int khw = kh * kw, cing = xt->c, K = cing * khw, cout = yt->c;
        int wtype = pol.wtype, N = pol.N, ncl = pol.ncl, qmax = pol.qmax;
        float *w = NULL, *bias = NULL, *wq = NULL, *X = NULL, *Y = NULL;
        double *H = NULL, *tv = NULL, *r = NULL, *M = NULL, *rg = NULL;
        opt_stats S = {0};
        tern_fp32_ctx *xf = NULL, *xq = NULL;
        opt_layer *ol = &q->wl[l->widx];
        if ((st = tern_q_weights_of(q, l, &w, &bias))) goto next;
        if (l->in[0] == 0) tern_q_fold_input(o, w, bias, cout, 1, cing, khw);
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

