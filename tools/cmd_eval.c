/* tern eval MODEL --data PATH: top-1/top-5 accuracy and images/s over a labelled dataset. */
#include "cli.h"
#include "core/outfile.h"
#include "graph/fp32.h"
#include <string.h>

int cmd_eval(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: tern eval MODEL(.onnx|.tern) --data PATH [options]\n%s", cli_common_help());
            return 0;
        }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (argv[i][0] == '-' || path) { fprintf(stderr, "tern eval: unexpected argument '%s'\n", argv[i]); return 2; }
        path = argv[i];
    }
    if (!path || !o.data) { fprintf(stderr, "usage: tern eval MODEL --data PATH [options] (--help for more)\n"); return 2; }
    if (!cli_apply_preset(&o)) return 2;
    cli_model *m = NULL;
    tern_dataset *ds = NULL;
    int *idx = NULL, *labels = NULL, rc = 1;
    uint8_t *px = NULL;
    double *scores = NULL;
    tern_outfile dump_file = {0};
    FILE *dump = NULL;
    tern_fp32_set_openblas(1); /* FP32 evaluation: speed only, nothing here is written into a model */
    if (cli_model_load(path, &o, &m)) { rc = cli_fail("eval"); goto done; }
    if (cli_dataset_open(&o, m, &ds)) { rc = cli_fail("eval"); goto done; }
    int count = o.count;
    idx = cli_subset(tern_dataset_count(ds), &count, o.offset);
    size_t per = (size_t)m->c * m->h * m->w;
    px = tern_malloc(per * (size_t)o.batch);
    scores = tern_malloc(sizeof(double) * (size_t)o.batch * (size_t)m->nclasses);
    labels = tern_malloc(sizeof(int) * (size_t)o.batch);
    if (!idx || !px || !scores || !labels) { rc = cli_fail("eval"); goto done; }
    int top1 = 0, top5 = 0, labelled = 0, k = m->nclasses < 5 ? m->nclasses : 5;
    const char *inputs[] = {path, o.data, o.labels};
    if (o.dump && (tern_output_check(o.dump, "--dump", inputs, 3) || tern_outfile_open(&dump_file, o.dump, "--dump"))) {
        rc = cli_fail("eval");
        goto done;
    }
    dump = dump_file.f; /* written to a temporary file, renamed into place when complete */
    double t0 = tern_now(), t_run = 0;
    for (int s = 0; s < count; s += o.batch) {
        int b = count - s < o.batch ? count - s : o.batch;
        for (int j = 0; j < b; j++)
            if (tern_dataset_read(ds, idx[s + j], px + per * (size_t)j, &labels[j])) { rc = cli_fail("eval"); goto done; }
        double t1 = tern_now();
        if (m->run(m, px, b, scores)) { rc = cli_fail("eval"); goto done; }
        t_run += tern_now() - t1;
        for (int j = 0; j < b && dump; j++) {
            /* logit values: FP32 floats need 9 digits, integer logits times 2^-exp 17 (exact) */
            for (int c = 0; c < m->nclasses; c++)
                fprintf(dump, m->tm ? (c ? " %.17g" : "%.17g") : (c ? " %.9g" : "%.9g"), scores[(size_t)j * m->nclasses + c] * m->scale);
            fputc('\n', dump);
        }
        for (int j = 0; j < b; j++) {
            int top[5];
            cli_topk(scores + (size_t)j * m->nclasses, m->nclasses, k, top);
            if (labels[j] < 0) continue;
            labelled++;
            top1 += top[0] == labels[j];
            for (int t = 0; t < k; t++) top5 += top[t] == labels[j];
        }
        cli_progress("eval", s + b, count, t0, o.quiet);
    }
    double ips = t_run > 0 ? count / t_run : 0;
    if (o.json)
        printf("{\"model\": \"%s\", \"engine\": \"%s\", \"data\": \"%s\", \"images\": %d, \"labelled\": %d, \"top1\": %.4f, "
               "\"top5\": %.4f, \"top1_correct\": %d, \"top5_correct\": %d, \"images_per_s\": %.1f, \"batch\": %d, \"threads\": %d}\n",
               path, m->kind, o.data, count, labelled, labelled ? 100.0 * top1 / labelled : 0, labelled ? 100.0 * top5 / labelled : 0,
               top1, top5, ips, o.batch, o.threads);
    else {
        printf("%s (%s) on %s: %d images\n", path, m->kind, o.data, count);
        if (labelled) printf("  top-1 %.2f %% (%d/%d)   top-5 %.2f %% (%d/%d)\n", 100.0 * top1 / labelled, top1, labelled, 100.0 * top5 / labelled, top5, labelled);
        else printf("  no labels: accuracy not computed\n");
        printf("  %.1f images/s (batch %d, %d thread%s, inference only)\n", ips, o.batch, o.threads, o.threads > 1 ? "s" : "");
    }
    rc = 0;
done:
    if (dump && rc == 0 && tern_outfile_commit(&dump_file)) rc = cli_fail("eval: writing the dump");
    tern_outfile_abort(&dump_file);
    free(idx);
    free(px);
    free(scores);
    free(labels);
    tern_dataset_free(ds);
    cli_model_free(m);
    return rc;
}
