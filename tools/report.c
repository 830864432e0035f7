/* The per-layer quantization report shared by `tern quantize` and `tern info model.tern`, from the
 * public layer table only (the in-memory model of `tern quantize` is wrapped in a tern_model). */
#include "cli.h"
#include "api/api.h"
#include <math.h>
#include <string.h>
#include <sys/stat.h>

/* The public layer table (include/tern.h) of a quantized model. */
static double model_mult_replaced(const tern_model *m) {
    tern_model_info in;
    tern_layer_info L;
    double tot = 0, rep = 0;
    if (tern_model_describe(m, &in)) return 0;
    for (int i = 0; i < in.layers; i++)
        if (!tern_model_layer(m, i, &L) && L.weights) {
            tot += (double)L.macs;
            rep += (double)L.macs * L.mult_replaced;
        }
    return tot > 0 ? rep / tot : 0;
}

double cli_qmodel_mult_replaced(const tern_qmodel *qm) {
    tern_model *m;
    if (tern_model_wrap(qm, NULL, &m)) return 0;
    double r = model_mult_replaced(m);
    tern_model_free(m);
    return r;
}

static long long file_size(const char *p) {
    struct stat s;
    return p && stat(p, &s) == 0 ? (long long)s.st_size : -1;
}

void cli_report_model(const tern_model *m, const char *tern_path, const char *onnx_path, int json) {
    double tot_macs = 0, tot_rep = 0;
    long long fs = file_size(tern_path), os = file_size(onnx_path);
    tern_model_info in;
    if (tern_model_describe(m, &in)) { cli_fail("report"); return; }
    tern_preproc pp = {.resize_short = in.resize_short, .crop_h = in.crop, .crop_w = in.crop, .bgr = in.bgr};
    char pps[256];
    cli_pp_str(&pp, in.mean, in.std, pps, sizeof pps);
    if (json)
        printf("{\"model\": \"%s\", \"source\": \"%s\", \"preprocessing\": {\"resize\": %d, \"crop\": %d, \"bgr\": %d, \"mean\": [%g, %g, %g], "
               "\"std\": [%g, %g, %g]}, \"output_exp\": %d, \"layers\": [",
               tern_path ? tern_path : "", in.source, in.resize_short, in.crop, in.bgr, in.mean[0], in.mean[1], in.mean[2], in.std[0], in.std[1],
               in.std[2], in.output_exp);
    else {
        printf("%s: input %dx%dx%d uint8, %d classes, %d layers (from %s)\n", tern_path ? tern_path : "model", in.channels, in.height, in.width,
               in.classes, in.layers, in.source);
        printf("preprocessing (recorded; normalisation folded into the first layer): %s%s\n", pps,
               in.resize_short || in.crop ? "" : " (no resize/crop recorded: other image sizes are resized darknet-style)");
        printf("logits: int32, value = logit * 2^-%d\n", in.output_exp);
        printf("%3s %-30s %-8s %-18s %-6s %6s %6s %7s %-7s %12s %7s\n", "#", "name", "op", "out (CxHxW)", "w:N", "clust", "zero%",
               "SQNR", "act", "MACs", "repl%");
    }
    int widx = 0;
    for (int i = 0; i < in.layers; i++) {
        tern_layer_info L;
        if (tern_model_layer(m, i, &L)) { cli_fail("report"); return; }
        char shape[40], wn[16] = "", act[24];
        snprintf(shape, sizeof shape, "%dx%dx%d", L.out_c, L.out_h, L.out_w);
        snprintf(act, sizeof act, "%s2^%d", L.out_wide ? "i32 " : L.out_signed ? "s8 " : "u8 ", -L.out_exp);
        int is_conv = L.weights != 0;
        double rep = (double)L.macs * L.mult_replaced;
        if (is_conv) {
            if (L.cluster_all) snprintf(wn, sizeof wn, "%c:all", L.weights);
            else snprintf(wn, sizeof wn, "%c:%d", L.weights, L.cluster);
            tot_macs += (double)L.macs;
            tot_rep += rep;
        }
        if (json) {
            printf("%s\n  {\"index\": %d, \"name\": \"%s\", \"op\": \"%s\", \"out\": [%d,%d,%d], \"exp\": %d, \"signed\": %d, \"wide\": %d",
                   i ? "," : "", i, L.name, L.op, L.out_c, L.out_h, L.out_w, L.out_exp, L.out_signed, L.out_wide);
            if (is_conv) {
                char sq[32];   /* an exactly quantized layer has an infinite SQNR: JSON has no inf */
                if (isfinite(L.sqnr_db)) snprintf(sq, sizeof sq, "%.2f", L.sqnr_db);
                else snprintf(sq, sizeof sq, "null");
                printf(", \"weight_layer\": %d, \"weights\": \"%c\", \"cluster\": %d, \"clusters\": %d, \"zero_frac\": %.4f, \"sqnr_db\": %s, "
                       "\"macs\": %lld, \"mult_replaced\": %.4f",
                       widx, L.weights, L.cluster, L.clusters, L.zero_frac, sq, (long long)L.macs, L.mult_replaced);
            }
            printf("}");
        } else if (is_conv)
            printf("%3d %-30.30s %-8s %-18s %-6s %6d %6.1f %7.2f %-7s %12lld %7.1f\n", widx, L.name, "conv", shape, wn, L.clusters, 100 * L.zero_frac,
                   L.sqnr_db, act, (long long)L.macs, 100 * L.mult_replaced);
        else
            printf("%3s %-30.30s %-8s %-18s %-6s %6s %6s %7s %-7s %12s %7s\n", "", L.name, L.op, shape, "", "", "", "", act, "", "");
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

void cli_report_qmodel(const tern_qmodel *qm, const char *tern_path, const char *onnx_path, int json) {
    tern_model *m;
    if (tern_model_wrap(qm, NULL, &m)) { cli_fail("report"); return; }
    cli_report_model(m, tern_path, onnx_path, json);
    tern_model_free(m);
}
