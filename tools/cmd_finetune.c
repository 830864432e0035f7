/* tern finetune MODEL.onnx --train DATA -o OUT.tern: low-precision fine-tuning (method.md, last
 * section). Takes its start (the quantizer's --ptq weights, or with --init fp32 the FP32 ones),
 * reports that start through the plain quantizer (the "before" figure), applies the statistics
 * correction (by default with --init fp32 only), retrains the shadow weights with quantized
 * weights and 8-bit activations in the forward pass, and writes the result through the ordinary
 * quantizer: OUT.tern is a plain .tern file. */
#include "cli.h"
#include "core/outfile.h"
#include "graph/fp32.h"
#include "engine/qexec.h"
#include "quant/quantize.h"
#include "train/ops.h"
#include "onnx/onnx.h"
#include "train/train.h"
#include <math.h>
#include <string.h>
#include <unistd.h>

static const char *help =
    "usage: tern finetune MODEL.onnx --train DATA -o OUT.tern [options]\n"
    "  -o FILE               output .tern file (an ordinary one: tern eval/run/bench read it)\n"
    "  --train DATA          training images (CIFAR .bin, or an image folder with --labels); calibration uses them too\n"
    "  --train-count K       use K training images spread over DATA (default all)\n"
    "  --train-offset O      start that spread at item O (as --calib-offset)\n"
    "  --val DATA            held-out images: integer-engine top-1 before and after every epoch\n"
    "  --val-count K         held-out images, spread over DATA (default 1000)\n"
    "  --val-offset O        start that spread at item O (e.g. --train-count 500 and --val-offset 1 on a\n"
    "                        1000-image folder: train on the even items, hold out the odd ones)\n"
    "  --weights t|4|8[:N]   weight type of the body layers (default t: ternary)\n"
    "  --cluster N|all       input channels per scale cluster (default 4)\n"
    "  --ternary-rule R      exact (default) or twn\n"
    "  --layer KEY=SPEC      per-layer precision, as tern quantize (KEY = node name or weight-layer index)\n"
    "  --all-layers          also quantize the first conv and the last layer to the body's type\n"
    "  --calib-rule R        mse (default) or maxabs\n"
    "  --calib-count K       calibration images spread over the training set (default 500)\n"
    "  --epochs E            epochs (default 3)\n"
    "  --batch B             mini-batch (default 32)\n"
    "  --lr LR               initial learning rate (default 0.0005; BN-folded nets diverge at 0.01)\n"
    "  --schedule S          cosine (default: lr * (1 + cos(pi t/T)) / 2 per step) or step (x0.1 at 50% and 75%)\n"
    "  --momentum M          SGD momentum (default 0.9)\n"
    "  --wd W                weight decay (default 1e-4)\n"
    "  --no-augment          no random crop/flip\n"
    "  --init ptq|fp32       start from the quantizer's --ptq weights (default: bias correction, scale refit and\n"
    "                        code choice on --opt-images K calibration images, default 256) or from the FP32 ones\n"
    "  --correct, --no-correct  statistics correction before training (per-channel mean/variance of the quantized\n"
    "                        network matched to FP32's on 256 calibration images); default on with --init fp32 only\n"
    "  --distill A           knowledge distillation from the FP32 model: target = (1-A) one-hot + A softmax(FP32 logits)\n"
    "                        (default 0.5; 0 = plain cross-entropy)\n"
    "  --fp32-acts, --fp32-weights  train without quantizing activations / weights (ablations)\n"
    "  --seed S              PRNG seed (default 1): same seed, data, options and threads -> same file\n"
    "  --save-onnx FILE      also write the fine-tuned FP32 (shadow) weights into a copy of MODEL.onnx\n";

static int read_set(const char *path, const char *labels, const tern_preproc *pp, int count, int offset, int spread, uint8_t **px, int **lab,
                    int *n, int *c, int *h, int *w) {
    tern_dataset *ds = NULL;
    if (tern_dataset_open(path, labels, pp, &ds)) return 0;
    tern_dataset_dims(ds, c, h, w);
    int total = tern_dataset_count(ds), *idx = NULL;
    if (spread) idx = cli_subset(total, &count, offset);
    else if (count <= 0 || count > total) count = total;
    size_t per = (size_t)*c * *h * *w;
    *px = tern_malloc(per * (size_t)count);
    *lab = tern_malloc(sizeof(int) * (size_t)count);
    int ok = *px && *lab && (!spread || idx);
    for (int i = 0; ok && i < count; i++)
        if (tern_dataset_read(ds, idx ? idx[i] : i, *px + per * (size_t)i, &(*lab)[i])) ok = 0;
    free(idx);
    tern_dataset_free(ds);
    *n = count;
    return ok;
}

