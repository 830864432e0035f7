/* Dataset readers and preprocessing against the facts in ../shared/data/README.md, an
 * independent double-precision implementation of the README's resize, and bad inputs. */
#include "check.h"
#include "data/data.h"

#include <math.h>
#include <stb_image.h>
#include <stb_image_write.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* The image fuzz target's checks, to replay its finding (image_fuzz_cases, rebuilt below). */
#include "fuzz_image.c"

static char path_buf[4096];
static const char *data_path(const char *rel) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", check_data_dir(), rel);
    return path_buf;
}
static int exists(const char *p) { return access(p, R_OK) == 0; }

/* Write n bytes to a new temp file; returns its malloc'ed path. */
static char *temp_file(const void *bytes, size_t n, const char *suffix) {
    char *p = malloc(256);
    snprintf(p, 256, "/tmp/tern_test_data_XXXXXX%s", suffix);
    int fd = mkstemps(p, (int)strlen(suffix));
    if (fd < 0) { free(p); return NULL; }
    FILE *f = fdopen(fd, "wb");
    if (n) fwrite(bytes, 1, n, f);
    fclose(f);
    return p;
}
static void remove_temp(char *p) {
    if (p) unlink(p);
    free(p);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* ---------------------------------------------------------------------------------------- */
/* CIFAR-10 */

static void cifar_test_batch(void) {
    const char *p = data_path("cifar10/test_batch.bin");
    if (!exists(p)) SKIP("%s not found (set TERN_DATA)", p);
    tern_dataset *ds;
    enum tern_status st = tern_dataset_open(p, NULL, NULL, &ds);
    CHECK(st == TERN_STATUS_OK, "open: %s", tern_last_error());
    if (st) return;
    int c, h, w;
    tern_dataset_dims(ds, &c, &h, &w);
    CHECK(tern_dataset_count(ds) == 10000, "count %d", tern_dataset_count(ds));
    CHECK(c == 3 && h == 32 && w == 32, "dims %dx%dx%d", c, h, w);
    uint8_t px[3 * 32 * 32];
    int label = -5;
    st = tern_dataset_read(ds, 0, px, &label);
    CHECK(st == TERN_STATUS_OK, "read 0: %s", tern_last_error());
    CHECK(px[0] == 141 && px[1024] == 159 && px[2048] == 179, "record 0 pixel (0,0) = (%d,%d,%d), README says (141,159,179)",
          px[0], px[1024], px[2048]);
    CHECK(label == 0, "record 0 label %d", label);
    /* Grouped by class: record r has label r/1000. Reading all 10,000 also times the reader. */
    int bad = 0, first_bad = -1;
    double t0 = tern_now();
    for (int r = 0; r < 10000; r++) {
        if (tern_dataset_read(ds, r, px, &label) != TERN_STATUS_OK || label != r / 1000) {
            if (!bad++) first_bad = r;
        }
    }
    double dt = tern_now() - t0;
    CHECK(bad == 0, "%d records with a wrong label or read error, first %d", bad, first_bad);
    CHECK(dt < 2.0, "reading 10,000 records took %.2f s", dt);
    fprintf(stderr, "  read 10,000 CIFAR records in %.1f ms\n", dt * 1e3);
    tern_dataset_read(ds, 999, px, &label);
    CHECK(label == 0, "record 999 label %d", label);
    tern_dataset_read(ds, 1000, px, &label);
    CHECK(label == 1, "record 1000 label %d", label);
    char name[32];
    CHECK(strcmp(tern_dataset_item_name(ds, 1000, name, sizeof name), "record 1000") == 0, "name '%s'", name);
    CHECK(tern_dataset_read(ds, 10000, px, &label) == TERN_STATUS_INVALID_ARG, "read past the end must fail");
    CHECK(tern_dataset_read(ds, -1, px, &label) == TERN_STATUS_INVALID_ARG, "read -1 must fail");
    tern_dataset_free(ds);

    /* BGR swaps the channel planes. */
    tern_preproc pp = {.bgr = 1};
    st = tern_dataset_open(p, NULL, &pp, &ds);
    CHECK(st == TERN_STATUS_OK, "open bgr: %s", tern_last_error());
    if (st) return;
    tern_dataset_read(ds, 0, px, NULL);
    CHECK(px[0] == 179 && px[1024] == 159 && px[2048] == 141, "BGR record 0 pixel (0,0) = (%d,%d,%d)", px[0], px[1024], px[2048]);
    tern_dataset_free(ds);
}

static void cifar_train_labels(void) {
    const char *p = data_path("cifar10/data_batch_1.bin");
    if (!exists(p)) SKIP("%s not found (set TERN_DATA)", p);
    static const int want[20] = {9, 3, 4, 3, 5, 8, 2, 1, 1, 9, 8, 2, 6, 1, 6, 6, 7, 7, 7, 7};
    tern_dataset *ds;
    enum tern_status st = tern_dataset_open(p, NULL, NULL, &ds);
    CHECK(st == TERN_STATUS_OK, "open: %s", tern_last_error());
    if (st) return;
    CHECK(tern_dataset_count(ds) == 10000, "count %d", tern_dataset_count(ds));
    uint8_t px[3072];
    for (int r = 0; r < 20; r++) {
        int label = -1;
        st = tern_dataset_read(ds, r, px, &label);
        CHECK(st == TERN_STATUS_OK && label == want[r], "record %d: label %d, README says %d (%s)", r, label, want[r],
              st ? tern_last_error() : "");
    }
    tern_dataset_free(ds);
}

static void cifar_bad_files(void) {
    static uint8_t rec[3 * 3073 + 5];
    memset(rec, 7, sizeof rec);
    rec[0] = 3;
    rec[3073] = 12; /* record 1: label out of range */
    rec[2 * 3073] = 9;
    const size_t sizes[] = {3073 * 2 + 5, 3072, 1};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char *p = temp_file(rec, sizes[k], ".bin");
        CHECK(p, "mkstemps failed");
        if (!p) return;
        tern_dataset *ds = (tern_dataset *)1;
        enum tern_status st = tern_dataset_open(p, NULL, NULL, &ds);
        char num[32];
        snprintf(num, sizeof num, "%zu", sizes[k]);
        CHECK(st == TERN_STATUS_FORMAT, "size %zu: status %d", sizes[k], st);
        CHECK(ds == NULL, "failed open must leave *out NULL");
        CHECK(strstr(tern_last_error(), p) && strstr(tern_last_error(), num) && strstr(tern_last_error(), "3073"),
              "message should name the file, its size and the record size: '%s'", tern_last_error());
        remove_temp(p);
    }
    /* Empty file. */
    char *p = temp_file(rec, 0, ".bin");
    tern_dataset *ds;
    CHECK(tern_dataset_open(p, NULL, NULL, &ds) == TERN_STATUS_FORMAT && strstr(tern_last_error(), p),
          "empty file: '%s'", tern_last_error());
    remove_temp(p);

    /* A bad label is caught when its record is read, naming the file and the record. */
    p = temp_file(rec, 3 * 3073, ".bin");
    enum tern_status st = tern_dataset_open(p, NULL, NULL, &ds);
    CHECK(st == TERN_STATUS_OK, "open: %s", tern_last_error());
    if (!st) {
        uint8_t px[3072];
        int label;
        CHECK(tern_dataset_read(ds, 0, px, &label) == TERN_STATUS_OK && label == 3 && px[5] == 7, "record 0");
        st = tern_dataset_read(ds, 1, px, &label);
        CHECK(st == TERN_STATUS_FORMAT && strstr(tern_last_error(), p) && strstr(tern_last_error(), "record 1") &&
                  strstr(tern_last_error(), "12"),
              "bad label: status %d '%s'", st, tern_last_error());
        CHECK(tern_dataset_read(ds, 2, px, &label) == TERN_STATUS_OK && label == 9, "record 2");
        tern_dataset_free(ds);
    }
    remove_temp(p);

    CHECK(tern_dataset_open("/nonexistent/tern/test.bin", NULL, NULL, &ds) == TERN_STATUS_IO &&
              strstr(tern_last_error(), "/nonexistent/tern/test.bin"),
          "missing file: '%s'", tern_last_error());
}

