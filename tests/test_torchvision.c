/* torchvision models exported at test time by scripts/export_torchvision.py (random weights,
 * raw torch exports with BatchNorm, shape subgraphs, opsets 9..17): tern's importer and FP32
 * executor must reproduce PyTorch's own outputs to a relative 1e-4. The directory comes from
 * TERN_TV_DIR (tests/t_torchvision.sh makes it); without it the test is skipped. */
#include "check.h"
#include "graph/fp32.h"
#include <math.h>

static const char *names[] = {"resnet18", "resnet50", "resnet101", "googlenet", "alexnet", "vgg11", "vgg16", "mobilenet_v2"};

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    float *p = malloc(n * sizeof(float));
    if (!f || !p || fread(p, sizeof(float), n, f) != n) {
        free(p);
        p = NULL;
    }
    if (f) fclose(f);
    return p;
}

static void test_models(void) {
    const char *dir = getenv("TERN_TV_DIR");
    if (!dir || !*dir) SKIP("TERN_TV_DIR not set (tests/t_torchvision.sh exports the models and sets it)");
    tern_fp32_set_threads(2);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s.onnx", dir, names[i]);
        FILE *probe = fopen(p, "rb");
        if (!probe) { CHECK(0, "%s missing: the exporter did not produce it", p); continue; }
        fclose(probe);
        tern_graph *g;
        double t0 = tern_now();
        if (tern_onnx_import(p, &g)) { CHECK(0, "%s: %s", names[i], tern_last_error()); continue; }
        double t1 = tern_now();
        snprintf(p, sizeof p, "%s/%s.input.bin", dir, names[i]);
        float *in = read_floats(p, 2 * 3 * 224 * 224);
        snprintf(p, sizeof p, "%s/%s.output.bin", dir, names[i]);
        float *ref = read_floats(p, 2 * 1000);
        CHECK(in && ref, "%s: cannot read input/output files", names[i]);
        tern_fp32_ctx *x = tern_fp32_ctx_new(g);
        const float *y;
        int64_t yd[TERN_MAX_DIMS];
        int nd;
        if (in && ref && tern_fp32_run(x, in, 2, &y, yd, &nd) == TERN_STATUS_OK) {
            double maxd = 0, maxr = 0;
            for (int k = 0; k < 2000; k++) {
                maxd = fmax(maxd, fabs((double)y[k] - ref[k]));
                maxr = fmax(maxr, fabs((double)ref[k]));
            }
            fprintf(stderr, "  %-13s %3d nodes  import %.1fs run %.1fs  max|diff| %.2e  max|ref| %.3f  relative %.2e\n", names[i], g->nnodes,
                    t1 - t0, tern_now() - t1, maxd, maxr, maxd / maxr);
            CHECK(nd == 2 && yd[0] == 2 && yd[1] == 1000, "%s: output shape", names[i]);
            CHECK(maxd <= 1e-4 * maxr, "%s: relative difference %.3g > 1e-4", names[i], maxd / maxr);
        } else CHECK(0, "%s: run failed: %s", names[i], tern_last_error());
        tern_fp32_ctx_free(x);
        tern_graph_free(g);
        free(in);
        free(ref);
    }
}

int main(void) {
    RUN(test_models);
    return check_summary();
}
