/* Small integer ops: residual add (reference against an independent int64 evaluation of the
 * formula in kernels.h, AVX2 bit for bit against the reference) and max pooling (AVX2 running
 * max and 2x2 pool against direct scalar maxima). The executor's conv + add fusion against the
 * same model run layer by layer (keep_all), at every ISA level and thread count. */
#include "check.h"
#include "engine/qexec.h"
#include "kernels/kernels.h"

static uint32_t rng = 99;
static uint32_t rnd(void) { rng = rng * 1664525u + 1013904223u; return rng >> 8; }

static int32_t expect(int32_t a, int32_t b, int la, int lb, int rs, int qmin, int qmax) {
    int64_t s = (int64_t)a * ((int64_t)1 << la) + (int64_t)b * ((int64_t)1 << lb);
    if (rs > 0) s = (s + ((int64_t)1 << (rs - 1))) >> rs;
    return (int32_t)(s < qmin ? qmin : s > qmax ? qmax : s);
}

static void sweep(tern_add_fn fn, int against_formula) {
    uint8_t a[300], b[300], y[300], r[300];
    for (int iter = 0; iter < 3000; iter++) {
        int as = rnd() & 1, bs = rnd() & 1, la = rnd() % 9, lb = rnd() % 9, rs = rnd() % 12;
        int n = 1 + rnd() % 290;
        int qmin, qmax;
        switch (rnd() % 4) {
        case 0: qmin = 0; qmax = 255; break;             /* ReLU, unsigned */
        case 1: qmin = -128; qmax = 127; break;          /* signed */
        case 2: qmin = (int)(rnd() % 100); qmax = qmin + (int)(rnd() % 156); break; /* clip, unsigned */
        default: qmin = -(int)(rnd() % 129); qmax = (int)(rnd() % 128); break;      /* clip, signed */
        }
        for (int i = 0; i < n; i++) { a[i] = (uint8_t)rnd(); b[i] = (uint8_t)rnd(); }
        if (iter % 7 == 0) for (int i = 0; i < n; i++) { a[i] = as ? 0x80 : 0xff; b[i] = bs ? 0x7f : 0xff; } /* extremes */
        fn(a, as, b, bs, y, (size_t)n, la, lb, rs, qmin, qmax);
        if (against_formula) {
            for (int i = 0; i < n; i++) {
                int32_t want = expect(as ? (int8_t)a[i] : a[i], bs ? (int8_t)b[i] : b[i], la, lb, rs, qmin, qmax);
                int32_t got = qmin < 0 ? (int8_t)y[i] : y[i];
                if (got != want) { CHECK(0, "iter %d i %d: %d != %d", iter, i, got, want); return; }
            }
        } else {
            tern_add_ref(a, as, b, bs, r, (size_t)n, la, lb, rs, qmin, qmax);
            for (int i = 0; i < n; i++)
                if (y[i] != r[i]) { CHECK(0, "iter %d n %d i %d: avx2 %d ref %d (as %d bs %d la %d lb %d rs %d q %d..%d)", iter, n, i, y[i], r[i], as, bs, la, lb, rs, qmin, qmax); return; }
        }
    }
}

static void test_ref_formula(void) { sweep(tern_add_ref, 1); }
static void test_avx2_exact(void) {
    if (tern_cpu_isa() < TERN_ISA_AVX2) SKIP("CPU has no AVX2");
    sweep(tern_add__avx2, 0);
}

