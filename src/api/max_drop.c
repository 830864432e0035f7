/* tern quantize --max-drop: the accuracy budget (moved here from tools/cmd_quantize.c so that
 * tern_quantize_file has it too). */
#include "api/api.h"
#include "engine/qexec.h"
#include <math.h>
#include <string.h>

typedef tern_budget budget;
static _Thread_local enum tern_status budget_st; /* why budget_eval failed */

static double mult_replaced(const tern_qmodel *m) {
    double tot = 0, rep = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const tern_qlayer *L = &m->layers[i];
        if (L->op != TERN_QOP_CONV) continue;
        const tern_qconv *c = &L->conv;
        tot += (double)L->macs;
        if (c->wtype == TERN_WTYPE_TERNARY)
            rep += (double)L->macs * (1.0 - (double)tern_qconv_nclusters(c) / ((double)(c->cin / c->groups) * c->kh * c->kw));
    }
    return tot > 0 ? rep / tot : 0;
}

/* Quantize with q, run the integer engine on the split: top-1 %, and mean KL(FP32 || quantized). */
static int budget_eval(const budget *b, const tern_qopts *q, tern_qmodel **keep, double *top1, double *kl) {
    tern_qmodel *m = NULL;
    tern_qexec *e = NULL;
    if ((budget_st = tern_quantize(b->g, q, b->calib, b->ncalib, &m))) return 0;
    if ((budget_st = tern_qexec_new(m, b->batch, b->threads, tern_active_isa(), &e))) { tern_qmodel_free(m); return 0; }
    double sc = ldexp(1.0, -m->tensors[m->output].exp), skl = 0;
    int c1 = 0, ok = 1;
    size_t per = (size_t)b->c * b->h * b->w;
    for (int s = 0; s < b->n && ok; s += b->batch) {
        int nb = b->n - s < b->batch ? b->n - s : b->batch;
        const int32_t *y;
        if ((budget_st = tern_qexec_run(e, b->px + per * (size_t)s, nb, &y))) { ok = 0; break; }
        for (int i = 0; i < nb; i++) {
            const int32_t *yi = y + (size_t)i * b->nclasses;
            const double *fi = b->fp + (size_t)(s + i) * b->nclasses;
            int best = 0;
            double mq = -1e300, mf = -1e300, zq = 0, zf = 0, d = 0;
            for (int k = 0; k < b->nclasses; k++) {
                if (yi[k] > yi[best]) best = k;
                mq = yi[k] * sc > mq ? yi[k] * sc : mq;
                mf = fi[k] > mf ? fi[k] : mf;
            }
            for (int k = 0; k < b->nclasses; k++) { zq += exp(yi[k] * sc - mq); zf += exp(fi[k] - mf); }
            for (int k = 0; k < b->nclasses; k++) {
                double pf = exp(fi[k] - mf) / zf;
                d += pf * ((fi[k] - mf - log(zf)) - (yi[k] * sc - mq - log(zq)));
            }
            skl += d;
            c1 += best == b->labels[s + i];
        }
    }
    tern_qexec_free(e);
    if (!ok) { tern_qmodel_free(m); return 0; }
    *top1 = 100.0 * c1 / b->n;
    *kl = skl / b->n;
    if (keep) *keep = m;
    else tern_qmodel_free(m);
    return 1;
}

/* 0 if the rule table (tern_qopts.rules, 64 entries) is full: said, never silently dropped */
static int set_rule(tern_qopts *q, int layer, int wtype, int cluster) {
    char key[16];
    snprintf(key, sizeof key, "%d", layer);
    for (int r = 0; r < q->nrules; r++)
        if (!strcmp(q->rules[r].key, key)) { q->rules[r].wtype = wtype; q->rules[r].cluster = cluster; return 1; }
    if (q->nrules >= (int)(sizeof q->rules / sizeof q->rules[0])) {
        tern_errorf(TERN_STATUS_UNSUPPORTED, "max-drop: more than %d per-layer rules (the limit of tern_qopts.rules)", (int)(sizeof q->rules / sizeof q->rules[0]));
        fprintf(stderr, "%s\n", tern_last_error());
        return 0;
    }
    tern_layer_rule *r = &q->rules[q->nrules++];
    snprintf(r->key, sizeof r->key, "%s", key);
    r->wtype = wtype;
    r->cluster = cluster;
    return 1;
}

