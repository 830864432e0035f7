/* The .tern file (src/format): round trips of small models that use every op and weight type,
 * byte-identical re-saves, the ResNet-56 size target, and a reader that rejects every kind of
 * damage with a message naming the file: truncation at every length, every single-byte flip,
 * and hand-made semantic corruption (checksums recomputed, so validation is what must catch it).
 *
 * `test_format --make-seeds DIR` writes a few valid .tern files into DIR (fuzz corpus seeds). */
#include "check.h"
#include "format/tern_format.h"
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- deterministic random data ------------------------------------------------------------ */

static uint64_t rng_state = 12345;
static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rnd(int n) { return (int)(rng_u64() % (uint64_t)n); }
static int rnd_in(int lo, int hi) { return lo + rnd(hi - lo + 1); }

/* ---- building models ---------------------------------------------------------------------- */

#define CAP 256

static tern_qmodel *model_new(int c, int h, int w) {
    tern_qmodel *m = calloc(1, sizeof *m);
    m->tensors = calloc(CAP, sizeof *m->tensors);
    m->layers = calloc(CAP, sizeof *m->layers);
    m->in_c = c, m->in_h = h, m->in_w = w;
    m->tensors[0] = (tern_qtensor){c, h, w, 0, 0, 0};
    m->ntensors = 1;
    m->mean[0] = 0.49f, m->mean[1] = 0.48f, m->mean[2] = 0.45f;
    m->std[0] = 0.25f, m->std[1] = 0.24f, m->std[2] = 0.26f;
    m->resize_short = 36, m->crop = 32, m->bgr = 1;
    snprintf(m->source, sizeof m->source, "tests/made-up model.onnx");
    return m;
}

static int tensor(tern_qmodel *m, int c, int h, int w, int sgn, int exp) {
    TERN_ASSERT(m->ntensors < CAP);
    m->tensors[m->ntensors] = (tern_qtensor){c, h, w, sgn, exp, 0};
    return m->ntensors++;
}

static tern_qlayer *layer(tern_qmodel *m, int op, const char *name, int nin, const int *in, int out) {
    TERN_ASSERT(m->nlayers < CAP);
    tern_qlayer *L = &m->layers[m->nlayers++];
    L->op = op;
    snprintf(L->name, sizeof L->name, "%s", name);
    L->nin = nin;
    for (int k = 0; k < nin; k++) L->in[k] = in[k];
    L->out = out;
    const tern_qtensor *y = &m->tensors[out];
    L->qmin = y->wide ? INT32_MIN : y->is_signed ? -128 : 0;
    L->qmax = y->wide ? INT32_MAX : y->is_signed ? 127 : 255;
    L->sqnr_db = (float)rnd(4000) / 100.0f;
    L->zero_frac = (float)rnd(100) / 100.0f;
    L->macs = (int64_t)rng_u64() % 1000000007;
    return L;
}

typedef struct {
    int cout, wtype, cluster, groups, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int padv;           /* store a pad_value array */
    int uniform;        /* requantisation arrays repeat one value (per-layer requant) */
    int sgn, exp, wide; /* output tensor */
} conv_opts;

static int conv(tern_qmodel *m, const char *name, int xid, conv_opts o) {
    const tern_qtensor x = m->tensors[xid];
    tern_qconv c = {0};
    c.cin = x.c, c.cout = o.cout, c.groups = o.groups;
    c.kh = o.kh, c.kw = o.kw, c.sh = o.sh, c.sw = o.sw, c.dh = o.dh, c.dw = o.dw;
    c.pad_t = o.pt, c.pad_l = o.pl, c.pad_b = o.pb, c.pad_r = o.pr;
    c.wtype = o.wtype, c.cluster = o.cluster, c.in_signed = x.is_signed, c.out_wide = o.wide;
    const int yid = tensor(m, o.cout, tern_qconv_out_h(&c, x.h), tern_qconv_out_w(&c, x.w), o.sgn || o.wide, o.exp);
    m->tensors[yid].wide = o.wide;
    tern_qlayer *L = layer(m, TERN_QOP_CONV, name, 1, &xid, yid);
    c.qmin = o.sgn ? -128 + rnd(3) : rnd(3);
    c.qmax = o.sgn ? 127 - rnd(3) : 255 - rnd(3);
    const int lim = o.wtype == TERN_WTYPE_TERNARY ? 1 : o.wtype == TERN_WTYPE_INT4 ? 7 : 127;
    const int64_t nw = (int64_t)c.cout * (c.cin / c.groups) * c.kh * c.kw;
    int8_t *w = malloc(nw);
    for (int64_t i = 0; i < nw; i++) w[i] = (int8_t)(i < 2 ? (i ? -lim : lim) : rnd_in(-lim, lim));
    const int ns = c.cout * tern_qconv_nclusters(&c);
    int16_t *cs = malloc(ns * sizeof *cs);
    for (int i = 0; i < ns; i++) cs[i] = (int16_t)(i == 0 ? 32767 : i == 1 ? 0 : rnd(32768));
    int32_t *bias = malloc(c.cout * 4), *mpos = malloc(c.cout * 4), *mneg = malloc(c.cout * 4);
    int8_t *shift = malloc(c.cout);
    for (int i = 0; i < c.cout; i++) {
        bias[i] = o.uniform ? -7 : (int32_t)(uint32_t)rng_u64();
        mpos[i] = o.uniform ? 1 << 30 : i == 0 ? INT32_MAX : (int32_t)(rng_u64() & 0x7FFFFFFF);
        mneg[i] = o.uniform ? 0 : (int32_t)(rng_u64() & 0x7FFFFFFF);
        shift[i] = (int8_t)(o.uniform ? 9 : i == 0 ? 31 : rnd(32));
    }
    c.w = w, c.cscale = cs, c.bias = bias, c.mpos = mpos, c.mneg = mneg, c.shift = shift;
    if (o.padv) {
        uint8_t *pv = malloc(c.cin);
        for (int i = 0; i < c.cin; i++) pv[i] = (uint8_t)rnd(256);
        c.pad_value = pv;
    }
    L->conv = c;
    L->qmin = c.qmin, L->qmax = c.qmax;
    return yid;
}

static int pool(tern_qmodel *m, int op, const char *name, int xid, int kh, int kw, int sh, int sw, int pt, int pl,
                int pb, int pr, int exp) {
    const tern_qtensor x = m->tensors[xid];
    const int oh = (x.h + pt + pb - kh) / sh + 1, ow = (x.w + pl + pr - kw) / sw + 1;
    const int yid = tensor(m, x.c, oh, ow, x.is_signed, op == TERN_QOP_MAXPOOL ? x.exp : exp);
    tern_qlayer *L = layer(m, op, name, 1, &xid, yid);
    L->kh = kh, L->kw = kw, L->sh = sh, L->sw = sw, L->pad_t = pt, L->pad_l = pl, L->pad_b = pb, L->pad_r = pr;
    if (op == TERN_QOP_AVGPOOL) {
        L->nmult = kh * kw + 1;
        L->mult = malloc(L->nmult * 4);
        L->mshift = malloc(L->nmult);
        for (int n = 0; n < L->nmult; n++) L->mult[n] = n ? (int32_t)((1u << 31) / (unsigned)n - 1) : 0, L->mshift[n] = (int8_t)rnd(32);
    }
    return yid;
}

static int gap(tern_qmodel *m, const char *name, int xid, int exp, int wide) {
    const tern_qtensor x = m->tensors[xid];
    const int yid = tensor(m, x.c, 1, 1, x.is_signed || wide, exp);
    m->tensors[yid].wide = wide;
    tern_qlayer *L = layer(m, TERN_QOP_GLOBALAVGPOOL, name, 1, &xid, yid);
    L->nmult = 2;
    L->mult = malloc(8);
    L->mshift = malloc(2);
    L->mult[0] = 0, L->mshift[0] = 0;
    L->mult[1] = (int32_t)((1u << 31) / (unsigned)(x.h * x.w)), L->mshift[1] = 3;
    return yid;
}

static int requant(tern_qmodel *m, const char *name, int xid, int la, int rs, int sgn) {
    const tern_qtensor x = m->tensors[xid];
    const int yid = tensor(m, x.c, x.h, x.w, sgn, x.exp + la - rs);
    tern_qlayer *L = layer(m, TERN_QOP_REQUANT, name, 1, &xid, yid);
    L->la = la, L->rs = rs;
    return yid;
}

