/* tern_quantize_file (include/tern.h): ONNX file + calibration data -> .tern file, the library side
 * of `tern quantize`; and the small helpers it shares with the CLI (spread, FP32 logits). */
#include "api/api.h"
#include "core/outfile.h"
#include "graph/fp32.h"
#include <string.h>

int *tern_spread(int n, int *count, int offset) {
    if (offset < 0 || offset >= n) offset = 0;
    if (*count <= 0 || *count > n - offset) *count = n - offset;
    int *idx = tern_malloc(sizeof(int) * (size_t)(*count ? *count : 1));
    if (!idx) return NULL;
    for (int i = 0; i < *count; i++) idx[i] = offset + (int)((int64_t)i * n / *count);
    for (int i = 0; i < *count; i++)
        if (idx[i] >= n) idx[i] = n - 1 - (*count - 1 - i); /* keep inside, still increasing */
    return idx;
}

enum tern_status tern_calib_read(tern_dataset *ds, const char *src, const int *idx, int n, uint8_t *px, size_t per) {
    int nc = tern_dataset_nclasses(ds), labelled = nc > 0, covered = 0;
    char *seen = nc > 0 ? tern_calloc((size_t)nc, 1) : NULL;
    if (nc > 0 && !seen) return TERN_STATUS_NOMEM;
    enum tern_status st = TERN_STATUS_OK;
    for (int i = 0; i < n && !st; i++) {
        int lab = -1;
        st = tern_dataset_read(ds, idx[i], px + per * (size_t)i, &lab);
        if (st || !labelled) continue;
        if (lab < 0 || lab >= nc) labelled = 0;
        else if (!seen[lab]) seen[lab] = 1, covered++;
    }
    free(seen);
    int could = n < nc ? n : nc;
    if (!st && labelled && n > 0 && covered * 5 < could)
        fprintf(stderr, "tern: warning: calibration source %s: its %d images cover %d of the model's %d classes; the post-training "
                        "pass fits the images it sees, and images of more classes generalise better\n", src, n, covered, nc);
    return st;
}

enum tern_status tern_fp32_logits(const tern_graph *g, const float mean[3], const float std[3], const uint8_t *px, int n,
                                  int threads, double *logits) {
    const tern_value *in = &g->values[g->input];
    int c = (int)in->dims[1], batch = 50;
    size_t plane = (size_t)in->dims[2] * in->dims[3], per = (size_t)c * plane;
    int64_t nc = tern_value_numel_per_image(&g->values[g->output]);
    tern_fp32_ctx *x = tern_fp32_ctx_new(g);
    float *buf = tern_malloc(per * (size_t)batch * sizeof(float));
    enum tern_status st = x && buf ? TERN_STATUS_OK : TERN_STATUS_NOMEM;
    tern_fp32_set_threads(threads);
    for (int s = 0; s < n && !st; s += batch) {
        int b = n - s < batch ? n - s : batch;
        for (int i = 0; i < b; i++)
            for (int k = 0; k < c; k++) {
                float mu = k < 3 ? mean[k] : 0, inv = k < 3 ? 1.0f / std[k] : 1;
                const uint8_t *src = px + per * (size_t)(s + i) + plane * (size_t)k;
                float *d = buf + per * (size_t)i + plane * (size_t)k;
                for (size_t p = 0; p < plane; p++) d[p] = ((float)src[p] / 255.0f - mu) * inv;
            }
        const float *y;
        int64_t yd[TERN_MAX_DIMS];
        int nd;
        st = tern_fp32_run(x, buf, b, &y, yd, &nd);
        for (int64_t i = 0; !st && i < (int64_t)b * nc; i++) logits[(int64_t)s * nc + i] = y[i];
    }
    free(buf);
    tern_fp32_ctx_free(x);
    return st;
}

