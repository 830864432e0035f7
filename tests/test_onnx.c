/* ONNX import + FP32 executor: golden logits from PyTorch, graph passes, and bad input. */
#include "check.h"
#include "graph/fp32.h"
#include "graph/graph.h"
#include "data/data.h"
#include "onnx.pb-c.h"
#include <math.h>
#include <unistd.h>

/* The fuzz target's checks, to replay its findings (test_fuzz_cases, rebuilt here) in the suite. */
#include "fuzz_onnx.c"

static char path_buf[4][512];
static const char *data_path(int slot, const char *rel) {
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", check_data_dir(), rel);
    return path_buf[slot];
}

/* Logits of the first 16 test images vs resnet20_reference.bin (PyTorch, BN unfused). */
static void golden(const char *model, double tol) {
    tern_graph *g;
    if (access(data_path(0, model), R_OK) != 0) { CHECK(0, "missing %s", path_buf[0]); return; }
    CHECK(tern_onnx_import(path_buf[0], &g) == TERN_STATUS_OK, "%s", tern_last_error());
    if (check_failed_now) return;
    for (int i = 0; i < g->nnodes; i++) {
        int op = g->nodes[i].op;
        CHECK(op != TERN_OP_BATCHNORM && op != TERN_OP_SHAPE && op != TERN_OP_CAST && op != TERN_OP_IDENTITY,
              "node %s (%s) should have been folded", g->nodes[i].name, tern_ops[op].name);
    }
    tern_preproc pp = {0};
    tern_dataset *ds;
    CHECK(tern_dataset_open(data_path(1, "cifar10/test_batch.bin"), NULL, &pp, &ds) == 0, "%s", tern_last_error());
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    float *in = malloc(sizeof(float) * 16 * 3072), ref[160];
    uint8_t px[3072];
    for (int i = 0; i < 16; i++) {
        tern_dataset_read(ds, i, px, NULL);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p++) in[i * 3072 + c * 1024 + p] = (px[c * 1024 + p] / 255.0f - mean[c]) / std[c];
    }
    FILE *f = fopen(data_path(2, "models/cifar10/resnet20_reference.bin"), "rb");
    CHECK(f && fread(ref, sizeof(float), 160, f) == 160, "cannot read reference logits");
    if (f) fclose(f);
    tern_fp32_ctx *x = tern_fp32_ctx_new(g);
    const float *y;
    int64_t yd[TERN_MAX_DIMS];
    int nd;
    CHECK(tern_fp32_run(x, in, 16, &y, yd, &nd) == 0, "%s", tern_last_error());
    CHECK(nd == 2 && yd[0] == 16 && yd[1] == 10, "output shape");
    double maxd = 0;
    for (int i = 0; i < 160; i++) maxd = fmax(maxd, fabs(y[i] - ref[i]));
    fprintf(stderr, "  %s: max |logit - pytorch| = %.2e over 16 images\n", model, maxd);
    CHECK(maxd <= tol, "max difference %.3g > %.3g", maxd, tol);
    /* batch independence: image 3 alone gives the same logits */
    const float *y1;
    CHECK(tern_fp32_run(x, in + 3 * 3072, 1, &y1, yd, &nd) == 0, "%s", tern_last_error());
    for (int k = 0; k < 10; k++) CHECK(fabs(y1[k] - ref[30 + k]) <= tol, "batch-1 logit %d", k);
    tern_fp32_ctx_free(x);
    tern_dataset_free(ds);
    tern_graph_free(g);
    free(in);
}

static void test_golden_torch_export(void) { golden("models/cifar10/resnet20_torch_export.onnx", 1e-4); }
static void test_golden_folded(void) { golden("models/cifar10/resnet20.onnx", 1e-4); }

static void expect_fail(const char *path, enum tern_status want, const char *needle) {
    tern_graph *g = NULL;
    enum tern_status st = tern_onnx_import(path, &g);
    CHECK(st == want, "%s: status %s, want %s (%s)", path, tern_status_str(st), tern_status_str(want), tern_last_error());
    CHECK(g == NULL, "graph returned on failure");
    CHECK(strstr(tern_last_error(), needle) != NULL, "message '%s' lacks '%s'", tern_last_error(), needle);
}

static void test_missing_file(void) { expect_fail("/nonexistent/model.onnx", TERN_STATUS_IO, "/nonexistent/model.onnx"); }