static void test_max_and_pool(void) {
    if (tern_cpu_isa() < TERN_ISA_AVX2) SKIP("CPU has no AVX2");
    uint8_t x[6 * 10 * 48], y[3 * 5 * 48], d1[200], d2[200], s[200];
    for (int iter = 0; iter < 400; iter++) {
        int sg = iter & 1, n = 1 + (int)(rnd() % 199);
        for (int i = 0; i < n; i++) { d1[i] = d2[i] = (uint8_t)rnd(); s[i] = (uint8_t)rnd(); }
        tern_max__avx2(d1, s, (size_t)n, sg);
        for (int i = 0; i < n; i++) {
            int a = sg ? (int8_t)d2[i] : d2[i], b = sg ? (int8_t)s[i] : s[i];
            uint8_t want = (uint8_t)(a > b ? a : b);
            if (d1[i] != want) { CHECK(0, "running max iter %d i %d", iter, i); return; }
        }
        int C = 16 * (1 + (int)(rnd() % 3)), H = 2 + (int)(rnd() % 5), W = 2 + (int)(rnd() % 9), OH = H / 2, OW = W / 2;
        for (int i = 0; i < H * W * C; i++) x[i] = (uint8_t)rnd();
        tern_maxpool2x2__avx2(x, W, C, y, OH, OW, sg);
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int c = 0; c < C; c++) {
                    int m = -1000;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            uint8_t v = x[((2 * oy + dy) * W + 2 * ox + dx) * C + c];
                            int iv = sg ? (int8_t)v : v;
                            m = iv > m ? iv : m;
                        }
                    if (y[(oy * OW + ox) * C + c] != (uint8_t)m) { CHECK(0, "pool iter %d (%d,%d,%d)", iter, oy, ox, c); return; }
                }
    }
}

/* Channel sums (global average pool): the reference against a direct int64 sum, AVX2 against
 * the reference; pixel counts past the AVX2 kernel's 256-pixel s16 runs, extreme bytes. */
static void test_chansum(void) {
    static uint8_t x[700 * 70];
    int32_t r[70], v[70];
    for (int iter = 0; iter < 300; iter++) {
        const int c = 1 + (int)(rnd() % 70), sg = iter & 1, mode = (int)(rnd() % 4);
        const size_t npix = 1 + rnd() % 700;
        for (size_t i = 0; i < npix * c; i++) x[i] = mode == 0 ? (sg ? 0x80 : 0xff) : mode == 1 ? (sg ? 0x7f : 0) : (uint8_t)rnd();
        tern_chansum_ref(x, sg, npix, c, r);
        for (int ch = 0; ch < c; ch++) {
            int64_t t = 0;
            for (size_t p = 0; p < npix; p++) t += sg ? (int8_t)x[p * c + ch] : x[p * c + ch];
            if (r[ch] != (int32_t)t) { CHECK(0, "ref c %d npix %zu ch %d: %d != %lld", c, npix, ch, r[ch], (long long)t); return; }
        }
        if (tern_cpu_isa() < TERN_ISA_AVX2) continue;
        tern_chansum__avx2(x, sg, npix, c, v);
        if (memcmp(r, v, sizeof(int32_t) * c)) { CHECK(0, "avx2 c %d npix %zu signed %d differs", c, npix, sg); return; }
    }
}

/* ---- conv + add fusion in the executor ---- */
static void *dup_mem(const void *p, size_t n) { void *q = malloc(n); memcpy(q, p, n); return q; }

