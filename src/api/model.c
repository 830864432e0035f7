/* The public model handle (include/tern.h) over the .tern reader (format/qmodel) and the integer
 * engine (exec/qexec). The engine (packed weights, planned buffers) is built at the first run,
 * so describing a model (tern info) costs no activation memory. */
#include "api/api.h"
#include "data/data.h"
#include "engine/qexec.h"
#include <math.h>
#include <string.h>
#include <unistd.h>

struct tern_model {
    tern_qmodel *qm;
    int owns_qm;                /* 0 for tern_model_wrap: the caller's model */
    tern_qexec *e;              /* NULL until the first run */
    enum tern_isa isa;
    int threads, max_batch, profiling;
};

const char *tern_version(void) {
#define TERN_STR2(x) #x
#define TERN_STR(x) TERN_STR2(x)
    return TERN_STR(TERN_VERSION_MAJOR) "." TERN_STR(TERN_VERSION_MINOR) "." TERN_STR(TERN_VERSION_PATCH);
}

void tern_free(void *p) { free(p); }

void tern_model_options_init(tern_model_options *o) {
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
}

/* Fields the caller's struct has (by its size) over the defaults. */
static enum tern_status resolve_options(const tern_model_options *in, tern_model *m) {
    tern_model_options o;
    tern_model_options_init(&o);
    if (in) {
        if (in->size < offsetof(tern_model_options, threads) || in->size > sizeof o)
            return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_options: size %zu is not that of this library's struct (%zu): "
                               "call tern_model_options_init", in->size, sizeof o);
        memcpy(&o, in, in->size);
    }
    if (o.threads < 0 || o.threads > 256) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_options: threads %d (0..256)", o.threads);
    if (o.max_batch < 0 || o.max_batch > 4096) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_options: max_batch %d (0..4096)", o.max_batch);
    if ((int)o.kernels < TERN_KERNELS_AUTO || o.kernels > TERN_KERNELS_AVX512VNNI)
        return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_options: kernels %d (0..%d)", (int)o.kernels, TERN_KERNELS_AVX512VNNI);
    if (o.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = n < 1 ? 1 : n > 256 ? 256 : (int)n;
    }
    m->threads = o.threads;
    m->max_batch = o.max_batch ? o.max_batch : 64;
    if (o.kernels == TERN_KERNELS_AUTO) m->isa = tern_active_isa();
    else {
        m->isa = (enum tern_isa)(o.kernels - 1);
        if (m->isa > tern_cpu_isa())
            return tern_errorf(TERN_STATUS_UNSUPPORTED, "tern_model_options: kernels %s asked for, but this CPU has at most %s",
                               tern_isa_name(m->isa), tern_isa_name(tern_cpu_isa()));
    }
    return TERN_STATUS_OK;
}

static enum tern_status finish_load(tern_qmodel *qm, int owns, const tern_model_options *opts, tern_model **out) {
    tern_model *m = tern_calloc(1, sizeof *m);
    if (!m) {
        if (owns) tern_qmodel_free(qm);
        return TERN_STATUS_NOMEM;
    }
    m->qm = qm;
    m->owns_qm = owns;
    enum tern_status st = resolve_options(opts, m);
    if (st) {
        tern_model_free(m);
        return st;
    }
    *out = m;
    return TERN_STATUS_OK;
}

enum tern_status tern_model_load(const char *path, const tern_model_options *opts, tern_model **out) {
    if (!out) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_load: out is NULL");
    *out = NULL;
    if (!path) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_load: path is NULL");
    tern_qmodel *qm;
    enum tern_status st = tern_qmodel_load(path, &qm);
    return st ? st : finish_load(qm, 1, opts, out);
}

enum tern_status tern_model_load_memory(const void *data, size_t len, const char *name, const tern_model_options *opts,
                                        tern_model **out) {
    if (!out) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_load_memory: out is NULL");
    *out = NULL;
    if (!data) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_load_memory: data is NULL");
    tern_qmodel *qm;
    enum tern_status st = tern_qmodel_load_mem(data, len, name ? name : "<memory>", &qm);
    return st ? st : finish_load(qm, 1, opts, out);
}

enum tern_status tern_model_wrap(const tern_qmodel *qm, const tern_model_options *opts, tern_model **out) {
    *out = NULL;
    return finish_load((tern_qmodel *)qm, 0, opts, out);
}

