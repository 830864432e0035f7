/* tern run MODEL IMAGE...: top-5 classes with names for each image. */
#include "cli.h"
#include <math.h>
#include <string.h>

int cmd_run(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    const char *path = NULL, *imgs[256];
    int nimg = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: tern run MODEL(.onnx|.tern) IMAGE... [--names FILE] [--top K] [options]\n%s", cli_common_help());
            return 0;
        }
        if (!strcmp(argv[i], "--top") && i + 1 < argc) {
            o.topk = atoi(argv[++i]);
            if (o.topk < 1 || o.topk > 100) { fprintf(stderr, "tern run: --top takes 1..100\n"); return 2; }
            continue;
        }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (argv[i][0] == '-') { fprintf(stderr, "tern run: unknown option '%s'\n", argv[i]); return 2; }
        if (!path) path = argv[i];
        else if (nimg < 256) imgs[nimg++] = argv[i];
    }
    if (!path || !nimg) { fprintf(stderr, "usage: tern run MODEL IMAGE... (--help for more)\n"); return 2; }
    if (!cli_apply_preset(&o)) return 2;
    cli_model *m = NULL;
    char **names = NULL;
    int nnames = 0, rc = 1;
    double *scores = NULL;
    if (cli_model_load(path, &o, &m)) { rc = cli_fail("run"); goto done; }
    if (o.names && tern_lines_load(o.names, &names, &nnames)) { rc = cli_fail("run"); goto done; }
    scores = tern_malloc(sizeof(double) * (size_t)m->nclasses);
    if (!scores) goto done;
    int k = o.topk < m->nclasses ? o.topk : m->nclasses;
    tern_preproc pp = cli_effective_pp(&o, m);
    if (o.json) printf("[");
    for (int i = 0; i < nimg; i++) {
        uint8_t *px = NULL;
        int h, w;
        if (m->tm && !o.have_pp && !o.pp.bgr) { /* .tern with its recorded preprocessing: the public API's */
            uint8_t *rgb;
            if (tern_image_decode_file(imgs[i], &rgb, &h, &w)) { rc = cli_fail("run"); goto done; }
            px = malloc(tern_model_input_size(m->tm));
            enum tern_status st = px ? tern_model_preprocess(m->tm, rgb, h, w, 3, px) : TERN_STATUS_NOMEM;
            tern_free(rgb);
            if (st) { free(px); fprintf(stderr, "tern: run: %s: %s\n", imgs[i], tern_last_error()); goto done; }
            h = m->h;
            w = m->w;
        } else if (tern_image_load(imgs[i], &pp, &px, &h, &w)) { rc = cli_fail("run"); goto done; }
        if (h != m->h || w != m->w) {
            free(px);
            fprintf(stderr, "tern: run: %s: image is %dx%d after preprocessing, the model takes %dx%d\n", imgs[i], w, h, m->w, m->h);
            goto done;
        }
        enum tern_status st = m->run(m, px, 1, scores);
        free(px);
        if (st) { rc = cli_fail("run"); goto done; }
        int top[100];
        cli_topk(scores, m->nclasses, k, top);
        /* display and softmax on the logits' values (integer logits times 2^-exp); ranking on the raw scores */
        double mx = scores[top[0]] * m->scale, z = 0;
        for (int c = 0; c < m->nclasses; c++) z += exp(scores[c] * m->scale - mx);
        if (o.json) printf("%s{\"image\": \"%s\", \"top\": [", i ? ", " : "", imgs[i]);
        else printf("%s\n", imgs[i]);
        for (int t = 0; t < k; t++) {
            const char *nm = top[t] < nnames ? names[top[t]] : "";
            double v = scores[top[t]] * m->scale, p = exp(v - mx) / z;
            if (o.json) printf("%s{\"class\": %d, \"name\": \"%s\", \"score\": %.6g, \"prob\": %.6f}", t ? ", " : "", top[t], nm, v, p);
            else printf("  %2d. %5d  %-28s score %9.4f  p=%.4f\n", t + 1, top[t], nm, v, p);
        }
        if (o.json) printf("]}");
    }
    if (o.json) printf("]\n");
    rc = 0;
done:
    free(scores);
    tern_lines_free(names, nnames);
    cli_model_free(m);
    return rc;
}