static int add(tern_qmodel *m, const char *name, int a, int b, int la, int lb, int rs, int relu) {
    const tern_qtensor x = m->tensors[a];
    const int in[2] = {a, b};
    const int yid = tensor(m, x.c, x.h, x.w, !relu, x.exp + la - rs);
    tern_qlayer *L = layer(m, TERN_QOP_ADD, name, 2, in, yid);
    L->la = la, L->lb = lb, L->rs = rs;
    return yid;
}

static int pad(tern_qmodel *m, const char *name, int xid, int c0, int c1, int h0, int h1, int w0, int w1) {
    const tern_qtensor x = m->tensors[xid];
    const int yid = tensor(m, x.c + c0 + c1, x.h + h0 + h1, x.w + w0 + w1, x.is_signed, x.exp);
    tern_qlayer *L = layer(m, TERN_QOP_PAD, name, 1, &xid, yid);
    L->pad_c0 = c0, L->pad_c1 = c1, L->pad_h0 = h0, L->pad_h1 = h1, L->pad_w0 = w0, L->pad_w1 = w1;
    return yid;
}

static int slice(tern_qmodel *m, const char *name, int xid, int sc, int sh, int sw, int tc, int th, int tw) {
    const tern_qtensor x = m->tensors[xid];
    const int yid = tensor(m, (x.c - 1 - sc) / tc + 1, (x.h - 1 - sh) / th + 1, (x.w - 1 - sw) / tw + 1,
                           x.is_signed, x.exp);
    tern_qlayer *L = layer(m, TERN_QOP_SLICE, name, 1, &xid, yid);
    L->start_c = sc, L->start_h = sh, L->start_w = sw, L->step_c = tc, L->step_h = th, L->step_w = tw;
    return yid;
}

static int concat(tern_qmodel *m, const char *name, int nin, const int *in) {
    int c = 0;
    for (int k = 0; k < nin; k++) c += m->tensors[in[k]].c;
    const tern_qtensor x = m->tensors[in[0]];
    const int yid = tensor(m, c, x.h, x.w, x.is_signed, x.exp);
    layer(m, TERN_QOP_CONCAT, name, nin, in, yid);
    return yid;
}

static void finish(tern_qmodel *m, int out) {
    m->output = out;
    m->nclasses = m->tensors[out].c * m->tensors[out].h * m->tensors[out].w;
}

/* Every op, every wtype, odd shapes, short last clusters, groups, dilation, pad values, wide logits. */
static tern_qmodel *model_a(void) {
    tern_qmodel *m = model_new(3, 7, 5);
    int t1 = conv(m, "conv0 ternary", 0, (conv_opts){.cout = 5, .wtype = 2, .cluster = 2, .groups = 1, .kh = 3, .kw = 3,
                  .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .padv = 1, .exp = 4});
    int t2 = conv(m, "dw int4", t1, (conv_opts){.cout = 5, .wtype = 4, .cluster = 1, .groups = 5, .kh = 3, .kw = 3,
                  .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pb = 1, .sgn = 1, .exp = 5});
    int t3 = pool(m, TERN_QOP_MAXPOOL, "maxpool", t2, 2, 2, 1, 1, 0, 0, 1, 1, 0);
    int t4 = requant(m, "requant up", t3, 2, 0, 1);
    int t5 = add(m, "add", t4, t2, 0, 2, 2, 0);
    int t6 = pad(m, "pad", t5, 1, 2, 1, 0, 0, 1);
    int t7 = slice(m, "slice", t6, 1, 0, 1, 2, 2, 1);
    int t8 = pool(m, TERN_QOP_AVGPOOL, "avgpool", t6, 3, 2, 2, 2, 1, 0, 1, 1, m->tensors[t6].exp);
    int td = conv(m, "dilated grouped ternary", t6, (conv_opts){.cout = 6, .wtype = 2, .cluster = 3, .groups = 2,
                  .kh = 3, .kw = 3, .sh = 2, .sw = 2, .dh = 2, .dw = 2, .pt = 2, .pl = 2, .pb = 2, .pr = 2, .sgn = 1,
                  .exp = 5});
    const int cin[4] = {t7, t8, td, t7};
    int t9 = concat(m, "concat", 4, cin);
    int t10 = gap(m, "gap", t9, 6, 0);
    int t11 = requant(m, "requant down", t10, 0, 3, 0);
    int t12 = conv(m, "fc int8 logits", t11, (conv_opts){.cout = 13, .wtype = 8, .cluster = 22, .groups = 1, .kh = 1,
                   .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .wide = 1, .exp = 8});
    finish(m, t12);
    return m;
}

/* Uniform (per-layer) requantisation arrays, cluster = all, 1-wide images, wide GAP output. */
static tern_qmodel *model_b(void) {
    tern_qmodel *m = model_new(2, 9, 1);
    m->source[0] = 0;
    int t1 = conv(m, "pointwise", 0, (conv_opts){.cout = 7, .wtype = 2, .cluster = 1, .groups = 1, .kh = 1, .kw = 1,
                  .sh = 1, .sw = 1, .dh = 1, .dw = 1, .uniform = 1, .exp = 3});
    int t2 = conv(m, "n=all", t1, (conv_opts){.cout = 11, .wtype = 2, .cluster = 7, .groups = 1, .kh = 3, .kw = 1,
                  .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pb = 1, .uniform = 1, .sgn = 1, .exp = 2});
    int t3 = conv(m, "int4 short cluster", t2, (conv_opts){.cout = 3, .wtype = 4, .cluster = 4, .groups = 1, .kh = 2,
                  .kw = 1, .sh = 3, .sw = 1, .dh = 1, .dw = 1, .sgn = 1, .exp = 2});
    int t4 = gap(m, "gap logits", t3, 9, 1);
    finish(m, t4);
    m->layers[2].name[0] = 0;   /* empty names are fine */
    return m;
}

/* The smallest model: one fully connected layer. */
static tern_qmodel *model_c(void) {
    tern_qmodel *m = model_new(1, 1, 1);
    int t1 = conv(m, "fc", 0, (conv_opts){.cout = 1, .wtype = 8, .cluster = 1, .groups = 1, .kh = 1, .kw = 1, .sh = 1,
                  .sw = 1, .dh = 1, .dw = 1, .exp = 0});
    finish(m, t1);
    return m;
}

/* ResNet-56 for CIFAR-10 as the quantizer would make it by default: 8-bit first conv and
 * classifier, ternary N=4 elsewhere, option-A shortcuts (slice + pad). Worst case for size:
 * per-channel requantisation arrays that do not repeat. */
static tern_qmodel *model_resnet56(int per_layer_requant) {
    tern_qmodel *m = model_new(3, 32, 32);
    snprintf(m->source, sizeof m->source, "/work/shared/data/models/cifar10/resnet56.onnx");
    char name[64];
    int x = conv(m, "/conv1/Conv", 0, (conv_opts){.cout = 16, .wtype = 8, .cluster = 3, .groups = 1, .kh = 3, .kw = 3,
                 .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .padv = 1, .exp = 4,
                 .uniform = per_layer_requant});
    int ch = 16;
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 9; b++) {
            const int down = s > 0 && b == 0, cout = 16 << s;
            conv_opts o = {.cout = cout, .wtype = 2, .cluster = 4, .groups = 1, .kh = 3, .kw = 3, .sh = down ? 2 : 1,
                           .sw = down ? 2 : 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .exp = 4,
                           .uniform = per_layer_requant};
            snprintf(name, sizeof name, "/layer%d/layer%d.%d/conv1/Conv", s + 1, s + 1, b);
            int h = conv(m, name, x, o);
            o.sh = o.sw = 1;
            snprintf(name, sizeof name, "/layer%d/layer%d.%d/conv2/Conv", s + 1, s + 1, b);
            h = conv(m, name, h, o);
            int sc = x;
            if (down) {
                snprintf(name, sizeof name, "/layer%d/layer%d.0/shortcut/Slice", s + 1, s + 1);
                sc = slice(m, name, x, 0, 0, 0, 1, 2, 2);
                snprintf(name, sizeof name, "/layer%d/layer%d.0/shortcut/Pad", s + 1, s + 1);
                sc = pad(m, name, sc, ch / 2, ch / 2, 0, 0, 0, 0);
            }
            snprintf(name, sizeof name, "/layer%d/layer%d.%d/Add", s + 1, s + 1, b);
            x = add(m, name, h, sc, 0, 0, 0, 1);
            ch = cout;
        }
    x = gap(m, "/GlobalAveragePool", x, 5, 0);
    x = conv(m, "/linear/Gemm", x, (conv_opts){.cout = 10, .wtype = 8, .cluster = 64, .groups = 1, .kh = 1, .kw = 1,
             .sh = 1, .sw = 1, .dh = 1, .dw = 1, .wide = 1, .exp = 8, .uniform = per_layer_requant});
    finish(m, x);
    return m;
}