enum tern_status tern_quantize_max_drop(const tern_graph *g, tern_qopts *q, tern_dataset *ds, const int *calib_idx,
                                        const uint8_t *calib_px, int ncalib, int drop_count, double max_drop, double margin,
                                        double min_repl, int quiet, tern_qmodel **out) {
    *out = NULL;
    const tern_value *in = &g->values[g->input];
    tern_budget b = {.g = g, .calib = calib_px, .ncalib = ncalib, .c = (int)in->dims[1], .h = (int)in->dims[2], .w = (int)in->dims[3],
                     .nclasses = (int)tern_value_numel_per_image(&g->values[g->output]), .batch = 50, .threads = q->threads};
    size_t per = (size_t)b.c * b.h * b.w;
    /* the split: drop_count items spread over those of the data that are not calibration images */
    int nds = tern_dataset_count(ds), nfree = 0;
    char *used = tern_calloc((size_t)nds + 1, 1);
    int *didx = NULL, *freei = tern_malloc(sizeof(int) * ((size_t)nds + 1));
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
    uint8_t *dpx = didx ? tern_malloc(per * (size_t)drop_count) : NULL;
    int *dlab = tern_malloc(sizeof(int) * (size_t)(drop_count > 0 ? drop_count : 1));
    double *fp = tern_malloc(sizeof(double) * (size_t)(drop_count > 0 ? drop_count : 1) * (size_t)b.nclasses);
    enum tern_status st = didx && dpx && dlab && fp ? TERN_STATUS_OK : TERN_STATUS_NOMEM;
    if (!st && !nfree) st = tern_errorf(TERN_STATUS_INVALID_ARG, "max-drop: every image of the calibration data is a calibration image: no split left");
    for (int i = 0; i < drop_count && !st; i++) {
        st = tern_dataset_read(ds, didx[i], dpx + per * (size_t)i, &dlab[i]);
        if (!st && dlab[i] < 0) st = tern_errorf(TERN_STATUS_INVALID_ARG, "max-drop needs a labelled calibration set (--labels for an image folder)");
    }
    if (!st) st = tern_fp32_logits(g, q->mean, q->std, dpx, drop_count, q->threads, fp);
    if (!st) {
        int c1 = 0;
        for (int i = 0; i < drop_count; i++) {
            const double *f = fp + (size_t)i * b.nclasses;
            int top = 0;
            for (int k = 1; k < b.nclasses; k++)
                if (f[k] > f[top]) top = k;
            c1 += top == dlab[i];
        }
        b.px = dpx;
        b.labels = dlab;
        b.n = drop_count;
        b.fp = fp;
        b.fp_top1 = 100.0 * c1 / drop_count;
        st = tern_max_drop_search(&b, q, max_drop, margin, min_repl, quiet, out);
    }
    free(didx);
    free(dpx);
    free(dlab);
    free(fp);
    return st;
}

void tern_graph_meta_str(const tern_graph *g, char *buf, size_t n) {
    const tern_graph_meta *t = &g->meta;
    size_t k = 0;
    buf[0] = 0;
#define PUT(...) do { if (k < n) k += (size_t)snprintf(buf + k, n - k, __VA_ARGS__); } while (0)
    if (t->has_mean) PUT("%smean %g,%g,%g", k ? ", " : "", t->mean[0], t->mean[1], t->mean[2]);
    if (t->has_std) PUT("%sstd %g,%g,%g", k ? ", " : "", t->std[0], t->std[1], t->std[2]);
    if (t->has_bgr) PUT("%s%s", k ? ", " : "", t->bgr ? "fed B,G,R" : "fed R,G,B");
    if (t->has_resize) PUT("%sresize %d", k ? ", " : "", t->resize);
    if (t->has_crop) PUT("%scrop %d", k ? ", " : "", t->crop);
#undef PUT
}

/* Defaults: the quantizer's own (tern_qopts_init), so the API follows when they change. */
void tern_quantize_options_init(tern_quantize_options *o) {
    tern_qopts q;
    tern_qopts_init(&q);
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->calib_count = 500;
    o->weights = q.wtype == TERN_WTYPE_INT8 ? '8' : q.wtype == TERN_WTYPE_INT4 ? '4' : 't';
    o->cluster = q.cluster;
    o->twn_rule = q.trule == TERN_TRULE_TWN;
    o->all_layers = !q.keep_ends_8bit;
    o->calib_maxabs = q.calib_rule == TERN_CALIB_MAXABS;
    o->bias_corr = q.bias_corr;
    o->opt_scales = q.opt_scales;
    o->opt_round = q.opt_round;
    o->opt_images = q.opt_images;
    o->opt_flip = q.opt_flip;
    o->opt_damp = q.opt_damp;
    o->max_drop = -1;
    o->min_replaced = 0.8;
    o->drop_count = 5000;
    for (int c = 0; c < 3; c++) o->std[c] = 1;
    o->threads = q.threads > 0 ? q.threads : 1;
    o->verbose = q.verbose;
}