/* Truncating a real model anywhere must give an error, never a crash. */
static void test_truncated(void) {
    uint8_t *buf;
    size_t len;
    CHECK(tern_read_file(data_path(0, "models/cifar10/resnet20.onnx"), &buf, &len) == 0, "read");
    if (check_failed_now) return;
    char tmp[] = "/tmp/tern_trunc_XXXXXX";
    int fd = mkstemp(tmp);
    size_t cuts[] = {0, 1, 7, 100, 1000, len / 3, len / 2, len - 1000, len - 3, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, buf, cuts[i], 0) == (ssize_t)cuts[i], "write");
        tern_graph *g = NULL;
        enum tern_status st = tern_onnx_import(tmp, &g);
        CHECK(st != TERN_STATUS_OK && g == NULL, "cut at %zu accepted", cuts[i]);
        CHECK(strstr(tern_last_error(), tmp) != NULL, "cut at %zu: message '%s' lacks the file", cuts[i], tern_last_error());
    }
    close(fd);
    unlink(tmp);
    free(buf);
}

/* Garbage that happens to parse must still not crash. */
static void test_garbage(void) {
    char tmp[] = "/tmp/tern_garbage_XXXXXX";
    int fd = mkstemp(tmp);
    uint32_t s = 7;
    uint8_t b[4096];
    for (int round = 0; round < 50; round++) {
        size_t n = 1 + (size_t)(round * 83 % 4096);
        for (size_t i = 0; i < n; i++) {
            s = s * 1664525u + 1013904223u;
            b[i] = (uint8_t)(s >> 24);
        }
        CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, b, n, 0) == (ssize_t)n, "write");
        tern_graph *g = NULL;
        CHECK(tern_onnx_import(tmp, &g) != TERN_STATUS_OK && g == NULL, "garbage round %d accepted", round);
    }
    close(fd);
    unlink(tmp);
}


/* ---- small models built with protobuf-c, for the limits and the bad-input checks ---------- */

typedef struct {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto op;
    Onnx__OperatorSetIdProto *ops[1];
    Onnx__ValueInfoProto in, out, *ins[1], *outs[1];
    Onnx__TypeProto tp;
    Onnx__TypeProto__Tensor tt;
    Onnx__TensorShapeProto sh;
    Onnx__TensorShapeProto__Dimension dim[4], *dims[4];
    Onnx__NodeProto *nodes;
    Onnx__NodeProto **pnodes;
    Onnx__TensorProto *inits, **pinits;
} mini;

/* A graph x[1,C,4,4] -> nnodes nodes (filled by the caller) -> y, with ninit initializers. */
static void mini_init(mini *b, int c, int nnodes, int ninit) {
    memset(b, 0, sizeof *b);
    onnx__model_proto__init(&b->m);
    onnx__graph_proto__init(&b->g);
    onnx__operator_set_id_proto__init(&b->op);
    b->op.has_version = 1;
    b->op.version = 13;
    b->ops[0] = &b->op;
    b->m.opset_import = b->ops;
    b->m.n_opset_import = 1;
    b->m.has_ir_version = 1;
    b->m.ir_version = 7;
    b->m.graph = &b->g;
    onnx__value_info_proto__init(&b->in);
    onnx__value_info_proto__init(&b->out);
    onnx__type_proto__init(&b->tp);
    onnx__type_proto__tensor__init(&b->tt);
    onnx__tensor_shape_proto__init(&b->sh);
    int64_t d[4] = {1, c, 4, 4};
    for (int i = 0; i < 4; i++) {
        onnx__tensor_shape_proto__dimension__init(&b->dim[i]);
        b->dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        b->dim[i].dim_value = d[i];
        b->dims[i] = &b->dim[i];
    }
    b->sh.dim = b->dims;
    b->sh.n_dim = 4;
    b->tt.has_elem_type = 1;
    b->tt.elem_type = 1;
    b->tt.shape = &b->sh;
    b->tp.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    b->tp.tensor_type = &b->tt;
    b->in.name = "x";
    b->in.type = &b->tp;
    b->out.name = "y";
    b->ins[0] = &b->in;
    b->outs[0] = &b->out;
    b->g.input = b->ins;
    b->g.n_input = 1;
    b->g.output = b->outs;
    b->g.n_output = 1;
    b->nodes = calloc((size_t)nnodes, sizeof *b->nodes);
    b->pnodes = calloc((size_t)nnodes, sizeof *b->pnodes);
    for (int i = 0; i < nnodes; i++) {
        onnx__node_proto__init(&b->nodes[i]);
        b->pnodes[i] = &b->nodes[i];
    }
    b->g.node = b->pnodes;
    b->g.n_node = (size_t)nnodes;
    b->inits = calloc((size_t)ninit + 1, sizeof *b->inits);
    b->pinits = calloc((size_t)ninit + 1, sizeof *b->pinits);
    for (int i = 0; i < ninit; i++) {
        onnx__tensor_proto__init(&b->inits[i]);
        b->pinits[i] = &b->inits[i];
    }
    b->g.initializer = b->pinits;
    b->g.n_initializer = (size_t)ninit;
}