/* ---- comparing ---------------------------------------------------------------------------- */

static int arrays_equal(const void *a, const void *b, size_t n) {
    if (!a || !b) return a == b;
    return memcmp(a, b, n) == 0;
}

static int float_same(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void compare_models(const tern_qmodel *a, const tern_qmodel *b, const char *what) {
    CHECK(a->in_c == b->in_c && a->in_h == b->in_h && a->in_w == b->in_w, "%s: input shape", what);
    CHECK(a->bgr == b->bgr && a->resize_short == b->resize_short && a->crop == b->crop, "%s: preprocessing", what);
    for (int k = 0; k < 3; k++)
        CHECK(float_same(a->mean[k], b->mean[k]) && float_same(a->std[k], b->std[k]), "%s: mean/std %d", what, k);
    CHECK(a->nclasses == b->nclasses && a->output == b->output, "%s: nclasses/output", what);
    CHECK(strcmp(a->source, b->source) == 0, "%s: source '%s' vs '%s'", what, a->source, b->source);
    CHECK(a->ntensors == b->ntensors && a->nlayers == b->nlayers, "%s: counts", what);
    if (a->ntensors != b->ntensors || a->nlayers != b->nlayers) return;
    for (int i = 0; i < a->ntensors; i++)
        CHECK(memcmp(&a->tensors[i], &b->tensors[i], sizeof(tern_qtensor)) == 0, "%s: tensor %d", what, i);
    for (int i = 0; i < a->nlayers; i++) {
        const tern_qlayer *p = &a->layers[i], *q = &b->layers[i];
        CHECK(p->op == q->op && strcmp(p->name, q->name) == 0 && p->nin == q->nin && p->out == q->out,
              "%s: layer %d header", what, i);
        for (int k = 0; k < TERN_MAX_QIN; k++) CHECK(p->in[k] == q->in[k], "%s: layer %d in[%d]", what, i, k);
        CHECK(p->la == q->la && p->lb == q->lb && p->rs == q->rs, "%s: layer %d shifts", what, i);
        CHECK(p->kh == q->kh && p->kw == q->kw && p->sh == q->sh && p->sw == q->sw && p->pad_t == q->pad_t &&
              p->pad_l == q->pad_l && p->pad_b == q->pad_b && p->pad_r == q->pad_r, "%s: layer %d window", what, i);
        CHECK(p->qmin == q->qmin && p->qmax == q->qmax && p->nmult == q->nmult, "%s: layer %d clamp", what, i);
        CHECK(p->pad_c0 == q->pad_c0 && p->pad_c1 == q->pad_c1 && p->pad_h0 == q->pad_h0 && p->pad_h1 == q->pad_h1 &&
              p->pad_w0 == q->pad_w0 && p->pad_w1 == q->pad_w1, "%s: layer %d pads", what, i);
        CHECK(p->start_c == q->start_c && p->start_h == q->start_h && p->start_w == q->start_w &&
              p->step_c == q->step_c && p->step_h == q->step_h && p->step_w == q->step_w, "%s: layer %d slice", what, i);
        CHECK(float_same(p->sqnr_db, q->sqnr_db) && float_same(p->zero_frac, q->zero_frac) && p->macs == q->macs,
              "%s: layer %d report", what, i);
        CHECK(arrays_equal(p->mult, q->mult, (size_t)p->nmult * 4) && arrays_equal(p->mshift, q->mshift, (size_t)p->nmult),
              "%s: layer %d pool multipliers", what, i);
        const tern_qconv *c = &p->conv, *d = &q->conv;
        CHECK(c->cin == d->cin && c->cout == d->cout && c->groups == d->groups && c->kh == d->kh && c->kw == d->kw &&
              c->sh == d->sh && c->sw == d->sw && c->dh == d->dh && c->dw == d->dw && c->pad_t == d->pad_t &&
              c->pad_l == d->pad_l && c->pad_b == d->pad_b && c->pad_r == d->pad_r && c->wtype == d->wtype &&
              c->cluster == d->cluster && c->qmin == d->qmin && c->qmax == d->qmax && c->in_signed == d->in_signed &&
              c->out_wide == d->out_wide, "%s: layer %d conv geometry", what, i);
        if (p->op != TERN_QOP_CONV) continue;
        const size_t nw = (size_t)c->cout * (c->cin / c->groups) * c->kh * c->kw;
        const size_t ns = (size_t)c->cout * tern_qconv_nclusters(c);
        CHECK(arrays_equal(c->w, d->w, nw), "%s: layer %d weights", what, i);
        CHECK(arrays_equal(c->cscale, d->cscale, ns * 2), "%s: layer %d cscale", what, i);
        CHECK(arrays_equal(c->bias, d->bias, c->cout * 4u) && arrays_equal(c->mpos, d->mpos, c->cout * 4u) &&
              arrays_equal(c->mneg, d->mneg, c->cout * 4u) && arrays_equal(c->shift, d->shift, (size_t)c->cout),
              "%s: layer %d requantisation", what, i);
        CHECK(arrays_equal(c->pad_value, d->pad_value, (size_t)c->cin), "%s: layer %d pad_value", what, i);
    }
}

/* ---- files -------------------------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void) {
    if (tmpdir[0]) return;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tern_test_format_XXXXXX");
    TERN_ASSERT(mkdtemp(tmpdir));
}

static int rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

/* Save m and read the bytes back. */
static uint8_t *save_bytes(const tern_qmodel *m, size_t *len) {
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/m.tern", tmpdir);
    enum tern_status st = tern_qmodel_save(m, path);
    CHECK(st == TERN_STATUS_OK, "save: %s", tern_last_error());
    uint8_t *d = NULL;
    *len = 0;
    if (!st) CHECK(tern_read_file(path, &d, len) == TERN_STATUS_OK, "%s", tern_last_error());
    unlink(path);
    return d;
}

/* ---- the file layout, re-derived from docs/FORMAT.md for crafting damaged files ----------- */

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void wr64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

typedef struct {
    uint32_t type, flags;
    uint8_t *data;
    size_t len;
} tsec;

typedef struct {
    int n;
    tsec s[16];
} tfile;

/* Split a valid file into its sections (copies). */
static void parse(const uint8_t *d, size_t len, tfile *f) {
    memset(f, 0, sizeof *f);
    f->n = (int)rd32(d + TERN_HDR_NSECTIONS);
    TERN_ASSERT(f->n <= 16 && len >= TERN_HDR_SIZE);
    for (int i = 0; i < f->n; i++) {
        const uint8_t *e = d + TERN_HDR_SIZE + i * TERN_SEC_SIZE;
        tsec *s = &f->s[i];
        s->type = rd32(e + TERN_SEC_TYPE), s->flags = rd32(e + TERN_SEC_FLAGS);
        s->len = rd64(e + TERN_SEC_LENGTH);
        s->data = malloc(s->len + 1);
        memcpy(s->data, d + rd64(e + TERN_SEC_OFFSET), s->len);
    }
}

static void tfile_free(tfile *f) {
    for (int i = 0; i < f->n; i++) free(f->s[i].data);
    f->n = 0;
}

/* Lay the sections out again with correct checksums. */
static uint8_t *assemble(const tfile *f, size_t *len) {
    size_t pos = TERN_HDR_SIZE + f->n * TERN_SEC_SIZE, off[16];
    for (int i = 0; i < f->n; i++) {
        pos = (pos + 63) / 64 * 64;
        off[i] = pos;
        pos += f->s[i].len;
    }
    uint8_t *d = calloc(pos, 1);
    memcpy(d, "TERN", 4);
    wr32(d + TERN_HDR_VERSION, 1);
    wr32(d + TERN_HDR_NSECTIONS, (uint32_t)f->n);
    wr64(d + TERN_HDR_FILE_SIZE, pos);
    wr64(d + TERN_HDR_TABLE_OFFSET, TERN_HDR_SIZE);
    for (int i = 0; i < f->n; i++) {
        uint8_t *e = d + TERN_HDR_SIZE + i * TERN_SEC_SIZE;
        wr32(e + TERN_SEC_TYPE, f->s[i].type);
        wr32(e + TERN_SEC_FLAGS, f->s[i].flags);
        wr64(e + TERN_SEC_OFFSET, off[i]);
        wr64(e + TERN_SEC_LENGTH, f->s[i].len);
        memcpy(d + off[i], f->s[i].data, f->s[i].len);
        wr32(e + TERN_SEC_CRC, tern_crc32(f->s[i].data, f->s[i].len));
    }
    wr32(d + TERN_HDR_TABLE_CRC, tern_crc32(d + TERN_HDR_SIZE, f->n * TERN_SEC_SIZE));
    wr32(d + TERN_HDR_CRC, tern_crc32(d, TERN_HDR_CRC));
    *len = pos;
    return d;
}

/* Recompute the checksums of a file edited in place: level 0 the header's, 1 also the section
 * table's, 2 also every section's (where its entry still points inside the file). */
static void fix_crcs(uint8_t *d, size_t len, int level) {
    const uint32_t n = rd32(d + TERN_HDR_NSECTIONS);
    const int table_fits = n <= 64 && TERN_HDR_SIZE + (size_t)n * TERN_SEC_SIZE <= len;
    if (level >= 2 && table_fits)
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *e = d + TERN_HDR_SIZE + i * TERN_SEC_SIZE;
            const uint64_t off = rd64(e + TERN_SEC_OFFSET), l = rd64(e + TERN_SEC_LENGTH);
            if (off <= len && l <= len - off) wr32(e + TERN_SEC_CRC, tern_crc32(d + off, l));
        }
    if (level >= 1 && table_fits) wr32(d + TERN_HDR_TABLE_CRC, tern_crc32(d + TERN_HDR_SIZE, n * TERN_SEC_SIZE));
    wr32(d + TERN_HDR_CRC, tern_crc32(d, TERN_HDR_CRC));
}

