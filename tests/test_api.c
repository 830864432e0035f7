/* The public API (include/tern.h) as a user sees it: this file is compiled with -Iinclude only
 * and linked against libtern.so (Makefile), so it can use nothing else. Models are quantized
 * here with tern_quantize_file from ../shared/data (skipped, saying so, without it). */
#include <tern.h>
#include "check.h"
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char data[512], r20[600], calib[600], test_batch[600], model[600], tmpdir[64];

static int have_data(void) {
    struct stat s;
    return stat(r20, &s) == 0 && stat(calib, &s) == 0 && stat(test_batch, &s) == 0;
}

/* n CIFAR test images, planar CHW as the model takes them (record: label byte + 3072 bytes) */
static uint8_t *cifar_images(int n) {
    FILE *f = fopen(test_batch, "rb");
    uint8_t *px = malloc((size_t)n * 3072), rec[3073];
    for (int i = 0; f && px && i < n; i++)
        if (fread(rec, 1, sizeof rec, f) == sizeof rec) memcpy(px + (size_t)i * 3072, rec + 1, 3072);
    if (f) fclose(f);
    return px;
}

static void test_status_and_version(void) {
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", TERN_VERSION_MAJOR, TERN_VERSION_MINOR, TERN_VERSION_PATCH);
    CHECK(!strcmp(tern_version(), v), "library %s, header %s", tern_version(), v);
    for (int a = TERN_STATUS_OK; a <= TERN_STATUS_INTERNAL; a++) {
        CHECK(tern_status_string(a) && *tern_status_string(a), "status %d has no name", a);
        CHECK(tern_status_str(a) == tern_status_string(a) || !strcmp(tern_status_str(a), tern_status_string(a)), "old name differs");
        for (int b = a + 1; b <= TERN_STATUS_INTERNAL; b++) CHECK(strcmp(tern_status_string(a), tern_status_string(b)), "%d and %d share a name", a, b);
    }
    tern_free(NULL);
    tern_model_free(NULL);
}

static void test_load_errors(void) {
    tern_model *m = (tern_model *)&m;
    CHECK(tern_model_load("/nonexistent/x.tern", NULL, &m) == TERN_STATUS_IO, "missing file");
    CHECK(m == NULL, "out not cleared");
    CHECK(strstr(tern_last_error(), "/nonexistent/x.tern"), "message does not name the file: %s", tern_last_error());
    static const char junk[] = "this is not a tern file, not at all";
    CHECK(tern_model_load_memory(junk, sizeof junk, "junk", NULL, &m) == TERN_STATUS_FORMAT, "junk accepted");
    CHECK(strstr(tern_last_error(), "junk"), "message does not name the input: %s", tern_last_error());
    CHECK(tern_model_load(NULL, NULL, &m) == TERN_STATUS_INVALID_ARG, "NULL path");
    uint8_t *rgb;
    int h, w;
    CHECK(tern_image_decode_file("/nonexistent.jpg", &rgb, &h, &w) == TERN_STATUS_IO && rgb == NULL, "missing image");
    tern_quantize_options q;
    tern_quantize_options_init(&q);
    CHECK(tern_quantize_file("a.onnx", "b.tern", &q) == TERN_STATUS_INVALID_ARG && strstr(tern_last_error(), "calib"), "no calib: %s", tern_last_error());
    q.size = 3;
    CHECK(tern_quantize_file("a.onnx", "b.tern", &q) == TERN_STATUS_INVALID_ARG && strstr(tern_last_error(), "size"), "bad size: %s", tern_last_error());
}

static void test_quantize_file(void) {
    if (!have_data()) SKIP("no %s (set TERN_DATA)", r20);
    tern_quantize_options q;
    tern_quantize_options_init(&q);
    q.calib = calib;
    q.calib_count = 32;
    q.preset = "cifar";
    q.weights = 'x';
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.tern", tmpdir);
    CHECK(tern_quantize_file(r20, bad, &q) == TERN_STATUS_INVALID_ARG && strstr(tern_last_error(), "weights"), "weights 'x': %s", tern_last_error());
    q.weights = '8';
    q.preset = "nonsense";
    CHECK(tern_quantize_file(r20, bad, &q) == TERN_STATUS_INVALID_ARG && strstr(tern_last_error(), "nonsense"), "bad preset: %s", tern_last_error());
    q.preset = "cifar";
    const char *rules[] = {"3=t:4", "nokey"};
    q.layer_rules = rules;
    q.nlayer_rules = 2;
    CHECK(tern_quantize_file(r20, bad, &q) == TERN_STATUS_INVALID_ARG && strstr(tern_last_error(), "nokey"), "bad rule: %s", tern_last_error());
    struct stat s;
    CHECK(stat(bad, &s) != 0, "a failed quantization left %s", bad);
    q.nlayer_rules = 1;
    enum tern_status st = tern_quantize_file(r20, model, &q);
    CHECK(st == TERN_STATUS_OK, "quantize: %s", tern_last_error());
}