static enum tern_status mini_import(mini *b, tern_graph **g) {
    size_t n = onnx__model_proto__get_packed_size(&b->m);
    uint8_t *buf = malloc(n);
    onnx__model_proto__pack(&b->m, buf);
    enum tern_status st = tern_onnx_import_mem(buf, n, "mini.onnx", g);
    free(buf);
    return st;
}

static void mini_free(mini *b) {
    free(b->nodes);
    free(b->pnodes);
    free(b->inits);
    free(b->pinits);
}

/* Names are kept in a static pool: node i reads names[...] */
static char names[3][200000][16];

static void node1(Onnx__NodeProto *nd, const char *op, char **in, size_t nin, char **out) {
    nd->op_type = (char *)op;
    nd->input = in;
    nd->n_input = nin;
    nd->output = out;
    nd->n_output = 1;
}

/* The inputs the ONNX fuzzer once failed on, rebuilt from their description (no model file is
 * committed) and run through the fuzz target's checks: a graph tern can rely on or a clean error
 * (a failure traps, and ASan/UBSan watch). Both are the fuzzer's mutations of one seed of
 * tests/fuzz_onnx_seeds.py (x[1,3,8,8] -> Pad -> Slice -> Clip -> Sigmoid -> Concat -> Transpose
 * -> GlobalAveragePool -> Squeeze, opset 13), with these values of Slice's starts and steps and
 * Squeeze's axes:
 *   - a step of 3458764513820540930: the output length overflowed int64;
 *   - a start of 2734686209 and a Squeeze axis of 12884901890 (3 * 2^32 + 2): the axis was
 *     truncated to int32 (2), so the Squeeze dropped the wrong dimension. */
static void fuzz_case(int64_t st0, int64_t sp0, int64_t sq0, int64_t sq1) {
    mini b;
    mini_init(&b, 3, 8, 9);
    b.dim[2].dim_value = b.dim[3].dim_value = 8;
    static int64_t pads[8] = {0, 0, 1, 1, 0, 0, 1, 1}, dims1[1] = {8}, dims2[1] = {2};
    int64_t st[2] = {st0, -9}, en[2] = {9, 100}, axs[2] = {2, 3}, sp[2] = {sp0, 1}, sqax[2] = {sq0, sq1};
    static float pv = 0.5f, lo = 0.0f, hi = 6.0f;
    struct { char *name; int64_t *i64; float *f; } T[9] = {
        {"pads", pads, NULL}, {"pv", NULL, &pv}, {"st", st, NULL}, {"en", en, NULL}, {"axs", axs, NULL},
        {"sp", sp, NULL}, {"lo", NULL, &lo}, {"hi", NULL, &hi}, {"sqax", sqax, NULL}};
    for (int k = 0; k < 9; k++) {
        Onnx__TensorProto *t = &b.inits[k];
        t->name = T[k].name;
        t->has_data_type = 1;
        if (T[k].i64) {
            t->data_type = 7;
            t->dims = k == 0 ? dims1 : dims2;
            t->n_dims = 1;
            t->int64_data = T[k].i64;
            t->n_int64_data = k == 0 ? 8 : 2;
        } else {   /* a scalar */
            t->data_type = 1;
            t->float_data = T[k].f;
            t->n_float_data = 1;
        }
    }
    static char *i0[3] = {"x", "pads", "pv"}, *i1[5] = {"pd", "st", "en", "axs", "sp"}, *i2[3] = {"sl", "lo", "hi"}, *i3[1] = {"cl"},
                *i4[3] = {"sg", "cl", "sl"}, *i5[1] = {"cc"}, *i6[1] = {"tr"}, *i7[2] = {"gp", "sqax"};
    static char *o0[1] = {"pd"}, *o1[1] = {"sl"}, *o2[1] = {"cl"}, *o3[1] = {"sg"}, *o4[1] = {"cc"}, *o5[1] = {"tr"}, *o6[1] = {"gp"},
                *o7[1] = {"y"};
    node1(&b.nodes[0], "Pad", i0, 3, o0);
    node1(&b.nodes[1], "Slice", i1, 5, o1);
    node1(&b.nodes[2], "Clip", i2, 3, o2);
    node1(&b.nodes[3], "Sigmoid", i3, 1, o3);
    node1(&b.nodes[4], "Concat", i4, 3, o4);
    node1(&b.nodes[5], "Transpose", i5, 1, o5);
    node1(&b.nodes[6], "GlobalAveragePool", i6, 1, o6);
    node1(&b.nodes[7], "Squeeze", i7, 2, o7);
    Onnx__AttributeProto mode, axis, perm, *pm[1] = {&mode}, *pa[1] = {&axis}, *pp[1] = {&perm};
    static int64_t pv4[4] = {0, 1, 3, 2};
    onnx__attribute_proto__init(&mode);
    mode.name = "mode";
    mode.has_type = 1;
    mode.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    mode.has_s = 1;
    mode.s.data = (uint8_t *)"constant";
    mode.s.len = 8;
    onnx__attribute_proto__init(&axis);
    axis.name = "axis";
    axis.has_type = 1;
    axis.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    axis.has_i = 1;
    axis.i = 1;
    onnx__attribute_proto__init(&perm);
    perm.name = "perm";
    perm.has_type = 1;
    perm.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    perm.ints = pv4;
    perm.n_ints = 4;
    b.nodes[0].attribute = pm, b.nodes[0].n_attribute = 1;
    b.nodes[4].attribute = pa, b.nodes[4].n_attribute = 1;
    b.nodes[5].attribute = pp, b.nodes[5].n_attribute = 1;
    size_t n = onnx__model_proto__get_packed_size(&b.m);
    uint8_t *buf = malloc(n);
    onnx__model_proto__pack(&b.m, buf);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    mini_free(&b);
}
static void test_fuzz_cases(void) {
    fuzz_case(1, 3458764513820540930LL, 2, 3);
    fuzz_case(2734686209LL, 2, 12884901890LL, 0);
}