/* ---------------------------------------------------------------------------------------- */
/* Independent reference of README section 3, steps 2-4, in double precision. */

static void ref_preprocess(const uint8_t *hwc, int ih, int iw, int rs, int cropc, uint8_t *out /* [3][oh][ow] */,
                           int *ohp, int *owp) {
    int W = iw, H = ih;
    if (rs > 0) {
        if (iw < ih) { W = rs; H = (int)((long long)ih * rs / iw); }
        else { H = rs; W = (int)((long long)iw * rs / ih); }
    }
    int oh = cropc > 0 ? cropc : H, ow = cropc > 0 ? cropc : W;
    int x0 = (W - ow) / 2, y0 = (H - oh) / 2;
    double *tmp = malloc(sizeof(double) * (size_t)ih * W);
    for (int ch = 0; ch < 3; ch++) {
        for (int y = 0; y < ih; y++)
            for (int c = 0; c < W; c++) {
                double v;
                if (c == W - 1 || iw == 1) v = hwc[((size_t)y * iw + iw - 1) * 3 + ch];
                else {
                    double sx = (double)c * (iw - 1) / (W - 1);
                    int ix = (int)sx;
                    double dx = sx - ix;
                    v = (1 - dx) * hwc[((size_t)y * iw + ix) * 3 + ch] + dx * hwc[((size_t)y * iw + ix + 1) * 3 + ch];
                }
                tmp[(size_t)y * W + c] = v;
            }
        for (int r = y0; r < y0 + oh; r++) {
            double sy = H > 1 ? (double)r * (ih - 1) / (H - 1) : 0;
            int iy = (int)sy;
            double dy = sy - iy;
            for (int c = x0; c < x0 + ow; c++) {
                double v = (1 - dy) * tmp[(size_t)iy * W + c];
                if (!(r == H - 1 || ih == 1)) v += dy * tmp[(size_t)(iy + 1) * W + c];
                v = floor(v + 0.5);
                out[((size_t)ch * oh + (r - y0)) * ow + (c - x0)] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free(tmp);
    *ohp = oh;
    *owp = ow;
}

/* Compare tern's preprocessing of one decoded image with the reference; returns max |diff|. */
static int compare_with_ref(const char *what, const uint8_t *hwc, int ih, int iw, int rs, int crop, long *ndiff) {
    tern_preproc pp = {.resize_short = rs, .crop_h = crop, .crop_w = crop};
    int oh, ow;
    if (tern_preproc_dims(&pp, what, ih, iw, NULL, NULL, &oh, &ow) != TERN_STATUS_OK) return 999;
    uint8_t *got = malloc((size_t)3 * oh * ow), *want = malloc((size_t)3 * oh * ow);
    int roh, row;
    ref_preprocess(hwc, ih, iw, rs, crop, want, &roh, &row);
    int maxd = 999;
    if (roh == oh && row == ow &&
        tern_preproc_apply(&pp, what, hwc, ih, iw, 1, (size_t)3 * iw, 3, got, oh, ow) == TERN_STATUS_OK) {
        maxd = 0;
        for (size_t k = 0; k < (size_t)3 * oh * ow; k++) {
            int d = abs((int)got[k] - (int)want[k]);
            if (d) (*ndiff)++;
            if (d > maxd) maxd = d;
        }
    }
    free(got);
    free(want);
    return maxd;
}

static void resize_matches_reference_synthetic(void) {
    /* Random pixels, awkward sizes: up- and downscaling, 1-pixel sides, no crop and crops. */
    static const int sizes[][4] = {/* ih, iw, resize_short, crop */
                                   {5, 7, 3, 0},   {7, 5, 11, 0},  {1, 9, 4, 0},   {9, 1, 4, 0},   {2, 2, 1, 0},
                                   {13, 17, 13, 0}, {256, 341, 224, 224}, {341, 256, 224, 224}, {40, 33, 64, 50},
                                   {3, 100, 10, 0}, {256, 256, 224, 0},  {31, 29, 0, 17}};
    uint32_t seed = 12345;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int ih = sizes[k][0], iw = sizes[k][1];
        uint8_t *img = malloc((size_t)ih * iw * 3);
        for (size_t j = 0; j < (size_t)ih * iw * 3; j++) {
            seed = seed * 1664525u + 1013904223u;
            img[j] = (uint8_t)(seed >> 24);
        }
        long nd = 0;
        int d = compare_with_ref("synthetic", img, ih, iw, sizes[k][2], sizes[k][3], &nd);
        CHECK(d <= 1, "%dx%d (HxW) resize %d crop %d: max |diff| %d vs the double reference (%s)", ih, iw, sizes[k][2],
              sizes[k][3], d, d == 999 ? tern_last_error() : "");
        free(img);
    }
}

static void resize_matches_reference_imagenet(void) {
    const char *dir = data_path("imagenet_sample");
    if (!exists(dir)) SKIP("%s not found (set TERN_DATA)", dir);
    /* Landscape, portrait and square files. */
    static const char *files[] = {"n01440764_tench.JPEG", "n02101006_Gordon_setter.JPEG", "n03325584_feather_boa.JPEG",
                                  "n03483316_hand_blower.JPEG", "n04118776_rule.JPEG", "n01443537_goldfish.JPEG"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/imagenet_sample/%s", check_data_dir(), files[k]);
        int w, h, n;
        uint8_t *hwc = stbi_load(p, &w, &h, &n, 3);
        CHECK(hwc, "%s: stbi_load failed", p);
        if (!hwc) continue;
        long nd = 0;
        int d = compare_with_ref(p, hwc, h, w, 224, 224, &nd);
        CHECK(d <= 1, "%s: max |diff| %d vs the double reference", files[k], d);
        if (k == 0) fprintf(stderr, "  %s: %ld of %d values differ by 1 from the double reference\n", files[k], nd, 3 * 224 * 224);
        /* And tern_image_load (decode + preprocess) gives the same bytes as preprocessing the
         * stb-decoded pixels, 3x224x224. */
        tern_preproc pp = {.resize_short = 224, .crop_h = 224, .crop_w = 224};
        uint8_t *chw = NULL, *direct = malloc(3 * 224 * 224);
        int oh = 0, ow = 0;
        enum tern_status st = tern_image_load(p, &pp, &chw, &oh, &ow);
        CHECK(st == TERN_STATUS_OK && oh == 224 && ow == 224, "%s: %s, %dx%d", files[k], tern_last_error(), ow, oh);
        if (!st) {
            tern_preproc_apply(&pp, p, hwc, h, w, 1, (size_t)3 * w, 3, direct, 224, 224);
            CHECK(memcmp(chw, direct, 3 * 224 * 224) == 0, "%s: tern_image_load differs from preprocessing the pixels", files[k]);
        }
        /* BGR: same planes in reverse order. */
        uint8_t *bgr = NULL;
        pp.bgr = 1;
        st = tern_image_load(p, &pp, &bgr, &oh, &ow);
        CHECK(st == TERN_STATUS_OK, "%s bgr: %s", files[k], tern_last_error());
        if (!st && chw) {
            const size_t pl = 224 * 224;
            CHECK(memcmp(bgr, chw + 2 * pl, pl) == 0 && memcmp(bgr + pl, chw + pl, pl) == 0 && memcmp(bgr + 2 * pl, chw, pl) == 0,
                  "%s: BGR planes are not the RGB planes reversed", files[k]);
        }
        free(bgr);
        free(chw);
        free(direct);
        stbi_image_free(hwc);
    }
    /* Without resize or crop, an image keeps its size and pixels. */
    char p[4096];
    snprintf(p, sizeof p, "%s/imagenet_sample/%s", check_data_dir(), files[0]);
    uint8_t *chw = NULL;
    int oh, ow, w, h, n;
    enum tern_status st = tern_image_load(p, NULL, &chw, &oh, &ow);
    uint8_t *hwc = stbi_load(p, &w, &h, &n, 3);
    CHECK(st == TERN_STATUS_OK && hwc && oh == h && ow == w, "plain load %dx%d vs %dx%d", ow, oh, w, h);
    if (!st && hwc) {
        int bad = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) bad += chw[((size_t)c * h + y) * w + x] != hwc[((size_t)y * w + x) * 3 + c];
        CHECK(bad == 0, "%d pixels differ from HWC->CHW of the decoded image", bad);
    }
    free(chw);
    stbi_image_free(hwc);
}

/* ---------------------------------------------------------------------------------------- */
/* Image folders */

static void imagenet_folder(void) {
    const char *dir_rel = "imagenet_sample";
    char dir[4096], labels[4096];
    snprintf(dir, sizeof dir, "%s/%s", check_data_dir(), dir_rel);
    snprintf(labels, sizeof labels, "%s/models/imagenet/labels_darknet_order.txt", check_data_dir());
    if (!exists(dir) || !exists(labels)) SKIP("%s or %s not found (set TERN_DATA)", dir, labels);
    /* The expected label, found independently of tern_lines_load. */
    FILE *f = fopen(labels, "r");
    char line[256];
    int want = -1, ln = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "n01440764", 9) == 0 && (line[9] == '\n' || line[9] == 0)) { want = ln; break; }
        ln++;
    }
    fclose(f);
    CHECK(want >= 0, "n01440764 not in %s", labels);

    tern_preproc pp = {.resize_short = 224, .crop_h = 224, .crop_w = 224};
    tern_dataset *ds;
    enum tern_status st = tern_dataset_open(dir, labels, &pp, &ds);
    CHECK(st == TERN_STATUS_OK, "open: %s", tern_last_error());
    if (st) return;
    int c, h, w;
    tern_dataset_dims(ds, &c, &h, &w);
    CHECK(tern_dataset_count(ds) == 1000, "count %d", tern_dataset_count(ds));
    CHECK(c == 3 && h == 224 && w == 224, "dims %dx%dx%d", c, h, w);
    char name[256];
    tern_dataset_item_name(ds, 0, name, sizeof name);
    CHECK(strcmp(name, "n01440764_tench.JPEG") == 0, "item 0 is '%s'", name);
    uint8_t *px = malloc(3 * 224 * 224);
    int label = -7;
    st = tern_dataset_read(ds, 0, px, &label);
    CHECK(st == TERN_STATUS_OK, "read 0: %s", tern_last_error());
    CHECK(label == want, "item 0 label %d, the line of n01440764 is %d", label, want);
    /* Every 10th item decodes and preprocesses (the evaluator reads them all). */
    int bad = 0;
    for (int i = 0; i < 1000; i += 10) {
        if (tern_dataset_read(ds, i, px, &label) != TERN_STATUS_OK || label < 0 || label >= 1000) {
            if (!bad++) fprintf(stderr, "  item %d: %s\n", i, tern_last_error());
        }
    }
    CHECK(bad == 0, "%d of 100 items failed", bad);
    tern_dataset_free(ds);
    st = tern_dataset_open(dir, labels, NULL, &ds); /* no crop: dims from the first file, 341x256 */
    CHECK(st == TERN_STATUS_OK, "open without preprocessing: %s", tern_last_error());
    if (!st) {
        tern_dataset_dims(ds, &c, &h, &w);
        CHECK(h == 256 && w == 341, "dims from first file %dx%d", w, h);
        free(px);
        px = malloc((size_t)3 * 256 * 341);
        CHECK(tern_dataset_read(ds, 0, px, &label) == TERN_STATUS_OK && label == want, "read 0 uncropped");
        tern_dataset_free(ds);
    }
    /* One image per class: the 1000 file prefixes are 1000 distinct lines of the label file. */
    static char seen[1000];
    int dup = 0;
    st = tern_dataset_open(dir, labels, &pp, &ds);
    if (!st) {
        char **lines;
        int nl;
        CHECK(tern_lines_load(labels, &lines, &nl) == TERN_STATUS_OK && nl == 1000, "lines %d", nl);
        for (int i = 0; i < 1000 && nl == 1000; i++) {
            tern_dataset_item_name(ds, i, name, sizeof name);
            int k;
            for (k = 0; k < nl; k++)
                if (strncmp(name, lines[k], 9) == 0) break;
            if (k < nl && seen[k]) dup++;
            if (k < nl) seen[k] = 1;
        }
        CHECK(dup == 0, "%d files share a class", dup);
        tern_lines_free(lines, nl);
        tern_dataset_free(ds);
    }
    free(px);
}

