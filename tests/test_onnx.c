/* ONNX import + FP32 executor: golden logits from PyTorch, graph passes, and bad input. */
#include "check.h"
#include "graph/fp32.h"
#include "graph/graph.h"
#include "data/data.h"
#include <math.h>
#include <unistd.h>

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

int main(void) {
    RUN(test_golden_torch_export);
    RUN(test_golden_folded);
    RUN(test_missing_file);
    RUN(test_truncated);
    RUN(test_garbage);
    return check_summary();
}