/* conv layer: random codes/scales, requantisation that keeps most outputs between the clamps */
static void make_conv_layer(tern_qlayer *L, int in, int out, int cin, int cout, int k, int pad, int wtype, int N,
                            int in_signed, int qmin, int qmax, int relu, int wide) {
    memset(L, 0, sizeof *L);
    L->op = TERN_QOP_CONV;
    L->nin = 1; L->in[0] = in; L->out = out;
    tern_qconv *c = &L->conv;
    c->cin = cin; c->cout = cout; c->groups = 1; c->kh = c->kw = k; c->sh = c->sw = c->dh = c->dw = 1;
    c->pad_t = c->pad_l = c->pad_b = c->pad_r = pad;
    c->wtype = wtype; c->cluster = N; c->in_signed = in_signed;
    c->qmin = qmin; c->qmax = qmax; c->out_wide = wide;
    const int K = cin * k * k, ncl = tern_qconv_nclusters(c), mc = wtype == TERN_WTYPE_TERNARY ? 1 : 127;
    int8_t *w = malloc((size_t)cout * K);
    for (int i = 0; i < cout * K; i++) w[i] = (int8_t)((int)(rnd() % (2 * mc + 1)) - mc);
    int16_t *cs = malloc(sizeof(int16_t) * cout * ncl);
    for (int i = 0; i < cout * ncl; i++) cs[i] = (int16_t)(wtype == TERN_WTYPE_TERNARY ? 40 + rnd() % 200 : 1 + rnd() % 4);
    int32_t *b = malloc(4 * cout), *mp = malloc(4 * cout), *mn = malloc(4 * cout);
    int8_t *sh = malloc(cout);
    for (int o = 0; o < cout; o++) {
        b[o] = (int32_t)(rnd() % 20001) - 10000;
        mp[o] = (int32_t)((1u << 30) + rnd() % (1u << 30));
        mn[o] = relu ? 0 : mp[o];
        sh[o] = (int8_t)(wide ? 0 : wtype == TERN_WTYPE_TERNARY ? 10 + rnd() % 2 : 6 + rnd() % 2);
    }
    c->w = w; c->cscale = cs; c->bias = b; c->mpos = mp; c->mneg = mn; c->shift = sh;
    L->qmin = qmin; L->qmax = qmax;
}

static void make_add_layer(tern_qlayer *L, int a, int b, int out, int la, int lb, int rs, int qmin, int qmax) {
    memset(L, 0, sizeof *L);
    L->op = TERN_QOP_ADD;
    L->nin = 2; L->in[0] = a; L->in[1] = b; L->out = out;
    L->la = la; L->lb = lb; L->rs = rs; L->qmin = qmin; L->qmax = qmax;
}

/* input -> conv8 (u8) -> conv -> conv (s8) -> add(conv, t1) -> conv (s8) -> add(t4, conv), big
 * shifts -> conv -> add(conv, t6) s16 path, conv as second input -> conv, then a requant of
 * t8 (the conv must move after it to be fused) -> add -> logits (wide 1x1 conv) */
/* An empty model: input C x H x W, ntensors tensors (tensor 0 the input, u8, exp 0), nlayers layers,
 * the last tensor the output, nclasses outputs. */
static tern_qmodel *new_model(int c, int h, int w, int ntensors, int nlayers, int nclasses) {
    tern_qmodel *m = calloc(1, sizeof *m);
    m->in_c = c; m->in_h = h; m->in_w = w; m->nclasses = nclasses;
    m->ntensors = ntensors; m->nlayers = nlayers; m->output = ntensors - 1;
    m->tensors = calloc((size_t)ntensors, sizeof *m->tensors);
    m->layers = calloc((size_t)nlayers, sizeof *m->layers);
    m->tensors[0] = (tern_qtensor){c, h, w, 0, 0, 0};
    return m;
}

