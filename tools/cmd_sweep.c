/* tern sweep MODEL.onnx --calib DATA --data EVAL: the papers' cluster-size study on one model.
 * Quantizes and evaluates (integer engine) a grid of weight type x cluster size x ternary rule,
 * 8-bit activations, default layer policy; writes DIR/sweep.{md,csv,json,svg}. Every finished
 * point is appended to DIR/cache.tsv at once, so an interrupted sweep resumes where it stopped
 * (the key holds everything that changes a result: model, data, subset, calibration, options). */
#include "cli.h"
#include "format/qmodel.h"
#include "quant/quantize.h"
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *help =
    "usage: tern sweep MODEL.onnx --calib DATA --data EVAL [options]\n"
    "  --out DIR             output folder (default sweep-<model>); holds the .md/.csv/.json/.svg and cache.tsv\n"
    "  --calib DATA          calibration images (never the evaluation set)\n"
    "  --calib-count K       calibration images (default 256)\n"
    "  --calib-offset K      start of the calibration spread\n"
    "  --weights LIST        weight types, comma separated, of t,4,8 (default t,4,8)\n"
    "  --clusters LIST       cluster sizes, of 1,2,4,8,16,32,64,all (default all of them)\n"
    "  --rules LIST          ternary rules, of exact,twn (default both; 4- and 8-bit have no rule, 8-bit no N)\n"
    "  --plain               the plain quantizer (the papers' study); default: tern quantize's post-training path\n"
    "  --bias-corr, --opt-scales, --opt-round, --ptq, --opt-images K   post-training options (tern quantize)\n"
    "  --title TEXT          plot/table title\n"
    "  (--count/--offset select the evaluation subset, as in tern eval)\n";

typedef struct {
    int wtype, cluster, rule;   /* cluster 0 = all */
    char key[512];
    int done;
    double top1, top5, repl;
    long long bytes;
} point;

static const char *wname(int w) { return w == TERN_WTYPE_TERNARY ? "t" : w == TERN_WTYPE_INT4 ? "4" : "8"; }

static void ncl_str(int n, char *b, size_t sz) {
    if (n) snprintf(b, sz, "%d", n);
    else snprintf(b, sz, "all");
}

static int eval_model(cli_model *m, tern_dataset *ds, const int *idx, int count, int batch, const char *what, int quiet,
                      double *top1, double *top5) {
    size_t per = (size_t)m->c * m->h * m->w;
    uint8_t *px = tern_malloc(per * (size_t)batch);
    double *sc = tern_malloc(sizeof(double) * (size_t)batch * (size_t)m->nclasses);
    int *lab = tern_malloc(sizeof(int) * (size_t)batch);
    int ok = px && sc && lab, c1 = 0, c5 = 0, n = 0, k = m->nclasses < 5 ? m->nclasses : 5;
    double t0 = tern_now();
    for (int s = 0; s < count && ok; s += batch) {
        int b = count - s < batch ? count - s : batch;
        for (int j = 0; j < b && ok; j++) ok = !tern_dataset_read(ds, idx[s + j], px + per * (size_t)j, &lab[j]);
        if (!ok || m->run(m, px, b, sc)) { ok = 0; break; }
        for (int j = 0; j < b; j++) {
            int top[5];
            if (lab[j] < 0) continue;
            cli_topk(sc + (size_t)j * m->nclasses, m->nclasses, k, top);
            n++;
            c1 += top[0] == lab[j];
            for (int t = 0; t < k; t++) c5 += top[t] == lab[j];
        }
        if (what) cli_progress(what, s + b, count, t0, quiet);
    }
    free(px);
    free(sc);
    free(lab);
    if (!ok) return 0;
    *top1 = n ? 100.0 * c1 / n : 0;
    *top5 = n ? 100.0 * c5 / n : 0;
    return 1;
}

/* The SVG plot: top-1 vs % multiplications replaced, one polyline per weight type (and rule). */
static void write_svg(const char *path, const char *title, const point *p, int np, double fp32) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    double ymin = fp32, ymax = fp32;
    for (int i = 0; i < np; i++)
        if (p[i].done) {
            if (p[i].top1 < ymin) ymin = p[i].top1;
            if (p[i].top1 > ymax) ymax = p[i].top1;
        }
    ymin = 10 * (int)(ymin / 10);
    ymax = 10 * (int)(ymax / 10 + 1);
    if (ymax > 100) ymax = 100;
    const int W = 640, H = 420, L = 60, R = 170, T = 40, Bm = 50;
    double pw = W - L - R, ph = H - T - Bm;