/* A chain of Relu nodes ending in a Concat of `width` of them; the FP32 run checks the data. */
static void wide_concat(int width, int chain) {
    mini b;
    mini_init(&b, 1, chain + 1, 0);
    static char *ins[200000], *outs[200000], *cat_in[100000], *yname[1] = {"y"};
    for (int i = 0; i < chain; i++) {
        snprintf(names[0][i], 16, "r%d", i);
        ins[i] = i ? names[0][i - 1] : "x";
        outs[i] = names[0][i];
        node1(&b.nodes[i], "Relu", &ins[i], 1, &outs[i]);
    }
    for (int i = 0; i < width; i++) cat_in[i] = names[0][(chain - 1) - i % chain];
    node1(&b.nodes[chain], "Concat", cat_in, (size_t)width, yname);
    Onnx__AttributeProto ax, *axp[1] = {&ax};
    onnx__attribute_proto__init(&ax);
    ax.name = "axis";
    ax.has_i = 1;
    ax.i = 1;
    ax.has_type = 1;
    ax.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    b.nodes[chain].attribute = axp;
    b.nodes[chain].n_attribute = 1;
    tern_graph *g = NULL;
    enum tern_status st = mini_import(&b, &g);
    CHECK(st == TERN_STATUS_OK, "Concat of %d inputs after %d nodes: %s", width, chain, tern_last_error());
    if (!st) {
        const tern_value *y = &g->values[g->output];
        CHECK(y->ndim == 4 && y->dims[1] == width, "output channels %lld, want %d", (long long)y->dims[1], width);
        float in[16], *out;
        for (int i = 0; i < 16; i++) in[i] = (float)i - 7.5f;
        tern_fp32_ctx *x = tern_fp32_ctx_new(g);
        const float *yo;
        int64_t yd[TERN_MAX_DIMS];
        int yn;
        CHECK(tern_fp32_run(x, in, 1, &yo, yd, &yn) == 0, "%s", tern_last_error());
        out = (float *)yo;
        for (int c = 0; c < width && !check_failed_now; c++)
            for (int i = 0; i < 16; i++) CHECK(out[c * 16 + i] == fmaxf(in[i], 0.0f), "channel %d pixel %d", c, i);
        tern_fp32_ctx_free(x);
    }
    tern_graph_free(g);
    mini_free(&b);
}

/* No fixed cap on node inputs (DenseNet's 60-input Concat; more); deep chains import. */
static void test_wide_concat(void) { wide_concat(60, 5); wide_concat(5000, 3); }
static void test_deep_chain(void) { wide_concat(2, 10000); }

/* Fill a [1,3,4,4] input with a fixed pattern ((i * mul) % mod * step - off) and run g's FP32
 * executor on it; the caller checks *yo and frees the context. */
