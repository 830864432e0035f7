/* tern quantize MODEL.onnx -o OUT.tern --calib DATA: ternary/4-bit/8-bit weights per policy,
 * 8-bit dynamic fixed point activations calibrated on DATA, and a per-layer report. */
#include "cli.h"
#include "exec/qexec.h"
#include "format/qmodel.h"
#include "quant/quantize.h"
#include "layer_policy.h"
#include <math.h>
#include <string.h>

static const char *help =
    "usage: tern quantize MODEL.onnx -o OUT.tern --calib DATA [options]\n"
    "  -o FILE               output .tern file\n"
    "  --calib DATA          calibration images (CIFAR .bin or image folder); never the test set. Repeat it for\n"
    "                        several sources (up to 8): --calib-count is shared equally among them\n"
    "  --calib-count K       calibration images, spread over DATA (default 500)\n"
    "  --calib-offset K      start the spread at item K (to keep calibration and evaluation disjoint)\n"
    "  --weights t|4|8       weight type of the body layers (default t: ternary)\n"
    "  --cluster N|all       input channels per scale cluster (default 4)\n"
    "  --ternary-rule R      exact (default: least squares optimum) or twn\n"
    "  --calib-rule R        mse (default) or maxabs\n"
    "  --layer KEY=SPEC      per-layer override; KEY = name or weight-layer index, SPEC = t[:N], 4[:N], 8\n"
    "  --all-layers          quantize the first and last layers by --weights too (default: keep them 8-bit)\n"
    "  --plain               the plain quantizer only (no post-training optimisation; the default is --ptq)\n"
    "  --bias-corr           bias correction: per output channel, remove the mean output shift of quantization\n"
    "  --opt-scales          refit cluster scales by least squares on calibration activations\n"
    "  --opt-round           choose ternary/n-bit codes to minimise the layer output error (--opt-method)\n"
    "  --ptq                 all three (--bias-corr --opt-scales --opt-round): the default; naming only some of\n"
    "                        them runs only those\n"
    "  --opt-flip            the three above also use each of their images mirrored left-right\n"
    "  --opt-damp R          ridge term of the three above, relative to the mean input power (default 0.001)\n"
    "  --opt-images K        calibration images used by the three above (default 64)\n"
    "  --opt-method M        how --opt-round chooses codes: cd (coordinate descent), gptq (error feedback), gptq+cd\n"
    "  --verbose             per-layer progress of the above\n"
    "  --max-drop D          accuracy budget: raise precision (t:1 or 4-bit) on the most sensitive layers, priced by the\n"
    "                        multiplications they stop replacing, until top-1 on a held-out split of the calibration\n"
    "                        data is within D - margin points of FP32\n"
    "  --drop-margin M       safety margin of --max-drop on its split (default 0)\n"
    "  --min-replaced F      --max-drop keeps at least this fraction of multiplications replaced (default 0.8)\n"
    "  --drop-count K        images of that split (default 5000; spread over the calibration data's images that are not\n"
    "                        calibration images)\n"
    "  --layers FILE         per-layer policy file: KEY=SPEC lines (KEY = name or index), '#' comments\n"
    "  --write-layers FILE   write every weight layer's precision as used (after --max-drop: its result) to FILE\n"
    "  --sensitivity         no model: per layer, top-1 drop, KL to FP32 and logit SQNR on the --drop-count held-out\n"
    "                        calibration images when only that layer is low precision (the others 8-bit)\n"
    "  --json                report as JSON\n";

/* ---- --max-drop: the accuracy budget ---- */
typedef struct {
    const tern_graph *g;
    const uint8_t *calib;
    int ncalib;
    const uint8_t *px;          /* the drop split: [n][c][h][w] */
    const int *labels;
    int n, c, h, w, nclasses, batch, threads;
    const double *fp;           /* FP32 logits on the split [n][nclasses] */
    double fp_top1;
} budget;