#define OPT_ERR(...) tern_errorf(TERN_STATUS_INVALID_ARG, "tern_quantize_options: " __VA_ARGS__)

/* The user's options over tern_qopts, and the input preprocessing: explicit settings, then the
 * preset, then what the model's metadata_props record, then none (p/255; images brought to the
 * input size darknet-style). */
static enum tern_status to_qopts(const tern_quantize_options *o, const tern_graph *g, tern_qopts *q, tern_preproc *pp) {
    tern_qopts_init(q);
    switch (o->weights) {
    case 't': q->wtype = TERN_WTYPE_TERNARY; break;
    case '4': q->wtype = TERN_WTYPE_INT4; break;
    case '8': q->wtype = TERN_WTYPE_INT8; break;
    default: return OPT_ERR("weights '%c' (t, 4 or 8)", o->weights ? o->weights : '?');
    }
    if (o->cluster < 0) return OPT_ERR("cluster %d (N >= 1, or 0 = all)", o->cluster);
    q->cluster = o->cluster;
    q->trule = o->twn_rule ? TERN_TRULE_TWN : TERN_TRULE_EXACT;
    q->calib_rule = o->calib_maxabs ? TERN_CALIB_MAXABS : TERN_CALIB_MSE;
    q->keep_ends_8bit = !o->all_layers;
    if (o->nlayer_rules < 0 || (o->nlayer_rules > 0 && !o->layer_rules)) return OPT_ERR("%d layer rules without a table", o->nlayer_rules);
    for (int i = 0; i < o->nlayer_rules; i++)
        if (!tern_qopts_add_rule(q, o->layer_rules[i] ? o->layer_rules[i] : "(null)"))
            return tern_error_prefix(TERN_STATUS_INVALID_ARG, "tern_quantize_options: layer rule %d", i);
    q->bias_corr = o->bias_corr;
    q->opt_scales = o->opt_scales;
    q->opt_round = o->opt_round;
    if (o->opt_images < 0) return OPT_ERR("opt_images %d (0 = by the number of classes)", o->opt_images);
    q->opt_images = o->opt_images;
    q->opt_flip = o->opt_flip;
    if (!(o->opt_damp >= 0)) return OPT_ERR("opt_damp %g", o->opt_damp);
    q->opt_damp = o->opt_damp;
    if (o->threads < 1 || o->threads > 256) return OPT_ERR("threads %d (1..256)", o->threads);
    q->threads = o->threads;
    q->verbose = o->verbose;
    /* preprocessing */
    static const float imean[3] = {0.485f, 0.456f, 0.406f}, istd[3] = {0.229f, 0.224f, 0.225f};
    int preset_norm = 0, preset_size = 0;
    if (o->preset) {
        if (!strcmp(o->preset, "cifar")) preset_norm = 1;
        else if (!strcmp(o->preset, "imagenet")) preset_norm = 1, preset_size = 256;
        else if (!strcmp(o->preset, "darknet")) preset_size = 224;
        else return OPT_ERR("preset '%s' (cifar, imagenet, darknet)", o->preset);
    }
    const tern_graph_meta *t = &g->meta;
    for (int c = 0; c < 3; c++) {
        if (o->has_norm && !(o->std[c] > 0)) return OPT_ERR("std[%d] = %g (must be > 0)", c, o->std[c]);
        q->mean[c] = o->has_norm ? o->mean[c] : preset_norm ? imean[c] : t->has_mean ? t->mean[c] : 0;
        q->std[c] = o->has_norm ? o->std[c] : preset_norm ? istd[c] : t->has_std ? t->std[c] : 1;
    }
    const tern_value *in = &g->values[g->input];
    int h = (int)in->dims[2], w = (int)in->dims[3];
    memset(pp, 0, sizeof *pp);
    pp->bgr = o->bgr || (t->has_bgr && t->bgr);
    if (o->resize_short < 0 || o->crop < 0) return OPT_ERR("resize_short %d, crop %d", o->resize_short, o->crop);
    if (o->resize_short || o->crop) pp->resize_short = o->resize_short, pp->crop_h = pp->crop_w = o->crop;
    else if (preset_size) pp->resize_short = preset_size, pp->crop_h = pp->crop_w = 224;
    else if ((t->has_resize && t->resize) || (t->has_crop && t->crop)) pp->resize_short = t->resize, pp->crop_h = pp->crop_w = t->crop;
    else pp->resize_short = h < w ? h : w, pp->crop_h = h, pp->crop_w = w;
    q->bgr = pp->bgr;
    q->resize_short = pp->resize_short;
    q->crop = pp->crop_h;
    return TERN_STATUS_OK;
}