static tern_fp32_ctx *run48(tern_graph *g, float in[48], int mul, int mod, float step, float off, const float **yo) {
    for (int i = 0; i < 48; i++) in[i] = (float)((i * mul) % mod) * step - off;
    tern_fp32_ctx *x = tern_fp32_ctx_new(g);
    int64_t yd[TERN_MAX_DIMS];
    int yn;
    CHECK(x && tern_fp32_run(x, in, 1, yo, yd, &yn) == 0, "%s", tern_last_error());
    return x;
}

/* A BatchNormalization behind a Relu (no Conv to fold it into: DenseNet's pre-activation BN)
 * becomes a 1x1 depthwise Conv at import; its FP32 output is the ONNX definition,
 * (x - mean) / sqrt(var + eps) * scale + B, computed here in double. */
static void test_bn_to_conv(void) {
    mini b;
    mini_init(&b, 3, 2, 4);
    float gamma[3] = {0.5f, 2.0f, -1.5f}, beta[3] = {0.25f, -1.0f, 3.0f}, mean[3] = {1.0f, -0.5f, 2.5f}, var[3] = {4.0f, 0.25f, 9.0f};
    int64_t cd[1] = {3};
    char *pn[4] = {"gamma", "beta", "mean", "var"};
    float *vals[4] = {gamma, beta, mean, var};
    for (int i = 0; i < 4; i++) {
        b.inits[i].name = pn[i];
        b.inits[i].has_data_type = 1;
        b.inits[i].data_type = 1;
        b.inits[i].dims = cd;
        b.inits[i].n_dims = 1;
        b.inits[i].float_data = vals[i];
        b.inits[i].n_float_data = 3;
    }
    static char *rin[1] = {"x"}, *rout[1] = {"r"}, *bin[5] = {"r", "gamma", "beta", "mean", "var"}, *bout[1] = {"y"};
    node1(&b.nodes[0], "Relu", rin, 1, rout);
    node1(&b.nodes[1], "BatchNormalization", bin, 5, bout);
    tern_graph *g = NULL;
    enum tern_status st = mini_import(&b, &g);
    CHECK(st == TERN_STATUS_OK, "Relu + BatchNormalization: %s", tern_last_error());
    if (!st) {
        int nconv = 0;
        for (int i = 0; i < g->nnodes; i++) {
            CHECK(g->nodes[i].op != TERN_OP_BATCHNORM, "node %s is still a BatchNormalization", g->nodes[i].name);
            if (g->nodes[i].op == TERN_OP_CONV) {
                nconv++;
                CHECK(g->nodes[i].a.group == 3 && g->nodes[i].a.kernel[0] == 1 && g->nodes[i].a.kernel[1] == 1,
                      "conv group %lld kernel %lldx%lld", (long long)g->nodes[i].a.group, (long long)g->nodes[i].a.kernel[0],
                      (long long)g->nodes[i].a.kernel[1]);
            }
        }
        CHECK(nconv == 1, "%d convs, want 1", nconv);
        float in[48];
        const float *yo;
        tern_fp32_ctx *x = run48(g, in, 37, 23, 0.37f, 3.0f, &yo);
        for (int c = 0; c < 3 && !check_failed_now; c++)
            for (int p = 0; p < 16; p++) {
                double r = fmax(in[c * 16 + p], 0.0), want = (r - mean[c]) / sqrt(var[c] + 1e-5) * gamma[c] + beta[c];
                CHECK(fabs(yo[c * 16 + p] - want) <= 1e-5 * (1 + fabs(want)), "channel %d pixel %d: %g, want %g", c, p, yo[c * 16 + p], want);
            }
        tern_fp32_ctx_free(x);
    }
    tern_graph_free(g);
    mini_free(&b);
}

/* PRelu: one slope becomes a LeakyRelu at import, one per channel ([C,1,1]) stays a PRelu; the
 * FP32 output is the ONNX definition x > 0 ? x : slope * x either way. A slope of shape [C]
 * broadcasts along the last axis (W = 4 here, not C = 3): refused, naming the slope. */