static char *make_temp_dir(void) {
    char *d = malloc(64);
    strcpy(d, "/tmp/tern_test_data_dir_XXXXXX");
    if (!mkdtemp(d)) { free(d); return NULL; }
    return d;
}
static char *in_dir(const char *d, const char *name) {
    char *p = malloc(strlen(d) + strlen(name) + 2);
    sprintf(p, "%s/%s", d, name);
    return p;
}
static void write_png(const char *d, const char *name, int w, int h, int seed) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int k = 0; k < w * h * 3; k++) px[k] = (uint8_t)(k * 7 + seed);
    char *p = in_dir(d, name);
    stbi_write_png(p, w, h, 3, px, w * 3);
    free(p);
    free(px);
}
static void write_bytes(const char *d, const char *name, const void *b, size_t n) {
    char *p = in_dir(d, name);
    FILE *f = fopen(p, "wb");
    if (n) fwrite(b, 1, n, f);
    fclose(f);
    free(p);
}
static void remove_in_dir(const char *d, const char *name) {
    char *p = in_dir(d, name);
    unlink(p);
    free(p);
}

static void folder_sizes_and_labels(void) {
    char *d = make_temp_dir();
    CHECK(d, "mkdtemp failed");
    if (!d) return;
    /* Sorted bytewise: "A_x.PNG" < "a_1.png" < "b_2.Bmp"; non-images and sub-folders ignored. */
    write_png(d, "a_1.png", 8, 6, 1);
    write_png(d, "A_x.PNG", 8, 6, 2);
    {
        uint8_t px[8 * 6 * 3];
        memset(px, 200, sizeof px);
        char *p = in_dir(d, "b_2.Bmp");
        stbi_write_bmp(p, 8, 6, 3, px);
        free(p);
    }
    write_bytes(d, "notes.txt", "hello", 5);
    char *sub = in_dir(d, "sub.jpg");
    mkdir(sub, 0700);
    write_bytes(d, "labels.txt", "b\r\nA\na\n", 7);
    char *labels = in_dir(d, "labels.txt");

    tern_dataset *ds;
    enum tern_status st = tern_dataset_open(d, labels, NULL, &ds);
    CHECK(st == TERN_STATUS_OK, "open: %s", tern_last_error());
    if (!st) {
        CHECK(tern_dataset_count(ds) == 3, "count %d (non-images and folders must be skipped)", tern_dataset_count(ds));
        const char *want_names[3] = {"A_x.PNG", "a_1.png", "b_2.Bmp"};
        const int want_labels[3] = {1, 2, 0};
        uint8_t px[3 * 8 * 6];
        for (int i = 0; i < 3 && i < tern_dataset_count(ds); i++) {
            char name[64];
            int label = -5;
            tern_dataset_item_name(ds, i, name, sizeof name);
            CHECK(strcmp(name, want_names[i]) == 0, "item %d is '%s', want '%s'", i, name, want_names[i]);
            st = tern_dataset_read(ds, i, px, &label);
            CHECK(st == TERN_STATUS_OK && label == want_labels[i], "item %d: label %d (%s)", i, label, st ? tern_last_error() : "");
        }
        CHECK(px[0] == 200, "BMP pixel %d", px[0]);
        tern_dataset_free(ds);
    }
    /* Without a label file, labels are -1. */
    st = tern_dataset_open(d, NULL, NULL, &ds);
    if (!st) {
        uint8_t px[3 * 8 * 6];
        int label = 0;
        CHECK(tern_dataset_read(ds, 1, px, &label) == TERN_STATUS_OK && label == -1, "label without file %d", label);
        tern_dataset_free(ds);
    }
    /* An image of another size: no crop -> reading it fails, naming the file and both sizes. */
    write_png(d, "c_3.png", 9, 6, 3);
    st = tern_dataset_open(d, NULL, NULL, &ds);
    CHECK(st == TERN_STATUS_OK, "open: %s", tern_last_error());
    if (!st) {
        uint8_t px[3 * 8 * 6];
        CHECK(tern_dataset_read(ds, 0, px, NULL) == TERN_STATUS_OK, "item 0: %s", tern_last_error());
        st = tern_dataset_read(ds, 3, px, NULL);
        const char *m = tern_last_error();
        CHECK(st == TERN_STATUS_SHAPE && strstr(m, "c_3.png") && strstr(m, "9x6") && strstr(m, "8x6"),
              "size mismatch: status %d '%s'", st, m);
        tern_dataset_free(ds);
    }
    /* A crop makes them equal. */
    tern_preproc crop = {.crop_h = 4, .crop_w = 6};
    st = tern_dataset_open(d, NULL, &crop, &ds);
    if (!st) {
        uint8_t px[3 * 4 * 6];
        CHECK(tern_dataset_read(ds, 3, px, NULL) == TERN_STATUS_OK, "cropped odd image: %s", tern_last_error());
        tern_dataset_free(ds);
    }
    /* A crop larger than the image fails clearly. */
    tern_preproc big = {.crop_h = 100, .crop_w = 100};
    st = tern_dataset_open(d, NULL, &big, &ds);
    if (!st) {
        uint8_t *px = malloc(3 * 100 * 100);
        st = tern_dataset_read(ds, 0, px, NULL);
        CHECK(st == TERN_STATUS_SHAPE && strstr(tern_last_error(), "A_x.PNG"), "crop too big: '%s'", tern_last_error());
        free(px);
        tern_dataset_free(ds);
    }
    /* A file whose prefix is not in the label file: the open fails, naming the file. */
    st = tern_dataset_open(d, labels, NULL, &ds);
    CHECK(st == TERN_STATUS_FORMAT && strstr(tern_last_error(), "c_3.png") && strstr(tern_last_error(), "'c'"),
          "unknown prefix: status %d '%s'", st, tern_last_error());
    if (!st) tern_dataset_free(ds);
    /* A missing label file. */
    st = tern_dataset_open(d, "/nonexistent/labels.txt", NULL, &ds);
    CHECK(st == TERN_STATUS_IO && strstr(tern_last_error(), "/nonexistent/labels.txt"), "missing labels: '%s'", tern_last_error());
    if (!st) tern_dataset_free(ds);
    /* A corrupt image in a folder: the read fails naming it. */
    remove_in_dir(d, "c_3.png");
    write_bytes(d, "z_9.jpg", "\xff\xd8\xff\xe0garbage", 12);
    st = tern_dataset_open(d, NULL, NULL, &ds);
    if (!st) {
        uint8_t px[3 * 8 * 6];
        st = tern_dataset_read(ds, 3, px, NULL);
        CHECK(st == TERN_STATUS_FORMAT && strstr(tern_last_error(), "z_9.jpg"), "corrupt item: '%s'", tern_last_error());
        tern_dataset_free(ds);
    }
    /* An empty folder (no images) fails at open. */
    const char *all[] = {"a_1.png", "A_x.PNG", "b_2.Bmp", "notes.txt", "labels.txt", "z_9.jpg"};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) remove_in_dir(d, all[k]);
    st = tern_dataset_open(d, NULL, NULL, &ds);
    CHECK(st == TERN_STATUS_FORMAT && strstr(tern_last_error(), d), "empty folder: '%s'", tern_last_error());
    if (!st) tern_dataset_free(ds);
    rmdir(sub);
    rmdir(d);
    free(sub);
    free(labels);
    free(d);
}

