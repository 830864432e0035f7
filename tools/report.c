/* The per-layer quantization report shared by `tern quantize` and `tern info model.tern`. */
#include "cli.h"
#include "format/qmodel.h"
#include <math.h>
#include <string.h>
#include <sys/stat.h>

static const char *qop_name(int op) {
    static const char *n[] = {"?", "conv", "add", "maxpool", "avgpool", "gap", "pad", "slice", "concat", "requant", "lut", "mul", "chanperm"};
    return op >= 1 && op <= TERN_QOP_LAST ? n[op] : "?";
}

static const char *wtype_name(int w) { return w == TERN_WTYPE_TERNARY ? "t" : w == TERN_WTYPE_INT4 ? "4" : "8"; }

/* Multiplications replaced by a conv layer (method.md): a ternary layer does one scale multiply
 * per cluster per output, so it replaces 1 - clusters/(cin_g*kh*kw) of its MACs. */
static double replaced_macs(const tern_qlayer *L) {
    const tern_qconv *c = &L->conv;
    if (L->op != TERN_QOP_CONV || c->wtype != TERN_WTYPE_TERNARY) return 0;
    int cing = c->cin / c->groups, k = cing * c->kh * c->kw;
    return (double)L->macs * (1.0 - (double)tern_qconv_nclusters(c) / k);
}

double cli_qmodel_mult_replaced(const tern_qmodel *m) {
    double tot = 0, rep = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].op == TERN_QOP_CONV) {
            tot += (double)m->layers[i].macs;
            rep += replaced_macs(&m->layers[i]);
        }
    return tot > 0 ? rep / tot : 0;
}

static long long file_size(const char *p) {
    struct stat s;
    return p && stat(p, &s) == 0 ? (long long)s.st_size : -1;
}

void cli_report_qmodel(const tern_qmodel *m, const char *tern_path, const char *onnx_path, int json) {
    double tot_macs = 0, tot_rep = 0;
    long long fs = file_size(tern_path), os = file_size(onnx_path);
    if (json) printf("{\"model\": \"%s\", \"source\": \"%s\", \"layers\": [", tern_path ? tern_path : "", m->source);
    else {
        printf("%s: input %dx%dx%d uint8, %d classes, %d layers (from %s)\n", tern_path ? tern_path : "model", m->in_c, m->in_h, m->in_w,
               m->nclasses, m->nlayers, m->source);
        printf("%3s %-30s %-8s %-18s %-6s %6s %6s %7s %-7s %12s %7s\n", "#", "name", "op", "out (CxHxW)", "w:N", "clust", "zero%",
               "SQNR", "act", "MACs", "repl%");
    }
    int widx = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const tern_qlayer *L = &m->layers[i];
        const tern_qtensor *t = &m->tensors[L->out];
        char shape[40], wn[16] = "", act[24];
        snprintf(shape, sizeof shape, "%dx%dx%d", t->c, t->h, t->w);
        snprintf(act, sizeof act, "%s2^%d", t->wide ? "i32 " : t->is_signed ? "s8 " : "u8 ", -t->exp);
        double rep = replaced_macs(L);
        int is_conv = L->op == TERN_QOP_CONV;
        const tern_qconv *c = &L->conv;
        int ncl = is_conv ? c->cout * tern_qconv_nclusters(c) : 0;
        if (is_conv) {
            int cing = c->cin / c->groups;
            if (c->cluster >= cing) snprintf(wn, sizeof wn, "%s:all", wtype_name(c->wtype));
            else snprintf(wn, sizeof wn, "%s:%d", wtype_name(c->wtype), c->cluster);
            tot_macs += (double)L->macs;
            tot_rep += rep;
        }
        if (json) {
            printf("%s\n  {\"index\": %d, \"name\": \"%s\", \"op\": \"%s\", \"out\": [%d,%d,%d], \"exp\": %d, \"signed\": %d, \"wide\": %d",
                   i ? "," : "", i, L->name, qop_name(L->op), t->c, t->h, t->w, t->exp, t->is_signed, t->wide);
            if (is_conv)
                printf(", \"weight_layer\": %d, \"weights\": \"%s\", \"cluster\": %d, \"clusters\": %d, \"zero_frac\": %.4f, \"sqnr_db\": %.2f, "
                       "\"macs\": %lld, \"mult_replaced\": %.4f",
                       widx, wtype_name(c->wtype), c->cluster, ncl, L->zero_frac, L->sqnr_db, (long long)L->macs, L->macs ? rep / L->macs : 0);
            printf("}");
        } else if (is_conv)
            printf("%3d %-30.30s %-8s %-18s %-6s %6d %6.1f %7.2f %-7s %12lld %7.1f\n", widx, L->name, "conv", shape, wn, ncl, 100 * L->zero_frac,
                   L->sqnr_db, act, (long long)L->macs, L->macs ? 100 * rep / L->macs : 0);
        else
            printf("%3s %-30.30s %-8s %-18s %-6s %6s %6s %7s %-7s %12s %7s\n", "", L->name, qop_name(L->op), shape, "", "", "", "", act, "", "");
        widx += is_conv;
    }
    double frac = tot_macs > 0 ? tot_rep / tot_macs : 0;
    if (json) {
        printf("\n], \"macs\": %.0f, \"mult_replaced\": %.6f, \"file_bytes\": %lld, \"onnx_bytes\": %lld}\n", tot_macs, frac, fs, os);
        return;
    }
    printf("total: %.1f MMAC per image, %.2f %% of multiplications replaced by additions\n", tot_macs / 1e6, 100 * frac);
    if (fs >= 0 && os > 0) printf("size: %lld bytes (.tern) vs %lld bytes (FP32 ONNX): %.1fx smaller\n", fs, os, (double)os / fs);
    else if (fs >= 0) printf("size: %lld bytes\n", fs);
}
