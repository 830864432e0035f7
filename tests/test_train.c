/* The training engine: finite-difference gradient checks of every backward op (small shapes,
 * the loss L = sum r*y accumulated in double, central differences), softmax cross-entropy, and
 * determinism of whole training steps (same seed -> same weights). */
#include "check.h"
#include "data/data.h"
#include "graph/graph.h"
#include "train/ops.h"
#include "train/train.h"
#include <math.h>

static uint64_t rs = 12345;
static float frand(void) { return (float)((tern_rng_next(&rs) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }
static void fill(float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] = frand(); }
/* values at least `gap` away from 0 and from each other's neighbours in steps (kink-free FD) */
static void fill_spread(float *x, size_t n, float gap) {
    for (size_t i = 0; i < n; i++) {
        float v = frand();
        x[i] = v >= 0 ? v + gap : v - gap;
    }
}
static double dot(const float *a, const float *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * r[i];
    return s;
}

/* Generic check: f(x) -> y (ny), analytic dx given dy = r. Perturbs every element of p (np). */
typedef void (*fwd_fn)(void *ctx, float *y);
static int fd_check(const char *what, void *ctx, fwd_fn f, float *p, size_t np, const float *analytic, size_t ny,
                    const float *r, float eps, double tol) {
    float *y = malloc(sizeof(float) * ny);
    int bad = 0;
    double worst = 0;
    for (size_t i = 0; i < np; i++) {
        float save = p[i];
        p[i] = save + eps;
        f(ctx, y);
        double lp = dot(y, r, ny);
        p[i] = save - eps;
        f(ctx, y);
        double lm = dot(y, r, ny);
        p[i] = save;
        double num = (lp - lm) / (2.0 * eps), err = fabs(num - analytic[i]) / fmax(1.0, fabs(num));
        if (err > worst) worst = err;
        if (err > tol && bad++ < 3) fprintf(stderr, "  %s: d[%zu] analytic %.6f numeric %.6f\n", what, i, analytic[i], num);
    }
    free(y);
    CHECK(!bad, "%s: %d of %zu gradients off (worst relative error %.2e)", what, bad, np, worst);
    return !bad;
}

/* ---- conv ---- */
typedef struct { tt_conv p; float *x, *w, *b, *col; } convctx;
static void conv_f(void *v, float *y) { convctx *c = v; tt_conv_fwd(&c->p, c->x, c->w, c->b, y, c->col); }

static void conv_case(int cin, int cout, int k, int s, int pad, int B, int H, int W) {
    convctx c = {{cin, cout, k, k, s, s, pad, pad, pad + (s > 1), pad, B, H, W, 0, 0}, 0, 0, 0, 0};
    CHECK(tt_conv_geom(&c.p), "geometry");
    size_t nx = (size_t)cin * B * H * W, nw = (size_t)cout * cin * k * k, ny = (size_t)cout * B * c.p.Ho * c.p.Wo;
    c.x = malloc(sizeof(float) * nx); c.w = malloc(sizeof(float) * nw); c.b = malloc(sizeof(float) * cout);
    c.col = malloc(sizeof(float) * tt_conv_col_size(&c.p));
    float *r = malloc(sizeof(float) * ny), *dx = calloc(nx, sizeof(float)), *dw = malloc(sizeof(float) * nw), *db = malloc(sizeof(float) * cout);
    fill(c.x, nx); fill(c.w, nw); fill(c.b, cout); fill(r, ny);
    tt_conv_bwd(&c.p, c.x, c.w, r, dx, dw, db, c.col);
    char name[64];
    snprintf(name, sizeof name, "conv %dx%d s%d p%d dx", k, k, s, pad);
    fd_check(name, &c, conv_f, c.x, nx, dx, ny, r, 1e-2f, 2e-3);
    name[strlen(name) - 2] = 0; strcat(name, "dw");
    fd_check(name, &c, conv_f, c.w, nw, dw, ny, r, 1e-2f, 2e-3);
    name[strlen(name) - 2] = 0; strcat(name, "db");
    fd_check(name, &c, conv_f, c.b, cout, db, ny, r, 1e-2f, 2e-3);
    free(c.x); free(c.w); free(c.b); free(c.col); free(r); free(dx); free(dw); free(db);
}

static void test_conv(void) {
    conv_case(3, 4, 3, 1, 1, 2, 5, 6);
    conv_case(5, 3, 3, 2, 1, 2, 7, 6);
    conv_case(4, 6, 1, 2, 0, 3, 6, 5);
    conv_case(2, 3, 5, 1, 2, 1, 4, 4);
}

/* FC = conv with a full-size kernel (how the trainer runs Gemm) */
static void test_fc(void) { conv_case(6, 5, 1, 1, 0, 4, 1, 1); conv_case(3, 4, 3, 3, 0, 2, 3, 3); }

/* ---- element-wise ---- */
typedef struct { float *x, *x2; size_t n; float alpha; int op; } ewctx;
static void ew_f(void *v, float *y) {
    ewctx *c = v;
    if (c->op == 0) tt_relu_fwd(c->x, y, c->n);
    else if (c->op == 1) tt_leaky_fwd(c->x, y, c->n, c->alpha);
    else tt_add_fwd(c->x, c->x2, y, c->n);
}

static void test_relu_leaky_add(void) {
    size_t n = 60;
    ewctx c = {malloc(sizeof(float) * n), malloc(sizeof(float) * n), n, 0.1f, 0};
    float *r = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *dx = calloc(n, sizeof(float)), *dx2 = calloc(n, sizeof(float));
    fill_spread(c.x, n, 0.05f); fill(c.x2, n); fill(r, n);
    tt_relu_fwd(c.x, y, n);
    tt_relu_bwd(y, r, dx, n);
    fd_check("relu", &c, ew_f, c.x, n, dx, n, r, 1e-3f, 1e-3);
    c.op = 1;
    memset(dx, 0, sizeof(float) * n);
    tt_leaky_bwd(c.x, r, dx, n, c.alpha);
    fd_check("leaky relu", &c, ew_f, c.x, n, dx, n, r, 1e-3f, 1e-3);
    c.op = 2;
    memset(dx, 0, sizeof(float) * n);
    tt_add_bwd(r, dx, dx2, n);
    fd_check("add a", &c, ew_f, c.x, n, dx, n, r, 1e-2f, 1e-3);
    fd_check("add b", &c, ew_f, c.x2, n, dx2, n, r, 1e-2f, 1e-3);
    free(c.x); free(c.x2); free(r); free(y); free(dx); free(dx2);
}

/* ---- pools ---- */
typedef struct { tt_pool p; float *x; int kind, hw; } poolctx;
static void pool_f(void *v, float *y) {
    poolctx *c = v;
    if (c->kind == 0) tt_maxpool_fwd(&c->p, c->x, y);
    else if (c->kind == 1) tt_avgpool_fwd(&c->p, c->x, y);
    else tt_gap_fwd(c->x, y, c->p.nplanes, c->hw);
}

static void pool_case(int kind, int k, int s, int pad, int cip) {
    int h = 7, w = 6, np = 6;
    poolctx c = {{k, k, s, s, pad, pad, pad, pad, cip, np, h, w, 0, 0}, 0, kind, h * w};
    c.p.ho = kind == 2 ? 1 : (h + 2 * pad - k) / s + 1;
    c.p.wo = kind == 2 ? 1 : (w + 2 * pad - k) / s + 1;
    size_t nx = (size_t)np * h * w, ny = (size_t)np * c.p.ho * c.p.wo;
    c.x = malloc(sizeof(float) * nx);
    float *r = malloc(sizeof(float) * ny), *dx = calloc(nx, sizeof(float));
    /* distinct values far apart so a small step never changes a window's argmax */
    for (size_t i = 0; i < nx; i++) c.x[i] = (float)((i * 7919) % nx) * 0.05f - 1.0f;
    fill(r, ny);
    if (kind == 0) tt_maxpool_bwd(&c.p, c.x, r, dx);
    else if (kind == 1) tt_avgpool_bwd(&c.p, r, dx);
    else tt_gap_bwd(r, dx, np, h * w);
    char name[64];
    snprintf(name, sizeof name, "%s k%d s%d p%d%s", kind == 0 ? "maxpool" : kind == 1 ? "avgpool" : "global avgpool", k, s, pad, cip ? " incl-pad" : "");
    fd_check(name, &c, pool_f, c.x, nx, dx, ny, r, 1e-3f, 2e-3);
    free(c.x); free(r); free(dx);
}

static void test_pools(void) {
    pool_case(0, 2, 2, 0, 0);
    pool_case(0, 3, 2, 1, 0);
    pool_case(0, 3, 1, 1, 0);
    pool_case(1, 2, 2, 0, 0);
    pool_case(1, 3, 2, 1, 0);
    pool_case(1, 3, 2, 1, 1);
    pool_case(2, 1, 1, 0, 0);
}

/* ---- slice / pad ---- */
typedef struct { tt_slice s; tt_pad p; float *x; int kind; } spctx;
static void sp_f(void *v, float *y) {
    spctx *c = v;
    if (c->kind == 0) tt_slice_fwd(&c->s, c->x, y);
    else tt_pad_fwd(&c->p, c->x, y);
}

static void test_slice_pad(void) {
    spctx c;
    memset(&c, 0, sizeof c);
    c.s = (tt_slice){6, 2, 7, 8, 1, 0, 1, 2, 2, 2, 3, 4, 4};
    size_t nx = 6 * 2 * 7 * 8, ny = 3 * 2 * 4 * 4;
    c.x = malloc(sizeof(float) * nx);
    float *r = malloc(sizeof(float) * 2000), *dx = calloc(nx, sizeof(float));
    fill(c.x, nx); fill(r, 2000);
    tt_slice_bwd(&c.s, r, dx);
    fd_check("slice (strided c/h/w)", &c, sp_f, c.x, nx, dx, ny, r, 1e-2f, 1e-3);
    c.kind = 1;
    c.p = (tt_pad){3, 2, 4, 5, 2, 1, 1, 0, 0, 2};
    size_t px = 3 * 2 * 4 * 5, py = (3 + 3) * 2 * (4 + 1) * (5 + 2);
    memset(dx, 0, sizeof(float) * nx);
    tt_pad_bwd(&c.p, r, dx);
    fd_check("pad (channels, rows, columns)", &c, sp_f, c.x, px, dx, py, r, 1e-2f, 1e-3);
    free(c.x); free(r); free(dx);
}

/* ---- softmax cross-entropy ---- */
static void test_softmax_ce(void) {
    int K = 5, B = 3, lab[3] = {0, 4, 2};
    float lg[15], d[15];
    fill(lg, 15);
    for (int i = 0; i < 15; i++) lg[i] *= 3;
    tt_softmax_ce(lg, lab, K, B, d, NULL);
    int bad = 0;
    for (int i = 0; i < 15; i++) {
        float s = lg[i];
        double e = 1e-3;
        lg[i] = s + (float)e;
        double lp = tt_softmax_ce(lg, lab, K, B, NULL, NULL);
        lg[i] = s - (float)e;
        double lm = tt_softmax_ce(lg, lab, K, B, NULL, NULL);
        lg[i] = s;
        double num = (lp - lm) / (2 * e);
        if (fabs(num - d[i]) > 1e-3) { bad++; fprintf(stderr, "  softmax-ce d[%d] %.6f vs %.6f\n", i, d[i], num); }
    }
    CHECK(!bad, "softmax cross-entropy: %d gradients off", bad);
    /* value: uniform logits give log K */
    float z[10] = {0};
    int l1[2] = {1, 0};
    CHECK(fabs(tt_softmax_ce(z, l1, 5, 2, NULL, NULL) - log(5.0)) < 1e-9, "uniform logits");
}

/* ---- fake quantisation: values, straight-through mask ---- */
static void test_fake_quant(void) {
    float x[6] = {0.26f, -0.3f, 100.0f, -100.0f, 0.1f, 1.0f}, g[6] = {1, 1, 1, 1, 1, 1};
    tt_fq_fwd(x, 6, 4, 1); /* step 1/16, range [-8, 127/16] */
    CHECK(x[0] == 0.25f && x[1] == -0.3125f && x[2] == 127.0f / 16 && x[3] == -8.0f && x[4] == 0.125f && x[5] == 1.0f, "fq values %g %g %g %g %g %g", x[0], x[1], x[2], x[3], x[4], x[5]);
    tt_fq_bwd(x, g, 6, 4, 1);
    CHECK(g[0] == 1 && g[1] == 1 && g[2] == 0 && g[3] == 0 && g[4] == 1 && g[5] == 1, "straight-through mask");
}

/* ---- a small graph: determinism of training steps, and a step lowers the loss ---- */
static tern_graph *tiny_graph(void) {
    /* input [1,3,8,8] -> conv 3x3 (8) -> relu -> conv 3x3 s2 (8) -> add(slice/pad shortcut) ->
     * leakyrelu -> maxpool 2 -> gap -> flatten -> gemm (4) */
    tern_graph *g = tern_graph_new("tiny");
    int vin = tern_graph_add_value(g, "in");
    g->input = vin;
    g->values[vin].ndim = 4;
    int64_t d0[4] = {1, 3, 8, 8};
    memcpy(g->values[vin].dims, d0, sizeof d0);
    g->values[vin].dtype = TERN_DTYPE_F32;
    int prev = vin;
    char nm[32];
    int vconst = 0;
#define CONST(dims_, nd_) ({ snprintf(nm, sizeof nm, "c%d", vconst++); int v_ = tern_graph_add_value(g, nm); tern_value *V = &g->values[v_]; V->ndim = nd_; \
    memcpy(V->dims, dims_, sizeof(int64_t) * nd_); V->dtype = TERN_DTYPE_F32; int64_t n_ = tern_value_numel(V); V->data = malloc(sizeof(float) * n_); \
    for (int64_t i = 0; i < n_; i++) { ((float *)V->data)[i] = frand() * 0.4f; } V->shape_known = 1; v_; })
