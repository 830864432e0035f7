/* Per-tensor comparison of tern's FP32 executor and its integer engine on one ONNX model, the
 * diagnosis tool of docs/RESULTS.md issue 11 (not part of the suite). It quantizes MODEL as
 * tests/t_zoo.sh does (8 calibration images of imagenet_sample/, resize 73, crop 64, ImageNet
 * mean/std, --plain), runs images EVOFF.. EVOFF+3 (default 8: t_zoo's evaluation images) through
 * both, and prints for every integer layer: its exponent, max |FP32|, the SQNR of the integer
 * tensor against the FP32 one, the SQNR of the FP32 tensor rounded at that exponent alone
 * ("own-quant"), and for LUT / MUL / ADD / GAP layers a local check: the op recomputed in double
 * from the layer's own integer inputs, the largest error in output steps (0.5 = exact rounding).
 *
 * build: make build/release/tests/zoo_probe (`make test` builds it too, so it keeps compiling; the
 *        suite does not run it)
 * usage: TERN_DATA=../shared/data [EVOFF=k] build/release/tests/zoo_probe MODEL.onnx [t|4|8] [maxabs] */
#include "graph/fp32.h"
#include "quant/quantize.h"
#include "engine/qexec.h"
#include "data/data.h"
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
static double deq(const tern_qmodel *m, const tern_qexec *e, int t, int b, int c, int p) {
    const tern_qtensor *T = &m->tensors[t];
    const uint8_t *q = tern_qexec_tensor(e, t, b);
    size_t qi = (size_t)p * T->c + c;
    double v;
    if (T->wide) { int32_t z; memcpy(&z, q + 4 * qi, 4); v = z; } else v = T->is_signed ? (int8_t)q[qi] : q[qi];
    return ldexp(v, -T->exp);
}
static void local_check(const tern_graph *g, const tern_qmodel *m, const tern_qexec *e, int nev, int li) {
    const tern_qlayer *L = &m->layers[li];
    const tern_qtensor *Y = &m->tensors[L->out];
    int ni = -1;
    for (int k = 0; k < g->nnodes; k++) if (!strcmp(g->nodes[k].name, L->name)) ni = k;
    int op = ni >= 0 ? (int)g->nodes[ni].op : -1;
    double s = 0, err = 0, maxu = 0; double lo = Y->is_signed ? -128 : 0, hi = Y->is_signed ? 127 : 255; if (Y->wide) lo = -1e12, hi = 1e12;
    for (int b = 0; b < nev; b++) for (int c = 0; c < Y->c; c++) for (int p = 0; p < Y->h * Y->w; p++) {
        double ref, y = deq(m, e, L->out, b, c, p);
        double a = 0;
        if (L->op == TERN_QOP_LUT) {
            a = deq(m, e, L->in[0], b, c, p);
            if (op == TERN_OP_SIGMOID) ref = 1 / (1 + exp(-a));
            else if (op == TERN_OP_MUL) ref = a / (1 + exp(-a));
            else if (op == TERN_OP_HARDSIGMOID) ref = fmax(0, fmin(1, a / 6 + 0.5));
            else if (op == TERN_OP_HARDSWISH) ref = a * fmax(0, fmin(1, a / 6 + 0.5));
            else return;
        } else if (L->op == TERN_QOP_MUL) {
            const tern_qtensor *B = &m->tensors[L->in[1]];
            ref = deq(m, e, L->in[0], b, c, p) * deq(m, e, L->in[1], b, c, B->h * B->w == 1 ? 0 : p);
        } else if (L->op == TERN_QOP_ADD) {
            ref = deq(m, e, L->in[0], b, c, p) + deq(m, e, L->in[1], b, c, p);
            if (L->qmin == 0 && ref < 0) ref = 0;
        } else if (L->op == TERN_QOP_GLOBALAVGPOOL) {
            const tern_qtensor *X = &m->tensors[L->in[0]];
            ref = 0; for (int pp = 0; pp < X->h * X->w; pp++) ref += deq(m, e, L->in[0], b, c, pp);
            ref /= X->h * X->w;
        } else return;
        s += ref * ref; err += (ref - y) * (ref - y);
        { double r = ldexp(ref, Y->exp); r = r < lo ? lo : r > hi ? hi : r; double u = fabs(r - ldexp(y, Y->exp)); if (u > maxu) maxu = u; }
    }
    printf("   local %-6s %-50.50s in-exp %d,%d out-exp %d  local sqnr %.2f max err %.3f steps\n", L->op == 10 ? "LUT" : L->op == 11 ? "MUL" : L->op == 2 ? "ADD" : "GAP",
           L->name, m->tensors[L->in[0]].exp, L->nin > 1 ? m->tensors[L->in[1]].exp : 0, Y->exp, 10 * log10(s / (err + 1e-30)), maxu);
}
int main(int argc, char **argv) {
    tern_graph *g;
    if (tern_onnx_import(argv[1], &g)) { fprintf(stderr, "%s\n", tern_last_error()); return 1; }
    tern_preproc pp = {73, 64, 64, 0};
    char dpath[600];
    snprintf(dpath, sizeof dpath, "%s/imagenet_sample", getenv("TERN_DATA") ? getenv("TERN_DATA") : "../shared/data");
    tern_dataset *ds;
    if (tern_dataset_open(dpath, NULL, &pp, &ds)) { fprintf(stderr, "%s\n", tern_last_error()); return 1; }
    int ncal = 8, nev = 4; size_t per = 3 * 64 * 64;
    uint8_t *cal = malloc(per * ncal), *ev = malloc(per * nev);
    for (int i = 0; i < ncal; i++) tern_dataset_read(ds, i, cal + per * i, NULL);
    for (int i = 0; i < nev; i++) tern_dataset_read(ds, (getenv("EVOFF") ? atoi(getenv("EVOFF")) : 8) + i, ev + per * i, NULL);
    tern_qopts o; tern_qopts_init(&o);
    float mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    memcpy(o.mean, mean, 12); memcpy(o.std, sd, 12);
    tern_parse_wspec(argc > 2 ? argv[2] : "8", &o.wtype, &o.cluster);
    if (argc > 3 && !strcmp(argv[3], "maxabs")) o.calib_rule = TERN_CALIB_MAXABS;
    o.threads = 2;
    tern_qmodel *m;
    if (tern_quantize(g, &o, cal, ncal, &m)) { fprintf(stderr, "%s\n", tern_last_error()); return 1; }
    tern_fp32_ctx *x = tern_fp32_ctx_new(g); x->keep_all = 1;
    float *in = malloc(sizeof(float) * per * nev);
    for (int b = 0; b < nev; b++) for (int c = 0; c < 3; c++) for (int i = 0; i < 64 * 64; i++)
        in[b * per + c * 4096 + i] = ((float)ev[b * per + c * 4096 + i] / 255.0f - mean[c]) / sd[c];
    const float *y; int64_t yd[8]; int nd;
    if (tern_fp32_run(x, in, nev, &y, yd, &nd)) { fprintf(stderr, "%s\n", tern_last_error()); return 1; }
    tern_qexec *e; tern_qexec_new(m, nev, 1, TERN_ISA_REF, &e); tern_qexec_keep_all(e);
    const int32_t *lg; tern_qexec_run(e, ev, nev, &lg);
    for (int li = 0; li < m->nlayers; li++) {
        const tern_qlayer *L = &m->layers[li];
        const tern_qtensor *t = &m->tensors[L->out];
        int ni = -1;
        for (int k = 0; k < g->nnodes; k++) if (!strcmp(g->nodes[k].name, L->name)) ni = k;
        if (ni < 0) continue;
        int cands[4], nc = 0; cands[nc++] = g->nodes[ni].out[0];
        for (int k = 0; k < g->nnodes; k++) if (g->nodes[k].nin && g->nodes[k].in[0] == g->nodes[ni].out[0]) cands[nc < 4 ? nc++ : 3] = g->nodes[k].out[0];
        double best = -1e9, bq = 0, fmax = 0, satf = 0; int bv = -1;
        size_t es = t->wide ? 4 : 1, nper = (size_t)t->c * t->h * t->w;
        for (int ci = 0; ci < nc; ci++) {
            int v = cands[ci];
            if (!x->buf[v]) continue;
            int64_t *d = x->dims[v];
            int64_t numel = 1; for (int k = 1; k < g->values[v].ndim; k++) numel *= d[k];
            if ((size_t)numel != nper) continue;
            double s = 0, err = 0, eq = 0, mx = 0, sat = 0;
            for (int b = 0; b < nev; b++) for (int c = 0; c < t->c; c++) for (int p = 0; p < t->h * t->w; p++) {
                double f = x->buf[v][(size_t)b * nper + (size_t)c * t->h * t->w + p];
                const uint8_t *q = tern_qexec_tensor(e, L->out, b);
                size_t qi = (size_t)p * t->c + c;
                double qv;
                if (t->wide) { int32_t z; memcpy(&z, q + 4 * qi, 4); qv = z; }
                else qv = t->is_signed ? (int8_t)q[qi] : q[qi];
                qv = ldexp(qv, -t->exp);
                s += f * f; err += (f - qv) * (f - qv);
                double lo = t->is_signed ? -128 : 0, hi = t->is_signed ? 127 : 255;
                double r = nearbyint(ldexp(f, t->exp)); if (r < lo || r > hi) sat++; r = r < lo ? lo : r > hi ? hi : r;
                double fq = ldexp(r, -t->exp); eq += (f - fq) * (f - fq);
                if (fabs(f) > mx) mx = fabs(f);
            }
            double sq = 10 * log10(s / (err + 1e-30));
            if (sq > best) { best = sq; bq = 10 * log10(s / (eq + 1e-30)); bv = v; fmax = mx; satf = sat / (nev * nper); }
        }
        (void)es;
        local_check(g, m, e, nev, li);
        if (bv < 0) { printf("%3d op%-2d %-40s (no match)\n", li, L->op, L->name); continue; }
        printf("%3d op%-2d %-44.44s %s exp %3d %s fmax %8.3f sqnr %6.2f  own-quant %6.2f sat %.4f w %d\n", li, L->op, L->name,
               g->values[bv].name, t->exp, t->is_signed ? "s" : "u", fmax, best, bq, satf, L->op == 1 ? L->conv.wtype : -1);
    }
    return 0;
}