static tern_qmodel *fusion_model(void) {
    enum { H = 9, W = 13, C = 16 };
    tern_qmodel *m = new_model(3, H, W, 14, 12, 10);
    const int sg[14] = {0, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0};   /* as the layers' clamps say */
    for (int t = 0; t < 14; t++) m->tensors[t] = (tern_qtensor){t ? C : 3, H, W, sg[t], 5, 0};
    m->tensors[13] = (tern_qtensor){10, 1, 1, 0, 10, 1};
    make_conv_layer(&m->layers[0], 0, 1, 3, C, 3, 1, TERN_WTYPE_INT8, 3, 0, 0, 255, 1, 0);
    make_conv_layer(&m->layers[1], 1, 2, C, C, 3, 1, TERN_WTYPE_TERNARY, 4, 0, 0, 255, 1, 0);
    make_conv_layer(&m->layers[2], 2, 3, C, C, 3, 1, TERN_WTYPE_TERNARY, 4, 0, -128, 127, 0, 0);
    make_add_layer(&m->layers[3], 3, 1, 4, 1, 0, 1, 0, 255);
    make_conv_layer(&m->layers[4], 4, 5, C, C, 3, 1, TERN_WTYPE_TERNARY, 4, 0, -128, 127, 0, 0);
    make_add_layer(&m->layers[5], 4, 5, 6, 9, 12, 12, -128, 127);           /* beyond the s16 path */
    make_conv_layer(&m->layers[6], 6, 7, C, C, 1, 0, TERN_WTYPE_TERNARY, 4, 1, -100, 90, 0, 0);
    make_add_layer(&m->layers[7], 6, 7, 8, 0, 2, 2, 0, 200);               /* the conv is input b */
    make_conv_layer(&m->layers[8], 8, 10, C, C, 3, 1, TERN_WTYPE_TERNARY, 4, 0, -128, 127, 0, 0);
    memset(&m->layers[9], 0, sizeof m->layers[9]);   /* t11 = requant(t8): runs between the conv and its add */
    m->layers[9].op = TERN_QOP_REQUANT; m->layers[9].nin = 1; m->layers[9].in[0] = 8; m->layers[9].out = 11;
    m->layers[9].la = 1; m->layers[9].rs = 2; m->layers[9].qmin = -128; m->layers[9].qmax = 127;
    make_add_layer(&m->layers[10], 11, 10, 12, 1, 1, 2, -128, 127);
    make_conv_layer(&m->layers[11], 12, 13, C, 10, 1, 0, TERN_WTYPE_INT8, C, 1, INT32_MIN, INT32_MAX, 0, 1);
    m->layers[11].conv.kh = H; m->layers[11].conv.kw = W;   /* the whole map: 1x1 logits */
    {   /* its weights for the H x W kernel */
        tern_qconv *c = &m->layers[11].conv;
        int8_t *w = malloc((size_t)10 * C * H * W);
        for (int i = 0; i < 10 * C * H * W; i++) w[i] = (int8_t)((int)(rnd() % 255) - 127);
        free((void *)c->w);
        c->w = w;
    }
    (void)dup_mem;
    return m;
}

static void test_fused_add_exec(void) {
    tern_qmodel *m = fusion_model();
    const int maxb = 7;
    const size_t per = (size_t)m->in_c * m->in_h * m->in_w;
    uint8_t *px = malloc(per * maxb);
    for (size_t i = 0; i < per * maxb; i++) px[i] = (uint8_t)rnd();
    const tern_qtensor *t8 = &m->tensors[8];
    const size_t n8 = (size_t)t8->c * t8->h * t8->w;
    int32_t *want = malloc(sizeof(int32_t) * maxb * m->nclasses);
    uint8_t *want8 = malloc(n8 * maxb);
    int runs = 0, between = 0, total = 0;
    for (int isa = TERN_ISA_REF; isa <= (int)tern_cpu_isa() && isa <= TERN_ISA_AVX2; isa++)
        for (int threads = 1; threads <= 2; threads++)
            for (int batch = 1; batch <= maxb; batch += 3) {
                tern_qexec *ef, *eu;
                const int32_t *lf, *lu;
                CHECK(tern_qexec_new(m, batch, threads, (enum tern_isa)isa, &ef) == TERN_STATUS_OK, "exec");
                CHECK(tern_qexec_new(m, batch, threads, (enum tern_isa)isa, &eu) == TERN_STATUS_OK, "exec");
                CHECK(tern_qexec_keep_all(eu) == TERN_STATUS_OK, "keep_all");
                CHECK(tern_qexec_run(ef, px, batch, &lf) == TERN_STATUS_OK, "run");
                CHECK(tern_qexec_run(eu, px, batch, &lu) == TERN_STATUS_OK, "run");
                /* the fused convs' own outputs were never stored */
                CHECK(!tern_qexec_tensor(ef, 3, 0) && !tern_qexec_tensor(ef, 5, 0) && !tern_qexec_tensor(ef, 7, 0) && !tern_qexec_tensor(ef, 10, 0),
                      "convs 2, 4, 6, 8 fused");
                CHECK(!memcmp(lf, lu, sizeof(int32_t) * batch * m->nclasses), "isa %d threads %d batch %d: fused logits differ", isa, threads, batch);
                for (int b = 0; b < batch; b++)
                    CHECK(!memcmp(tern_qexec_tensor(ef, 8, b), tern_qexec_tensor(eu, 8, b), n8), "isa %d threads %d batch %d: last add differs", isa, threads, batch);
                /* and every ISA / thread count agrees with the first */
                if (!runs) { memcpy(want, lu, sizeof(int32_t) * batch * m->nclasses); for (int b = 0; b < batch; b++) memcpy(want8 + b * n8, tern_qexec_tensor(eu, 8, b), n8); }
                else CHECK(!memcmp(want, lu, sizeof(int32_t) * m->nclasses) && !memcmp(want8, tern_qexec_tensor(eu, 8, 0), n8), "isa %d threads %d: image 0 differs", isa, threads);
                if (!runs)
                    for (size_t i = 0; i < n8 * batch; i++) { total++; between += want8[i] != 0 && want8[i] != 200; }
                runs++;
                tern_qexec_free(ef);
                tern_qexec_free(eu);
            }
    fprintf(stderr, "  %d configurations; last add: %d of %d values between its clamps\n", runs, between, total);
    CHECK(between > total / 4, "the model should mostly not saturate");
    free(px); free(want); free(want8);
    tern_qmodel_free(m);
}