static void test_model(void) {
    if (!have_data()) SKIP("no data");
    tern_model *m;
    if (tern_model_load(model, NULL, &m)) { CHECK(0, "load %s: %s", model, tern_last_error()); return; }
    tern_model_info in;
    CHECK(tern_model_describe(m, &in) == TERN_STATUS_OK, "describe");
    CHECK(in.channels == 3 && in.height == 32 && in.width == 32 && in.classes == 10, "input %dx%dx%d, %d classes", in.channels, in.height, in.width,
          in.classes);
    CHECK(tern_model_input_size(m) == 3072, "input size %zu", tern_model_input_size(m));
    CHECK(in.threads >= 1 && in.max_batch == 64 && in.kernels && in.source && strstr(in.source, "resnet20"), "resolved options");
    CHECK(fabsf(in.mean[0] - 0.485f) < 1e-6f && fabsf(in.std[2] - 0.225f) < 1e-6f && !in.bgr, "recorded preprocessing (cifar preset)");
    /* layers: the rule "3=t:4" made weight layer 3 ternary N=4 */
    int wl = 0, saw3 = 0;
    for (int i = 0; i < in.layers; i++) {
        tern_layer_info L;
        CHECK(tern_model_layer(m, i, &L) == TERN_STATUS_OK && L.name && L.op, "layer %d", i);
        CHECK(L.kernel == NULL, "kernel before the first run");
        if (!L.weights) continue;
        CHECK(L.mult_replaced >= 0 && L.mult_replaced < 1 && L.macs > 0, "layer %d figures", i);
        if (wl == 3) saw3 = L.weights == 't' && L.cluster == 4 && L.mult_replaced > 0.5;
        else CHECK(L.weights == '8' && L.mult_replaced == 0, "layer %d: weights %c", i, L.weights);
        wl++;
    }
    CHECK(saw3, "weight layer 3 is not t:4");
    tern_layer_info L;
    CHECK(tern_model_layer(m, in.layers, &L) == TERN_STATUS_INVALID_ARG, "layer out of range");
    /* top-1 on 200 test images well above chance (8-bit ResNet-20: ~80 %) */
    int n = 100, correct = 0;
    uint8_t *px = cifar_images(n);
    int32_t *y = malloc(sizeof(int32_t) * 10 * (size_t)n);
    FILE *f = fopen(test_batch, "rb");
    CHECK(tern_model_run(m, px, n, y) == TERN_STATUS_OK, "run: %s", tern_last_error());
    for (int i = 0; f && i < n; i++) {
        uint8_t rec[3073];
        if (fread(rec, 1, sizeof rec, f) != sizeof rec) break;
        int top;
        tern_top_k(y + 10 * i, 10, 1, &top);
        correct += top == rec[0];
    }
    if (f) fclose(f);
    CHECK(correct > n / 2, "top-1 %d/%d", correct, n);
    CHECK(tern_model_layer(m, 0, &L) == TERN_STATUS_OK && L.kernel, "kernel after a run");
    CHECK(tern_logit_value(m, 1000) == ldexp(1000, -in.output_exp), "logit value");
    tern_model_free(m);
    free(px);
    free(y);
}