static void prelu_case(int per_channel) {
    mini b;
    mini_init(&b, 3, 1, 1);
    float slope[3] = {0.25f, -0.5f, 2.0f};
    int64_t sd[3] = {3, 1, 1}, sd1[1] = {1};
    b.inits[0].name = "slope";
    b.inits[0].has_data_type = 1;
    b.inits[0].data_type = 1;
    b.inits[0].dims = per_channel == 1 ? sd : sd1;
    b.inits[0].n_dims = per_channel == 1 ? 3 : 1;
    if (per_channel == 2) sd1[0] = 3;   /* [C] */
    b.inits[0].float_data = slope;
    b.inits[0].n_float_data = per_channel ? 3 : 1;
    static char *pin[2] = {"x", "slope"}, *pout[1] = {"y"};
    node1(&b.nodes[0], "PRelu", pin, 2, pout);
    tern_graph *g = NULL;
    enum tern_status st = mini_import(&b, &g);
    if (per_channel == 2) {
        CHECK(st != TERN_STATUS_OK && strstr(tern_last_error(), "slope of 3 values"), "slope [3] on [1,3,4,4]: %s",
              st ? tern_last_error() : "accepted");
        tern_graph_free(g);
        mini_free(&b);
        return;
    }
    CHECK(st == TERN_STATUS_OK, "PRelu (%s): %s", per_channel ? "per channel" : "one slope", tern_last_error());
    if (!st) {
        CHECK(g->nnodes == 1 && g->nodes[0].op == (per_channel ? TERN_OP_PRELU : TERN_OP_LEAKYRELU), "node is %s",
              g->nnodes ? tern_ops[g->nodes[0].op].name : "missing");
        float in[48];
        const float *yo;
        tern_fp32_ctx *x = run48(g, in, 29, 17, 0.5f, 4.0f, &yo);
        for (int c = 0; c < 3 && !check_failed_now; c++)
            for (int p = 0; p < 16; p++) {
                float v = in[c * 16 + p], want = v > 0 ? v : slope[per_channel ? c : 0] * v;
                CHECK(yo[c * 16 + p] == want, "channel %d pixel %d: %g, want %g", c, p, yo[c * 16 + p], want);
            }
        tern_fp32_ctx_free(x);
    }
    tern_graph_free(g);
    mini_free(&b);
}
static void test_prelu(void) { prelu_case(0); prelu_case(1); prelu_case(2); }

/* GELU as PyTorch exports it before opset 20, Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x) ->
 * Mul(0.5), becomes one Gelu node at import; its FP32 output is 0.5 x (1 + erf(x / sqrt 2))
 * computed here in double. */
static void test_gelu(void) {
    mini b;
    mini_init(&b, 3, 5, 3);
    float c_sqrt2 = 1.41421356f, c_one = 1.0f, c_half = 0.5f;
    char *cn[3] = {"sqrt2", "one", "half"};
    float *cv[3] = {&c_sqrt2, &c_one, &c_half};
    for (int i = 0; i < 3; i++) {
        b.inits[i].name = cn[i];
        b.inits[i].has_data_type = 1;
        b.inits[i].data_type = 1;
        b.inits[i].n_dims = 0;
        b.inits[i].float_data = cv[i];
        b.inits[i].n_float_data = 1;
    }
    static char *i0[2] = {"x", "sqrt2"}, *o0[1] = {"d"}, *i1[1] = {"d"}, *o1[1] = {"e"}, *i2[2] = {"e", "one"}, *o2[1] = {"a"},
                *i3[2] = {"x", "a"}, *o3[1] = {"m"}, *i4[2] = {"m", "half"}, *o4[1] = {"y"};
    node1(&b.nodes[0], "Div", i0, 2, o0);
    node1(&b.nodes[1], "Erf", i1, 1, o1);
    node1(&b.nodes[2], "Add", i2, 2, o2);
    node1(&b.nodes[3], "Mul", i3, 2, o3);
    node1(&b.nodes[4], "Mul", i4, 2, o4);
    tern_graph *g = NULL;
    enum tern_status st = mini_import(&b, &g);
    CHECK(st == TERN_STATUS_OK, "GELU chain: %s", tern_last_error());
    if (!st) {
        CHECK(g->nnodes == 1 && g->nodes[0].op == TERN_OP_GELU, "%d nodes, first %s", g->nnodes, g->nnodes ? tern_ops[g->nodes[0].op].name : "-");
        float in[48];
        const float *yo;
        tern_fp32_ctx *x = run48(g, in, 31, 19, 0.45f, 4.0f, &yo);
        for (int i = 0; i < 48 && !check_failed_now; i++) {
            double want = 0.5 * in[i] * (1 + erf(in[i] / sqrt(2.0)));
            CHECK(fabs(yo[i] - want) <= 1e-6 * (1 + fabs(want)), "element %d (x = %g): %.9g, want %.9g", i, in[i], yo[i], want);
        }
        tern_fp32_ctx_free(x);
    }
    tern_graph_free(g);
    mini_free(&b);
}