/* Replaced fraction of one conv layer's multiplications at weight type wt / cluster N (method.md). */
static double repl_frac(const tern_qconv *c, int wt, int N) {
    if (wt != TERN_WTYPE_TERNARY) return 0;
    int cing = c->cin / c->groups, khw = c->kh * c->kw;
    if (N <= 0 || N > cing) N = cing;
    int ncl = (cing + N - 1) / N;
    return 1.0 - (double)ncl / ((double)cing * khw);
}

/* Greedy: sensitivity of each ternary layer = KL when only it is quantized (the others 8-bit,
 * plain quantizer). Each layer then climbs a ladder t:N -> t:1 -> 4:N (t:N -> 4:N directly
 * allowed); a step's price is the multiplications it stops replacing, its worth the share of the
 * layer's sensitivity it removes (t:1 keeps ~40 %, 4-bit ~5 %). Best worth per price first,
 * never below min_replaced of the network's multiplications replaced, re-measuring the split
 * after each step, until its drop is within max_drop - margin. The split is every calibration-file
 * image that is not a calibration image (5000 of them by default: on 1000 the top-1 noise is as
 * large as a step's effect). */
static tern_qmodel *search(const budget *b, tern_qopts *q, double max_drop, double margin, double min_repl, int quiet) {
    tern_qmodel *base = NULL;
    double top1, kl, goal = max_drop - margin;
    /* every quantization below shares the calibration, and each step re-runs the post-training
     * pass only from the layer it changed on (the same bytes, in a fraction of the time) */
    tern_qcache *cache = q->cache ? NULL : tern_qcache_new();
    if (cache) q->cache = cache;
    if (!budget_eval(b, q, &base, &top1, &kl)) { if (cache) { q->cache = NULL; tern_qcache_free(cache); } return NULL; }
    /* per conv layer, as many as the model has (no fixed cap) */
    size_t nl = base->nlayers > 0 ? (size_t)base->nlayers : 1;
    int *idx = calloc(nl, sizeof *idx), *step = calloc(nl, sizeof *step);
    double *macs = calloc(nl, sizeof *macs), *sens = calloc(nl, sizeof *sens), (*rf)[3] = calloc(nl, sizeof *rf), tot = 0;
    const tern_qconv **cv = calloc(nl, sizeof *cv);
    if (!idx || !step || !macs || !sens || !rf || !cv) { tern_errorf(TERN_STATUS_NOMEM, "max-drop: out of memory"); tern_qmodel_free(base); base = NULL; goto out; }
    int nw = 0;
    for (int i = 0; i < base->nlayers; i++)
        if (base->layers[i].op == TERN_QOP_CONV) {
            macs[nw] = (double)base->layers[i].macs;
            cv[nw] = &base->layers[i].conv;
            tot += macs[nw];
            idx[nw] = base->layers[i].conv.wtype == TERN_WTYPE_TERNARY ? nw : -1;
            nw++;
        }
    /* current replaced multiplications (absolute) */
    double rep = 0;
    for (int i = 0; i < nw; i++) rep += macs[i] * repl_frac(cv[i], cv[i]->wtype, cv[i]->cluster);
    fprintf(stderr, "max-drop: FP32 %.2f %% on the %d-image split; start: top-1 %.2f %% (drop %.2f, goal %.2f), KL %.4f, %.2f %% replaced\n",
            b->fp_top1, b->n, top1, b->fp_top1 - top1, goal, kl, 100 * rep / tot);
    if (b->fp_top1 - top1 <= goal) goto out;
    /* sensitivities, plain quantizer: body 8-bit except layer i */
    tern_qopts s = *q;
    s.bias_corr = s.opt_scales = s.opt_round = 0;
    for (int i = 0; i < nw; i++) {
        sens[i] = 0;
        step[i] = 0;
        if (idx[i] < 0) continue;
        tern_qopts t = s;
        t.wtype = TERN_WTYPE_INT8;
        if (!set_rule(&t, i, q->wtype, q->cluster)) { tern_qmodel_free(base); base = NULL; goto out; }
        double a, k;
        if (!budget_eval(b, &t, NULL, &a, &k)) { tern_qmodel_free(base); base = NULL; goto out; }
        sens[i] = k;
        if (!quiet) fprintf(stderr, "  sensitivity layer %2d: KL %.4f, top-1 %.2f %%\n", i, k, a);
    }
    /* per-layer replaced fractions at each rung: 0 = t:N (as quantized), 1 = t:1, 2 = 4:N */
    for (int i = 0; i < nw; i++) {
        rf[i][0] = repl_frac(cv[i], cv[i]->wtype, cv[i]->cluster);
        rf[i][1] = repl_frac(cv[i], TERN_WTYPE_TERNARY, 1);
        rf[i][2] = 0;
    }
    static const double left[3] = {1.0, 0.4, 0.05};
    for (int it = 0; it < 2 * nw; it++) {
        int best = -1, bstep = 0;
        double bs = 0;
        for (int i = 0; i < nw; i++) {
            if (idx[i] < 0) continue;
            for (int to = step[i] + 1; to <= 2; to++) {
                if (to == 1 && rf[i][1] >= rf[i][0]) continue; /* already N=1 */
                double price = macs[i] * (rf[i][step[i]] - rf[i][to]);
                if ((rep - price) / tot < min_repl) continue;
                double sc = sens[i] * (left[step[i]] - left[to]) / (price > 0 ? price : 1e-9 * macs[i]);
                if (best < 0 || sc > bs) { best = i; bstep = to; bs = sc; }
            }
        }
        if (best < 0) { fprintf(stderr, "max-drop: no step left within --min-replaced %.2f\n", min_repl); break; }
        rep -= macs[best] * (rf[best][step[best]] - rf[best][bstep]);
        step[best] = bstep;
        if (!(bstep == 1 ? set_rule(q, best, TERN_WTYPE_TERNARY, 1) : set_rule(q, best, TERN_WTYPE_INT4, q->cluster))) {
            fprintf(stderr, "max-drop: stopping here, with the policy so far\n");
            break;
        }
        tern_qmodel_free(base);
        base = NULL;
        if (!budget_eval(b, q, &base, &top1, &kl)) { base = NULL; goto out; }
        fprintf(stderr, "max-drop: layer %d -> %s: top-1 %.2f %% (drop %.2f), KL %.4f, %.2f %% multiplications replaced\n", best,
                bstep == 1 ? "t:1" : "4-bit", top1, b->fp_top1 - top1, kl, 100 * mult_replaced(base));
        if (b->fp_top1 - top1 <= goal) break;
    }
    fprintf(stderr, "max-drop: policy:");
    for (int r = 0; r < q->nrules; r++) {
        const tern_layer_rule *ru = &q->rules[r];
        fprintf(stderr, " --layer %s=%s", ru->key, ru->wtype == TERN_WTYPE_INT8 ? "8" : ru->wtype == TERN_WTYPE_INT4 ? "4" : "t");
        if (ru->wtype != TERN_WTYPE_INT8) { if (ru->cluster) fprintf(stderr, ":%d", ru->cluster); else fprintf(stderr, ":all"); }
    }
    fprintf(stderr, "\n");
out:
    free(idx); free(step); free(macs); free(sens); free(rf); free(cv);
    if (cache) { q->cache = NULL; tern_qcache_free(cache); }
    return base;
}


enum tern_status tern_max_drop_search(const tern_budget *b, tern_qopts *q, double max_drop, double margin, double min_repl,
                                      int quiet, tern_qmodel **out) {
    budget_st = TERN_STATUS_INTERNAL;
    *out = search(b, q, max_drop, margin, min_repl, quiet);
    return *out ? TERN_STATUS_OK : tern_error_prefix(budget_st, "max-drop");
}