/* Every kernel level the CPU has, 1 and 2 threads, batches split in passes: the same integers. */
static void test_bit_exact_options(void) {
    if (!have_data()) SKIP("no data");
    int n = 13;
    uint8_t *px = cifar_images(n);
    int32_t ref[130], y[130];
    tern_model_options o;
    tern_model_options_init(&o);
    o.kernels = TERN_KERNELS_REF;
    o.threads = 1;
    tern_model *m;
    if (tern_model_load(model, &o, &m)) { CHECK(0, "load: %s", tern_last_error()); free(px); return; }
    CHECK(tern_model_run(m, px, n, ref) == TERN_STATUS_OK, "ref run");
    tern_model_free(m);
    int tried = 0;
    for (int k = TERN_KERNELS_AUTO; k <= TERN_KERNELS_AVX512VNNI; k++)
        for (int t = 1; t <= 2; t++) {
            int mb = t == 1 ? 0 : 4; /* 2 threads: 13 images in passes of 4 */
            {
                o.kernels = k;
                o.threads = t;
                o.max_batch = mb;
                enum tern_status st = tern_model_load(model, &o, &m);
                if (st == TERN_STATUS_UNSUPPORTED) { CHECK(strstr(tern_last_error(), "CPU"), "%s", tern_last_error()); continue; }
                CHECK(st == TERN_STATUS_OK, "load kernels %d: %s", k, tern_last_error());
                if (st) continue;
                memset(y, 0, sizeof y);
                CHECK(tern_model_run(m, px, n, y) == TERN_STATUS_OK && !memcmp(y, ref, sizeof(int32_t) * 10 * n),
                      "kernels %d threads %d max_batch %d differ from ref", k, t, mb);
                tern_model_free(m);
                tried++;
            }
        }
    CHECK(tried >= 4, "only %d configurations ran", tried);
    o.size = 1;
    CHECK(tern_model_load(model, &o, &m) == TERN_STATUS_INVALID_ARG && m == NULL, "bad options size");
    tern_model_options_init(&o);
    o.threads = -1;
    CHECK(tern_model_load(model, &o, &m) == TERN_STATUS_INVALID_ARG, "threads -1");
    /* from memory: the same model */
    FILE *f = fopen(model, "rb");
    static uint8_t buf[1 << 22];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(tern_model_load_memory(buf, len, "mem", NULL, &m) == TERN_STATUS_OK, "load_memory: %s", tern_last_error());
    CHECK(m && tern_model_run(m, px, n, y) == TERN_STATUS_OK && !memcmp(y, ref, sizeof(int32_t) * 10 * n), "memory model differs");
    tern_model_free(m);
    free(px);
}

/* Pixel layouts: an image of the model's size in HWC RGB, RGBA or grey. */
static void test_preprocess(void) {
    if (!have_data()) SKIP("no data");
    tern_model *m;
    if (tern_model_load(model, NULL, &m)) { CHECK(0, "load: %s", tern_last_error()); return; }
    uint8_t *chw = cifar_images(1), rgb[3072], rgba[4096], grey[1024], out[3072], out2[3072];
    for (int p = 0; p < 1024; p++) {
        for (int c = 0; c < 3; c++) rgb[3 * p + c] = rgba[4 * p + c] = chw[c * 1024 + p];
        rgba[4 * p + 3] = (uint8_t)(p * 7);
        grey[p] = chw[p];
    }
    CHECK(tern_model_preprocess(m, rgb, 32, 32, 3, out) == TERN_STATUS_OK && !memcmp(out, chw, 3072), "RGB at the model's size is the identity");
    CHECK(tern_model_preprocess(m, rgba, 32, 32, 4, out2) == TERN_STATUS_OK && !memcmp(out, out2, 3072), "RGBA differs from RGB");
    CHECK(tern_model_preprocess(m, grey, 32, 32, 1, out) == TERN_STATUS_OK && !memcmp(out, chw, 1024) && !memcmp(out + 1024, chw, 1024) &&
              !memcmp(out + 2048, chw, 1024), "grey is not copied to every channel");
    CHECK(tern_model_preprocess(m, rgb, 32, 32, 2, out) == TERN_STATUS_INVALID_ARG, "2 channels accepted");
    /* another size: brought to 32x32 (shorter side, centre crop) */
    static uint8_t big[48 * 40 * 3];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 31);
    CHECK(tern_model_preprocess(m, big, 40, 48, 3, out) == TERN_STATUS_OK, "40x48 image: %s", tern_last_error());
    tern_model_free(m);
    free(chw);
}

static void test_top_k(void) {
    int32_t s[9] = {5, -3, 7, 7, 0, 12, -100, 5, 7}, want[5] = {5, 2, 3, 8, 0};
    int top[5];
    tern_top_k(s, 9, 5, top);
    CHECK(!memcmp(top, want, sizeof want), "top-5 %d %d %d %d %d", top[0], top[1], top[2], top[3], top[4]);
}

int main(void) {
    const char *d = getenv("TERN_DATA");
    snprintf(data, sizeof data, "%s", d && *d ? d : "../shared/data");
    snprintf(r20, sizeof r20, "%s/models/cifar10/resnet20.onnx", data);
    snprintf(calib, sizeof calib, "%s/cifar10/data_batch_1.bin", data);
    snprintf(test_batch, sizeof test_batch, "%s/cifar10/test_batch.bin", data);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_api.XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    snprintf(model, sizeof model, "%s/r20.tern", tmpdir);
    RUN(test_status_and_version);
    RUN(test_load_errors);
    RUN(test_top_k);
    RUN(test_quantize_file);
    RUN(test_model);
    RUN(test_bit_exact_options);
    RUN(test_preprocess);
    unlink(model);
    rmdir(tmpdir);
    return check_summary();
}