/* Integer-engine top-1 (%) of m on n images. */
static double int_top1(const tern_qmodel *m, const uint8_t *px, const int *lab, int n, int threads) {
    if (n <= 0) return -1;
    tern_qexec *e = NULL;
    int B = 100, hit = 0;
    if (tern_qexec_new(m, B, threads, tern_active_isa(), &e)) return -1;
    size_t per = (size_t)m->in_c * m->in_h * m->in_w;
    for (int s = 0; s < n; s += B) {
        int b = n - s < B ? n - s : B;
        const int32_t *lg;
        if (tern_qexec_run(e, px + per * (size_t)s, b, &lg)) { tern_qexec_free(e); return -1; }
        for (int j = 0; j < b; j++) {
            int am = 0;
            for (int k = 1; k < m->nclasses; k++)
                if (lg[(size_t)j * m->nclasses + k] > lg[(size_t)j * m->nclasses + am]) am = k;
            hit += am == lab[s + j];
        }
    }
    tern_qexec_free(e);
    return 100.0 * hit / n;
}

int cmd_finetune(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    tern_qopts q;
    tern_qopts_init(&q);
    tern_train_opts to;
    tern_train_opts_init(&to);
    const char *path = NULL, *train = NULL, *val = NULL, *save_onnx = NULL;
    int train_count = 0, val_count = 1000, calib_count = 500, epochs = 3, batch = 32, augment = 1, step_sched = 0, correct = -1;
    int init_ptq = 1, opt_images = 256, train_offset = 0, val_offset = 0;
    float distill = 0.5f;
    double lr0 = 0.0005;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) { printf("%s%s", help, cli_common_help()); return 0; }
        static const char *need[] = {"-o", "--train", "--train-count", "--val", "--val-count", "--weights", "--cluster", "--ternary-rule", "--calib-rule",
                                     "--calib-count", "--epochs", "--batch", "--lr", "--schedule", "--momentum", "--wd", "--seed", "--save-onnx",
                                     "--init", "--opt-images", "--train-offset", "--val-offset", "--layer"};
        int nv = 0;
        for (size_t k = 0; k < sizeof need / sizeof need[0]; k++) nv |= !strcmp(a, need[k]);
        if (nv && !v) { fprintf(stderr, "tern finetune: %s needs a value\n", a); return 2; }
        if (nv) i++;
#define BADV() do { fprintf(stderr, "tern finetune: bad value for %s: '%s'\n", a, v); return 2; } while (0)
        if (!strcmp(a, "-o")) o.out = v;
        else if (!strcmp(a, "--train")) train = v;
        else if (!strcmp(a, "--val")) val = v;
        else if (!strcmp(a, "--save-onnx")) save_onnx = v;
        else if (!strcmp(a, "--train-count")) { if ((train_count = atoi(v)) < 1) BADV(); }
        else if (!strcmp(a, "--val-count")) { if ((val_count = atoi(v)) < 1) BADV(); }
        else if (!strcmp(a, "--train-offset")) { if ((train_offset = atoi(v)) < 0) BADV(); }
        else if (!strcmp(a, "--val-offset")) { if ((val_offset = atoi(v)) < 0) BADV(); }
        else if (!strcmp(a, "--calib-count")) { if ((calib_count = atoi(v)) < 1) BADV(); }
        else if (!strcmp(a, "--epochs")) { if ((epochs = atoi(v)) < 0) BADV(); }
        else if (!strcmp(a, "--batch")) { if ((batch = atoi(v)) < 1 || batch > 4096) BADV(); }
        else if (!strcmp(a, "--lr")) { if (!((lr0 = atof(v)) >= 0)) BADV(); }
        else if (!strcmp(a, "--momentum")) { if (!((to.momentum = (float)atof(v)) >= 0)) BADV(); }
        else if (!strcmp(a, "--wd")) { if (!((to.wd = (float)atof(v)) >= 0)) BADV(); }
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--schedule")) { if (!strcmp(v, "cosine")) step_sched = 0; else if (!strcmp(v, "step")) step_sched = 1; else BADV(); }
        else if (!strcmp(a, "--weights")) { if (!tern_parse_wspec(v, &q.wtype, &q.cluster)) BADV(); }
        else if (!strcmp(a, "--cluster")) { if (!strcmp(v, "all")) q.cluster = 0; else if ((q.cluster = atoi(v)) < 1) BADV(); }
        else if (!strcmp(a, "--ternary-rule")) { if (!strcmp(v, "exact")) q.trule = TERN_TRULE_EXACT; else if (!strcmp(v, "twn")) q.trule = TERN_TRULE_TWN; else BADV(); }
        else if (!strcmp(a, "--calib-rule")) { if (!strcmp(v, "mse")) q.calib_rule = TERN_CALIB_MSE; else if (!strcmp(v, "maxabs")) q.calib_rule = TERN_CALIB_MAXABS; else BADV(); }
        else if (!strcmp(a, "--init")) { if (!strcmp(v, "ptq")) init_ptq = 1; else if (!strcmp(v, "fp32")) init_ptq = 0; else BADV(); }
        else if (!strcmp(a, "--opt-images")) { if ((opt_images = atoi(v)) < 1) BADV(); }
        else if (!strcmp(a, "--layer")) { if (!tern_qopts_add_rule(&q, v)) { fprintf(stderr, "tern finetune: --layer: %s\n", tern_last_error()); return 2; } }
        else if (!strcmp(a, "--all-layers")) q.keep_ends_8bit = 0;
        else if (!strcmp(a, "--no-augment")) augment = 0;
        else if (!strcmp(a, "--no-correct")) correct = 0;
        else if (!strcmp(a, "--correct")) correct = 1;
        else if (!strcmp(a, "--distill")) { if (!v || !((distill = (float)atof(v)) >= 0 && distill <= 1)) BADV(); i++; }
        else if (!strcmp(a, "--fp32-acts")) to.quant_acts = 0;
        else if (!strcmp(a, "--fp32-weights")) to.quant_weights = 0;
        else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return 2;
            if (r) continue;
            if (a[0] == '-' || path) { fprintf(stderr, "tern finetune: unexpected argument '%s'\n", a); return 2; }
            path = a;
        }