#define ACT(name_, c_, h_, w_) ({ int v_ = tern_graph_add_value(g, name_); tern_value *V = &g->values[v_]; V->ndim = 4; V->dims[0] = 1; V->dims[1] = c_; V->dims[2] = h_; V->dims[3] = w_; V->dtype = TERN_DTYPE_F32; V->shape_known = 1; v_; })
    int64_t w1d[4] = {8, 3, 3, 3}, b1d[1] = {8}, w2d[4] = {8, 8, 3, 3}, fcd[2] = {4, 8}, fbd[1] = {4};
    tern_node *n = tern_graph_add_node(g, "conv1", TERN_OP_CONV);
    n->nin = 3; n->nout = 1; n->in[0] = prev; n->in[1] = CONST(w1d, 4); n->in[2] = CONST(b1d, 1);
    n->a.kernel[0] = n->a.kernel[1] = 3; n->a.strides[0] = n->a.strides[1] = 1; n->a.dilations[0] = n->a.dilations[1] = 1; n->a.group = 1;
    n->a.pads[0] = n->a.pads[1] = n->a.pads[2] = n->a.pads[3] = 1;
    n->out[0] = ACT("c1", 8, 8, 8);
    int c1 = n->out[0];
    n = tern_graph_add_node(g, "relu1", TERN_OP_RELU); n->nin = 1; n->nout = 1; n->in[0] = c1; n->out[0] = ACT("r1", 8, 8, 8);
    int r1 = n->out[0];
    n = tern_graph_add_node(g, "conv2", TERN_OP_CONV);
    n->nin = 3; n->nout = 1; n->in[0] = r1; n->in[1] = CONST(w2d, 4); n->in[2] = CONST(b1d, 1);
    n->a.kernel[0] = n->a.kernel[1] = 3; n->a.strides[0] = n->a.strides[1] = 2; n->a.dilations[0] = n->a.dilations[1] = 1; n->a.group = 1;
    n->a.pads[0] = n->a.pads[1] = 1; n->a.pads[2] = n->a.pads[3] = 0;
    n->out[0] = ACT("c2", 8, 4, 4);
    int c2 = n->out[0];
    /* LeakyRelu fused into conv2, as the quantizer lowers it (a standalone one it cannot lower) */
    n = tern_graph_add_node(g, "leaky", TERN_OP_LEAKYRELU); n->nin = 1; n->nout = 1; n->in[0] = c2; n->out[0] = ACT("l", 8, 4, 4); n->a.alpha = 0.1f;
    int lv = n->out[0];
    n = tern_graph_add_node(g, "slice", TERN_OP_SLICE); n->nin = 1; n->nout = 1; n->in[0] = r1; n->out[0] = ACT("s", 4, 4, 4);
    n->a.rs_start[1] = 0; n->a.rs_step[1] = 2; n->a.rs_start[2] = 0; n->a.rs_step[2] = 2; n->a.rs_start[3] = 1; n->a.rs_step[3] = 2; n->a.rs_step[0] = 1;
    int sv = n->out[0];
    n = tern_graph_add_node(g, "pad", TERN_OP_PAD); n->nin = 1; n->nout = 1; n->in[0] = sv; n->out[0] = ACT("p", 8, 4, 4);
    n->a.pad_list[1] = 2; n->a.pad_list[5] = 2; n->a.npad_list = 8;
    int pv = n->out[0];
    n = tern_graph_add_node(g, "add", TERN_OP_ADD); n->nin = 2; n->nout = 1; n->in[0] = lv; n->in[1] = pv; n->out[0] = ACT("a", 8, 4, 4);
    int av = n->out[0];
    n = tern_graph_add_node(g, "mp", TERN_OP_MAXPOOL); n->nin = 1; n->nout = 1; n->in[0] = av; n->out[0] = ACT("m", 8, 2, 2);
    n->a.kernel[0] = n->a.kernel[1] = 2; n->a.strides[0] = n->a.strides[1] = 2; n->a.dilations[0] = n->a.dilations[1] = 1;
    int mv = n->out[0];
    n = tern_graph_add_node(g, "gap", TERN_OP_GLOBALAVGPOOL); n->nin = 1; n->nout = 1; n->in[0] = mv; n->out[0] = ACT("gp", 8, 1, 1);
    int gv = n->out[0];
    n = tern_graph_add_node(g, "flat", TERN_OP_FLATTEN); n->nin = 1; n->nout = 1; n->in[0] = gv;
    int fv = tern_graph_add_value(g, "f"); g->values[fv].ndim = 2; g->values[fv].dims[0] = 1; g->values[fv].dims[1] = 8; n->out[0] = fv;
    n = tern_graph_add_node(g, "fc", TERN_OP_GEMM); n->nin = 3; n->nout = 1; n->in[0] = fv; n->in[1] = CONST(fcd, 2); n->in[2] = CONST(fbd, 1);
    n->a.trans_b = 1; n->a.alpha = n->a.beta = 1.0f;
    int ov = tern_graph_add_value(g, "out"); g->values[ov].ndim = 2; g->values[ov].dims[0] = 1; g->values[ov].dims[1] = 4; n->out[0] = ov;
    g->output = ov;
    return g;
}