static tsec *find_sec(tfile *f, uint32_t type) {
    for (int i = 0; i < f->n; i++)
        if (f->s[i].type == type) return &f->s[i];
    return NULL;
}

/* Load bytes that must be rejected: FORMAT status, a message naming the file and containing
 * `want` (when given), no crash, no leak (ASan). Returns 1 when all of that held. */
static int expect_reject(const uint8_t *d, size_t len, const char *want, const char *what) {
    tern_qmodel *m = (tern_qmodel *)(uintptr_t)1;
    const enum tern_status st = tern_qmodel_load_mem(d, len, "bad.tern", &m);
    const char *e = tern_last_error();
    int ok = st == TERN_STATUS_FORMAT && m == NULL && strstr(e, "bad.tern") && (!want || strstr(e, want));
    CHECK(ok, "%s: status %s, message '%s', wanted '%s'", what, tern_status_str(st), e, want ? want : "");
    if (st == TERN_STATUS_OK) tern_qmodel_free(m);
    return ok;
}

static void expect_accept(const uint8_t *d, size_t len, const char *what) {
    tern_qmodel *m = NULL;
    const enum tern_status st = tern_qmodel_load_mem(d, len, "good.tern", &m);
    CHECK(st == TERN_STATUS_OK && m, "%s: %s", what, tern_last_error());
    tern_qmodel_free(m);
}

/* ---- round trips -------------------------------------------------------------------------- */

typedef tern_qmodel *(*model_fn)(void);
static const model_fn models[] = {model_a, model_b, model_c};
#define NMODELS (int)(sizeof models / sizeof models[0])

static void test_roundtrip(void) {
    make_tmpdir();
    for (int k = 0; k < NMODELS; k++) {
        tern_qmodel *m = models[k]();
        CHECK(tern_qmodel_validate(m, "built") == TERN_STATUS_OK, "model %d: %s", k, tern_last_error());
        char path[128];
        snprintf(path, sizeof path, "%s/rt%d.tern", tmpdir, k);
        CHECK(tern_qmodel_save(m, path) == TERN_STATUS_OK, "model %d: %s", k, tern_last_error());
        tern_qmodel *r = NULL;
        CHECK(tern_qmodel_load(path, &r) == TERN_STATUS_OK, "model %d: %s", k, tern_last_error());
        if (r) compare_models(m, r, path);
        /* save twice, and save what was loaded: the same bytes */
        size_t n1, n2, n3;
        uint8_t *b1 = save_bytes(m, &n1), *b2 = save_bytes(m, &n2), *b3 = r ? save_bytes(r, &n3) : NULL;
        CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), "model %d: two saves differ", k);
        CHECK(b3 && n1 == n3 && !memcmp(b1, b3, n1), "model %d: re-saving the loaded model differs", k);
        /* load_mem gives the same model */
        tern_qmodel *r2 = NULL;
        CHECK(b1 && tern_qmodel_load_mem(b1, n1, "mem", &r2) == TERN_STATUS_OK, "model %d: %s", k, tern_last_error());
        if (r2) compare_models(m, r2, "load_mem");
        CHECK(b1 && !memcmp(b1, "TERN", 4), "magic");
        fprintf(stderr, "  model %d: %d tensors, %d layers, %zu bytes\n", k, m->ntensors, m->nlayers, n1);
        free(b1), free(b2), free(b3);
        tern_qmodel_free(r), tern_qmodel_free(r2), tern_qmodel_free(m);
        unlink(path);
    }
}

/* Sections 64-byte aligned, header fields where FORMAT.md says. */
static void test_layout(void) {
    tern_qmodel *m = model_a();
    size_t n;
    uint8_t *d = save_bytes(m, &n);
    if (!d) { tern_qmodel_free(m); return; }
    CHECK(rd32(d + 4) == 1 && rd32(d + 8) == 0 && rd32(d + 12) == 4 && rd64(d + 16) == n && rd64(d + 24) == 64,
          "header fields");
    CHECK(rd32(d + 60) == tern_crc32(d, 60), "header crc");
    CHECK(tern_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u, "CRC-32 check value");
    for (int i = 0; i < 4; i++) {
        const uint8_t *e = d + 64 + 32 * i;
        CHECK(rd32(e) == (uint32_t)i + 1 && rd64(e + 8) % 64 == 0 && rd64(e + 8) + rd64(e + 16) <= n, "section %d", i);
    }
    const uint8_t *mod = d + rd64(d + 64 + 8);
    CHECK(rd32(mod + TERN_MOD_NTENSORS) == (uint32_t)m->ntensors && rd32(mod + TERN_MOD_NLAYERS) == (uint32_t)m->nlayers,
          "model record counts");
    /* a 6-weight ternary layer packs into 2 bytes: (t+1) base 3, first weight lowest */
    int8_t w[6] = {1, -1, 0, 1, 1, -1};
    tern_qmodel *c = model_c();
    c->tensors[0].c = c->in_c = 6;
    c->layers[0].conv.cin = 6;
    c->layers[0].conv.cluster = 6;
    c->layers[0].conv.wtype = TERN_WTYPE_TERNARY;
    free((void *)c->layers[0].conv.w);
    int8_t *w6 = malloc(6);
    memcpy(w6, w, 6);
    c->layers[0].conv.w = w6;
    size_t cn;
    uint8_t *cd = save_bytes(c, &cn);
    if (cd) {
        const uint8_t *blob = cd + rd64(cd + 64 + 3 * 32 + 8);
        CHECK(blob[0] == 2 + 0 * 3 + 1 * 9 + 2 * 27 + 2 * 81 && blob[1] == 0, "ternary packing: %d %d", blob[0], blob[1]);
    }
    free(cd);
    tern_qmodel_free(c);
    free(d);
    tern_qmodel_free(m);
}

/* The deliverable's size target: ResNet-56 .tern at most 1/12 of its 3,432,338-byte ONNX. */
static void test_size_resnet56(void) {
    const size_t onnx = 3432338, limit = onnx / 12;
    for (int uni = 0; uni < 2; uni++) {
        tern_qmodel *m = model_resnet56(uni);
        size_t n;
        uint8_t *d = save_bytes(m, &n);
        int64_t ternary = 0;
        for (int i = 0; i < m->nlayers; i++)
            if (m->layers[i].op == TERN_QOP_CONV && m->layers[i].conv.wtype == TERN_WTYPE_TERNARY)
                ternary += (int64_t)m->layers[i].conv.cout * m->layers[i].conv.cin * 9;
        fprintf(stderr, "  resnet56 (%s requant): %d layers, %lld ternary weights, %zu bytes = 1/%.1f of the ONNX (limit %zu)\n",
                uni ? "per-layer" : "per-channel", m->nlayers, (long long)ternary, n, (double)onnx / (double)n, limit);
        CHECK(d && n <= limit, "resnet56 .tern is %zu bytes, limit %zu", n, limit);
        free(d);
        tern_qmodel_free(m);
    }
}

/* ---- damage ------------------------------------------------------------------------------- */

