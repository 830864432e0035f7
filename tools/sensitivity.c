/* tern quantize --sensitivity: each weight layer the policy makes low precision, alone (every
 * other weight layer 8-bit, the same post-training options), on a held-out split of the
 * calibration data: top-1 drop and mean KL(FP32 || quantized) against the FP32 model, and the
 * SQNR of the logits. Nothing is written; the table (or JSON) goes to stdout. */
#include "layer_policy.h"
#include "api/api.h"
#include "engine/qexec.h"
#include <math.h>
#include <string.h>

typedef struct {
    const tern_graph *g;
    const uint8_t *calib, *px;
    int ncalib, n, nclasses, threads;
    size_t per;
    const int *labels;
    const double *fp;           /* FP32 logits [n][nclasses] */
} split;

static enum tern_status eval_one(const split *s, const tern_qopts *q, double *top1, double *kl, double *sqnr) {
    tern_qmodel *m = NULL;
    tern_qexec *e = NULL;
    enum tern_status st = tern_quantize(s->g, q, s->calib, s->ncalib, &m);
    if (!st) st = tern_qexec_new(m, 50, s->threads, tern_active_isa(), &e);
    double sc = m ? ldexp(1.0, -m->tensors[m->output].exp) : 1, skl = 0, sig = 0, noise = 0;
    int c1 = 0;
    for (int b0 = 0; b0 < s->n && !st; b0 += 50) {
        int nb = s->n - b0 < 50 ? s->n - b0 : 50;
        const int32_t *y;
        if ((st = tern_qexec_run(e, s->px + s->per * (size_t)b0, nb, &y))) break;
        for (int i = 0; i < nb; i++) {
            const int32_t *yi = y + (size_t)i * s->nclasses;
            const double *fi = s->fp + (size_t)(b0 + i) * s->nclasses;
            int best = 0;
            double mq = -1e300, mf = -1e300, zq = 0, zf = 0, d = 0;
            for (int k = 0; k < s->nclasses; k++) {
                if (yi[k] > yi[best]) best = k;
                mq = fmax(mq, yi[k] * sc);
                mf = fmax(mf, fi[k]);
            }
            for (int k = 0; k < s->nclasses; k++) {
                zq += exp(yi[k] * sc - mq);
                zf += exp(fi[k] - mf);
                sig += fi[k] * fi[k];
                noise += (fi[k] - yi[k] * sc) * (fi[k] - yi[k] * sc);
            }
            for (int k = 0; k < s->nclasses; k++)
                d += exp(fi[k] - mf) / zf * ((fi[k] - mf - log(zf)) - (yi[k] * sc - mq - log(zq)));
            skl += d;
            c1 += best == s->labels[b0 + i];
        }
    }
    tern_qexec_free(e);
    tern_qmodel_free(m);
    *top1 = 100.0 * c1 / s->n;
    *kl = skl / s->n;
    *sqnr = noise > 0 ? 10 * log10(sig / noise) : INFINITY;
    return st;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int cli_sensitivity(const tern_graph *g, const tern_qopts *q, tern_dataset *ds, const int *calib_idx, const uint8_t *calib_px,
                    int ncalib, int drop_count, int json) {
    const tern_value *in = &g->values[g->input];
    split s = {.g = g, .calib = calib_px, .ncalib = ncalib, .nclasses = (int)tern_value_numel_per_image(&g->values[g->output]),
               .threads = q->threads, .per = (size_t)(in->dims[1] * in->dims[2] * in->dims[3])};
    /* the split: drop_count items spread over the images of ds that are not calibration images */
    int nds = tern_dataset_count(ds), nfree = 0;
    char *used = tern_calloc((size_t)nds + 1, 1);
    int *freei = tern_malloc(sizeof(int) * ((size_t)nds + 1)), *didx = NULL;
    if (used && freei) {
        for (int i = 0; i < ncalib; i++) used[calib_idx[i]] = 1;
        for (int i = 0; i < nds; i++)
            if (!used[i]) freei[nfree++] = i;
        if (drop_count > nfree) drop_count = nfree;
        didx = nfree ? tern_spread(nfree, &drop_count, 0) : NULL;
        for (int i = 0; didx && i < drop_count; i++) didx[i] = freei[didx[i]];
    }
    free(used);
    free(freei);
    uint8_t *px = didx ? tern_malloc(s.per * (size_t)drop_count) : NULL;
    int *lab = tern_malloc(sizeof(int) * (size_t)(drop_count > 0 ? drop_count : 1));
    double *fp = tern_malloc(sizeof(double) * (size_t)(drop_count > 0 ? drop_count : 1) * (size_t)s.nclasses);
    tern_qplan *p = NULL;
    enum tern_status st = didx && px && lab && fp ? TERN_STATUS_OK : TERN_STATUS_NOMEM;
    if (!nfree) st = tern_errorf(TERN_STATUS_INVALID_ARG, "--sensitivity: every image of the calibration data is a calibration image: no split left");
    for (int i = 0; i < drop_count && !st; i++) {
        st = tern_dataset_read(ds, didx[i], px + s.per * (size_t)i, &lab[i]);
        if (!st && lab[i] < 0) st = tern_errorf(TERN_STATUS_INVALID_ARG, "--sensitivity needs a labelled calibration set (--labels for an image folder)");
    }
    if (!st) st = tern_fp32_logits(g, q->mean, q->std, px, drop_count, q->threads, fp);
    if (!st) st = tern_quant_plan(g, q, &p);
    double fp_top1 = 0;
    for (int i = 0; !st && i < drop_count; i++) {
        const double *f = fp + (size_t)i * s.nclasses;
        int top = 0;
        for (int k = 1; k < s.nclasses; k++)
            if (f[k] > f[top]) top = k;
        fp_top1 += top == lab[i] ? 100.0 / drop_count : 0;
    }
    s.px = px;
    s.labels = lab;
    s.fp = fp;
    s.n = drop_count;
    if (!st) {
        if (json) printf("{\"fp32_top1\": %.4f, \"images\": %d, \"layers\": [", fp_top1, drop_count);
        else printf("sensitivity on %d held-out calibration images (FP32 top-1 %.2f %%), one layer low precision at a time:\n"
                    "%5s  %-40s %-6s %8s %7s %8s %9s\n", drop_count, fp_top1, "layer", "name", "spec", "top-1 %", "drop", "KL", "SQNR dB");
    }
    /* one calibration for all the rows, and the pass re-run only from the row's layer on */
    tern_qcache *cache = st ? NULL : tern_qcache_new();
    for (int i = 0, first = 1; !st && i < p->nlayers; i++) {
        const tern_qplan_layer *L = &p->layers[i];
        if (L->widx < 0 || L->pol.wtype == TERN_WTYPE_INT8) continue;
        tern_qopts t = *q;
        t.cache = cache;
        char key[16];
        t.wtype = TERN_WTYPE_INT8;
        t.nrules = 1;
        snprintf(key, sizeof key, "%d", L->widx);
        memset(&t.rules[0], 0, sizeof t.rules[0]);
        snprintf(t.rules[0].key, sizeof t.rules[0].key, "%s", key);
        t.rules[0].wtype = L->pol.wtype;
        t.rules[0].cluster = L->pol.ncl == 1 ? 0 : L->pol.N;
        double top1, kl, sq;
        if ((st = eval_one(&s, &t, &top1, &kl, &sq))) break;
        char spec[32];
        cli_wspec_str(L->pol.wtype, L->pol.ncl == 1 ? 0 : L->pol.N, spec, sizeof spec);
        const char *nm = g->nodes[L->node].name ? g->nodes[L->node].name : "";
        if (json) {
            printf("%s{\"index\": %d, \"name\": ", first ? "" : ", ", L->widx);
            json_string(nm);
            printf(", \"weights\": \"%s\", \"top1\": %.4f, \"drop\": %.4f, \"kl\": %.6f, \"sqnr_db\": ", spec, top1, fp_top1 - top1, kl);
            if (isfinite(sq)) printf("%.3f}", sq);
            else printf("null}"); /* exact logits */
        } else printf("%5d  %-40.40s %-6s %8.2f %7.2f %8.4f %9.2f\n", L->widx, nm, spec, top1, fp_top1 - top1, kl, sq);
        fflush(stdout);
        first = 0;
    }
    if (!st && json) printf("]}\n");
    tern_qcache_free(cache);
    tern_qplan_free(p);
    free(didx);
    free(px);
    free(lab);
    free(fp);
    if (st) fprintf(stderr, "tern quantize: --sensitivity: %s\n", tern_last_error());
    return !st;
}