/* The node-count and node-input limits are errors that name them. */
static void test_limits(void) {
    mini b;
    mini_init(&b, 1, TERN_MAX_NODES + 1, 0);
    static char *ins[TERN_MAX_NODES + 2], *outs[TERN_MAX_NODES + 2];
    for (int i = 0; i <= TERN_MAX_NODES; i++) {
        snprintf(names[1][i], 16, "n%d", i);
        ins[i] = i ? names[1][i - 1] : "x";
        outs[i] = i == TERN_MAX_NODES ? "y" : names[1][i];
        node1(&b.nodes[i], "Relu", &ins[i], 1, &outs[i]);
    }
    tern_graph *g = NULL;
    CHECK(mini_import(&b, &g) == TERN_STATUS_UNSUPPORTED && !g, "%d nodes accepted", TERN_MAX_NODES + 1);
    CHECK(strstr(tern_last_error(), "TERN_MAX_NODES") && strstr(tern_last_error(), "mini.onnx"), "message: %s", tern_last_error());
    mini_free(&b);

    mini_init(&b, 1, 1, 0);
    static char *many[TERN_MAX_NODE_IN + 1], *y[1] = {"y"};
    for (int i = 0; i <= TERN_MAX_NODE_IN; i++) many[i] = "x";
    node1(&b.nodes[0], "Concat", many, TERN_MAX_NODE_IN + 1, y);
    CHECK(mini_import(&b, &g) == TERN_STATUS_UNSUPPORTED && !g, "%d inputs accepted", TERN_MAX_NODE_IN + 1);
    CHECK(strstr(tern_last_error(), "TERN_MAX_NODE_IN") != NULL, "message: %s", tern_last_error());
    mini_free(&b);
}

/* A Conv whose weight (or bias) holds NaN/Inf, a duplicated initializer and a node output that
 * shadows an initializer are errors naming the value. */
static void test_bad_values(void) {
    static const struct { const char *what; float wval, bval; int dup, shadow; const char *needle; } cases[] = {
        {"NaN weight", NAN, 0, 0, 0, "NaN"}, {"+Inf weight", INFINITY, 0, 0, 0, "+Inf"},
        {"-Inf bias", 0.5f, -INFINITY, 0, 0, "-Inf"}, {"NaN bias", 0.5f, NAN, 0, 0, "'b'"},
        {"duplicate initializer", 0.5f, 0, 1, 0, "'w' is defined twice"},
        {"node output shadows an initializer", 0.5f, 0, 0, 1, "'b' is defined twice"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mini b;
        mini_init(&b, 2, 2, 3);
        float w[4 * 2] = {0.5f, -0.25f, 1, 2, 3, 4, 5, 6}, w2[8] = {1, 1, 1, 1, 1, 1, 1, 1}, bias[4] = {0, 1, 2, 3};
        w[5] = cases[k].wval;
        bias[2] = cases[k].bval;
        int64_t wd[4] = {4, 2, 1, 1}, bd[1] = {4};
        char *names3[3] = {"w", cases[k].dup ? "w" : "w_unused", "b"};
        float *vals[3] = {w, w2, bias};
        int64_t *dd[3] = {wd, wd, bd};
        size_t nd[3] = {4, 4, 1}, nv[3] = {8, 8, 4};
        for (int i = 0; i < 3; i++) {
            b.inits[i].name = names3[i];
            b.inits[i].has_data_type = 1;
            b.inits[i].data_type = 1;
            b.inits[i].dims = dd[i];
            b.inits[i].n_dims = nd[i];
            b.inits[i].float_data = vals[i];
            b.inits[i].n_float_data = nv[i];
        }
        static char *cin[3] = {"x", "w", "b"}, *cout[1] = {"c"}, *rin[1] = {"c"}, *rout[1] = {"y"}, *rout_b[1] = {"b"};
        node1(&b.nodes[0], "Conv", cin, 3, cout);
        node1(&b.nodes[1], "Relu", rin, 1, cases[k].shadow ? rout_b : rout);
        if (cases[k].shadow) b.out.name = "b";
        tern_graph *g = NULL;
        enum tern_status st = mini_import(&b, &g);
        CHECK(st != TERN_STATUS_OK && !g, "%s accepted", cases[k].what);
        CHECK(strstr(tern_last_error(), cases[k].needle) && strstr(tern_last_error(), "mini.onnx"), "%s: message '%s' lacks '%s'",
              cases[k].what, tern_last_error(), cases[k].needle);
        tern_graph_free(g);
        mini_free(&b);
    }
}


/* The deterministic SGEMM is, bit for bit, the plain sequential float sum over k (the
 * definition; this file is built without FMA contraction), for awkward shapes (tiles' tails, K
 * across blocks), both layouts of B, 1 and 3 threads. tests/t_repro.sh runs this again under
 * TERN_ISA=ref, which takes the baseline kernel instead of the AVX2 one. */
static void test_sgemm_det(void) {
    static const int shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {6, 16, 256}, {7, 17, 257}, {13, 33, 600}, {64, 64, 576}, {10, 3, 64}, {2, 100, 1}};
    uint32_t s = 1;
    tern_pool *pool3 = tern_pool_create(3);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *Bt = malloc(sizeof(float) * K * N);
        float *C = malloc(sizeof(float) * M * N), *R = malloc(sizeof(float) * M * N);
        for (int k = 0; k < M * K; k++) { s = s * 1664525u + 1013904223u; A[k] = (float)(int32_t)s * 0x1p-31f; }
        for (int k = 0; k < K * N; k++) { s = s * 1664525u + 1013904223u; B[k] = (float)(int32_t)s * 0x1p-29f; }
        for (int k = 0; k < K; k++)
            for (int j = 0; j < N; j++) Bt[j * K + k] = B[k * N + j];
        for (int r = 0; r < M; r++)
            for (int j = 0; j < N; j++) {
                float acc = 0.0f;
                for (int k = 0; k < K; k++) {
                    float t = A[r * K + k] * B[k * N + j];
                    acc = acc + t;
                }
                R[r * N + j] = acc;
            }
        for (int v = 0; v < 4; v++) {
            memset(C, 0xff, sizeof(float) * M * N);
            CHECK(tern_sgemm_det(M, N, K, A, K, v & 1 ? Bt : B, v & 1 ? K : N, v & 1, C, N, v & 2 ? pool3 : NULL) == 0, "status");
            CHECK(memcmp(C, R, sizeof(float) * M * N) == 0, "M%d N%d K%d transb %d threads %d: not the sequential sum", M, N, K, v & 1, v & 2 ? 3 : 1);
        }
        free(A); free(B); free(Bt); free(C); free(R);
    }
    tern_pool_free(pool3);
}