/* LUT, MUL and CHANPERM layers: input -> LUT (t1, u8) -> SLICE to 3x1x1 (t2) -> MUL per channel
 * (t3, s8) -> MUL same shape with t1 (t4) -> CHANPERM (t5, the output). The engine, at every ISA level and thread count,
 * and after a save/load round trip, against the formulas of kernels.h evaluated here in int64. */
static void test_lut_mul_exec(void) {
    enum { H = 5, W = 7, C = 3 };
    tern_qmodel *m = new_model(C, H, W, 6, 5, C * H * W);
    m->tensors[1] = (tern_qtensor){C, H, W, 0, 3, 0};
    m->tensors[2] = (tern_qtensor){C, 1, 1, 0, 3, 0};
    m->tensors[3] = (tern_qtensor){C, H, W, 1, 4, 0};
    m->tensors[4] = (tern_qtensor){C, H, W, 1, 6, 0};
    m->tensors[5] = (tern_qtensor){C, H, W, 1, 6, 0};
    tern_qlayer *L = m->layers;
    L[0] = (tern_qlayer){.op = TERN_QOP_LUT, .nin = 1, .in = {0}, .out = 1, .qmin = 0, .qmax = 255};
    L[0].lut = malloc(256);
    for (int b = 0; b < 256; b++) L[0].lut[b] = (uint8_t)((b * 37 + 11) % 256);
    L[1] = (tern_qlayer){.op = TERN_QOP_SLICE, .nin = 1, .in = {1}, .out = 2, .start_h = 2, .start_w = 3, .step_c = 1, .step_h = 1, .step_w = 1, .qmin = 0, .qmax = 255};
    L[2] = (tern_qlayer){.op = TERN_QOP_MUL, .nin = 2, .in = {1, 2}, .out = 3, .la = 0, .rs = 2, .qmin = -128, .qmax = 127};
    L[3] = (tern_qlayer){.op = TERN_QOP_MUL, .nin = 2, .in = {3, 1}, .out = 4, .la = 1, .rs = 2, .qmin = -100, .qmax = 90};
    L[4] = (tern_qlayer){.op = TERN_QOP_CHANPERM, .nin = 1, .in = {4}, .out = 5, .qmin = -128, .qmax = 127};
    static const int32_t perm[C] = {2, 0, 1};
    L[4].perm = malloc(sizeof perm);
    memcpy(L[4].perm, perm, sizeof perm);
    for (int i = 0; i < 5; i++) snprintf(L[i].name, sizeof L[i].name, "layer%d", i);
    CHECK(tern_qmodel_validate(m, "lut/mul model") == TERN_STATUS_OK, "validate: %s", tern_last_error());
    const char *path = "/tmp/tern_test_lut_mul.tern";
    tern_qmodel *m2 = NULL;
    CHECK(tern_qmodel_save(m, path) == TERN_STATUS_OK && tern_qmodel_load(path, &m2) == TERN_STATUS_OK, "round trip: %s", tern_last_error());
    remove(path);
    uint8_t px[2][C * H * W];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < C * H * W; i++) px[b][i] = (uint8_t)rnd();
    int32_t want[2][C * H * W];
    for (int b = 0; b < 2; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++) {   /* px is CHW, the logits follow the output's HWC order */
                int64_t t1 = L[0].lut[px[b][c * H * W + p]], t2 = L[0].lut[px[b][c * H * W + 2 * W + 3]];
                int64_t t3 = (t1 * t2 + 2) >> 2;
                t3 = t3 < -128 ? -128 : t3 > 127 ? 127 : t3;
                int64_t t4 = ((t3 * t1 * 2) + 2) >> 2;
                t4 = t4 < -100 ? -100 : t4 > 90 ? 90 : t4;
                for (int j = 0; j < C; j++)   /* output channel j holds input channel perm[j] */
                    if (perm[j] == c) want[b][p * C + j] = (int32_t)t4;
            }
    int runs = 0;
    for (int which = 0; which < 2 && m2; which++)
        for (int isa = TERN_ISA_REF; isa <= (int)tern_cpu_isa(); isa++)
            for (int threads = 1; threads <= 2; threads++) {
                tern_qexec *e;
                const int32_t *lg;
                if (tern_qexec_new(which ? m2 : m, 2, threads, (enum tern_isa)isa, &e)) { CHECK(0, "exec: %s", tern_last_error()); continue; }
                CHECK(tern_qexec_run(e, &px[0][0], 2, &lg) == TERN_STATUS_OK, "run");
                CHECK(!memcmp(lg, want, sizeof want), "%s model, isa %d, %d threads: logits differ from the formula", which ? "loaded" : "built", isa, threads);
                tern_qexec_free(e);
                runs++;
            }
    fprintf(stderr, "  %d configurations\n", runs);
    tern_qmodel_free(m);
    tern_qmodel_free(m2);
}