/* Quantize with q, run the integer engine on the split: top-1 %, and mean KL(FP32 || quantized). */
static int budget_eval(const budget *b, const tern_qopts *q, tern_qmodel **keep, double *top1, double *kl, double *sqnr) {
    tern_qmodel *m = NULL;
    tern_qexec *e = NULL;
    if (tern_quantize(b->g, q, b->calib, b->ncalib, &m)) return 0;
    if (tern_qexec_new(m, b->batch, b->threads, tern_active_isa(), &e)) { tern_qmodel_free(m); return 0; }
    double sc = ldexp(1.0, -m->tensors[m->output].exp), skl = 0, sig = 0, noise = 0;
    int c1 = 0, ok = 1;
    size_t per = (size_t)b->c * b->h * b->w;
    for (int s = 0; s < b->n && ok; s += b->batch) {
        int nb = b->n - s < b->batch ? b->n - s : b->batch;
        const int32_t *y;
        if (tern_qexec_run(e, b->px + per * (size_t)s, nb, &y)) { ok = 0; break; }
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
            for (int k = 0; k < b->nclasses; k++) {
                zq += exp(yi[k] * sc - mq);
                zf += exp(fi[k] - mf);
                sig += fi[k] * fi[k];
                noise += (fi[k] - yi[k] * sc) * (fi[k] - yi[k] * sc);
            }
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
    if (sqnr) *sqnr = noise > 0 ? 10 * log10(sig / noise) : INFINITY;
    if (keep) *keep = m;
    else tern_qmodel_free(m);
    return 1;
}

static void set_rule(tern_qopts *q, int layer, int wtype, int cluster) {
    char key[16];
    snprintf(key, sizeof key, "%d", layer);
    for (int r = 0; r < q->nrules; r++)
        if (!strcmp(q->rules[r].key, key)) { q->rules[r].wtype = wtype; q->rules[r].cluster = cluster; return; }
    if (q->nrules >= 64) return;
    tern_layer_rule *r = &q->rules[q->nrules++];
    snprintf(r->key, sizeof r->key, "%s", key);
    r->wtype = wtype;
    r->cluster = cluster;
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
static tern_qmodel *max_drop_search(const budget *b, tern_qopts *q, double max_drop, double margin, double min_repl, int quiet) {
    tern_qmodel *base = NULL;
    double top1, kl, goal = max_drop - margin;
    if (!budget_eval(b, q, &base, &top1, &kl, NULL)) return NULL;
    int nw = 0, idx[256], step[256];
    double macs[256], sens[256], tot = 0;
    const tern_qconv *cv[256];
    for (int i = 0; i < base->nlayers && nw < 256; i++)
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
    if (b->fp_top1 - top1 <= goal) return base;
    /* sensitivities, plain quantizer: body 8-bit except layer i */
    tern_qopts s = *q;
    s.bias_corr = s.opt_scales = s.opt_round = 0;
    for (int i = 0; i < nw; i++) {
        sens[i] = 0;
        step[i] = 0;
        if (idx[i] < 0) continue;
        tern_qopts t = s;
        t.wtype = TERN_WTYPE_INT8;
        set_rule(&t, i, q->wtype, q->cluster);
        double a, k;
        if (!budget_eval(b, &t, NULL, &a, &k, NULL)) { tern_qmodel_free(base); return NULL; }
        sens[i] = k;
        if (!quiet) fprintf(stderr, "  sensitivity layer %2d: KL %.4f, top-1 %.2f %%\n", i, k, a);
    }
    /* per-layer replaced fractions at each rung: 0 = t:N (as quantized), 1 = t:1, 2 = 4:N */
    double rf[256][3];
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
        if (bstep == 1) set_rule(q, best, TERN_WTYPE_TERNARY, 1);
        else set_rule(q, best, TERN_WTYPE_INT4, q->cluster);
        tern_qmodel_free(base);
        base = NULL;
        if (!budget_eval(b, q, &base, &top1, &kl, NULL)) return NULL;
        fprintf(stderr, "max-drop: layer %d -> %s: top-1 %.2f %% (drop %.2f), KL %.4f, %.2f %% multiplications replaced\n", best,
                bstep == 1 ? "t:1" : "4-bit", top1, b->fp_top1 - top1, kl, 100 * cli_qmodel_mult_replaced(base));
        if (b->fp_top1 - top1 <= goal) break;
    }
    fprintf(stderr, "max-drop: policy:");
    for (int r = 0; r < q->nrules; r++) {
        const tern_layer_rule *ru = &q->rules[r];
        fprintf(stderr, " --layer %s=%s", ru->key, ru->wtype == TERN_WTYPE_INT8 ? "8" : ru->wtype == TERN_WTYPE_INT4 ? "4" : "t");
        if (ru->wtype != TERN_WTYPE_INT8) { if (ru->cluster) fprintf(stderr, ":%d", ru->cluster); else fprintf(stderr, ":all"); }
    }
    fprintf(stderr, "\n");
    return base;
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

/* --sensitivity: each weight layer the policy makes low precision, alone (all others 8-bit, the
 * same post-training options), on the held-out split: top-1 drop and KL to FP32, logit SQNR. */
static int sensitivity_report(const budget *b, const tern_qopts *q, int json) {
    tern_qplan *p = NULL;
    if (tern_quant_plan(b->g, q, &p)) { fprintf(stderr, "tern quantize: %s\n", tern_last_error()); return 0; }
    if (json) printf("{\"fp32_top1\": %.4f, \"images\": %d, \"layers\": [", b->fp_top1, b->n);
    else printf("sensitivity on %d held-out calibration images (FP32 top-1 %.2f %%), one layer low precision at a time:\n"
                "%5s  %-40s %-6s %8s %7s %8s %9s\n", b->n, b->fp_top1, "layer", "name", "spec", "top-1 %", "drop", "KL", "SQNR dB");
    int first = 1, ok = 1;
    for (int i = 0; i < p->nlayers && ok; i++) {
        const tern_qplan_layer *L = &p->layers[i];
        if (L->widx < 0 || L->pol.wtype == TERN_WTYPE_INT8) continue;
        tern_qopts t = *q;
        t.wtype = TERN_WTYPE_INT8;
        t.nrules = 0;
        set_rule(&t, L->widx, L->pol.wtype, L->pol.ncl == 1 ? 0 : L->pol.N);
        double top1, kl, sq;
        if (!(ok = budget_eval(b, &t, NULL, &top1, &kl, &sq))) { fprintf(stderr, "tern quantize: %s\n", tern_last_error()); break; }
        char spec[32];
        cli_wspec_str(L->pol.wtype, L->pol.ncl == 1 ? 0 : L->pol.N, spec, sizeof spec);
        const char *nm = b->g->nodes[L->node].name ? b->g->nodes[L->node].name : "";
        if (json) {
            printf("%s{\"index\": %d, \"name\": ", first ? "" : ", ", L->widx);
            json_string(nm);
            printf(", \"weights\": \"%s\", \"top1\": %.4f, \"drop\": %.4f, \"kl\": %.6f, \"sqnr_db\": ", spec, top1, b->fp_top1 - top1, kl);
            if (isfinite(sq)) printf("%.3f}", sq);
            else printf("null}"); /* exact logits */
        }
        else printf("%5d  %-40.40s %-6s %8.2f %7.2f %8.4f %9.2f\n", L->widx, nm, spec, top1, b->fp_top1 - top1, kl, sq);
        fflush(stdout);
        first = 0;
    }
    if (json && ok) printf("]}\n");
    tern_qplan_free(p);
    return ok;
}

int cmd_quantize(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    tern_qopts q;
    tern_qopts_init(&q);
    const char *path = NULL;
    int calib_count = 500, calib_offset = 0, drop_count = 5000, nextra = 0, ncal0, plain = 0, picked = 0, sensitivity = 0;
    const char *write_layers = NULL;
    const char *extra[7];       /* further --calib sources: calib_count is shared equally among all */
    double max_drop = -1, drop_margin = 0, min_repl = 0.8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) { printf("%s%s", help, cli_common_help()); return 0; }
        if ((!strcmp(a, "-o") || !strcmp(a, "--calib") || !strcmp(a, "--calib-count") || !strcmp(a, "--calib-offset") || !strcmp(a, "--weights") || !strcmp(a, "--cluster") ||
             !strcmp(a, "--ternary-rule") || !strcmp(a, "--calib-rule") || !strcmp(a, "--layer")) && !v) {
            fprintf(stderr, "tern quantize: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "-o")) o.out = argv[++i];
        else if (!strcmp(a, "--calib")) {
            if (!o.calib) o.calib = argv[++i];
            else if (nextra < 7) extra[nextra++] = argv[++i];
            else { fprintf(stderr, "tern quantize: at most 8 --calib sources\n"); return 2; }
        }
        else if (!strcmp(a, "--calib-offset")) { calib_offset = atoi(argv[++i]); if (calib_offset < 0) { fprintf(stderr, "tern quantize: bad --calib-offset\n"); return 2; } }
        else if (!strcmp(a, "--calib-count")) { calib_count = atoi(argv[++i]); if (calib_count < 1) { fprintf(stderr, "tern quantize: bad --calib-count\n"); return 2; } }
        else if (!strcmp(a, "--weights")) { if (!tern_parse_wspec(argv[++i], &q.wtype, &q.cluster)) { fprintf(stderr, "tern quantize: bad --weights '%s' (t, 4 or 8)\n", v); return 2; } }
        else if (!strcmp(a, "--cluster")) {
            i++;
            if (!strcmp(v, "all")) q.cluster = 0;
            else if ((q.cluster = atoi(v)) < 1) { fprintf(stderr, "tern quantize: bad --cluster '%s'\n", v); return 2; }
        } else if (!strcmp(a, "--ternary-rule")) {
            i++;
            if (!strcmp(v, "exact")) q.trule = TERN_TRULE_EXACT;
            else if (!strcmp(v, "twn")) q.trule = TERN_TRULE_TWN;
            else { fprintf(stderr, "tern quantize: bad --ternary-rule '%s' (exact, twn)\n", v); return 2; }
        } else if (!strcmp(a, "--calib-rule")) {
            i++;
            if (!strcmp(v, "mse")) q.calib_rule = TERN_CALIB_MSE;
            else if (!strcmp(v, "maxabs")) q.calib_rule = TERN_CALIB_MAXABS;
            else { fprintf(stderr, "tern quantize: bad --calib-rule '%s' (mse, maxabs)\n", v); return 2; }
        } else if (!strcmp(a, "--layer")) {
            i++;
            const char *eq = strchr(v, '=');
            tern_layer_rule *r = &q.rules[q.nrules];
            if (!eq || eq == v || (size_t)(eq - v) >= sizeof r->key || q.nrules >= 64) { fprintf(stderr, "tern quantize: bad --layer '%s' (KEY=SPEC)\n", v); return 2; }
            memcpy(r->key, v, (size_t)(eq - v));
            r->key[eq - v] = 0;
            r->wtype = q.wtype;
            r->cluster = q.cluster;
            if (!tern_parse_wspec(eq + 1, &r->wtype, &r->cluster)) { fprintf(stderr, "tern quantize: bad layer spec '%s'\n", eq + 1); return 2; }
            q.nrules++;
        } else if (!strcmp(a, "--all-layers")) q.keep_ends_8bit = 0;
        else if (!strcmp(a, "--bias-corr")) q.bias_corr = picked = 1;
        else if (!strcmp(a, "--opt-scales")) q.opt_scales = picked = 1;
        else if (!strcmp(a, "--opt-round")) q.opt_round = picked = 1;
        else if (!strcmp(a, "--ptq")) q.bias_corr = q.opt_scales = q.opt_round = picked = 1;
        else if (!strcmp(a, "--plain")) plain = 1;
        else if (!strcmp(a, "--sensitivity")) sensitivity = 1;
        else if (!strcmp(a, "--layers")) { if (!v || !cli_layers_read(argv[++i], &q)) return 2; }
        else if (!strcmp(a, "--write-layers")) { if (!v) { fprintf(stderr, "tern quantize: --write-layers needs a file\n"); return 2; } write_layers = argv[++i]; }
        else if (!strcmp(a, "--verbose")) q.verbose = 1;
        else if (!strcmp(a, "--max-drop")) {
            char *end;
            if (!v || (max_drop = strtod(argv[++i], &end)) < 0 || *end) { fprintf(stderr, "tern quantize: bad --max-drop\n"); return 2; }
        } else if (!strcmp(a, "--drop-margin")) {
            char *end;
            if (!v || (drop_margin = strtod(argv[++i], &end)) < 0 || *end) { fprintf(stderr, "tern quantize: bad --drop-margin\n"); return 2; }
        } else if (!strcmp(a, "--min-replaced")) {
            char *end;
            if (!v || (min_repl = strtod(argv[++i], &end)) < 0 || min_repl > 1 || *end) { fprintf(stderr, "tern quantize: bad --min-replaced\n"); return 2; }
        } else if (!strcmp(a, "--drop-count")) {
            if (!v || (drop_count = atoi(argv[++i])) < 1) { fprintf(stderr, "tern quantize: bad --drop-count\n"); return 2; }
        }
        else if (!strcmp(a, "--opt-flip")) q.opt_flip = 1;
        else if (!strcmp(a, "--opt-damp")) {
            char *end;
            if (!v || (q.opt_damp = strtof(argv[++i], &end)) < 0 || *end) { fprintf(stderr, "tern quantize: bad --opt-damp\n"); return 2; }
        }
        else if (!strcmp(a, "--opt-method")) {
            const char *m = i + 1 < argc ? argv[++i] : "";
            if (!strcmp(m, "cd")) q.opt_method = TERN_OPT_CD;
            else if (!strcmp(m, "gptq")) q.opt_method = TERN_OPT_GPTQ;
            else if (!strcmp(m, "gptq+cd")) q.opt_method = TERN_OPT_GPTQ_CD;
            else { fprintf(stderr, "tern quantize: bad --opt-method '%s' (cd, gptq, gptq+cd)\n", m); return 2; }
        }
        else if (!strcmp(a, "--opt-images")) {
            if (!v || (q.opt_images = atoi(argv[++i])) < 1) { fprintf(stderr, "tern quantize: bad --opt-images\n"); return 2; }
        }
        else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return 2;
            if (r) continue;
            if (a[0] == '-' || path) { fprintf(stderr, "tern quantize: unexpected argument '%s'\n", a); return 2; }
            path = a;
        }
    }
    if (!path || (!o.out && !sensitivity) || !o.calib) { fprintf(stderr, "%s", help); return 2; }
    /* The default is the post-training path (--ptq); --plain, or naming some of its parts, picks less. */
    if (!plain && !picked) q.bias_corr = q.opt_scales = q.opt_round = 1;
    if (!cli_apply_preset(&o)) return 2;
    memcpy(q.mean, o.mean, sizeof q.mean);
    memcpy(q.std, o.std, sizeof q.std);
    q.threads = o.threads;
    cli_model *m = NULL;
    tern_dataset *ds = NULL;
    tern_qmodel *qm = NULL;
    uint8_t *px = NULL;
    int *idx = NULL, rc = 1;
    if (cli_model_load(path, &o, &m)) { rc = cli_fail("quantize"); goto done; }
    if (strcmp(m->kind, "fp32")) { fprintf(stderr, "tern quantize: %s is already quantized\n", path); goto done; }
    if (!cli_layers_check(cli_model_graph(m), &q)) { rc = 2; goto done; }
    o.data = o.calib;
    if (cli_dataset_open(&o, m, &ds)) { rc = cli_fail("quantize"); goto done; }
    tern_preproc pp = cli_effective_pp(&o, m);
    q.bgr = pp.bgr;
    q.resize_short = pp.resize_short;
    q.crop = pp.crop_h;
    ncal0 = calib_count / (nextra + 1) + (calib_count % (nextra + 1) > 0);
    idx = cli_subset(tern_dataset_count(ds), &ncal0, calib_offset);
    size_t per = (size_t)m->c * m->h * m->w;
    px = tern_malloc(per * (size_t)calib_count);
    if (!idx || !px) { rc = cli_fail("quantize"); goto done; }
    for (int i = 0; i < ncal0; i++)
        if (tern_dataset_read(ds, idx[i], px + per * (size_t)i, NULL)) { rc = cli_fail("quantize"); goto done; }
    /* further sources: each its equal share, spread over it, after the first source's images */
    int total = ncal0;
    for (int s = 0; s < nextra; s++) {
        tern_dataset *dx = NULL;
        o.data = extra[s];
        if (cli_dataset_open(&o, m, &dx)) { rc = cli_fail("quantize"); goto done; }
        int share = calib_count / (nextra + 1) + (calib_count % (nextra + 1) > s + 1);
        int *ix = cli_subset(tern_dataset_count(dx), &share, calib_offset), bad = !ix;
        for (int i = 0; !bad && i < share; i++)
            bad = tern_dataset_read(dx, ix[i], px + per * (size_t)total++, NULL) != TERN_STATUS_OK;
        free(ix);
        tern_dataset_free(dx);
        if (bad) { rc = cli_fail("quantize"); goto done; }
    }
    calib_count = total;
    o.data = o.calib;
    double t0 = tern_now();
    if (max_drop >= 0 || sensitivity) {
        budget b = {.g = cli_model_graph(m), .calib = px, .ncalib = calib_count, .c = m->c, .h = m->h, .w = m->w,
                    .nclasses = m->nclasses, .batch = 50, .threads = o.threads};
        /* the split: drop_count items spread over those of DATA that are not calibration images */
        int nds = tern_dataset_count(ds), nfree = 0;
        char *used = tern_calloc((size_t)nds + 1, 1);
        int *didx = NULL, *freei = tern_malloc(sizeof(int) * ((size_t)nds + 1));
        if (used && freei) {
            for (int i = 0; i < ncal0; i++) used[idx[i]] = 1; /* the split comes from the first source */
            for (int i = 0; i < nds; i++)
                if (!used[i]) freei[nfree++] = i;
            if (drop_count > nfree) drop_count = nfree;
            didx = nfree ? cli_subset(nfree, &drop_count, 0) : NULL;
            for (int i = 0; didx && i < drop_count; i++) didx[i] = freei[didx[i]];
        }
        free(used);
        free(freei);
        uint8_t *dpx = didx ? tern_malloc(per * (size_t)drop_count) : NULL;
        int *dlab = tern_malloc(sizeof(int) * (size_t)drop_count);
        double *fp = tern_malloc(sizeof(double) * (size_t)drop_count * (size_t)m->nclasses);
        int ok = didx && dpx && dlab && fp, c1 = 0;
        for (int i = 0; i < drop_count && ok; i++) ok = !tern_dataset_read(ds, didx[i], dpx + per * (size_t)i, &dlab[i]) && dlab[i] >= 0;
        for (int s0 = 0; s0 < drop_count && ok; s0 += b.batch) {
            int nb = drop_count - s0 < b.batch ? drop_count - s0 : b.batch;
            ok = !m->run(m, dpx + per * (size_t)s0, nb, fp + (size_t)s0 * m->nclasses);
        }
        for (int i = 0; i < drop_count && ok; i++) {
            int top;
            cli_topk(fp + (size_t)i * m->nclasses, m->nclasses, 1, &top);
            c1 += top == dlab[i];
        }
        if (ok) {
            b.px = dpx;
            b.labels = dlab;
            b.n = drop_count;
            b.fp = fp;
            b.fp_top1 = 100.0 * c1 / drop_count;
            if (sensitivity) rc = sensitivity_report(&b, &q, o.json) ? 0 : 1;
            else qm = max_drop_search(&b, &q, max_drop, drop_margin, min_repl, o.quiet);
        } else fprintf(stderr, "tern quantize: %s needs a labelled calibration set\n", sensitivity ? "--sensitivity" : "--max-drop");
        free(didx);
        free(dpx);
        free(dlab);
        free(fp);
        if (sensitivity) goto done;
        if (!qm) { rc = cli_fail("quantize"); goto done; }
    } else if (tern_quantize(cli_model_graph(m), &q, px, calib_count, &qm)) { rc = cli_fail("quantize"); goto done; }
    if (tern_qmodel_save(qm, o.out)) { rc = cli_fail("quantize"); goto done; }
    if (write_layers && !cli_layers_write(write_layers, cli_model_graph(m), &q, max_drop >= 0 ? "--max-drop result" : "as quantized")) goto done;
    if (!o.json && !o.quiet) fprintf(stderr, "quantized %s in %.1f s (%d calibration images from %s)\n", path, tern_now() - t0, calib_count, o.calib);
    cli_report_qmodel(qm, o.out, path, o.json);
    rc = 0;
done:
    free(px);
    free(idx);
    tern_qmodel_free(qm);
    tern_dataset_free(ds);
    cli_model_free(m);
    return rc;
}