static void test_truncate_everywhere(void) {
    for (int k = 0; k < NMODELS; k++) {
        tern_qmodel *m = models[k]();
        size_t n;
        uint8_t *d = save_bytes(m, &n);
        int bad = 0;
        for (size_t len = 0; d && len < n && bad < 5; len++) {
            uint8_t *c = malloc(len ? len : 1);   /* exact size: ASan sees any read past the end */
            memcpy(c, d, len);
            char what[64];
            snprintf(what, sizeof what, "model %d cut at %zu", k, len);
            bad += !expect_reject(c, len, NULL, what);
            free(c);
        }
        /* and one byte too many */
        uint8_t *c = calloc(n + 1, 1);
        if (d) memcpy(c, d, n);
        expect_reject(c, n + 1, "trailing", "one extra byte");
        free(c);
        free(d);
        tern_qmodel_free(m);
    }
}

static void test_flip_every_byte(void) {
    static const uint8_t masks[] = {0x01, 0x80, 0xFF};
    for (int k = 0; k < NMODELS; k++) {
        tern_qmodel *m = models[k]();
        size_t n;
        uint8_t *d = save_bytes(m, &n);
        int bad = 0;
        uint8_t *c = malloc(n);
        for (size_t i = 0; d && i < n && bad < 5; i++)
            for (int f = 0; f < 3; f++) {
                memcpy(c, d, n);
                c[i] ^= masks[f];
                char what[64];
                snprintf(what, sizeof what, "model %d byte %zu ^ 0x%02x", k, i, masks[f]);
                bad += !expect_reject(c, n, NULL, what);
            }
        free(c);
        free(d);
        tern_qmodel_free(m);
    }
}

/* Header and section-table damage with the checksums made right again. */
static void test_frame_fields(void) {
    tern_qmodel *m = model_a();
    size_t n;
    uint8_t *d = save_bytes(m, &n);
    if (!d) { tern_qmodel_free(m); return; }
    uint8_t *c = malloc(n + 4096);
    const uint8_t *e0 = d + TERN_HDR_SIZE;
#define CASE(edit, sections, want)                        \
    do {                                                  \
        memcpy(c, d, n);                                  \
        edit;                                             \
        fix_crcs(c, n, sections);                         \
        expect_reject(c, n, want, #edit);                 \
    } while (0)
    CASE(memcpy(c, "TERM", 4), 0, "bad magic");
    CASE(wr32(c + TERN_HDR_VERSION, 2), 0, "version 2");
    CASE(wr32(c + TERN_HDR_VERSION, 0), 0, "version 0");
    CASE(wr32(c + TERN_HDR_FLAGS, 1), 0, "flags");
    CASE(c[40] = 1, 0, "reserved header");
    CASE(wr64(c + TERN_HDR_FILE_SIZE, n - 1), 0, "trailing");
    CASE(wr64(c + TERN_HDR_FILE_SIZE, n + 64), 0, "truncated");
    CASE(wr64(c + TERN_HDR_FILE_SIZE, UINT64_MAX), 0, "truncated");
    CASE(wr32(c + TERN_HDR_NSECTIONS, 0), 0, "0 sections");
    CASE(wr32(c + TERN_HDR_NSECTIONS, 65), 0, "65 sections");
    CASE(wr32(c + TERN_HDR_NSECTIONS, 0xFFFFFFFF), 0, "sections");
    CASE(wr32(c + TERN_HDR_NSECTIONS, 3), 1, "padding");
    CASE(wr32(c + TERN_HDR_NSECTIONS, 5), 1, "overlaps");
    CASE(wr64(c + TERN_HDR_TABLE_OFFSET, 128), 0, "section table at 128");
    CASE(wr32(c + TERN_HDR_TABLE_CRC, rd32(c + TERN_HDR_TABLE_CRC) ^ 1), 0, "table checksum");
    const uint8_t *e2 = e0 + 2 * TERN_SEC_SIZE;
    size_t o2 = (size_t)(e2 - d);
    CASE(wr32(c + o2 + TERN_SEC_FLAGS, 2), 1, "unknown flags");
    CASE(wr32(c + o2 + TERN_SEC_RESERVED, 7), 1, "reserved field");
    CASE(wr64(c + o2 + TERN_SEC_OFFSET, rd64(e2 + TERN_SEC_OFFSET) + 8), 2, "not a multiple of 64");
    CASE(wr64(c + o2 + TERN_SEC_OFFSET, rd64(e2 + TERN_SEC_OFFSET) + 64), 2, NULL);
    CASE(wr64(c + o2 + TERN_SEC_OFFSET, (uint64_t)1 << 63), 2, "run past");
    CASE(wr64(c + o2 + TERN_SEC_LENGTH, UINT64_MAX), 2, "run past");
    CASE(wr64(c + o2 + TERN_SEC_LENGTH, rd64(e2 + TERN_SEC_LENGTH) + 1), 2, NULL);
    CASE(wr64(c + o2 + TERN_SEC_OFFSET, 64), 2, "overlaps");
    CASE(wr32(c + o2 + TERN_SEC_TYPE, 1), 1, "twice");
    CASE(wr32(c + o2 + TERN_SEC_TYPE, 99), 1, "unknown type 99");
    CASE(wr32(c + o2 + TERN_SEC_CRC, rd32(e2 + TERN_SEC_CRC) + 1), 1, "checksum mismatch");
    const uint8_t *e1 = e0 + TERN_SEC_SIZE;   /* TENSORS: 14 x 24 bytes, padding after it */
    const size_t tend = rd64(e1 + TERN_SEC_OFFSET) + rd64(e1 + TERN_SEC_LENGTH);
    CHECK(tend % 64 != 0, "expected padding after TENSORS");
    CASE(c[tend] = 1, 0, "padding");
    CASE(c[tend + 63 - tend % 64] = 0x40, 0, "padding");
#undef CASE
    free(c);
    free(d);
    tern_qmodel_free(m);
}

/* Section-level crafting: missing, duplicate, unknown optional (accepted), reordered. */
static void test_sections(void) {
    tern_qmodel *m = model_a();
    size_t n, n2;
    uint8_t *d = save_bytes(m, &n);
    if (!d) { tern_qmodel_free(m); return; }
    tfile f;
    parse(d, n, &f);
    uint8_t *c = assemble(&f, &n2);
    CHECK(n2 == n && !memcmp(c, d, n), "test assembler reproduces the writer");
    free(c);
    /* an unknown optional section is skipped; a required one is not */
    f.s[f.n] = (tsec){77, TERN_SECF_OPTIONAL, calloc(1, 10), 10};
    f.n++;
    c = assemble(&f, &n2);
    expect_accept(c, n2, "unknown optional section");
    free(c);
    f.s[f.n - 1].flags = 0;
    c = assemble(&f, &n2);
    expect_reject(c, n2, "unknown type 77", "unknown required section");
    free(c);
    free(f.s[--f.n].data);
    /* sections in another order are fine (the table says where each is) */
    tsec t = f.s[0];
    f.s[0] = f.s[3], f.s[3] = t;
    c = assemble(&f, &n2);
    expect_accept(c, n2, "sections reordered");
    free(c);
    f.s[3] = f.s[0], f.s[0] = t;
    /* a missing section */
    for (int drop = 0; drop < 4; drop++) {
        tfile g = f;
        for (int i = drop; i < 3; i++) g.s[i] = g.s[i + 1];
        g.n = 3;
        c = assemble(&g, &n2);
        expect_reject(c, n2, "missing", "dropped section");
        free(c);
    }
    /* a duplicate */
    f.s[4] = f.s[1];
    f.n = 5;
    c = assemble(&f, &n2);
    expect_reject(c, n2, "twice", "duplicate section");
    free(c);
    f.n = 4;
    tfile_free(&f);
    free(d);
    tern_qmodel_free(m);
}

/* Semantic corruption inside the sections, checksums recomputed. Each edit names the layer by
 * index and patches a field of its record, or of its blob. */
typedef struct {
    tfile f;
    tsec *mod, *ten, *lay, *blob;
} crafted;

static void craft_open(crafted *c, const uint8_t *d, size_t n) {
    parse(d, n, &c->f);
    c->mod = find_sec(&c->f, TERN_SECTION_MODEL);
    c->ten = find_sec(&c->f, TERN_SECTION_TENSORS);
    c->lay = find_sec(&c->f, TERN_SECTION_LAYERS);
    c->blob = find_sec(&c->f, TERN_SECTION_BLOBS);
}

static uint8_t *lrec(crafted *c, int i) { return c->lay->data + (size_t)i * TERN_LAY_SIZE; }
static uint8_t *trec(crafted *c, int i) { return c->ten->data + (size_t)i * TERN_TEN_SIZE; }
static uint8_t *blob_of(crafted *c, int i) { return c->blob->data + rd64(lrec(c, i) + TERN_LAY_BLOB_OFFSET); }

static int find_layer(const tern_qmodel *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name)) return i;
    TERN_ASSERT(0);
    return -1;
}

