/* tern quantize MODEL.onnx -o OUT.tern --calib DATA: ternary/4-bit/8-bit weights per policy,
 * 8-bit dynamic fixed point activations calibrated on DATA, and a per-layer report. */
#include "cli.h"
#include "core/outfile.h"
#include "api/api.h"
#include "engine/qexec.h"
#include "format/qmodel.h"
#include "quant/quantize.h"
#include "layer_policy.h"
#include <math.h>
#include <string.h>

static const char *help =
    "usage: tern quantize MODEL.onnx -o OUT.tern --calib DATA [options]\n"
    "  -o FILE               output .tern file\n"
    "  --calib DATA          calibration images (CIFAR .bin or image folder); never the test set. Repeat it for\n"
    "                        several sources (up to 8): --calib-count is shared equally among them\n"
    "  --calib-count K       calibration images, spread over DATA (default 500)\n"
    "  --calib-offset K      start the spread at item K (to keep calibration and evaluation disjoint)\n"
    "  --weights t|4|8       weight type of the body layers (default t: ternary)\n"
    "  --cluster N|all       input channels per scale cluster (default 4)\n"
    "  --ternary-rule R      exact (default: least squares optimum) or twn\n"
    "  --calib-rule R        mse (default) or maxabs\n"
    "  --layer KEY=SPEC      per-layer override; KEY = name or weight-layer index, SPEC = t[:N], 4[:N], 8\n"
    "  --all-layers          quantize the first and last layers by --weights too (default: keep them 8-bit)\n"
    "  --plain               the plain quantizer only (no post-training optimisation; the default is --ptq)\n"
    "  --bias-corr           bias correction: per output channel, remove the mean output shift of quantization\n"
    "  --opt-scales          refit cluster scales by least squares on calibration activations\n"
    "  --opt-round           choose ternary/n-bit codes to minimise the layer output error (--opt-method)\n"
    "  --ptq                 all three (--bias-corr --opt-scales --opt-round): the default; naming only some of\n"
    "                        them runs only those\n"
    "  --opt-flip            the three above also use each of their images mirrored left-right\n"
    "  --opt-damp R          ridge term of the three above, relative to the mean input power (default 0.001)\n"
    "  --opt-images K        calibration images used by the three above (default: a quarter of\n"
    "                        the model's classes, 64..256)\n"
    "  --opt-rows R          positions (patches) per layer in their statistics, spread over those images (default 65536)\n"
    "  --opt-mix X           target of the scale refit and code search: (1-X) x the FP32 network's output + X x the\n"
    "                        FP32 weights on the quantized network's input (0..1, default 0)\n"
    "  --opt-actq 0|1        the post-training pass's simulation rounds activations to their 8-bit grid (1) or keeps\n"
    "                        them float (0, the default)\n"
    "  --opt-method M        how --opt-round chooses codes: cd (coordinate descent), gptq (error feedback),\n                        gptq+cd (both; the default)\n"
    "  --verbose             per-layer progress of the above\n"
    "  --max-drop D          accuracy budget: raise precision (t:1 or 4-bit) on the most sensitive layers, priced by the\n"
    "                        multiplications they stop replacing, until top-1 on a held-out split of the calibration\n"
    "                        data is within D - margin points of FP32\n"
    "  --drop-margin M       safety margin of --max-drop on its split (default 0)\n"
    "  --min-replaced F      --max-drop keeps at least this fraction of multiplications replaced (default 0.8)\n"
    "  --drop-count K        images of that split (default 5000; spread over the calibration data's images that are not\n"
    "                        calibration images)\n"
    "  --layers FILE         per-layer policy file: KEY=SPEC lines (KEY = name or index), '#' comments\n"
    "  --write-layers FILE   write every weight layer's precision as used (after --max-drop: its result) to FILE\n"
    "  --sensitivity         no model: per layer, top-1 drop, KL to FP32 and logit SQNR on the --drop-count held-out\n"
    "                        calibration images when only that layer is low precision (the others 8-bit)\n"
    "  --json                report as JSON\n";

