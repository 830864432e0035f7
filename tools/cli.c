/* Shared CLI helpers. */
#include "cli.h"
#include "graph/fp32.h"
#include "api/api.h"
#include <math.h>
#include <string.h>
#include <unistd.h>

void cli_opts_init(cli_opts *o) {
    memset(o, 0, sizeof *o);
    for (int c = 0; c < 3; c++) o->std[c] = 1.0f;
    o->batch = 64;
    o->threads = 1;
    o->topk = 5;
}

const char *cli_common_help(void) {
    return "  --data PATH        CIFAR-10 .bin file or a folder of images\n"
           "  --labels FILE      class ids, one per line, for image folders (file names start with the id)\n"
           "  --names FILE       class names, one per line (display)\n"
           "  --preset NAME      cifar (ImageNet mean/std, 32x32), imagenet (resize 256, crop 224, mean/std),\n"
           "                     darknet (resize 224, crop 224, p/255)\n"
           "  --mean A,B,C       input mean on the 0..1 pixel scale, in the order the channels are fed:\n"
           "                     R,G,B, or B,G,R with --bgr (default: the model's metadata, else 0,0,0)\n"
           "  --std A,B,C        input std on the 0..1 pixel scale, same order (default: metadata, else 1,1,1)\n"
           "  --resize N         resize the shorter side to N (bilinear, darknet's resize)\n"
           "  --crop N           centre crop NxN\n"
           "  --bgr              feed channels as B,G,R (--mean/--std then list B,G,R too)\n"
           "  --count N          use N items spread evenly over the dataset (default all)\n"
           "  --offset K         start the spread at item K (--count 500 --offset 1 on 1000 items: the odd ones)\n"
           "  --batch N          batch size (default 64)\n"
           "  --threads N        threads (default 1)\n"
           "  --json             machine-readable output on stdout\n"
           "  --quiet            no progress bar\n"
           "  --dump FILE        (eval) write every image's logits, one line each, to FILE\n";
}

static int parse_triple(const char *s, float *v) {
    return sscanf(s, "%f,%f,%f", &v[0], &v[1], &v[2]) == 3;
}

static int parse_int(const char *s, int lo, int *v) {
    char *end;
    long x = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || x < lo || x > 1000000000) return 0;
    *v = (int)x;
    return 1;
}

int cli_parse_common(cli_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "tern: %s needs a value\n", a); return -1; } (*i)++; } while (0)
#define BAD() do { fprintf(stderr, "tern: bad value for %s: '%s'\n", a, v); return -1; } while (0)
    if (!strcmp(a, "--data")) { NEED_VALUE(); o->data = v; }
    else if (!strcmp(a, "--labels")) { NEED_VALUE(); o->labels = v; }
    else if (!strcmp(a, "--names")) { NEED_VALUE(); o->names = v; }
    else if (!strcmp(a, "--preset")) { NEED_VALUE(); o->preset = v; }
    else if (!strcmp(a, "--dump")) { NEED_VALUE(); o->dump = v; }
    else if (!strcmp(a, "--mean")) { NEED_VALUE(); if (!parse_triple(v, o->mean)) BAD(); o->have_norm = 1; }
    else if (!strcmp(a, "--std")) { NEED_VALUE(); if (!parse_triple(v, o->std) || o->std[0] <= 0 || o->std[1] <= 0 || o->std[2] <= 0) BAD(); o->have_norm = 1; }
    else if (!strcmp(a, "--resize")) { NEED_VALUE(); if (!parse_int(v, 1, &o->pp.resize_short)) BAD(); o->have_pp = 1; }
    else if (!strcmp(a, "--crop")) { NEED_VALUE(); if (!parse_int(v, 1, &o->pp.crop_h)) BAD(); o->pp.crop_w = o->pp.crop_h; o->have_pp = 1; }
    else if (!strcmp(a, "--bgr")) o->pp.bgr = 1;
    else if (!strcmp(a, "--count")) { NEED_VALUE(); if (!parse_int(v, 1, &o->count)) BAD(); }
    else if (!strcmp(a, "--offset")) { NEED_VALUE(); if (!parse_int(v, 0, &o->offset)) BAD(); }
    else if (!strcmp(a, "--batch")) { NEED_VALUE(); if (!parse_int(v, 1, &o->batch) || o->batch > 4096) BAD(); }
    else if (!strcmp(a, "--threads")) { NEED_VALUE(); if (!parse_int(v, 1, &o->threads) || o->threads > 256) BAD(); }
    else if (!strcmp(a, "--json")) o->json = 1;
    else if (!strcmp(a, "--quiet")) o->quiet = 1;
    else return 0;
    return 1;