static void bad_images(void) {
    const char *src = data_path("imagenet_sample/n01440764_tench.JPEG");
    if (!exists(src)) SKIP("%s not found (set TERN_DATA)", src);
    size_t n;
    uint8_t *bytes = slurp(src, &n);
    CHECK(bytes, "read %s", src);
    if (!bytes) return;
    /* Half a file (stb notices) and all but the last 722 bytes (stb alone would decode it). */
    const size_t cut[] = {n / 2, n - 722, n - 2};
    for (size_t k = 0; k < sizeof cut / sizeof cut[0]; k++) {
        char *p = temp_file(bytes, cut[k], ".jpg");
        uint8_t *chw = (uint8_t *)1;
        int h = -1, w = -1;
        enum tern_status st = tern_image_load(p, NULL, &chw, &h, &w);
        CHECK(st == TERN_STATUS_FORMAT && strstr(tern_last_error(), p), "truncated to %zu of %zu: status %d '%s'", cut[k], n,
              st, tern_last_error());
        CHECK(chw == NULL, "failed load must leave *chw NULL");
        if (!st) free(chw);
        remove_temp(p);
    }
    /* Complete but with its header tables overwritten: stb's decoder refuses it. */
    memset(bytes + 3, 0x11, 300); /* (the JPEG signature FF D8 FF kept, so that stb sees it) */
    char *q = temp_file(bytes, n, ".JPEG");
    uint8_t *out = NULL;
    int oh, ow;
    enum tern_status st = tern_image_load(q, NULL, &out, &oh, &ow);
    CHECK(st == TERN_STATUS_FORMAT && strstr(tern_last_error(), q) && strstr(tern_last_error(), "decode"),
          "broken header: status %d '%s'", st, tern_last_error());
    if (!st) free(out);
    remove_temp(q);
    free(bytes);
    /* Not an image at all, an empty file, a missing file. */
    char *p = temp_file("not an image\n", 13, ".png");
    uint8_t *chw;
    int h, w;
    CHECK(tern_image_load(p, NULL, &chw, &h, &w) == TERN_STATUS_FORMAT && strstr(tern_last_error(), p), "garbage: '%s'",
          tern_last_error());
    remove_temp(p);
    p = temp_file("", 0, ".jpg");
    CHECK(tern_image_load(p, NULL, &chw, &h, &w) == TERN_STATUS_FORMAT && strstr(tern_last_error(), p), "empty: '%s'",
          tern_last_error());
    remove_temp(p);
    const char *missing = "/tmp/tern_test_data_no_such_file.jpg";
    CHECK(tern_image_load(missing, NULL, &chw, &h, &w) == TERN_STATUS_IO && strstr(tern_last_error(), missing), "missing: '%s'",
          tern_last_error());
}