int cmd_quantize(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    tern_qopts q;
    tern_qopts_init(&q);
    const char *path = NULL;
    int calib_count = 500, calib_offset = 0, drop_count = 5000, nextra = 0, ncal0, plain = 0, picked = 0, sensitivity = 0;
    const char *extra[7];       /* further --calib sources: calib_count is shared equally among all */
    const char *write_layers = NULL;
    double max_drop = -1, drop_margin = 0, min_repl = 0.8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) { printf("%s%s", help, cli_common_help()); return 0; }
        if ((!strcmp(a, "-o") || !strcmp(a, "--calib") || !strcmp(a, "--calib-count") || !strcmp(a, "--calib-offset") || !strcmp(a, "--weights") || !strcmp(a, "--cluster") ||
             !strcmp(a, "--ternary-rule") || !strcmp(a, "--calib-rule") || !strcmp(a, "--layer")) && !v) {
            fprintf(stderr, "tern quantize: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "-o")) o.out = argv[++i];
        else if (!strcmp(a, "--calib")) {
            if (!o.calib) o.calib = argv[++i];
            else if (nextra < 7) extra[nextra++] = argv[++i];
            else { fprintf(stderr, "tern quantize: at most 8 --calib sources\n"); return 2; }
        }
        else if (!strcmp(a, "--calib-offset")) { calib_offset = atoi(argv[++i]); if (calib_offset < 0) { fprintf(stderr, "tern quantize: bad --calib-offset\n"); return 2; } }
        else if (!strcmp(a, "--calib-count")) { calib_count = atoi(argv[++i]); if (calib_count < 1) { fprintf(stderr, "tern quantize: bad --calib-count\n"); return 2; } }
        else if (!strcmp(a, "--weights")) { if (!tern_parse_wspec(argv[++i], &q.wtype, &q.cluster)) { fprintf(stderr, "tern quantize: bad --weights '%s' (t, 4 or 8)\n", v); return 2; } }
        else if (!strcmp(a, "--cluster")) {
            i++;
            if (!strcmp(v, "all")) q.cluster = 0;
            else if ((q.cluster = atoi(v)) < 1) { fprintf(stderr, "tern quantize: bad --cluster '%s'\n", v); return 2; }
        } else if (!strcmp(a, "--ternary-rule")) {
            i++;
            if (!strcmp(v, "exact")) q.trule = TERN_TRULE_EXACT;
            else if (!strcmp(v, "twn")) q.trule = TERN_TRULE_TWN;
            else { fprintf(stderr, "tern quantize: bad --ternary-rule '%s' (exact, twn)\n", v); return 2; }
        } else if (!strcmp(a, "--calib-rule")) {
            i++;
            if (!strcmp(v, "mse")) q.calib_rule = TERN_CALIB_MSE;
            else if (!strcmp(v, "maxabs")) q.calib_rule = TERN_CALIB_MAXABS;
            else { fprintf(stderr, "tern quantize: bad --calib-rule '%s' (mse, maxabs)\n", v); return 2; }
        } else if (!strcmp(a, "--layer")) {
            i++;
            if (!tern_qopts_add_rule(&q, v)) { fprintf(stderr, "tern quantize: --layer: %s\n", tern_last_error()); return 2; }
        } else if (!strcmp(a, "--all-layers")) q.keep_ends_8bit = 0;
        else if (!strcmp(a, "--bias-corr")) q.bias_corr = picked = 1;
        else if (!strcmp(a, "--opt-scales")) q.opt_scales = picked = 1;
        else if (!strcmp(a, "--opt-round")) q.opt_round = picked = 1;
        else if (!strcmp(a, "--ptq")) q.bias_corr = q.opt_scales = q.opt_round = picked = 1;
        else if (!strcmp(a, "--plain")) plain = 1;
        else if (!strcmp(a, "--sensitivity")) sensitivity = 1;
        else if (!strcmp(a, "--layers")) { if (!v || !cli_layers_read(argv[++i], &q)) return 2; }
        else if (!strcmp(a, "--write-layers")) { if (!v) { fprintf(stderr, "tern quantize: --write-layers needs a file\n"); return 2; } write_layers = argv[++i]; }
        else if (!strcmp(a, "--verbose")) q.verbose = 1;
        else if (!strcmp(a, "--max-drop")) {
            char *end;
            if (!v || (max_drop = strtod(argv[++i], &end)) < 0 || *end) { fprintf(stderr, "tern quantize: bad --max-drop\n"); return 2; }
        } else if (!strcmp(a, "--drop-margin")) {
            char *end;
            if (!v || (drop_margin = strtod(argv[++i], &end)) < 0 || *end) { fprintf(stderr, "tern quantize: bad --drop-margin\n"); return 2; }
        } else if (!strcmp(a, "--min-replaced")) {
            char *end;
            if (!v || (min_repl = strtod(argv[++i], &end)) < 0 || min_repl > 1 || *end) { fprintf(stderr, "tern quantize: bad --min-replaced\n"); return 2; }
        } else if (!strcmp(a, "--drop-count")) {
            if (!v || (drop_count = atoi(argv[++i])) < 1) { fprintf(stderr, "tern quantize: bad --drop-count\n"); return 2; }
        }
        else if (!strcmp(a, "--opt-flip")) q.opt_flip = 1;
        else if (!strcmp(a, "--opt-damp")) {
            char *end;
            if (!v || (q.opt_damp = strtof(argv[++i], &end)) < 0 || *end) { fprintf(stderr, "tern quantize: bad --opt-damp\n"); return 2; }
        }
        else if (!strcmp(a, "--opt-method")) {
            const char *mm = i + 1 < argc ? argv[++i] : "";
            if (!strcmp(mm, "cd")) q.opt_method = TERN_OPT_CD;
            else if (!strcmp(mm, "gptq")) q.opt_method = TERN_OPT_GPTQ;
            else if (!strcmp(mm, "gptq+cd")) q.opt_method = TERN_OPT_GPTQ_CD;
            else { fprintf(stderr, "tern quantize: bad --opt-method '%s' (cd, gptq, gptq+cd)\n", mm); return 2; }
        }
        else if (!strcmp(a, "--opt-mix")) {
            char *end;
            if (!v || (q.opt_mix = strtof(argv[++i], &end)) < 0 || q.opt_mix > 1 || *end) { fprintf(stderr, "tern quantize: bad --opt-mix (0..1)\n"); return 2; }
        }
        else if (!strcmp(a, "--opt-actq")) {
            const char *mm = v ? argv[++i] : "";
            if (!strcmp(mm, "0") || !strcmp(mm, "1")) q.opt_actq = mm[0] - '0';
            else { fprintf(stderr, "tern quantize: bad --opt-actq '%s' (0 or 1)\n", mm); return 2; }
        }
        else if (!strcmp(a, "--opt-rows")) {
            if (!v || (q.opt_rows = atoi(argv[++i])) < 1) { fprintf(stderr, "tern quantize: bad --opt-rows\n"); return 2; }
        }
        else if (!strcmp(a, "--opt-images")) {
            if (!v || (q.opt_images = atoi(argv[++i])) < 1) { fprintf(stderr, "tern quantize: bad --opt-images\n"); return 2; }
        }
        else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return 2;
            if (r) continue;
            if (a[0] == '-' || path) { fprintf(stderr, "tern quantize: unexpected argument '%s'\n", a); return 2; }
            path = a;
        }
    }
    if (!path || (!o.out && !sensitivity) || !o.calib) { fprintf(stderr, "%s", help); return 2; }
    if (nextra && (max_drop >= 0 || sensitivity)) { fprintf(stderr, "tern quantize: --max-drop and --sensitivity take one --calib source (their split comes from it)\n"); return 2; }
    /* The default is the post-training path (--ptq); --plain, or naming some of its parts, picks less. */
    if (!plain && !picked) q.bias_corr = q.opt_scales = q.opt_round = 1;
    if (!cli_apply_preset(&o)) return 2;
    const char *inputs[] = {path, o.calib, o.labels}; /* refuse before any work: never overwrite an input or a device */
    if (o.out && tern_output_check(o.out, "-o", inputs, 3)) return cli_fail("quantize");
    q.threads = o.threads;
    cli_model *m = NULL;
    tern_dataset *ds = NULL;
    tern_qmodel *qm = NULL;
    uint8_t *px = NULL;
    int *idx = NULL, rc = 1;
    if (cli_model_load(path, &o, &m)) { rc = cli_fail("quantize"); goto done; }
    if (strcmp(m->kind, "fp32")) { fprintf(stderr, "tern quantize: %s is already quantized\n", path); goto done; }
    if (!cli_layers_check(cli_model_graph(m), &q)) { rc = 2; goto done; }
    memcpy(q.mean, m->mean, sizeof q.mean); /* options, else the model's metadata */
    memcpy(q.std, m->std, sizeof q.std);
    o.data = o.calib;
    if (cli_dataset_open(&o, m, &ds)) { rc = cli_fail("quantize"); goto done; }
    tern_preproc pp = cli_effective_pp(&o, m);
    q.bgr = pp.bgr;
    q.resize_short = pp.resize_short;
    q.crop = pp.crop_h;
    ncal0 = calib_count / (nextra + 1) + (calib_count % (nextra + 1) > 0);
    idx = cli_subset(tern_dataset_count(ds), &ncal0, calib_offset);
    size_t per = (size_t)m->c * m->h * m->w;
    px = tern_malloc(per * (size_t)calib_count);
    if (!idx || !px) { rc = cli_fail("quantize"); goto done; }
    if (tern_calib_read(ds, o.calib, idx, ncal0, px, per)) { rc = cli_fail("quantize"); goto done; }
    /* further sources: each its equal share, spread over it, after the first source's images */
    int total = ncal0;
    for (int s = 0; s < nextra; s++) {
        tern_dataset *dx = NULL;
        o.data = extra[s];
        if (cli_dataset_open(&o, m, &dx)) { rc = cli_fail("quantize"); goto done; }
        int share = calib_count / (nextra + 1) + (calib_count % (nextra + 1) > s + 1);
        int *ix = cli_subset(tern_dataset_count(dx), &share, calib_offset);
        int bad = !ix || tern_calib_read(dx, extra[s], ix, share, px + per * (size_t)total, per) != TERN_STATUS_OK;
        total += share;
        free(ix);
        tern_dataset_free(dx);
        if (bad) { rc = cli_fail("quantize"); goto done; }
    }
    calib_count = total;
    o.data = o.calib;
    if (sensitivity) {
        rc = cli_sensitivity(cli_model_graph(m), &q, ds, idx, px, calib_count, drop_count, o.json) ? 0 : 1;
        goto done;
    }
    double t0 = tern_now();
    if (max_drop >= 0) {
        if (tern_quantize_max_drop(cli_model_graph(m), &q, ds, idx, px, calib_count, drop_count, max_drop, drop_margin, min_repl, o.quiet, &qm)) {
            rc = cli_fail("quantize");
            goto done;
        }
    } else if (tern_quantize(cli_model_graph(m), &q, px, calib_count, &qm)) { rc = cli_fail("quantize"); goto done; }
    if (tern_qmodel_save(qm, o.out)) { rc = cli_fail("quantize"); goto done; }
    if (write_layers && !cli_layers_write(write_layers, cli_model_graph(m), &q, max_drop >= 0 ? "--max-drop result" : "as quantized")) goto done;
    if (!o.json && !o.quiet) fprintf(stderr, "quantized %s in %.1f s (%d calibration images from %s)\n", path, tern_now() - t0, calib_count, o.calib);
    cli_report_qmodel(qm, o.out, path, o.json);
    rc = 0;
done:
    free(px);
    free(idx);
    tern_qmodel_free(qm);
    tern_dataset_free(ds);
    cli_model_free(m);
    return rc;
}