#undef BADV
    }
    if (!path || !o.out || !train) { fprintf(stderr, "%s", help); return 2; }
    if (correct < 0) correct = !init_ptq;
    if (!cli_apply_preset(&o)) return 2;
    const char *inputs[] = {path, train, val, o.labels}; /* never overwrite an input or a device */
    if (tern_output_check(o.out, "-o", inputs, 4) || (save_onnx && tern_output_check(save_onnx, "--save-onnx", inputs, 4)))
        return cli_fail("finetune");
    memcpy(q.mean, o.mean, sizeof q.mean);
    memcpy(q.std, o.std, sizeof q.std);
    q.threads = o.threads;
    memcpy(to.mean, o.mean, sizeof to.mean);
    memcpy(to.std, o.std, sizeof to.std);

    int rc = 1, ntr = 0, nval = 0, ncal = calib_count, C, H, W, c2, h2, w2;
    tern_graph *g = NULL, *g_teacher = NULL;
    tern_trainer *t = NULL, *teacher = NULL;
    tern_qmodel *qm = NULL;
    tern_qplan *plan = NULL;
    tern_pool *pool = NULL;
    uint8_t *trpx = NULL, *valpx = NULL, *calpx = NULL;
    int *trlab = NULL, *vallab = NULL, *order = NULL, *blab = NULL, *cidx = NULL;
    float *bx = NULL;
    if (tern_onnx_import(path, &g)) { rc = cli_fail("finetune"); goto done; }
    for (int i = 0; save_onnx && i < g->nnodes; i++)
        if (g->nodes[i].op == TERN_OP_GEMM && (g->nodes[i].a.alpha != 1.0f || g->nodes[i].a.beta != 1.0f)) {
            fprintf(stderr, "tern finetune: --save-onnx: Gemm '%s' has alpha/beta != 1 (not supported)\n", g->nodes[i].name);
            goto done;
        }
    if (tern_quant_plan(g, &q, &plan)) { rc = cli_fail("finetune"); goto done; }
    to.plan = plan; /* each layer's precision as tern quantize gives it, --layer overrides included */
    const tern_value *gin = &g->values[g->input];
    /* image folders: --preset / resize options, else darknet-style to the model's input (as every command) */
    cli_model gm = {.h = gin->ndim == 4 ? (int)gin->dims[2] : 0, .w = gin->ndim == 4 ? (int)gin->dims[3] : 0};
    tern_preproc pp = cli_effective_pp(&o, &gm);
    q.bgr = pp.bgr;
    q.resize_short = pp.resize_short;
    q.crop = pp.crop_h;
    if (!read_set(train, o.labels, &pp, train_count, train_offset, 1, &trpx, &trlab, &ntr, &C, &H, &W)) { rc = cli_fail("finetune: training data"); goto done; }
    if (val && !read_set(val, o.labels, &pp, val_count, val_offset, 1, &valpx, &vallab, &nval, &c2, &h2, &w2)) { rc = cli_fail("finetune: held-out data"); goto done; }
    if (gin->ndim != 4 || gin->dims[1] != C || gin->dims[2] != H || gin->dims[3] != W || (val && (c2 != C || h2 != H || w2 != W))) {
        fprintf(stderr, "tern finetune: the images (%dx%dx%d) do not match the model's input\n", C, H, W);
        goto done;
    }
    size_t per = (size_t)C * H * W;
    cidx = cli_subset(ntr, &ncal, 0);
    calpx = tern_malloc(per * (size_t)(ncal > 0 ? ncal : 1));
    order = tern_malloc(sizeof(int) * (size_t)ntr);
    blab = tern_malloc(sizeof(int) * (size_t)batch);
    bx = tern_malloc(sizeof(float) * per * (size_t)batch);
    if (!cidx || !calpx || !order || !blab || !bx) { rc = cli_fail("finetune"); goto done; }
    for (int i = 0; i < ncal; i++) memcpy(calpx + per * (size_t)i, trpx + per * (size_t)cidx[i], per);

    tern_fp32_set_threads(o.threads);
    pool = tern_pool_create(o.threads);
    tt_set_pool(pool);
    if (init_ptq) { /* start from the quantizer's optimised weights: its FP32 target is the source model */
        tern_graph *src = NULL;
        tern_qmodel *pm = NULL;
        tern_qopts qp = q;
        qp.bias_corr = qp.opt_scales = qp.opt_round = 1;
        qp.opt_images = opt_images;
        qp.export_to = g;
        double tp = tern_now();
        enum tern_status pst = tern_onnx_import(path, &src);
        if (!pst) pst = tern_quantize(src, &qp, calpx, ncal, &pm);
        if (!pst) fprintf(stderr, "--init ptq (%d images): %.1f s, held-out top-1 %.2f %% (integer engine)\n", opt_images < ncal ? opt_images : ncal,
                          tern_now() - tp, val ? int_top1(pm, valpx, vallab, nval, o.threads) : -1.0);
        tern_qmodel_free(pm);
        tern_graph_free(src);
        if (pst) { rc = cli_fail("finetune: --init ptq"); goto done; }
    }
    double t0 = tern_now(); /* the starting point through the plain quantizer: the "before" figure */
    if (tern_quantize(g, &q, calpx, ncal, &qm)) { rc = cli_fail("finetune: post-training quantization"); goto done; }
    double before = val ? int_top1(qm, valpx, vallab, nval, o.threads) : -1;
    fprintf(stderr, "post-training quantization (%d calibration images): %.1f s", ncal, tern_now() - t0);
    if (val) fprintf(stderr, ", held-out top-1 %.2f %% (%d images of %s, integer engine)", before, nval, val);
    fprintf(stderr, "\n");
    if (distill > 0) {
        tern_train_opts tt = to;
        tt.quant_acts = tt.quant_weights = 0;
        tt.plan = NULL;
        if (tern_onnx_import(path, &g_teacher) || tern_trainer_new(g_teacher, &tt, batch, &teacher)) { rc = cli_fail("finetune: teacher"); goto done; }
    }
    uint64_t rng = seed;
    if (tern_trainer_new(g, &to, batch, &t)) { rc = cli_fail("finetune"); goto done; }
    if (tern_trainer_set_exponents(t, qm)) { rc = cli_fail("finetune"); goto done; }
    if (correct) {
        int nc = ncal < 256 ? ncal : 256;
        float *cx = tern_malloc(sizeof(float) * per * (size_t)nc);
        double tc = tern_now();
        if (!cx) { rc = cli_fail("finetune"); goto done; }
        for (int i = 0; i < nc; i++) tern_augment(calpx + per * (size_t)i, C, H, W, 0, 0, &rng, o.mean, o.std, cx + per * (size_t)i);
        enum tern_status cst = tern_trainer_correct_stats(t, cx, nc);
        free(cx);
        tern_qmodel_free(qm);
        qm = NULL;
        if (cst || tern_trainer_write_back(t, 1) || tern_quantize(g, &q, calpx, ncal, &qm) || tern_trainer_set_exponents(t, qm)) { rc = cli_fail("finetune"); goto done; }
        fprintf(stderr, "statistics correction (%d images): %.1f s", nc, tern_now() - tc);
        if (val) fprintf(stderr, ", held-out top-1 %.2f %% (integer engine)", int_top1(qm, valpx, vallab, nval, o.threads));
        fprintf(stderr, "\n");
    }

    int steps_per = ntr / batch, total = steps_per * epochs, step = 0;
    if (steps_per < 1 && epochs > 0) { fprintf(stderr, "tern finetune: fewer training images than one batch\n"); goto done; }
    for (int i = 0; i < ntr; i++) order[i] = i;
    int tty = isatty(2) && !o.quiet;
    for (int ep = 0; ep < epochs; ep++) {
        for (int i = ntr - 1; i > 0; i--) {
            int j = (int)tern_rng_below(&rng, (uint32_t)(i + 1)), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        double te = tern_now(), lsum = 0;
        int seen = 0, hits = 0;
        for (int s = 0; s < steps_per; s++, step++) {
            for (int j = 0; j < batch; j++) {
                int k = order[s * batch + j];
                blab[j] = trlab[k];
                tern_augment(trpx + per * (size_t)k, C, H, W, augment ? 4 : 0, augment, &rng, o.mean, o.std, bx + per * (size_t)j);
            }
            double lr;
            if (step_sched) lr = lr0 * (step >= total * 3 / 4 ? 0.01 : step >= total / 2 ? 0.1 : 1.0);
            else lr = lr0 * 0.5 * (1.0 + cos(M_PI * step / total));
            double loss;
            int hit;
            const float *tl = NULL;
            if (teacher && tern_trainer_forward(teacher, bx, batch, &tl, NULL)) { rc = cli_fail("finetune: teacher"); goto done; }
            if (tern_trainer_step_distill(t, bx, blab, tl, distill, batch, (float)lr, &loss, &hit)) { rc = cli_fail("finetune"); goto done; }
            lsum += loss * batch;
            hits += hit;
            seen += batch;
            double el = tern_now() - te;
            int last = s == steps_per - 1;
            if ((tty && !o.quiet) || (!o.quiet && (last || (s + 1) % (steps_per / 10 > 0 ? steps_per / 10 : 1) == 0))) {
                int width = 24, fill = (int)((int64_t)(s + 1) * width / steps_per);
                fprintf(stderr, "%sepoch %d/%d [%.*s%*s] %d/%d loss %.4f acc %.2f %% lr %.5f %.1f img/s%s", tty ? "\r" : "", ep + 1, epochs, fill,
                        "========================", width - fill, "", seen, steps_per * batch, lsum / seen, 100.0 * hits / seen, lr, seen / el,
                        tty && !last ? "" : "\n");
                fflush(stderr);
            }
        }
        double train_s = tern_now() - te;
        /* the integer model of this epoch: quantized weights through the ordinary quantizer
         * (recalibrated on them); its exponents drive the next epoch's fake quantisation */
        tern_qmodel_free(qm);
        qm = NULL;
        if (tern_trainer_write_back(t, 1) || tern_quantize(g, &q, calpx, ncal, &qm) || tern_trainer_set_exponents(t, qm)) { rc = cli_fail("finetune"); goto done; }
        fprintf(stderr, "epoch %d/%d: train loss %.4f, train top-1 %.2f %% (quantized forward), %.2f min", ep + 1, epochs, lsum / seen, 100.0 * hits / seen, train_s / 60);
        if (val) fprintf(stderr, ", held-out top-1 %.2f %% (integer engine)", int_top1(qm, valpx, vallab, nval, o.threads));
        fprintf(stderr, "\n");
    }
    if (tern_qmodel_save(qm, o.out)) { rc = cli_fail("finetune"); goto done; }
    fprintf(stderr, "wrote %s (%.1f min in all)\n", o.out, (tern_now() - t0) / 60);
    if (save_onnx) {
        int vals[1024], nv = tern_trainer_params(t, vals, 1024);
        if (nv > 1024 || tern_trainer_write_back(t, 0) || tern_onnx_patch_weights(path, save_onnx, g, vals, nv)) { rc = cli_fail("finetune: --save-onnx"); goto done; }
        fprintf(stderr, "wrote %s (FP32 shadow weights)\n", save_onnx);
    }
    rc = 0;
done:
    tern_qplan_free(plan);
    tt_set_pool(NULL);
    tern_pool_free(pool);
    tern_trainer_free(t);
    tern_trainer_free(teacher);
    tern_qmodel_free(qm);
    tern_graph_free(g);
    tern_graph_free(g_teacher);
    free(trpx); free(trlab); free(valpx); free(vallab); free(calpx); free(cidx); free(order); free(blab); free(bx);
    return rc;
}