/* REQUANT layers (exponent alignment, e.g. before a concat): u8 -> s8 with a left shift, s8 -> u8
 * with a rounding right shift, u8 -> s8 with both and narrow clamps; every byte value once. The
 * engine (an 8-bit requant runs as a table built from the formula) against the formula in int64. */
static int64_t rq_formula(int64_t x, int la, int rs, int lo, int hi) {
    int64_t v = x * ((int64_t)1 << la);
    if (rs > 0) v = (v + ((int64_t)1 << (rs - 1))) >> rs;
    return v < lo ? lo : v > hi ? hi : v;
}
static void test_requant_exec(void) {
    enum { C = 4, H = 8, W = 8 };   /* 256 input bytes: each value once */
    tern_qmodel *m = new_model(C, H, W, 4, 3, C * H * W);
    m->tensors[1] = (tern_qtensor){C, H, W, 1, 2, 0};
    m->tensors[2] = (tern_qtensor){C, H, W, 0, -1, 0};
    m->tensors[3] = (tern_qtensor){C, H, W, 1, -2, 0};   /* exp out = exp in + la - rs */
    static const int la[3] = {2, 0, 1}, rs[3] = {0, 3, 2}, lo[3] = {-128, 0, -100}, hi[3] = {127, 255, 90};
    for (int i = 0; i < 3; i++) {
        m->layers[i] = (tern_qlayer){.op = TERN_QOP_REQUANT, .nin = 1, .in = {i}, .out = i + 1, .la = la[i], .rs = rs[i], .qmin = lo[i], .qmax = hi[i]};
        snprintf(m->layers[i].name, sizeof m->layers[i].name, "requant%d", i);
    }
    CHECK(tern_qmodel_validate(m, "requant model") == TERN_STATUS_OK, "validate: %s", tern_last_error());
    uint8_t px[C * H * W];
    int32_t want[C * H * W];
    for (int i = 0; i < C * H * W; i++) px[i] = (uint8_t)(i * 97 + 13);   /* 97 is odd: a permutation of 0..255 */
    for (int c = 0; c < C; c++)
        for (int p = 0; p < H * W; p++) {   /* px is CHW, the logits follow the output's HWC order */
            int64_t v = px[c * H * W + p];
            for (int i = 0; i < 3; i++) v = rq_formula(v, la[i], rs[i], lo[i], hi[i]);
            want[p * C + c] = (int32_t)v;
        }
    for (int isa = TERN_ISA_REF; isa <= (int)tern_cpu_isa(); isa++) {
        tern_qexec *e;
        const int32_t *lg;
        if (tern_qexec_new(m, 1, 1, (enum tern_isa)isa, &e)) { CHECK(0, "exec: %s", tern_last_error()); continue; }
        CHECK(tern_qexec_run(e, px, 1, &lg) == TERN_STATUS_OK, "run");
        CHECK(!memcmp(lg, want, sizeof want), "isa %d: requant chain differs from the formula", isa);
        tern_qexec_free(e);
    }
    tern_qmodel_free(m);
}