#undef NEED_VALUE
#undef BAD
}

int cli_apply_preset(cli_opts *o) {
    if (!o->preset) return 1;
    static const float imean[3] = {0.485f, 0.456f, 0.406f}, istd[3] = {0.229f, 0.224f, 0.225f};
    if (!strcmp(o->preset, "cifar") || !strcmp(o->preset, "imagenet")) {
        memcpy(o->mean, imean, sizeof imean);
        memcpy(o->std, istd, sizeof istd);
        o->have_norm = 1;
        if (!strcmp(o->preset, "imagenet") && !o->have_pp) {
            o->pp.resize_short = 256;
            o->pp.crop_h = o->pp.crop_w = 224;
            o->have_pp = 1;
        }
    } else if (!strcmp(o->preset, "darknet")) {
        o->have_norm = 1; /* p/255: mean 0, std 1 */
        if (!o->have_pp) {
            o->pp.resize_short = 224;
            o->pp.crop_h = o->pp.crop_w = 224;
            o->have_pp = 1;
        }
    } else {
        fprintf(stderr, "tern: unknown preset '%s' (cifar, imagenet, darknet)\n", o->preset);
        return 0;
    }
    return 1;
}

int cli_fail(const char *what) {
    fprintf(stderr, "tern: %s: %s\n", what, tern_last_error());
    return 1;
}

/* ---- FP32 models (ONNX) ---- */
typedef struct {
    tern_graph *g;
    tern_fp32_ctx *ctx;
    float *in;
    int cap;
} fp32_model;

static enum tern_status fp32_run(cli_model *m, const uint8_t *px, int batch, double *scores) {
    fp32_model *f = m->impl;
    size_t per = (size_t)m->c * m->h * m->w, plane = (size_t)m->h * m->w;
    if (batch > f->cap) {
        free(f->in);
        f->in = tern_malloc(per * (size_t)batch * sizeof(float));
        if (!f->in) { f->cap = 0; return TERN_STATUS_NOMEM; }
        f->cap = batch;
    }
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < m->c; c++) {
            float mean = c < 3 ? m->mean[c] : 0, inv = c < 3 ? 1.0f / m->std[c] : 1;
            const uint8_t *s = px + b * per + c * plane;
            float *d = f->in + b * per + c * plane;
            for (size_t i = 0; i < plane; i++) d[i] = ((float)s[i] / 255.0f - mean) * inv;
        }
    const float *y;
    int64_t yd[TERN_MAX_DIMS];
    int nd;
    enum tern_status st = tern_fp32_run(f->ctx, f->in, batch, &y, yd, &nd);
    if (st) return st;
    for (int64_t i = 0; i < (int64_t)batch * m->nclasses; i++) scores[i] = y[i];
    return TERN_STATUS_OK;
}

static void fp32_free(cli_model *m) {
    fp32_model *f = m->impl;
    if (f) {
        tern_fp32_ctx_free(f->ctx);
        tern_graph_free(f->g);
        free(f->in);
        free(f);
    }
}

const struct tern_graph *cli_model_graph(const cli_model *m) {
    return strcmp(m->kind, "fp32") ? NULL : ((const fp32_model *)m->impl)->g;
}

/* ---- integer models (.tern), through include/tern.h only ---- */
typedef struct {
    int32_t *logits;            /* [cap][nclasses] */
    int cap;
} int_model;

static enum tern_status int_run(cli_model *m, const uint8_t *px, int batch, double *scores) {
    int_model *im = m->impl;
    if (batch > im->cap) {
        free(im->logits);
        im->logits = malloc(sizeof(int32_t) * (size_t)batch * (size_t)m->nclasses);
        im->cap = im->logits ? batch : 0;
        if (!im->logits) return TERN_STATUS_NOMEM;
    }
    enum tern_status st = tern_model_run(m->tm, px, batch, im->logits);
    if (st) return st;
    for (int64_t i = 0; i < (int64_t)batch * m->nclasses; i++) scores[i] = im->logits[i];
    return TERN_STATUS_OK;
}

