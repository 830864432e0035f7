/* tern bench MODEL: batch-1 latency and batch-64 throughput at 1 and 2 threads, and for .tern
 * models a per-layer table (time, GMAC/s, share of the machine's measured int8 peak). Inputs are
 * real images when --data is given, else a fixed pseudo-random pattern. */
#include "cli.h"
#include "graph/fp32.h"
#include "kernels/peak.h"
#include <string.h>

static void fill_pixels(uint8_t *px, size_t n) {
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        px[i] = (uint8_t)(s >> 24);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per run of `batch` images, timed for about `budget` seconds. */
static int time_runs(cli_model *m, const uint8_t *px, int batch, double budget, double *median, double *scores) {
    double t[1000];
    int n = 0;
    if (m->run(m, px, batch, scores)) return 0; /* warm-up */
    double start = tern_now();
    while (n < 1000 && (n < 3 || tern_now() - start < budget)) {
        double t0 = tern_now();
        if (m->run(m, px, batch, scores)) return 0;
        t[n++] = tern_now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    *median = t[n / 2];
    return 1;
}

int cmd_bench(int argc, char **argv) {
    tern_fp32_set_openblas(1); /* FP32 timings: OpenBLAS, as the peers use their best GEMM */
    cli_opts o;
    cli_opts_init(&o);
    const char *path = NULL, *threads = "1,2";
    double budget = 2.0;
    int big = 64, layers = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: tern bench MODEL(.onnx|.tern) [--threads-list 1,2] [--big-batch 64] [--seconds S] [--no-layers] [options]\n%s",
                   cli_common_help());
            return 0;
        }
        if (!strcmp(argv[i], "--threads-list") && i + 1 < argc) { threads = argv[++i]; continue; }
        if (!strcmp(argv[i], "--big-batch") && i + 1 < argc) { big = atoi(argv[++i]); if (big < 1) big = 64; continue; }
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) { budget = atof(argv[++i]); if (!(budget > 0)) budget = 2; continue; }
        if (!strcmp(argv[i], "--no-layers")) { layers = 0; continue; }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (argv[i][0] == '-' || path) { fprintf(stderr, "tern bench: unexpected argument '%s'\n", argv[i]); return 2; }
        path = argv[i];
    }
    if (!path) { fprintf(stderr, "usage: tern bench MODEL [options] (--help for more)\n"); return 2; }
    if (!cli_apply_preset(&o)) return 2;
    int rc = 1;
    cli_model *m = NULL;
    uint8_t *px = NULL;
    double *scores = NULL;
    o.batch = big;
    o.threads = 1;
    if (cli_model_load(path, &o, &m)) return cli_fail("bench");
    size_t per = (size_t)m->c * m->h * m->w;
    px = tern_malloc(per * (size_t)big);
    scores = tern_malloc(sizeof(double) * (size_t)big * (size_t)m->nclasses);
    if (!px || !scores) goto done;
    if (o.data) {
        tern_dataset *ds;
        if (cli_dataset_open(&o, m, &ds)) { rc = cli_fail("bench"); goto done; }
        int cnt = big, *idx = cli_subset(tern_dataset_count(ds), &cnt, 0);
        for (int i = 0; i < big && idx; i++)
            if (tern_dataset_read(ds, idx[i % cnt], px + per * (size_t)i, NULL)) { free(idx); tern_dataset_free(ds); rc = cli_fail("bench"); goto done; }
        free(idx);
        tern_dataset_free(ds);
    } else fill_pixels(px, per * (size_t)big);
    cli_model_free(m);
    m = NULL;
    printf("%s (%s, %s kernels)\n", path, strstr(path, ".tern") ? "integer engine" : "fp32 engine", tern_isa_name(tern_active_isa()));
    char list[64];
    snprintf(list, sizeof list, "%s", threads);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int t = atoi(tok);
        if (t < 1) continue;
        o.threads = t;
        if (cli_model_load(path, &o, &m)) { rc = cli_fail("bench"); goto done; }
        double lat, thr;
        if (!time_runs(m, px, 1, budget, &lat, scores) || !time_runs(m, px, big, budget, &thr, scores)) { rc = cli_fail("bench"); goto done; }
        printf("bench model=%s engine=%s threads=%d batch1_ms=%.3f batch%d_images_per_s=%.1f\n", path, m->kind, t, lat * 1e3, big, big / thr);
        cli_model_free(m);
        m = NULL;
    }
    if (layers && strstr(path, ".tern")) {
        tern_model_options mo;
        tern_model_options_init(&mo);
        mo.threads = 1;
        mo.max_batch = big;
        tern_model *tm;
        tern_model_info in;
        int32_t *y = NULL;
        if (tern_model_load(path, &mo, &tm)) { rc = cli_fail("bench"); goto done; }
        tern_model_describe(tm, &in);
        if (!(y = malloc(sizeof(int32_t) * (size_t)big * (size_t)in.classes)) || tern_model_run(tm, px, big, y) || tern_model_set_profiling(tm, 1)) {
            free(y);
            tern_model_free(tm);
            rc = cli_fail("bench");
            goto done;
        }
        int runs = 0;
        double t0 = tern_now();
        while (runs < 3 || tern_now() - t0 < budget) {
            tern_model_run(tm, px, big, y);
            runs++;
        }
        double total = 0, peak = (double)tern_peak_macs_per_s(tern_active_isa());
        tern_layer_info L;
        for (int i = 0; i < in.layers; i++)
            if (!tern_model_layer(tm, i, &L)) total += (double)L.time_ns;
        printf("per layer, batch %d, 1 thread, %d runs; int8 peak measured here (%s): %.1f GMAC/s per core\n", big, runs,
               tern_peak_name(tern_active_isa()), peak / 1e9);
        printf("%3s %-30s %-8s %-24s %9s %6s %8s %7s\n", "#", "name", "weights", "kernel", "ms", "time%", "GMAC/s", "peak%");
        for (int i = 0; i < in.layers; i++) {
            tern_model_layer(tm, i, &L);
            double ms = (double)L.time_ns / runs / 1e6;
            if (!L.weights) {
                printf("%3d %-30.30s %-8s %-24s %9.3f %6.1f\n", i, L.name, "", !strcmp(L.op, "add") ? "add" : "other", ms, 100 * L.time_ns / total);
                continue;
            }
            double g = ms > 0 ? (double)L.macs * big / (ms * 1e-3) / 1e9 : 0;
            char wn[16];
            snprintf(wn, sizeof wn, "%c:%d", L.weights, L.cluster);
            printf("%3d %-30.30s %-8s %-24.24s %9.3f %6.1f %8.1f %7.1f\n", i, L.name, wn, L.kernel ? L.kernel : "", ms, 100 * L.time_ns / total, g,
                   peak > 0 ? 100 * g * 1e9 / peak : 0);
        }
        free(y);
        tern_model_free(tm);
    }
    rc = 0;
done:
    free(px);
    free(scores);
    cli_model_free(m);
    return rc;
}