/* ---------------------------------------------------------------------------------------- */

static void lines(void) {
    char *p = temp_file("one\r\ntwo\n\nthree", 16, ".txt");
    char **l;
    int n;
    enum tern_status st = tern_lines_load(p, &l, &n);
    CHECK(st == TERN_STATUS_OK && n == 4, "status %d n %d", st, n);
    if (!st && n == 4)
        CHECK(!strcmp(l[0], "one") && !strcmp(l[1], "two") && !strcmp(l[2], "") && !strcmp(l[3], "three"), "'%s' '%s' '%s' '%s'",
              l[0], l[1], l[2], l[3]);
    if (!st) tern_lines_free(l, n);
    remove_temp(p);
    p = temp_file("a\nb\n", 4, ".txt");
    st = tern_lines_load(p, &l, &n);
    CHECK(st == TERN_STATUS_OK && n == 2, "trailing newline makes no extra line: n %d", n);
    if (!st) tern_lines_free(l, n);
    remove_temp(p);
    p = temp_file("", 0, ".txt");
    st = tern_lines_load(p, &l, &n);
    CHECK(st == TERN_STATUS_OK && n == 0, "empty file: n %d", n);
    if (!st) tern_lines_free(l, n);
    remove_temp(p);
    CHECK(tern_lines_load("/nonexistent/names.txt", &l, &n) == TERN_STATUS_IO && strstr(tern_last_error(), "/nonexistent/names.txt"),
          "missing: '%s'", tern_last_error());
    tern_lines_free(NULL, 0);

    const char *meta = data_path("cifar10/batches.meta.txt");
    if (exists(meta)) {
        st = tern_lines_load(meta, &l, &n);
        CHECK(st == TERN_STATUS_OK && n == 10 && !strcmp(l[0], "airplane") && !strcmp(l[9], "truck"), "batches.meta.txt: n %d", n);
        if (!st) tern_lines_free(l, n);
    }
}