static void test_semantic(void) {
    tern_qmodel *m = model_a();
    size_t n, n2;
    uint8_t *d = save_bytes(m, &n);
    if (!d) { tern_qmodel_free(m); return; }
    const int lc0 = find_layer(m, "conv0 ternary"), ldw = find_layer(m, "dw int4"), lfc = find_layer(m, "fc int8 logits");
    const int lmax = find_layer(m, "maxpool"), lavg = find_layer(m, "avgpool"), ladd = find_layer(m, "add");
    const int lpad = find_layer(m, "pad"), lsl = find_layer(m, "slice"), lcat = find_layer(m, "concat");
    const int lgap = find_layer(m, "gap"), lrq = find_layer(m, "requant up");
    const int ldil = find_layer(m, "dilated grouped ternary");
    const int nw0 = 5 * 3 * 9, nwdw = 5 * 1 * 9;   /* codes of conv0 (ternary) and dw (int4) */
    int ncases = 0;
#define CASE(edit, want)                                   \
    do {                                                   \
        crafted c_;                                        \
        crafted *c = &c_;                                  \
        craft_open(c, d, n);                               \
        edit;                                              \
        uint8_t *b_ = assemble(&c->f, &n2);                \
        expect_reject(b_, n2, want, #edit);                \
        free(b_);                                          \
        tfile_free(&c->f);                                 \
        ncases++;                                          \
    } while (0)
#define L32(i, off, v) wr32(lrec(c, i) + (off), (uint32_t)(v))
#define CV(i, off, v) wr32(lrec(c, i) + TERN_LAY_CONV + (off), (uint32_t)(v))

    /* MODEL */
    CASE(wr32(c->mod->data + TERN_MOD_NTENSORS, 0), "0 tensors");
    CASE(wr32(c->mod->data + TERN_MOD_NTENSORS, 1000000000), "1000000000 tensors");
    CASE(wr32(c->mod->data + TERN_MOD_NTENSORS, (uint32_t)-5), "-5 tensors");
    CASE(wr32(c->mod->data + TERN_MOD_NTENSORS, m->ntensors + 1), "TENSORS section is");
    CASE(wr32(c->mod->data + TERN_MOD_NLAYERS, m->nlayers - 1), "LAYERS section is");
    CASE(wr32(c->mod->data + TERN_MOD_NLAYERS, 0), "0 layers");
    CASE(wr32(c->mod->data + TERN_MOD_IN_C, 0), "input 0x7x5");
    CASE(wr32(c->mod->data + TERN_MOD_IN_C, 4), "tensor 0");
    CASE(wr32(c->mod->data + TERN_MOD_BGR, 2), "bgr 2");
    CASE(wr32(c->mod->data + TERN_MOD_CROP, -1), "crop -1");
    CASE(wr32(c->mod->data + TERN_MOD_OUTPUT, 0), "output tensor 0 out of range");
    CASE(wr32(c->mod->data + TERN_MOD_OUTPUT, m->ntensors), "out of range");
    CASE(wr32(c->mod->data + TERN_MOD_OUTPUT, 5), "wide");
    CASE(wr32(c->mod->data + TERN_MOD_NCLASSES, 12), "nclasses 12");
    CASE(memset(c->mod->data + TERN_MOD_SOURCE, 'x', 256), "source name not NUL-terminated");
    CASE(c->mod->data[TERN_MOD_SOURCE + 255] = 'x', "zero-padded");
    /* TENSORS */
    CASE(wr32(trec(c, 3) + TERN_TEN_C, 70000), "tensor 3: shape 70000");
    CASE(wr32(trec(c, 3) + TERN_TEN_H, 0), "tensor 3: shape");
    CASE(wr32(trec(c, 3) + TERN_TEN_W, (uint32_t)-2), "out of range 1..65536");
    CASE((wr32(trec(c, 3) + TERN_TEN_C, 65536), wr32(trec(c, 3) + TERN_TEN_H, 65536)), "more than");
    CASE(wr32(trec(c, 3) + TERN_TEN_EXP, 1000), "exponent 1000");
    CASE(wr32(trec(c, 3) + TERN_TEN_FLAGS, 4), "unknown flags");
    CASE(wr32(trec(c, 3) + TERN_TEN_FLAGS, 3), "wide");
    CASE(wr32(trec(c, 3) + TERN_TEN_RESERVED, 1), "reserved");
    CASE(wr32(trec(c, 0) + TERN_TEN_FLAGS, 1), "tensor 0");
    CASE(wr32(trec(c, 0) + TERN_TEN_EXP, 1), "tensor 0");
    CASE(wr32(trec(c, m->output) + TERN_TEN_FLAGS, 1), "out_wide 1");
    CASE(wr32(trec(c, m->layers[lc0].out) + TERN_TEN_H, 6), "conv geometry gives 7x5");
    /* LAYERS: ops, ids, order */
    CASE(L32(lmax, TERN_LAY_OP, 0), "unknown op 0");
    CASE(L32(lmax, TERN_LAY_OP, TERN_QOP_LAST + 1), "unknown op");
    CASE(L32(lmax, TERN_LAY_OP, 0xFFFFFFFF), "unknown op -1");
    CASE(L32(lmax, TERN_LAY_OP, TERN_QOP_CONV), "conv cin 0");
    CASE(L32(lc0, TERN_LAY_OP, TERN_QOP_MAXPOOL), "conv fields set on a non-conv layer");
    CASE(L32(lmax, TERN_LAY_NIN, 0), "unused input slot 0");
    CASE((L32(lmax, TERN_LAY_NIN, 0), L32(lmax, TERN_LAY_IN, 0)), "0 inputs, this op takes 1..1");
    CASE(L32(lmax, TERN_LAY_NIN, 2), "2 inputs");
    CASE(L32(lcat, TERN_LAY_NIN, 9), "9 inputs");
    CASE(L32(lcat, TERN_LAY_NIN, (uint32_t)-1), "unused input slot");
    CASE(L32(lmax, TERN_LAY_NIN, 2), "this op takes 1..1");
    CASE(L32(lmax, TERN_LAY_IN + 4, 3), "unused input slot 1 is 3");
    CASE(L32(lmax, TERN_LAY_IN, m->ntensors), "out of range");
    CASE(L32(lmax, TERN_LAY_IN, -1), "tensor -1, out of range");
    CASE(L32(lmax, TERN_LAY_IN, m->layers[lavg].out), "no earlier layer produces");
    CASE(L32(lmax, TERN_LAY_IN, m->output), "no earlier layer produces");
    CASE(L32(lmax, TERN_LAY_OUT, 0), "output is tensor 0");
    CASE(L32(lmax, TERN_LAY_OUT, m->layers[lc0].out), "already produced");
    CASE(L32(m->nlayers - 1, TERN_LAY_OUT, m->ntensors - 2), "already produced");
    CASE(lrec(c, lmax)[TERN_LAY_NAME + 63] = 'x', "name not NUL-terminated");
    CASE(memset(lrec(c, lmax) + TERN_LAY_NAME, 'x', 64), "name not NUL-terminated");
    CASE((L32(lmax, TERN_LAY_QMIN, 5), L32(lmax, TERN_LAY_QMAX, 4)), "clamp 5..4");
    CASE(L32(lmax, TERN_LAY_QMIN, 200), "clamp 200..127");
    CASE(L32(lmax, TERN_LAY_QMIN, -129), "clamp -129");
    CASE(L32(lc0, TERN_LAY_QMAX, 256), "clamp");
    CASE(L32(lmax, TERN_LAY_NMULT, 3), "only average pools");
    CASE(L32(lmax, TERN_LAY_UNIFORM, 1 << TERN_ARR_BIAS), "uniform-array flags");
    CASE(L32(lc0, TERN_LAY_UNIFORM, 1 << TERN_ARR_W), "uniform-array flags");
    CASE(L32(lavg, TERN_LAY_UNIFORM, 1 << TERN_ARR_MULT), "uniform-array flags");
    CASE(L32(lc0, TERN_LAY_UNIFORM, 1u << 31), "uniform-array flags");
    /* CONV */
    CASE(CV(lc0, TERN_CONV_CLUSTER, 0), "cluster 0 out of range 1..3");
    CASE(CV(lc0, TERN_CONV_CLUSTER, 4), "cluster 4 out of range 1..3");
    CASE(CV(lfc, TERN_CONV_CLUSTER, 21), "one cluster per output channel");
    CASE(CV(lc0, TERN_CONV_WTYPE, 3), "unknown wtype 3");
    CASE(CV(lc0, TERN_CONV_WTYPE, 8), "8-bit weights need one cluster");
    CASE(CV(lc0, TERN_CONV_WTYPE, 4), "blob is");
    CASE(CV(lc0, TERN_CONV_GROUPS, 0), "groups 0");
    CASE(CV(lc0, TERN_CONV_GROUPS, 2), "groups 2 does not divide");
    CASE(CV(lc0, TERN_CONV_CIN, 4), "conv cin 4");
    CASE(CV(lc0, TERN_CONV_COUT, 6), "conv cout 6");
    CASE(CV(lc0, TERN_CONV_KH, 0), "kernel 0x3");
    CASE(CV(lc0, TERN_CONV_KH, 1 << 30), "kernel");
    CASE(CV(lc0, TERN_CONV_KH, 5), "conv geometry gives");
    CASE(CV(lc0, TERN_CONV_KH, 11), "larger than the padded input");
    CASE(CV(lc0, TERN_CONV_SH, 0), "stride 0x1");
    CASE(CV(lc0, TERN_CONV_DW, -1), "dilation");
    CASE(CV(lc0, TERN_CONV_PAD_T, -1), "pads t-1");
    CASE(CV(lc0, TERN_CONV_PAD_T, 100000), "pads");
    CASE(CV(lc0, TERN_CONV_QMIN, -1), "conv clamp -1");
    CASE(CV(lc0, TERN_CONV_QMAX, -1), "conv clamp");
    CASE(CV(lc0, TERN_CONV_FLAGS, 1 | 4), "conv in_signed 1");
    CASE(CV(lc0, TERN_CONV_FLAGS, 2 | 4), "out_wide 1");
    CASE(CV(lc0, TERN_CONV_FLAGS, 8 | 4), "unknown conv flags");
    CASE(CV(lc0, TERN_CONV_FLAGS, 0), "blob is");
    CASE(CV(ldil, TERN_CONV_DH, 1), "conv geometry gives");
    /* blobs: bounds and contents */
    CASE(wr64(lrec(c, lc0) + TERN_LAY_BLOB_OFFSET, 2), "not a multiple of 4");
    CASE(wr64(lrec(c, lc0) + TERN_LAY_BLOB_OFFSET, (c->blob->len + 3) & ~(size_t)3), "outside the BLOBS section");
    CASE(wr64(lrec(c, lc0) + TERN_LAY_BLOB_OFFSET, UINT64_MAX - 3), "outside the BLOBS section");
    CASE(wr64(lrec(c, lc0) + TERN_LAY_BLOB_LENGTH, UINT64_MAX), "outside the BLOBS section");
    CASE(wr64(lrec(c, lc0) + TERN_LAY_BLOB_LENGTH, rd64(lrec(c, lc0) + TERN_LAY_BLOB_LENGTH) - 1), "arrays need");
    CASE(wr64(lrec(c, lmax) + TERN_LAY_BLOB_LENGTH, 4), "arrays need 0");
    CASE(blob_of(c, lc0)[0] = 243, "packed weight byte 0 (0xf3) is not a valid ternary");
    CASE(blob_of(c, ldil)[43] = 3, "packed weight byte 43");   /* 216 codes: byte 43 holds one trit */
    CASE(blob_of(c, lc0)[nw0 / 5 - 1] = 255, "packed weight byte 26");
    CASE(blob_of(c, ldw)[0] = 0x80, "packed weight byte 0 (0x80) is not a valid 4-bit");
    CASE(blob_of(c, ldw)[3] = 0x08, "packed weight byte 3");
    CASE(blob_of(c, ldw)[nwdw / 2] |= 0x10, "packed weight byte 22");   /* 45 codes: unused high nibble */
    CASE(blob_of(c, lfc)[5] = 0x80, "packed weight byte 5 (0x80) is not a valid 8-bit");
    {
        /* conv0: codes 135 -> 27 bytes, cscale at 28 (5 x 2 clusters x 2 bytes), bias at 48, mpos 68, mneg 88,
         * shift 108, pad_value 116 */
        CASE(blob_of(c, lc0)[27] = 1, "non-zero padding before the cscale array");
        CASE(wr32(blob_of(c, lc0) + 28, 0x8000), "cluster scale -32768 at index 0 out of range 0..32767");
        CASE(wr32(blob_of(c, lc0) + 68 + 4, 0x80000000u), "channel 1: multipliers -2147483648");
        CASE(wr32(blob_of(c, lc0) + 88, 0xFFFFFFFFu), "channel 0: multipliers");
        CASE(blob_of(c, lc0)[108 + 2] = 32, "channel 2: shift 32 out of range 0..31");
        CASE(blob_of(c, lc0)[108 + 4] = 0xFF, "channel 4: shift -1");
        CASE(blob_of(c, lc0)[113] = 1, "non-zero padding before the pad_value");
    }
    {
        /* avgpool 3x2: 7 mults at 0, 7 mshifts at 28 */
        CASE(wr32(blob_of(c, lavg) + 4, 0xFFFFFFFFu), "multiplier 1: -1");
        CASE(blob_of(c, lavg)[28 + 6] = 40, "multiplier 6");
        CASE(blob_of(c, lgap)[8 + 1] = 0xE0, "multiplier 1");
    }
    /* other ops */
    CASE(L32(ladd, TERN_LAY_LA, 32), "shifts la 32");
    CASE(L32(ladd, TERN_LAY_RS, 64), "rs 64");
    CASE(L32(ladd, TERN_LAY_RS, -1), "rs -1");
    CASE(L32(ladd, TERN_LAY_LB, 1), "exponents do not line up");
    CASE(L32(ladd, TERN_LAY_IN + 4, m->layers[lmax].in[0] - 1), "differ");
    CASE(L32(lmax, TERN_LAY_KH, 0), "window 0x2");
    CASE(L32(lmax, TERN_LAY_SW, 0), "stride 1x0");
    CASE(L32(lmax, TERN_LAY_PAD_B, 2), "must be below the window");
    CASE(L32(lmax, TERN_LAY_KW, 5), "larger than the padded input");
    CASE(L32(lmax, TERN_LAY_SW, 2), "output 4x2 but the window gives 4x1");
    CASE(L32(lavg, TERN_LAY_NMULT, 6), "nmult 6, expected kh*kw+1 = 7");
    CASE(L32(lgap, TERN_LAY_NMULT, 3), "nmult 3, expected 2");
    CASE(wr32(trec(c, m->layers[lmax].out) + TERN_TEN_EXP, 4), "must share type and exponent");
    CASE(L32(lpad, TERN_LAY_PAD_C0, 2), "is not the output");
    CASE(L32(lpad, TERN_LAY_PAD_W1, -1), "out of range 0..65536");
    CASE(L32(lsl, TERN_LAY_STEP_C, 3), "run past");
    CASE(L32(lsl, TERN_LAY_STEP_H, 0), "h: start 0 / step 0");
    CASE(L32(lsl, TERN_LAY_START_W, -1), "w: start -1");
    CASE(L32(lsl, TERN_LAY_START_W, 2), "run past");
    CASE(L32(lcat, TERN_LAY_IN + 4, m->layers[lsl].out), "channels in all");
    CASE(L32(lcat, TERN_LAY_IN + 4, m->layers[lmax].out), "input 1 is 4x2");
    CASE(L32(lrq, TERN_LAY_RS, -1), "shifts la 2 rs -1");
    CASE(L32(lrq, TERN_LAY_LA, 32), "shifts la 32");
    CASE(L32(lrq, TERN_LAY_LA, 1), "is not the output exp");
    CASE((L32(lrq, TERN_LAY_LA, 3), L32(lrq, TERN_LAY_RS, 2)), "is not the output exp");
#undef CASE
#undef L32
#undef CV
    fprintf(stderr, "  %d crafted files rejected\n", ncases);
    free(d);
    tern_qmodel_free(m);
}

/* A file whose counts promise far more than it holds must fail before allocating it. */
static void test_absurd_counts(void) {
    tern_qmodel *m = model_c();
    size_t n, n2;
    uint8_t *d = save_bytes(m, &n);
    if (!d) { tern_qmodel_free(m); return; }
    crafted c;
    craft_open(&c, d, n);
    /* the fc layer claims 65536 x 65536 x 1024 x 1024 weights */
    uint8_t *L = lrec(&c, 0);
    wr32(c.mod->data + TERN_MOD_IN_C, 65536);
    wr32(c.mod->data + TERN_MOD_IN_H, 65536);
    wr32(trec(&c, 0) + TERN_TEN_C, 65536);
    wr32(trec(&c, 0) + TERN_TEN_H, 1);
    wr32(c.mod->data + TERN_MOD_IN_H, 1);
    wr32(L + TERN_LAY_CONV + TERN_CONV_CIN, 65536);
    wr32(L + TERN_LAY_CONV + TERN_CONV_CLUSTER, 65536);
    wr32(L + TERN_LAY_CONV + TERN_CONV_COUT, 65536);
    wr32(trec(&c, 1) + TERN_TEN_C, 65536);
    wr32(c.mod->data + TERN_MOD_NCLASSES, 65536);
    uint8_t *b = assemble(&c.f, &n2);
    expect_reject(b, n2, "weights, more than the limit", "absurd weight count");
    free(b);
    tfile_free(&c.f);
    free(d);
    tern_qmodel_free(m);
}

/* ---- the in-memory check (what the quantizer runs before saving) -------------------------- */

static void test_validate_api(void) {
    CHECK(tern_qmodel_validate(NULL, "x") == TERN_STATUS_INVALID_ARG, "NULL model");
    tern_qmodel *m = model_a();
    const int lc0 = find_layer(m, "conv0 ternary");
    tern_qlayer *L = &m->layers[lc0];
#define BAD(edit, undo, want)                                                                       \
    do {                                                                                            \
        edit;                                                                                       \
        enum tern_status st_ = tern_qmodel_validate(m, "mem model");                                \
        CHECK(st_ == TERN_STATUS_FORMAT && strstr(tern_last_error(), "mem model") &&                \
                  strstr(tern_last_error(), want), "%s: %s", #edit, tern_last_error());            \
        undo;                                                                                       \
    } while (0)
    int8_t *w = (int8_t *)L->conv.w;
    int16_t *cs = (int16_t *)L->conv.cscale;
    BAD(w[7] = 2, w[7] = 1, "weight code 2 at index 7 out of range -1..1");
    BAD(w[7] = -2, w[7] = 1, "weight code -2");
    BAD(cs[3] = -1, cs[3] = 5, "cluster scale -1 at index 3");
    const int8_t *keep = L->conv.shift;
    BAD(L->conv.shift = NULL, L->conv.shift = keep, "missing");
    BAD(L->name[63] = 'x'; memset(L->name, 'y', 63), snprintf(L->name, sizeof L->name, "conv0 ternary"), "NUL");
    BAD(m->tensors[1].is_signed = 2, m->tensors[1].is_signed = 0, "is_signed 2");
    BAD(L->conv.in_signed = 2, L->conv.in_signed = 0, "in_signed 2");
    BAD(m->source[255] = 'x'; memset(m->source, 'x', 255), m->source[0] = 0, "source");
    m->source[255] = 0;
    const int nl = m->nlayers, nt = m->ntensors;
    BAD(m->nlayers = 0, m->nlayers = nl, "0 layers");
    BAD(m->ntensors = 1, m->ntensors = nt, "1 tensors");
    int32_t *mult = m->layers[find_layer(m, "avgpool")].mult;
    m->layers[find_layer(m, "avgpool")].mult = NULL;
    BAD((void)0, (void)0, "missing multiplier arrays");
    m->layers[find_layer(m, "avgpool")].mult = mult;
    CHECK(tern_qmodel_validate(m, "restored") == TERN_STATUS_OK, "restored model: %s", tern_last_error());
    /* an invalid model is not saved, and no file appears */
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/invalid.tern", tmpdir);
    w[0] = 9;
    CHECK(tern_qmodel_save(m, path) == TERN_STATUS_FORMAT && strstr(tern_last_error(), path), "%s", tern_last_error());
    CHECK(access(path, F_OK) != 0 && count_files(tmpdir, "invalid.tern") == 0, "no file after a refused save");
#undef BAD
    tern_qmodel_free(m);
}

/* ---- failed saves leave nothing behind ---------------------------------------------------- */

static void test_save_failures(void) {
    make_tmpdir();
    tern_qmodel *m = model_b();
    char path[256], dir[200];
    /* a missing directory */
    snprintf(path, sizeof path, "%s/no/such/dir/m.tern", tmpdir);
    CHECK(tern_qmodel_save(m, path) == TERN_STATUS_IO && strstr(tern_last_error(), path), "%s", tern_last_error());
    /* a "directory" that is a file */
    snprintf(dir, sizeof dir, "%s/plainfile", tmpdir);
    FILE *f = fopen(dir, "w");
    fclose(f);
    snprintf(path, sizeof path, "%s/m.tern", dir);
    CHECK(tern_qmodel_save(m, path) == TERN_STATUS_IO, "%s", tern_last_error());
    /* the target is a directory: the temporary file is written, the rename fails, it is removed */
    snprintf(dir, sizeof dir, "%s/target", tmpdir);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/keep", dir);
    f = fopen(path, "w");
    fclose(f);
    CHECK(tern_qmodel_save(m, dir) == TERN_STATUS_IO && strstr(tern_last_error(), "rename"), "%s", tern_last_error());
    CHECK(count_files(tmpdir, "target.tmp") == 0, "temporary file left behind");
    /* a read-only directory (root ignores permissions: then the check is skipped) */
    snprintf(dir, sizeof dir, "%s/ro", tmpdir);
    mkdir(dir, 0555);
    snprintf(path, sizeof path, "%s/m.tern", dir);
    if (geteuid() != 0) {
        CHECK(tern_qmodel_save(m, path) == TERN_STATUS_IO, "%s", tern_last_error());
        CHECK(count_files(dir, "") == 2, "files left in a read-only directory");   /* . and .. */
    } else {
        fprintf(stderr, "  (running as root: the read-only directory case is not meaningful, skipped)\n");
    }
    /* a read-only filesystem, if there is one */
    if (access("/proc/self", F_OK) == 0) {
        CHECK(tern_qmodel_save(m, "/proc/self/x.tern") == TERN_STATUS_IO, "%s", tern_last_error());
    }
    /* a failed save does not touch an existing file */
    snprintf(path, sizeof path, "%s/existing.tern", tmpdir);
    CHECK(tern_qmodel_save(m, path) == TERN_STATUS_OK, "%s", tern_last_error());
    tern_qmodel *bad = model_b();
    bad->layers[0].conv.cluster = 0;
    CHECK(tern_qmodel_save(bad, path) == TERN_STATUS_FORMAT, "%s", tern_last_error());
    tern_qmodel *r = NULL;
    CHECK(tern_qmodel_load(path, &r) == TERN_STATUS_OK, "existing file damaged: %s", tern_last_error());
    if (r) compare_models(m, r, "existing");
    CHECK(count_files(tmpdir, "existing.tern") == 1, "stray files next to existing.tern");
    tern_qmodel_free(r);
    tern_qmodel_free(bad);
    /* loading a missing file is an IO error naming it */
    CHECK(tern_qmodel_load("/nonexistent/x.tern", &r) == TERN_STATUS_IO && r == NULL &&
          strstr(tern_last_error(), "/nonexistent/x.tern"), "%s", tern_last_error());
    CHECK(tern_qmodel_load(tmpdir, &r) == TERN_STATUS_IO && r == NULL && strstr(tern_last_error(), "not a regular file"),
          "%s", tern_last_error());
    CHECK(tern_qmodel_load_mem(NULL, 0, NULL, &r) == TERN_STATUS_FORMAT && strstr(tern_last_error(), "<memory>"),
          "%s", tern_last_error());
    tern_qmodel_free(NULL);
    tern_qmodel_free(m);
}

/* ---- fuzz seeds --------------------------------------------------------------------------- */

static int make_seeds(const char *dir) {
    tern_qmodel *ms[NMODELS + 1];
    for (int k = 0; k < NMODELS; k++) ms[k] = models[k]();
    ms[NMODELS] = model_resnet56(1);
    for (int k = 0; k <= NMODELS; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/seed%d.tern", dir, k);
        if (tern_qmodel_save(ms[k], path) != TERN_STATUS_OK) {
            fprintf(stderr, "%s\n", tern_last_error());
            return 1;
        }
        tern_qmodel_free(ms[k]);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--make-seeds")) return make_seeds(argv[2]);
    RUN(test_roundtrip);
    RUN(test_layout);
    RUN(test_size_resnet56);
    RUN(test_truncate_everywhere);
    RUN(test_flip_every_byte);
    RUN(test_frame_fields);
    RUN(test_sections);
    RUN(test_semantic);
    RUN(test_absurd_counts);
    RUN(test_validate_api);
    RUN(test_save_failures);
    if (tmpdir[0]) {
        chmod(tmpdir, 0755);
        rm_tree(tmpdir);
    }
    return check_summary();
}