static void int_free(cli_model *m) {
    int_model *im = m->impl;
    if (im) free(im->logits);
    free(im);
    tern_model_free(m->tm);
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static enum tern_status int_load(const char *path, const cli_opts *o, cli_model *m) {
    int_model *im = calloc(1, sizeof *im);
    if (!im) return TERN_STATUS_NOMEM;
    m->impl = im;
    m->run = int_run;
    m->free = int_free;
    m->kind = "int8";
    tern_model_options mo;
    tern_model_options_init(&mo);
    mo.threads = o->threads;
    mo.max_batch = o->batch;
    enum tern_status st = tern_model_load(path, &mo, &m->tm);
    if (st) return st;
    tern_model_info in;
    if ((st = tern_model_describe(m->tm, &in))) return st;
    m->c = in.channels;
    m->h = in.height;
    m->w = in.width;
    m->nclasses = in.classes;
    m->has_pp = 1;
    m->pp.resize_short = in.resize_short;
    m->pp.crop_h = m->pp.crop_w = in.crop;
    m->pp.bgr = in.bgr;
    m->scale = ldexp(1.0, -in.output_exp);
    memcpy(m->mean, in.mean, sizeof m->mean);
    memcpy(m->std, in.std, sizeof m->std);
    if (o->have_norm && !o->preset)
        fprintf(stderr, "tern: %s: --mean/--std ignored: the .tern file has its normalisation folded into the first layer\n", path);
    return TERN_STATUS_OK;
}

void cli_pp_str(const tern_preproc *pp, const float *mean, const float *std, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    if (pp->resize_short) k += (size_t)snprintf(buf + k, n - k, "resize %d, ", pp->resize_short);
    if (k < n && pp->crop_h) k += (size_t)snprintf(buf + k, n - k, "crop %dx%d, ", pp->crop_w, pp->crop_h);
    if (k < n)
        snprintf(buf + k, n - k, "fed %s, mean %g,%g,%g, std %g,%g,%g", pp->bgr ? "B,G,R" : "R,G,B", mean[0], mean[1], mean[2], std[0], std[1],
                 std[2]);
}

tern_preproc cli_effective_pp(const cli_opts *o, const cli_model *m) {
    if (o->have_pp) return o->pp;
    tern_preproc pp = o->pp;
    if (m->has_pp && (m->pp.resize_short || m->pp.crop_h)) {
        pp.resize_short = m->pp.resize_short;
        pp.crop_h = m->pp.crop_h;
        pp.crop_w = m->pp.crop_w;
    } else { /* bring images to the model's input size darknet-style */
        pp.resize_short = m->h < m->w ? m->h : m->w;
        pp.crop_h = m->h;
        pp.crop_w = m->w;
    }
    if (m->has_pp) pp.bgr = m->pp.bgr || o->pp.bgr;
    return pp;
}

enum tern_status cli_model_load(const char *path, const cli_opts *o, cli_model **out) {
    *out = NULL;
    cli_model *m = tern_calloc(1, sizeof *m);
    if (!m) return TERN_STATUS_NOMEM;
    if (has_suffix(path, ".tern")) {
        m->opts = o;
        enum tern_status st = int_load(path, o, m);
        if (st) { cli_model_free(m); return st; }
        *out = m;
        return TERN_STATUS_OK;
    }
    if (!m) return TERN_STATUS_NOMEM;
    m->opts = o;
    fp32_model *f = tern_calloc(1, sizeof *f);
    if (!f) { free(m); return TERN_STATUS_NOMEM; }
    m->impl = f;
    m->run = fp32_run;
    m->free = fp32_free;
    m->kind = "fp32";
    enum tern_status st = tern_onnx_import(path, &f->g);
    if (st) { cli_model_free(m); return st; }
    const tern_value *in = &f->g->values[f->g->input], *y = &f->g->values[f->g->output];
    if (in->ndim != 4 || in->dims[1] < 1 || in->dims[1] > 4) {
        cli_model_free(m);
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: input '%s' is not an image batch [N, C, H, W]", path, in->name);
    }
    m->c = (int)in->dims[1];
    m->h = (int)in->dims[2];
    m->w = (int)in->dims[3];
    m->nclasses = (int)tern_value_numel_per_image(y);
    m->scale = 1;
    /* normalisation and sizes: options, else what the model's metadata_props record, else none */
    const tern_graph_meta *md = &f->g->meta;
    for (int c = 0; c < 3; c++) {
        m->mean[c] = o->have_norm || !md->has_mean ? o->mean[c] : md->mean[c];
        m->std[c] = o->have_norm || !md->has_std ? o->std[c] : md->std[c];
    }
    if (md->has_bgr || md->has_resize || md->has_crop) {
        m->has_pp = 1;
        m->pp.bgr = md->has_bgr && md->bgr;
        m->pp.resize_short = md->has_resize ? md->resize : 0;
        m->pp.crop_h = m->pp.crop_w = md->has_crop ? md->crop : 0;
    }
    char rec[256], used[256];
    tern_graph_meta_str(f->g, rec, sizeof rec);
    tern_preproc pp = cli_effective_pp(o, m);
    cli_pp_str(&pp, m->mean, m->std, used, sizeof used);
    if (rec[0] && !o->have_norm && !o->have_pp)
        fprintf(stderr, "tern: %s: preprocessing from the model's metadata (%s): %s\n", path, rec, used);
    else if (!rec[0] && !o->have_norm)
        fprintf(stderr, "tern: %s: no --preset/--mean/--std given and the model records none: %s (pixels p/255)\n", path, used);
    f->ctx = tern_fp32_ctx_new(f->g);
    if (!f->ctx) { cli_model_free(m); return TERN_STATUS_NOMEM; }
    tern_fp32_set_threads(o->threads);
    *out = m;
    return TERN_STATUS_OK;
}

void cli_model_free(cli_model *m) {
    if (!m) return;
    if (m->free) m->free(m);
    free(m);
}

enum tern_status cli_dataset_open(const cli_opts *o, const cli_model *m, tern_dataset **ds) {
    tern_preproc pp = cli_effective_pp(o, m);
    enum tern_status st = tern_dataset_open(o->data, o->labels, &pp, ds);
    if (st) return st;
    int c, h, w;
    tern_dataset_dims(*ds, &c, &h, &w);
    if (c != m->c || h != m->h || w != m->w) {
        tern_dataset_free(*ds);
        *ds = NULL;
        return tern_errorf(TERN_STATUS_SHAPE, "%s: images are %dx%dx%d but the model takes %dx%dx%d", o->data, c, h, w, m->c, m->h, m->w);
    }
    int k = tern_dataset_nclasses(*ds); /* a label the model cannot output would be scored as a silent miss */
    if ((o->labels && k != m->nclasses) || k > m->nclasses) {
        tern_dataset_free(*ds);
        *ds = NULL;
        return tern_errorf(TERN_STATUS_SHAPE, "%s: %s %d classes but the model has %d outputs", o->labels ? o->labels : o->data,
                           o->labels ? "the label file lists" : "the labels name", k, m->nclasses);
    }
    return TERN_STATUS_OK;
}

int *cli_subset(int n, int *count, int offset) { return tern_spread(n, count, offset); }

void cli_progress(const char *what, int done, int total, double t0, int quiet) {
    if (quiet || !isatty(2)) return;
    double el = tern_now() - t0, rate = el > 0 ? done / el : 0;
    int width = 30, fill = total ? (int)((int64_t)done * width / total) : width;
    fprintf(stderr, "\r%s [%.*s%*s] %d/%d %.0f img/s", what, fill, "==============================", width - fill, "", done, total, rate);
    if (done >= total) fprintf(stderr, "\n");
    fflush(stderr);
}

void cli_topk(const double *s, int n, int k, int *idx) {
    for (int j = 0; j < k; j++) idx[j] = -1;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) {
            if (idx[j] < 0 || s[i] > s[idx[j]]) {
                for (int t = k - 1; t > j; t--) idx[t] = idx[t - 1];
                idx[j] = i;
                break;
            }
        }
    }
}