#define XS(x) (L + (x) / 100.0 * pw)
#define YS(y) (T + ph - ((y) - ymin) / (ymax - ymin) * ph)
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"22\" font-size=\"14\">%s</text>\n", L, title);
    for (int x = 0; x <= 100; x += 10)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n",
                XS(x), T, XS(x), T + ph, XS(x), T + ph + 16, x);
    for (double y = ymin; y <= ymax + 1e-9; y += 10)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n",
                L, YS(y), L + pw, YS(y), L - 6, YS(y) + 4, y);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw, ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%% multiplications replaced by additions</text>\n", L + pw / 2, H - 10);
    fprintf(f, "<text transform=\"translate(16,%.1f) rotate(-90)\" text-anchor=\"middle\">top-1 %%</text>\n", T + ph / 2);
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" stroke-dasharray=\"6,4\"/>\n", L, YS(fp32), L + pw, YS(fp32));
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">FP32 %.2f</text>\n", L + pw + 8, YS(fp32) + 4, fp32);
    static const struct { int w, rule; const char *name, *color; } lines[] = {
        {TERN_WTYPE_TERNARY, TERN_TRULE_EXACT, "ternary (exact)", "#d62728"},
        {TERN_WTYPE_TERNARY, TERN_TRULE_TWN, "ternary (TWN)", "#ff7f0e"},
        {TERN_WTYPE_INT4, -1, "4-bit", "#1f77b4"},
        {TERN_WTYPE_INT8, -1, "8-bit", "#2ca02c"},
    };
    int ly = T + 20;
    for (size_t li = 0; li < sizeof lines / sizeof lines[0]; li++) {
        int idx[64], n = 0;
        for (int i = 0; i < np && n < 64; i++)
            if (p[i].done && p[i].wtype == lines[li].w && (lines[li].rule < 0 || p[i].rule == lines[li].rule)) idx[n++] = i;
        if (!n) continue;
        for (int a = 1; a < n; a++) /* by x */
            for (int b = a; b > 0 && p[idx[b]].repl < p[idx[b - 1]].repl; b--) { int t = idx[b]; idx[b] = idx[b - 1]; idx[b - 1] = t; }
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", lines[li].color);
        for (int i = 0; i < n; i++) fprintf(f, "%.1f,%.1f ", XS(100 * p[idx[i]].repl), YS(p[idx[i]].top1));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < n; i++) {
            char nb[16];
            ncl_str(p[idx[i]].cluster, nb, sizeof nb);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s N=%s: %.2f %%, %.2f %% replaced</title></circle>\n",
                    XS(100 * p[idx[i]].repl), YS(p[idx[i]].top1), lines[li].color, lines[li].name, nb, p[idx[i]].top1, 100 * p[idx[i]].repl);
        }
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/><text x=\"%.1f\" y=\"%d\">%s</text>\n",
                L + pw + 8, ly + 16, L + pw + 28, ly + 16, lines[li].color, L + pw + 32, ly + 20, lines[li].name);
        ly += 18;
    }
    fprintf(f, "</svg>\n");
#undef XS
#undef YS
    fclose(f);
}

static int parse_list(const char *s, const char *const *names, int n, int *on) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (int i = 0; i < n; i++) on[i] = 0;
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int k = 0;
        while (k < n && strcmp(t, names[k])) k++;
        if (k == n) return 0;
        on[k] = 1;
    }
    return 1;
}