static void run_steps(uint64_t seed, int steps, float *wout, double *first_loss, double *last_loss) {
    rs = 12345;
    tern_graph *g = tiny_graph();
    tern_qopts qo;
    tern_qopts_init(&qo);
    qo.cluster = 4;
    tern_qplan *plan = NULL;
    CHECK(tern_quant_plan(g, &qo, &plan) == TERN_STATUS_OK, "plan: %s", tern_last_error());
    tern_train_opts o;
    tern_train_opts_init(&o);
    o.plan = plan;
    tern_trainer *t = NULL;
    CHECK(tern_trainer_new(g, &o, 8, &t) == TERN_STATUS_OK, "trainer: %s", tern_last_error());
    if (!t) { tern_qplan_free(plan); tern_graph_free(g); return; }
    uint64_t rng = seed;
    uint8_t img[8][3 * 8 * 8];
    int lab[8];
    float x[8 * 3 * 8 * 8], mean[3] = {0.5f, 0.5f, 0.5f}, sd[3] = {0.25f, 0.25f, 0.25f};
    for (int i = 0; i < 8; i++) {
        lab[i] = i % 4;
        for (int k = 0; k < 192; k++) img[i][k] = (uint8_t)(((k * 31 + i * 57) % 256) * (lab[i] + 1) / 4);
    }
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < 8; i++) tern_augment(img[i], 3, 8, 8, 2, 1, &rng, mean, sd, x + 192 * i);
        double loss;
        int hit;
        CHECK(tern_trainer_step(t, x, lab, 8, 0.05f, &loss, &hit) == TERN_STATUS_OK, "step");
        if (s == 0) *first_loss = loss;
        *last_loss = loss;
    }
    int co, K;
    float *w = tern_trainer_weights(t, 1, &co, &K, NULL);
    memcpy(wout, w, sizeof(float) * (size_t)co * K);
    tern_trainer_free(t);
    tern_qplan_free(plan);
    tern_graph_free(g);
}

static void test_determinism(void) {
    float a[8 * 72], b[8 * 72], c[8 * 72];
    double f1, l1, f2, l2, f3, l3;
    run_steps(7, 30, a, &f1, &l1);
    run_steps(7, 30, b, &f2, &l2);
    run_steps(8, 30, c, &f3, &l3);
    CHECK(!memcmp(a, b, sizeof a), "same seed gives different weights");
    CHECK(memcmp(a, c, sizeof a), "another seed gives the same weights (augmentation unused?)");
    CHECK(l1 < f1, "training does not lower the loss: %.4f -> %.4f", f1, l1);
}

int main(void) {
    RUN(test_conv);
    RUN(test_fc);
    RUN(test_relu_leaky_add);
    RUN(test_pools);
    RUN(test_slice_pad);
    RUN(test_softmax_ce);
    RUN(test_fake_quant);
    RUN(test_determinism);
    return check_summary();
}