/* `test_onnx --fp32-hash THREADS [--openblas]`: FNV-1a of the FP32 logits of ResNet-20 on 16
 * test images (tests/t_repro.sh compares it across CPUs' OpenBLAS kernels, ISAs and threads). */
static int fp32_hash(int threads, int openblas) {
    tern_graph *g;
    tern_dataset *ds;
    tern_preproc pp = {0};
    if (tern_onnx_import(data_path(0, "models/cifar10/resnet20.onnx"), &g) ||
        tern_dataset_open(data_path(1, "cifar10/test_batch.bin"), NULL, &pp, &ds)) {
        fprintf(stderr, "%s\n", tern_last_error());
        return 1;
    }
    float *in = malloc(sizeof(float) * 16 * 3072);
    uint8_t px[3072];
    for (int i = 0; i < 16; i++) {
        tern_dataset_read(ds, i, px, NULL);
        for (int k = 0; k < 3072; k++) in[i * 3072 + k] = px[k] / 255.0f - 0.5f;
    }
    tern_fp32_set_threads(threads);
    tern_fp32_set_openblas(openblas);
    tern_fp32_ctx *x = tern_fp32_ctx_new(g);
    const float *y;
    int64_t yd[TERN_MAX_DIMS];
    int nd;
    if (tern_fp32_run(x, in, 16, &y, yd, &nd)) { fprintf(stderr, "%s\n", tern_last_error()); return 1; }
    uint64_t h = 1469598103934665603ULL;
    const uint8_t *b = (const uint8_t *)y;
    for (size_t i = 0; i < sizeof(float) * 160; i++) h = (h ^ b[i]) * 1099511628211ULL;
    printf("%016llx\n", (unsigned long long)h);
    tern_fp32_ctx_free(x);
    tern_dataset_free(ds);
    tern_graph_free(g);
    free(in);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--fp32-hash")) return fp32_hash(atoi(argv[2]), argc > 3 && !strcmp(argv[3], "--openblas"));
    RUN(test_golden_torch_export);
    RUN(test_golden_folded);
    RUN(test_missing_file);
    RUN(test_truncated);
    RUN(test_garbage);
    RUN(test_fuzz_cases);
    RUN(test_wide_concat);
    RUN(test_deep_chain);
    RUN(test_bn_to_conv);
    RUN(test_prelu);
    RUN(test_gelu);
    RUN(test_limits);
    RUN(test_bad_values);
    RUN(test_sgemm_det);
    return check_summary();
}