int cmd_sweep(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    tern_qopts q0;
    tern_qopts_init(&q0);
    const char *path = NULL, *outdir = NULL, *title = NULL;
    int calib_count = 256, calib_offset = 0, plain = 0, picked = 0;
    static const char *const wnames[] = {"t", "4", "8"}, *const cnames[] = {"1", "2", "4", "8", "16", "32", "64", "all"},
                             *const rnames[] = {"exact", "twn"};
    int won[3] = {1, 1, 1}, con[8] = {1, 1, 1, 1, 1, 1, 1, 1}, ron[2] = {1, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) { printf("%s%s", help, cli_common_help()); return 0; }
        int needs = !strcmp(a, "--out") || !strcmp(a, "--calib") || !strcmp(a, "--calib-count") || !strcmp(a, "--calib-offset") ||
                    !strcmp(a, "--weights") || !strcmp(a, "--clusters") || !strcmp(a, "--rules") || !strcmp(a, "--opt-images") || !strcmp(a, "--title");
        if (needs && !v) { fprintf(stderr, "tern sweep: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--out")) outdir = argv[++i];
        else if (!strcmp(a, "--calib")) o.calib = argv[++i];
        else if (!strcmp(a, "--title")) title = argv[++i];
        else if (!strcmp(a, "--calib-count")) { if ((calib_count = atoi(argv[++i])) < 1) { fprintf(stderr, "tern sweep: bad --calib-count\n"); return 2; } }
        else if (!strcmp(a, "--calib-offset")) { if ((calib_offset = atoi(argv[++i])) < 0) { fprintf(stderr, "tern sweep: bad --calib-offset\n"); return 2; } }
        else if (!strcmp(a, "--weights")) { if (!parse_list(argv[++i], wnames, 3, won)) { fprintf(stderr, "tern sweep: bad --weights '%s'\n", v); return 2; } }
        else if (!strcmp(a, "--clusters")) { if (!parse_list(argv[++i], cnames, 8, con)) { fprintf(stderr, "tern sweep: bad --clusters '%s'\n", v); return 2; } }
        else if (!strcmp(a, "--rules")) { if (!parse_list(argv[++i], rnames, 2, ron)) { fprintf(stderr, "tern sweep: bad --rules '%s'\n", v); return 2; } }
        else if (!strcmp(a, "--bias-corr")) q0.bias_corr = picked = 1;
        else if (!strcmp(a, "--opt-scales")) q0.opt_scales = picked = 1;
        else if (!strcmp(a, "--opt-round")) q0.opt_round = picked = 1;
        else if (!strcmp(a, "--ptq")) q0.bias_corr = q0.opt_scales = q0.opt_round = picked = 1;
        else if (!strcmp(a, "--plain")) plain = 1;
        else if (!strcmp(a, "--opt-images")) { if ((q0.opt_images = atoi(argv[++i])) < 1) { fprintf(stderr, "tern sweep: bad --opt-images\n"); return 2; } }
        else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return 2;
            if (r) continue;
            if (a[0] == '-' || path) { fprintf(stderr, "tern sweep: unexpected argument '%s'\n", a); return 2; }
            path = a;
        }
    }
    if (!path || !o.calib || !o.data) { fprintf(stderr, "%s", help); return 2; }
    if (!plain && !picked) q0.bias_corr = q0.opt_scales = q0.opt_round = 1; /* tern quantize's default */
    if (!cli_apply_preset(&o)) return 2;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char defdir[256], stem[128];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    snprintf(defdir, sizeof defdir, "sweep-%s", stem);
    if (!outdir) outdir = defdir;
    if (mkdir(outdir, 0777) && errno != EEXIST) { fprintf(stderr, "tern sweep: cannot create %s\n", outdir); return 1; }
    memcpy(q0.mean, o.mean, sizeof q0.mean);
    memcpy(q0.std, o.std, sizeof q0.std);
    q0.threads = o.threads;

    /* the grid: ternary N x rule, 4-bit N, 8-bit once */
    static const int cvals[8] = {1, 2, 4, 8, 16, 32, 64, 0};
    point pts[64];
    int np = 0;
    for (int wi = 0; wi < 3; wi++) {
        if (!won[wi]) continue;
        int wt = wi == 0 ? TERN_WTYPE_TERNARY : wi == 1 ? TERN_WTYPE_INT4 : TERN_WTYPE_INT8;
        for (int ri = 0; ri < 2; ri++) {
            if (wt != TERN_WTYPE_TERNARY && ri) break;
            if (wt == TERN_WTYPE_TERNARY && !ron[ri]) continue;
            for (int ci = 0; ci < 8; ci++) {
                if (wt == TERN_WTYPE_INT8 && ci) break;
                if (wt != TERN_WTYPE_INT8 && !con[ci]) continue;
                point *p = &pts[np++];
                memset(p, 0, sizeof *p);
                p->wtype = wt;
                p->cluster = wt == TERN_WTYPE_INT8 ? 0 : cvals[ci];
                p->rule = wt == TERN_WTYPE_TERNARY ? ri : 0;
            }
        }
    }
    char common[400];
    snprintf(common, sizeof common, "%s|%s|%d|%d|%s|%d|%d|bc%d|os%d|or%d|oi%d", base, o.data, o.count, o.offset, o.calib, calib_count, calib_offset,
             q0.bias_corr, q0.opt_scales, q0.opt_round, q0.opt_images);
    for (int i = 0; i < np; i++) {
        char nb[16];
        ncl_str(pts[i].cluster, nb, sizeof nb);
        snprintf(pts[i].key, sizeof pts[i].key, "%s|%s|%s|%s", common, wname(pts[i].wtype), nb, pts[i].wtype == TERN_WTYPE_TERNARY ? rnames[pts[i].rule] : "-");
    }
    char cpath[512], fkey[512];
    snprintf(cpath, sizeof cpath, "%s/cache.tsv", outdir);
    snprintf(fkey, sizeof fkey, "%s|%s|%d|%d|fp32", base, o.data, o.count, o.offset);
    double fp1 = -1, fp5 = -1;
    FILE *cf = fopen(cpath, "r");
    if (cf) { /* key \t top1 \t top5 \t replaced \t bytes */
        char line[1024];
        while (fgets(line, sizeof line, cf)) {
            char *tab = strchr(line, '\t');
            if (!tab) continue;
            *tab = 0;
            double t1, t5, rp;
            long long by;
            if (sscanf(tab + 1, "%lf %lf %lf %lld", &t1, &t5, &rp, &by) != 4) continue;
            if (!strcmp(line, fkey)) { fp1 = t1; fp5 = t5; }
            for (int i = 0; i < np; i++)
                if (!strcmp(line, pts[i].key)) { pts[i].done = 1; pts[i].top1 = t1; pts[i].top5 = t5; pts[i].repl = rp; pts[i].bytes = by; }
        }
        fclose(cf);
    }
    cli_model *m = NULL, *qm = NULL;
    tern_dataset *cds = NULL, *eds = NULL;
    uint8_t *px = NULL;
    int *cidx = NULL, *eidx = NULL, rc = 1, count = o.count;
    if (cli_model_load(path, &o, &m)) { rc = cli_fail("sweep"); goto done; }
    if (strcmp(m->kind, "fp32")) { fprintf(stderr, "tern sweep: %s: needs an FP32 ONNX model\n", path); goto done; }
    if (cli_dataset_open(&o, m, &eds)) { rc = cli_fail("sweep"); goto done; }
    eidx = cli_subset(tern_dataset_count(eds), &count, o.offset);
    if (!eidx) { rc = cli_fail("sweep"); goto done; }
    cf = fopen(cpath, "a");
    if (!cf) { fprintf(stderr, "tern sweep: cannot write %s\n", cpath); goto done; }
    if (fp1 < 0) {
        if (!eval_model(m, eds, eidx, count, o.batch, "fp32", o.quiet, &fp1, &fp5)) { rc = cli_fail("sweep: fp32"); fclose(cf); goto done; }
        fprintf(cf, "%s\t%.4f %.4f 0 0\n", fkey, fp1, fp5);
        fflush(cf);
    }
    int todo = 0, left = 0;
    for (int i = 0; i < np; i++) todo += !pts[i].done;
    if (todo) {
        const char *data = o.data;
        o.data = o.calib;
        if (cli_dataset_open(&o, m, &cds)) { rc = cli_fail("sweep"); fclose(cf); goto done; }
        o.data = data;
        cidx = cli_subset(tern_dataset_count(cds), &calib_count, calib_offset);
        size_t per = (size_t)m->c * m->h * m->w;
        px = tern_malloc(per * (size_t)calib_count);
        if (!cidx || !px) { rc = cli_fail("sweep"); fclose(cf); goto done; }
        for (int i = 0; i < calib_count; i++)
            if (tern_dataset_read(cds, cidx[i], px + per * (size_t)i, NULL)) { rc = cli_fail("sweep"); fclose(cf); goto done; }
        tern_preproc pp = cli_effective_pp(&o, m);
        q0.bgr = pp.bgr;
        q0.resize_short = pp.resize_short;
        q0.crop = pp.crop_h;
    }
    fprintf(stderr, "sweep %s: %d points, %d cached, results in %s/\n", base, np, np - todo, outdir);
    double t0 = tern_now();
    char tpath[600];
    snprintf(tpath, sizeof tpath, "%s/current.tern", outdir);
    for (int i = 0; i < np; i++) {
        point *p = &pts[i];
        if (p->done) continue;
        tern_qopts q = q0;
        q.wtype = p->wtype;
        q.cluster = p->cluster;
        q.trule = (enum tern_trule)p->rule;
        tern_qmodel *qmod = NULL;
        if (tern_quantize(cli_model_graph(m), &q, px, calib_count, &qmod) || tern_qmodel_save(qmod, tpath)) {
            tern_qmodel_free(qmod);
            rc = cli_fail("sweep: quantize");
            fclose(cf);
            goto done;
        }
        p->repl = cli_qmodel_mult_replaced(qmod);
        tern_qmodel_free(qmod);
        struct stat sb;
        p->bytes = stat(tpath, &sb) == 0 ? (long long)sb.st_size : -1;
        if (cli_model_load(tpath, &o, &qm) || !eval_model(qm, eds, eidx, count, o.batch, NULL, 1, &p->top1, &p->top5)) {
            rc = cli_fail("sweep: eval");
            fclose(cf);
            goto done;
        }
        cli_model_free(qm);
        qm = NULL;
        p->done = 1;
        fprintf(cf, "%s\t%.4f %.4f %.6f %lld\n", p->key, p->top1, p->top5, p->repl, p->bytes);
        fflush(cf);
        left++;
        cli_progress("sweep", left, todo, t0, o.quiet);
        if (o.quiet || !isatty(2)) {
            char nb[16];
            ncl_str(p->cluster, nb, sizeof nb);
            fprintf(stderr, "  [%d/%d] %s:%s %s: top-1 %.2f %%\n", left, todo, wname(p->wtype), nb, p->wtype == TERN_WTYPE_TERNARY ? rnames[p->rule] : "", p->top1);
        }
    }
    fclose(cf);
    remove(tpath);

    /* outputs */
    char fn[600], ttl[300];
    snprintf(ttl, sizeof ttl, "%s", title ? title : stem);
    snprintf(fn, sizeof fn, "%s/sweep.md", outdir);
    FILE *md = fopen(fn, "w");
    snprintf(fn, sizeof fn, "%s/sweep.csv", outdir);
    FILE *csv = fopen(fn, "w");
    snprintf(fn, sizeof fn, "%s/sweep.json", outdir);
    FILE *js = fopen(fn, "w");
    if (!md || !csv || !js) { fprintf(stderr, "tern sweep: cannot write the results in %s\n", outdir); if (md) fclose(md); if (csv) fclose(csv); if (js) fclose(js); goto done; }
    fprintf(md, "### %s\n\nFP32: top-1 %.2f %%, top-5 %.2f %% on %d images of %s. 8-bit activations, first conv and last layer 8-bit.%s\n\n",
            ttl, fp1, fp5, count, o.data, q0.bias_corr || q0.opt_scales || q0.opt_round ? " Post-training options on." : "");
    fprintf(md, "| weights | N | rule | top-1 %% | top-5 %% | drop vs FP32 | mult. replaced %% | file bytes |\n|---|---|---|---|---|---|---|---|\n");
    fprintf(csv, "model,weights,cluster,rule,top1,top5,drop,mult_replaced,file_bytes\n");
    fprintf(js, "{\"model\": \"%s\", \"data\": \"%s\", \"images\": %d, \"fp32_top1\": %.4f, \"fp32_top5\": %.4f, \"bias_corr\": %d, \"opt_scales\": %d, \"opt_round\": %d, \"points\": [",
            base, o.data, count, fp1, fp5, q0.bias_corr, q0.opt_scales, q0.opt_round);
    int first = 1;
    for (int i = 0; i < np; i++) {
        const point *p = &pts[i];
        char nb[16];
        ncl_str(p->cluster, nb, sizeof nb);
        const char *rule = p->wtype == TERN_WTYPE_TERNARY ? rnames[p->rule] : "-";
        if (p->wtype == TERN_WTYPE_INT8) snprintf(nb, sizeof nb, "-");
        fprintf(md, "| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %lld |\n", wname(p->wtype), nb, rule, p->top1, p->top5, fp1 - p->top1, 100 * p->repl, p->bytes);
        fprintf(csv, "%s,%s,%s,%s,%.2f,%.2f,%.2f,%.2f,%lld\n", base, wname(p->wtype), nb, rule, p->top1, p->top5, fp1 - p->top1, 100 * p->repl, p->bytes);
        fprintf(js, "%s\n  {\"weights\": \"%s\", \"cluster\": \"%s\", \"rule\": \"%s\", \"top1\": %.4f, \"top5\": %.4f, \"drop\": %.4f, \"mult_replaced\": %.6f, \"file_bytes\": %lld}",
                first ? "" : ",", wname(p->wtype), nb, rule, p->top1, p->top5, fp1 - p->top1, p->repl, p->bytes);
        first = 0;
    }
    fprintf(md, "\n![%s](sweep.svg)\n", ttl);
    fprintf(js, "\n]}\n");
    fclose(md);
    fclose(csv);
    fclose(js);
    snprintf(fn, sizeof fn, "%s/sweep.svg", outdir);
    write_svg(fn, ttl, pts, np, fp1);
    printf("%s/sweep.md, sweep.csv, sweep.json, sweep.svg (FP32 top-1 %.2f %%)\n", outdir, fp1);
    rc = 0;
done:
    free(px);
    free(cidx);
    free(eidx);
    cli_model_free(qm);
    tern_dataset_free(cds);
    tern_dataset_free(eds);
    cli_model_free(m);
    return rc;
}