/* The input the image fuzzer once failed on, rebuilt here (no image file is committed) and run
 * through the fuzz target's checks: a JPEG whose Huffman table (DHT) declares more than 256
 * symbols, which overflows Debian's stb_image 2.27 (size[257] / values[256]): tern must refuse
 * it before decoding. SOI, a quantisation table, a baseline 8x8 grey frame, the DHT (16 counts
 * summing to 300, then 300 symbols), a scan header, two bytes of scan data, EOI. */
static void image_fuzz_cases(void) {
    uint8_t j[512];
    size_t n = 0;
#define PUT(...) do { const uint8_t b_[] = {__VA_ARGS__}; memcpy(j + n, b_, sizeof b_); n += sizeof b_; } while (0)
    PUT(0xFF, 0xD8);                                                    /* SOI */
    PUT(0xFF, 0xDB, 0x00, 0x43, 0x00);                                  /* DQT: table 0, 64 entries */
    for (int k = 0; k < 64; k++) j[n++] = 1;
    PUT(0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00);   /* SOF0 8x8, 1 comp */
    const int nsym = 300;
    PUT(0xFF, 0xC4, (uint8_t)((2 + 17 + nsym) >> 8), (uint8_t)((2 + 17 + nsym) & 0xFF), 0x00);   /* DHT: DC table 0 */
    for (int k = 0; k < 16; k++) j[n++] = k == 14 ? 150 : k == 15 ? 150 : 0;               /* 150 + 150 codes */
    for (int k = 0; k < nsym; k++) j[n++] = (uint8_t)k;
    PUT(0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00);   /* SOS */
    PUT(0x12, 0x34, 0xFF, 0xD9);                                       /* scan data, EOI */
#undef PUT
    CHECK(n <= sizeof j, "case buffer");
    LLVMFuzzerTestOneInput(j, n);
    uint8_t *chw = NULL;
    int h, w;
    CHECK(tern_image_decode(j, n, "dht.jpg", NULL, &chw, &h, &w) == TERN_STATUS_FORMAT && !chw, "the DHT case decoded");
    CHECK(strstr(tern_last_error(), "more than 256 symbols") != NULL, "message: %s", tern_last_error());
    free(chw);
}

int main(void) {
    RUN(cifar_test_batch);
    RUN(cifar_train_labels);
    RUN(cifar_bad_files);
    RUN(resize_matches_reference_synthetic);
    RUN(resize_matches_reference_imagenet);
    RUN(imagenet_folder);
    RUN(folder_sizes_and_labels);
    RUN(bad_images);
    RUN(lines);
    RUN(image_fuzz_cases);
    tern_dataset_free(NULL);
    return check_summary();
}