/* Row splitting of the element-wise and pooling ops (batch-1 layers split by output rows over the
 * threads when a tensor is 64 KB or more): a model of such tensors, REQUANT -> MAXPOOL 3x3 (generic
 * path) -> LUT -> ADD -> CONCAT -> AVGPOOL 2x2 and MAXPOOL 2x2 (AVX2 path) -> CONCAT, run at
 * 2 threads with batches 1 and 3 (rows split) against 1 thread, every tensor compared. */
static void test_row_split_exec(void) {
    enum { C = 16, H = 128, W = 128 };
    tern_qmodel *m = new_model(C, H, W, 9, 8, 4 * C * (H / 2) * (W / 2));
    tern_qtensor *T = m->tensors;
    T[1] = (tern_qtensor){C, H, W, 1, -1, 0};           /* requant */
    T[2] = (tern_qtensor){C, H, W, 1, -1, 0};           /* maxpool 3x3 s1 p1 */
    T[3] = (tern_qtensor){C, H, W, 0, -1, 0};           /* lut */
    T[4] = (tern_qtensor){C, H, W, 1, -2, 0};           /* add */
    T[5] = (tern_qtensor){2 * C, H, W, 1, -2, 0};       /* concat */
    T[6] = (tern_qtensor){2 * C, H / 2, W / 2, 1, -2, 0};   /* avgpool 2x2 s2 */
    T[7] = (tern_qtensor){2 * C, H / 2, W / 2, 1, -2, 0};   /* maxpool 2x2 s2 */
    T[8] = (tern_qtensor){4 * C, H / 2, W / 2, 1, -2, 0};   /* concat: the output */
    tern_qlayer *L = m->layers;
    L[0] = (tern_qlayer){.op = TERN_QOP_REQUANT, .nin = 1, .in = {0}, .out = 1, .la = 0, .rs = 1, .qmin = -128, .qmax = 127};
    L[1] = (tern_qlayer){.op = TERN_QOP_MAXPOOL, .nin = 1, .in = {1}, .out = 2, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                         .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .qmin = -128, .qmax = 127};
    L[2] = (tern_qlayer){.op = TERN_QOP_LUT, .nin = 1, .in = {1}, .out = 3, .qmin = 0, .qmax = 255};
    L[2].lut = malloc(256);
    for (int b = 0; b < 256; b++) L[2].lut[b] = (uint8_t)((b * 37 + 11) % 256);
    L[3] = (tern_qlayer){.op = TERN_QOP_ADD, .nin = 2, .in = {2, 3}, .out = 4, .la = 0, .lb = 0, .rs = 1, .qmin = -128, .qmax = 127};
    L[4] = (tern_qlayer){.op = TERN_QOP_CONCAT, .nin = 2, .in = {4, 4}, .out = 5, .qmin = -128, .qmax = 127};
    L[5] = (tern_qlayer){.op = TERN_QOP_AVGPOOL, .nin = 1, .in = {5}, .out = 6, .kh = 2, .kw = 2, .sh = 2, .sw = 2, .qmin = -128, .qmax = 127};
    L[5].nmult = 5;
    L[5].mult = malloc(5 * sizeof(int32_t));
    L[5].mshift = malloc(5);
    for (int n = 0; n < 5; n++) L[5].mult[n] = n ? (int32_t)((1u << 31) / (unsigned)n - 1) : 0, L[5].mshift[n] = 0;
    L[6] = (tern_qlayer){.op = TERN_QOP_MAXPOOL, .nin = 1, .in = {5}, .out = 7, .kh = 2, .kw = 2, .sh = 2, .sw = 2, .qmin = -128, .qmax = 127};
    L[7] = (tern_qlayer){.op = TERN_QOP_CONCAT, .nin = 2, .in = {6, 7}, .out = 8, .qmin = -128, .qmax = 127};
    for (int i = 0; i < 8; i++) snprintf(L[i].name, sizeof L[i].name, "layer%d", i);
    CHECK(tern_qmodel_validate(m, "row split model") == TERN_STATUS_OK, "validate: %s", tern_last_error());
    const size_t per = (size_t)C * H * W;
    uint8_t *px = malloc(per * 3);
    for (size_t i = 0; i < per * 3; i++) px[i] = (uint8_t)rnd();
    int runs = 0;
    for (int isa = TERN_ISA_REF; isa <= (int)tern_cpu_isa(); isa++)
        for (int batch = 1; batch <= 3; batch += 2) {
            tern_qexec *e1, *e2;
            const int32_t *l1, *l2;
            if (tern_qexec_new(m, batch, 1, (enum tern_isa)isa, &e1) || tern_qexec_new(m, batch, 2, (enum tern_isa)isa, &e2)) {
                CHECK(0, "exec: %s", tern_last_error());
                break;
            }
            CHECK(tern_qexec_keep_all(e1) == TERN_STATUS_OK && tern_qexec_keep_all(e2) == TERN_STATUS_OK, "keep_all");
            CHECK(tern_qexec_run(e1, px, batch, &l1) == TERN_STATUS_OK && tern_qexec_run(e2, px, batch, &l2) == TERN_STATUS_OK, "run");
            for (int t = 1; t < 9; t++)
                for (int b = 0; b < batch; b++)
                    CHECK(!memcmp(tern_qexec_tensor(e1, t, b), tern_qexec_tensor(e2, t, b), (size_t)T[t].c * T[t].h * T[t].w),
                          "isa %d batch %d image %d: tensor %d differs between 1 and 2 threads", isa, batch, b, t);
            CHECK(!memcmp(l1, l2, sizeof(int32_t) * (size_t)batch * m->nclasses), "isa %d batch %d: outputs differ", isa, batch);
            tern_qexec_free(e1);
            tern_qexec_free(e2);
            runs++;
        }
    fprintf(stderr, "  %d configurations\n", runs);
    free(px);
    tern_qmodel_free(m);
}

int main(void) {
    RUN(test_lut_mul_exec);
    RUN(test_row_split_exec);
    RUN(test_requant_exec);
    RUN(test_max_and_pool);
    RUN(test_ref_formula);
    RUN(test_avx2_exact);
    RUN(test_chansum);
    RUN(test_fused_add_exec);
    return check_summary();
}