void tern_model_free(tern_model *m) {
    if (!m) return;
    tern_qexec_free(m->e);
    if (m->owns_qm) tern_qmodel_free(m->qm);
    free(m);
}

const tern_qmodel *tern_model_qmodel(const tern_model *m) { return m->qm; }

static enum tern_status engine(tern_model *m) {
    if (m->e) return TERN_STATUS_OK;
    enum tern_status st = tern_qexec_new(m->qm, m->max_batch, m->threads, m->isa, &m->e);
    if (st) return st;
    tern_qexec_profile(m->e, m->profiling);
    return TERN_STATUS_OK;
}

enum tern_status tern_model_describe(const tern_model *m, tern_model_info *info) {
    if (!m || !info) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_describe: NULL argument");
    const tern_qmodel *q = m->qm;
    memset(info, 0, sizeof *info);
    info->channels = q->in_c;
    info->height = q->in_h;
    info->width = q->in_w;
    info->classes = q->nclasses;
    info->layers = q->nlayers;
    info->output_exp = q->tensors[q->output].exp;
    info->bgr = q->bgr;
    info->resize_short = q->resize_short;
    info->crop = q->crop;
    memcpy(info->mean, q->mean, sizeof info->mean);
    memcpy(info->std, q->std, sizeof info->std);
    info->source = q->source;
    info->kernels = tern_isa_name(m->isa);
    info->threads = m->threads;
    info->max_batch = m->max_batch;
    return TERN_STATUS_OK;
}

size_t tern_model_input_size(const tern_model *m) {
    return m ? (size_t)m->qm->in_c * m->qm->in_h * m->qm->in_w : 0;
}

/* The recorded preprocessing; without a recorded resize/crop an image of another size is brought
 * to the model's input darknet-style (shorter side resized, centre crop), as `tern run` does. */
static tern_preproc model_pp(const tern_qmodel *q) {
    tern_preproc pp = {0};
    pp.bgr = q->bgr;
    if (q->resize_short || q->crop) {
        pp.resize_short = q->resize_short;
        pp.crop_h = pp.crop_w = q->crop;
    } else {
        pp.resize_short = q->in_h < q->in_w ? q->in_h : q->in_w;
        pp.crop_h = q->in_h;
        pp.crop_w = q->in_w;
    }
    return pp;
}

enum tern_status tern_model_preprocess(const tern_model *m, const uint8_t *image, int height, int width, int channels,
                                       uint8_t *input) {
    if (!m || !image || !input) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_preprocess: NULL argument");
    if (channels != 1 && channels != 3 && channels != 4)
        return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_preprocess: %d channels per pixel (1 grey, 3 RGB, 4 RGBA)", channels);
    if (height <= 0 || width <= 0 || height > 32768 || width > 32768)
        return tern_errorf(TERN_STATUS_SHAPE, "tern_model_preprocess: image of %dx%d (WxH)", width, height);
    const tern_qmodel *q = m->qm;
    if (q->in_c != 3) return tern_errorf(TERN_STATUS_UNSUPPORTED, "tern_model_preprocess: the model takes %d channels, not 3", q->in_c);
    tern_preproc pp = model_pp(q);
    int oh, ow;
    enum tern_status st = tern_preproc_dims(&pp, "image", height, width, NULL, NULL, &oh, &ow);
    if (st) return st;
    if (oh != q->in_h || ow != q->in_w)
        return tern_errorf(TERN_STATUS_SHAPE, "image: %dx%d (WxH) after preprocessing, the model takes %dx%d", ow, oh, q->in_w, q->in_h);
    size_t cs = channels == 1 ? 0 : 1, xs = (size_t)channels;
    return tern_preproc_apply(&pp, "image", image, height, width, cs, xs * (size_t)width, xs, input, oh, ow);
}

enum tern_status tern_model_run(tern_model *m, const uint8_t *input, int batch, int32_t *logits) {
    if (!m || !input || !logits) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_run: NULL argument");
    if (batch < 0) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_run: batch %d", batch);
    enum tern_status st = engine(m);
    if (st) return st;
    size_t per = tern_model_input_size(m), nc = (size_t)m->qm->nclasses;
    for (int s = 0; s < batch; s += m->max_batch) {
        int b = batch - s < m->max_batch ? batch - s : m->max_batch;
        const int32_t *y;
        st = tern_qexec_run(m->e, input + per * (size_t)s, b, &y);
        if (st) return st;
        memcpy(logits + nc * (size_t)s, y, sizeof(int32_t) * nc * (size_t)b);
    }
    return TERN_STATUS_OK;
}