enum tern_status tern_quantize_file(const char *onnx_path, const char *out_path, const tern_quantize_options *user) {
    if (!onnx_path || !out_path || !user) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_quantize_file: NULL argument");
    tern_quantize_options o;
    tern_quantize_options_init(&o);
    if (user->size < offsetof(tern_quantize_options, calib) + sizeof o.calib || user->size > sizeof o)
        return OPT_ERR("size %zu is not that of this library's struct (%zu): call tern_quantize_options_init", user->size, sizeof o);
    memcpy(&o, user, user->size);
    if (!o.calib) return OPT_ERR("calib (the calibration data) is not set");
    const char *inputs[] = {onnx_path, o.calib, o.labels}; /* never overwrite an input or a device (core/outfile.h) */
    enum tern_status ost = tern_output_check(out_path, "out_path", inputs, 3);
    if (ost) return ost;
    if (o.calib_count < 1 || o.calib_offset < 0) return OPT_ERR("calib_count %d, calib_offset %d", o.calib_count, o.calib_offset);
    if (o.max_drop >= 0 && (o.drop_count < 1 || o.drop_margin < 0 || o.min_replaced < 0 || o.min_replaced > 1))
        return OPT_ERR("drop_count %d, drop_margin %g, min_replaced %g", o.drop_count, o.drop_margin, o.min_replaced);
    tern_graph *g = NULL;
    tern_dataset *ds = NULL;
    tern_qmodel *qm = NULL;
    uint8_t *px = NULL;
    int *idx = NULL;
    tern_qopts q;
    tern_preproc pp;
    enum tern_status st = tern_onnx_import(onnx_path, &g);
    if (st) goto done;
    const tern_value *in = &g->values[g->input];
    if (in->ndim != 4 || in->dims[1] != 3) {
        st = tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: input '%s' is not a batch of 3-channel images [N, 3, H, W]", onnx_path, in->name);
        goto done;
    }
    if ((st = to_qopts(&o, g, &q, &pp))) goto done;
    if ((st = tern_dataset_open(o.calib, o.labels, &pp, &ds))) goto done;
    int c, h, w;
    tern_dataset_dims(ds, &c, &h, &w);
    if (c != in->dims[1] || h != in->dims[2] || w != in->dims[3]) {
        st = tern_errorf(TERN_STATUS_SHAPE, "%s: images are %dx%dx%d but the model takes %dx%dx%d", o.calib, c, h, w, (int)in->dims[1],
                         (int)in->dims[2], (int)in->dims[3]);
        goto done;
    }
    int count = o.calib_count;
    idx = tern_spread(tern_dataset_count(ds), &count, o.calib_offset);
    size_t per = (size_t)c * h * w;
    px = idx ? tern_malloc(per * (size_t)count) : NULL;
    if (!px) { st = TERN_STATUS_NOMEM; goto done; }
    if ((st = tern_calib_read(ds, o.calib, idx, count, px, per))) goto done;
    if (o.max_drop >= 0)
        st = tern_quantize_max_drop(g, &q, ds, idx, px, count, o.drop_count, o.max_drop, o.drop_margin, o.min_replaced, !o.verbose, &qm);
    else st = tern_quantize(g, &q, px, count, &qm);
    if (!st) st = tern_qmodel_save(qm, out_path);
done:
    free(px);
    free(idx);
    tern_qmodel_free(qm);
    tern_dataset_free(ds);
    tern_graph_free(g);
    return st;
}