void tern_top_k(const int32_t *s, int n, int k, int *idx) {
    if (k > n) k = n;
    for (int j = 0; j < k; j++) idx[j] = -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++)
            if (idx[j] < 0 || s[i] > s[idx[j]]) {
                for (int t = k - 1; t > j; t--) idx[t] = idx[t - 1];
                idx[j] = i;
                break;
            }
}

double tern_logit_value(const tern_model *m, int32_t logit) {
    return ldexp((double)logit, -m->qm->tensors[m->qm->output].exp);
}

static const char *qop_name(int op) {
    static const char *n[] = {"?", "conv", "add", "maxpool", "avgpool", "gap", "pad", "slice", "concat", "requant"};
    return op >= 1 && op < (int)(sizeof n / sizeof n[0]) ? n[op] : "?";
}

enum tern_status tern_model_layer(const tern_model *m, int i, tern_layer_info *info) {
    if (!m || !info) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_layer: NULL argument");
    const tern_qmodel *q = m->qm;
    if (i < 0 || i >= q->nlayers) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_layer: layer %d of %d", i, q->nlayers);
    const tern_qlayer *L = &q->layers[i];
    const tern_qtensor *t = &q->tensors[L->out];
    memset(info, 0, sizeof *info);
    info->name = L->name;
    info->op = qop_name(L->op);
    info->out_c = t->c;
    info->out_h = t->h;
    info->out_w = t->w;
    info->out_exp = t->exp;
    info->out_signed = t->is_signed;
    info->out_wide = t->wide;
    info->macs = L->macs;
    if (L->op == TERN_QOP_CONV) {
        const tern_qconv *c = &L->conv;
        int cing = c->cin / c->groups, ncl = tern_qconv_nclusters(c);
        info->weights = c->wtype == TERN_WTYPE_TERNARY ? 't' : c->wtype == TERN_WTYPE_INT4 ? '4' : '8';
        info->cluster = c->cluster;
        info->cluster_all = c->cluster >= cing;
        info->clusters = c->cout * ncl;
        info->zero_frac = L->zero_frac;
        info->sqnr_db = L->sqnr_db;
        /* method.md: a ternary layer does one scale multiply per cluster per output, so it
         * replaces 1 - clusters/(cin_g*kh*kw) of its multiplications */
        if (c->wtype == TERN_WTYPE_TERNARY) info->mult_replaced = 1.0 - (double)ncl / ((double)cing * c->kh * c->kw);
    }
    if (m->e) {
        info->kernel = tern_qexec_kernel_name(m->e, i);
        info->time_ns = tern_qexec_layer_ns(m->e)[i];
    }
    return TERN_STATUS_OK;
}

enum tern_status tern_model_set_profiling(tern_model *m, int on) {
    if (!m) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_model_set_profiling: NULL model");
    m->profiling = on != 0;
    enum tern_status st = engine(m);
    if (st) return st;
    tern_qexec_profile(m->e, m->profiling);
    return TERN_STATUS_OK;
}

enum tern_status tern_image_decode_file(const char *path, uint8_t **rgb, int *height, int *width) {
    if (!rgb || !height || !width) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_image_decode_file: NULL argument");
    *rgb = NULL;
    *height = *width = 0;
    if (!path) return tern_errorf(TERN_STATUS_INVALID_ARG, "tern_image_decode_file: path is NULL");
    uint8_t *chw;
    int h, w;
    enum tern_status st = tern_image_load(path, NULL, &chw, &h, &w);
    if (st) return st;
    uint8_t *hwc = tern_malloc((size_t)3 * h * w);
    if (!hwc) {
        free(chw);
        return TERN_STATUS_NOMEM;
    }
    size_t plane = (size_t)h * w;
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < 3; c++) hwc[3 * p + c] = chw[c * plane + p];
    free(chw);
    *rgb = hwc;
    *height = h;
    *width = w;
    return TERN_STATUS_OK;
}
