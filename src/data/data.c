/* Datasets: CIFAR-10 binary files and folders of images; text line lists.
 * tern_dataset_read() keeps no per-call state in the dataset (CIFAR records are read with pread,
 * images are decoded into fresh buffers), so several threads may read items at once. */
#include "data/data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS) /* label byte + R, G, B planes */
#define CIFAR_CLASSES 10

enum ds_kind { DS_CIFAR, DS_FOLDER };

struct tern_dataset {
    enum ds_kind kind;
    char *path;          /* the file or folder as given */
    int n;               /* items */
    int c, h, w;         /* every item after preprocessing */
    tern_preproc pp;     /* all zero: none */
    int fd;              /* CIFAR: open file */
    char **names;        /* folder: [n] file names, sorted bytewise */
    int *labels;         /* folder: [n] class index, -1 without a label file */
    int nclasses;        /* classes the labels index: 10 (CIFAR), the label file's lines, 0 (none) */
};

static int pp_is_identity(const tern_preproc *pp) {
    return pp->resize_short <= 0 && pp->crop_h <= 0 && pp->crop_w <= 0 && !pp->bgr;
}

/* ---------------------------------------------------------------------------------------- */
/* Text lines */

enum tern_status tern_lines_load(const char *path, char ***lines, int *n) {
    *lines = NULL;
    *n = 0;
    uint8_t *data;
    size_t len;
    enum tern_status st = tern_read_file(path, &data, &len);
    if (st) return st;
    /* One entry per '\n'-terminated line; a last line without '\n' counts too. */
    size_t count = 0;
    for (size_t i = 0; i < len; i++) count += data[i] == '\n';
    if (len > 0 && data[len - 1] != '\n') count++;
    if (count > INT32_MAX / 2) {
        free(data);
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: too many lines (%zu)", path, count);
    }
    char **out = tern_calloc(count + 1, sizeof(char *));
    if (!out) {
        free(data);
        return TERN_STATUS_NOMEM;
    }
    size_t start = 0, k = 0;
    for (size_t i = 0; i <= len && k < count; i++) {
        if (i < len && data[i] != '\n') continue;
        size_t end = i;
        while (end > start && (data[end - 1] == '\r' || data[end - 1] == '\n')) end--;
        char *s = tern_malloc(end - start + 1);
        if (!s) {
            tern_lines_free(out, (int)k);
            free(data);
            return TERN_STATUS_NOMEM;
        }
        memcpy(s, data + start, end - start);
        s[end - start] = 0;
        out[k++] = s;
        start = i + 1;
    }
    free(data);
    *lines = out;
    *n = (int)k;
    return TERN_STATUS_OK;
}

void tern_lines_free(char **lines, int n) {
    if (!lines) return;
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

/* ---------------------------------------------------------------------------------------- */
/* CIFAR-10 binary */

static enum tern_status cifar_open(tern_dataset *ds) {
    ds->fd = open(ds->path, O_RDONLY | O_CLOEXEC);
    if (ds->fd < 0) return tern_errorf(TERN_STATUS_IO, "%s: cannot open: %s", ds->path, strerror(errno));
    struct stat sb;
    if (fstat(ds->fd, &sb) != 0) return tern_errorf(TERN_STATUS_IO, "%s: cannot stat: %s", ds->path, strerror(errno));
    long long size = (long long)sb.st_size;
    if (size == 0 || size % CIFAR_RECORD != 0)
        return tern_errorf(TERN_STATUS_FORMAT,
                           "%s: not a CIFAR-10 binary file: size %lld bytes is not a positive multiple "
                           "of the %d-byte record (1 label + 3x32x32 pixels)%s",
                           ds->path, size, CIFAR_RECORD, size == 0 ? "" : "; truncated or wrong file?");
    if (size / CIFAR_RECORD > INT32_MAX)
        return tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: too many records (%lld)", ds->path, size / CIFAR_RECORD);
    ds->n = (int)(size / CIFAR_RECORD);
    ds->c = 3;
    return tern_preproc_dims(&ds->pp, ds->path, CIFAR_SIDE, CIFAR_SIDE, NULL, NULL, &ds->h, &ds->w);
}

static enum tern_status cifar_read(tern_dataset *ds, int i, uint8_t *chw, int *label) {
    uint8_t rec[CIFAR_RECORD];
    off_t off = (off_t)i * CIFAR_RECORD;
    size_t got = 0;
    while (got < sizeof rec) {
        ssize_t r = pread(ds->fd, rec + got, sizeof rec - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return tern_errorf(TERN_STATUS_IO, "%s: record %d: read failed: %s", ds->path, i,
                               r < 0 ? strerror(errno) : "file shrank since it was opened");
        got += (size_t)r;
    }
    if (rec[0] >= CIFAR_CLASSES)
        return tern_errorf(TERN_STATUS_FORMAT, "%s: record %d (byte offset %lld): label %d is not a CIFAR-10 class 0..9",
                           ds->path, i, (long long)off, rec[0]);
    if (label) *label = rec[0];
    if (pp_is_identity(&ds->pp)) {
        memcpy(chw, rec + 1, CIFAR_PIXELS); /* already planar RGB = CHW */
        return TERN_STATUS_OK;
    }
    char what[64];
    snprintf(what, sizeof what, "record %d", i);
    enum tern_status st = tern_preproc_apply(&ds->pp, what, rec + 1, CIFAR_SIDE, CIFAR_SIDE,
                                             CIFAR_SIDE * CIFAR_SIDE, CIFAR_SIDE, 1, chw, ds->h, ds->w);
    if (st) return tern_error_prefix(st, "%s", ds->path);
    return TERN_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Folder of images */

static int has_image_ext(const char *name) {
    static const char *const exts[] = {"jpg", "jpeg", "png", "bmp"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++)
        if (strcasecmp(dot + 1, exts[k]) == 0) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b); /* strcmp compares as unsigned char */
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = tern_malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

static enum tern_status folder_list(tern_dataset *ds) {
    DIR *d = opendir(ds->path);
    if (!d) return tern_errorf(TERN_STATUS_IO, "%s: cannot open folder: %s", ds->path, strerror(errno));
    size_t cap = 0, n = 0;
    char **names = NULL;
    enum tern_status st = TERN_STATUS_OK;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name)) continue;
        char *full = join_path(ds->path, e->d_name);
        if (!full) { st = TERN_STATUS_NOMEM; break; }
        struct stat sb;
        int regular = stat(full, &sb) == 0 && S_ISREG(sb.st_mode); /* follows symlinks */
        free(full);
        if (!regular) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **t = realloc(names, cap * sizeof *names);
            if (!t) { st = tern_errorf(TERN_STATUS_NOMEM, "out of memory listing %s", ds->path); break; }
            names = t;
        }
        if (!(names[n] = tern_strdup(e->d_name))) { st = TERN_STATUS_NOMEM; break; }
        n++;
        if (n > INT32_MAX / 2) { st = tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: too many files", ds->path); break; }
        errno = 0;
    }
    if (!st && errno != 0) st = tern_errorf(TERN_STATUS_IO, "%s: cannot list folder: %s", ds->path, strerror(errno));
    closedir(d);
    if (names) qsort(names, n, sizeof *names, cmp_str);
    ds->names = names;
    ds->n = (int)n;
    if (!st && n == 0)
        st = tern_errorf(TERN_STATUS_FORMAT, "%s: no image files (.jpg .jpeg .png .bmp) in this folder", ds->path);
    return st;
}

/* A label id with its line number, sorted by id for bsearch. */
typedef struct { const char *id; int line; } label_entry;

static int cmp_label(const void *a, const void *b) {
    const label_entry *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

static enum tern_status folder_labels(tern_dataset *ds, const char *labels_path) {
    ds->labels = tern_malloc(sizeof(int) * (size_t)ds->n);
    if (!ds->labels) return TERN_STATUS_NOMEM;
    for (int i = 0; i < ds->n; i++) ds->labels[i] = -1;
    if (!labels_path) return TERN_STATUS_OK;
    char **lines;
    int nl;
    enum tern_status st = tern_lines_load(labels_path, &lines, &nl);
    if (st) return tern_error_prefix(st, "label file of %s", ds->path);
    if (nl == 0) {
        tern_lines_free(lines, nl);
        return tern_errorf(TERN_STATUS_FORMAT, "%s: label file is empty", labels_path);
    }
    label_entry *tab = tern_malloc(sizeof *tab * (size_t)nl);
    if (!tab) {
        tern_lines_free(lines, nl);
        return TERN_STATUS_NOMEM;
    }
    for (int k = 0; k < nl; k++) tab[k] = (label_entry){lines[k], k};
    qsort(tab, (size_t)nl, sizeof *tab, cmp_label);
    /* one class per line: an empty or repeated id would make two outputs one class */
    for (int k = 0; k < nl && !st; k++) {
        if (!tab[k].id[0])
            st = tern_errorf(TERN_STATUS_FORMAT, "%s: line %d is empty (one class id per line)", labels_path, tab[k].line + 1);
        else if (k > 0 && strcmp(tab[k].id, tab[k - 1].id) == 0)
            st = tern_errorf(TERN_STATUS_FORMAT, "%s: class id '%s' is on lines %d and %d (each class once)", labels_path,
                             tab[k].id, tab[k - 1].line + 1, tab[k].line + 1);
    }
    ds->nclasses = nl;
    for (int i = 0; i < ds->n && !st; i++) {
        const char *name = ds->names[i];
        size_t plen = strcspn(name, "_.");
        char prefix[256];
        if (plen == 0 || plen >= sizeof prefix) {
            st = tern_errorf(TERN_STATUS_FORMAT, "%s/%s: cannot take a class id from this file name "
                             "(expected <id>_<anything> or <id>.<ext>)", ds->path, name);
            break;
        }
        memcpy(prefix, name, plen);
        prefix[plen] = 0;
        /* First line holding this id: bsearch finds one, walk back over duplicates. */
        label_entry key = {prefix, -1};
        size_t lo = 0, hi = (size_t)nl;
        while (lo < hi) { /* lower bound of (prefix, -1) */
            size_t mid = lo + (hi - lo) / 2;
            if (cmp_label(&tab[mid], &key) < 0) lo = mid + 1; else hi = mid;
        }
        if (lo == (size_t)nl || strcmp(tab[lo].id, prefix) != 0)
            st = tern_errorf(TERN_STATUS_FORMAT, "%s/%s: class id '%s' is not in the label file %s (%d lines)",
                             ds->path, name, prefix, labels_path, nl);
        else
            ds->labels[i] = tab[lo].line;
    }
    free(tab);
    tern_lines_free(lines, nl);
    return st;
}

static enum tern_status folder_open(tern_dataset *ds, const char *labels_path) {
    enum tern_status st = folder_list(ds);
    if (!st) st = folder_labels(ds, labels_path);
    if (st) return st;
    ds->c = 3;
    if (ds->pp.crop_h > 0 && ds->pp.crop_w > 0) {
        ds->h = ds->pp.crop_h;
        ds->w = ds->pp.crop_w;
        return TERN_STATUS_OK;
    }
    /* The item size depends on the images: the first one sets it (from its header). */
    char *first = join_path(ds->path, ds->names[0]);
    if (!first) return TERN_STATUS_NOMEM;
    int h, w;
    st = tern_image_size(first, &h, &w);
    if (!st) st = tern_preproc_dims(&ds->pp, first, h, w, NULL, NULL, &ds->h, &ds->w);
    free(first);
    return st;
}

static enum tern_status folder_read(tern_dataset *ds, int i, uint8_t *chw, int *label) {
    char *file = join_path(ds->path, ds->names[i]);
    if (!file) return TERN_STATUS_NOMEM;
    uint8_t *px;
    int h, w;
    enum tern_status st = tern_image_load(file, &ds->pp, &px, &h, &w);
    if (!st && (h != ds->h || w != ds->w))
        st = tern_errorf(TERN_STATUS_SHAPE,
                         "%s: image is %dx%d (WxH) after preprocessing, but this dataset's items are %dx%d "
                         "(set by %s); all images of a folder must end up the same size (use a crop)",
                         file, w, h, ds->w, ds->h,
                         ds->pp.crop_h > 0 && ds->pp.crop_w > 0 ? "the crop" : ds->names[0]);
    if (!st) {
        memcpy(chw, px, (size_t)3 * h * w);
        if (label) *label = ds->labels[i];
    }
    free(px);
    free(file);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Dataset API */

enum tern_status tern_dataset_open(const char *path, const char *labels, const tern_preproc *pp,
                                   tern_dataset **out) {
    *out = NULL;
    if (!path || !*path) return tern_errorf(TERN_STATUS_INVALID_ARG, "dataset path is empty");
    if (pp && (pp->resize_short < 0 || pp->crop_h < 0 || pp->crop_w < 0))
        return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: negative resize or crop size in the preprocessing", path);
    struct stat sb;
    if (stat(path, &sb) != 0) return tern_errorf(TERN_STATUS_IO, "%s: cannot open dataset: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))
        return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: dataset must be a CIFAR-10 .bin file or a folder of images", path);
    tern_dataset *ds = tern_calloc(1, sizeof *ds);
    if (!ds) return TERN_STATUS_NOMEM;
    ds->fd = -1;
    if (pp) ds->pp = *pp;
    ds->path = tern_strdup(path);
    enum tern_status st = ds->path ? TERN_STATUS_OK : TERN_STATUS_NOMEM;
    if (!st) {
        if (S_ISDIR(sb.st_mode)) {
            ds->kind = DS_FOLDER;
            st = folder_open(ds, labels);
        } else {
            ds->kind = DS_CIFAR; /* labels are in the records; a label file is not needed */
            ds->nclasses = CIFAR_CLASSES;
            st = cifar_open(ds);
        }
    }
    if (st) {
        tern_dataset_free(ds);
        return st;
    }
    *out = ds;
    return TERN_STATUS_OK;
}

int tern_dataset_count(const tern_dataset *ds) { return ds ? ds->n : 0; }
int tern_dataset_nclasses(const tern_dataset *ds) { return ds ? ds->nclasses : 0; }

void tern_dataset_dims(const tern_dataset *ds, int *c, int *h, int *w) {
    if (c) *c = ds->c;
    if (h) *h = ds->h;
    if (w) *w = ds->w;
}

enum tern_status tern_dataset_read(tern_dataset *ds, int i, uint8_t *chw, int *label) {
    if (label) *label = -1;
    if (i < 0 || i >= ds->n)
        return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: item %d out of range (the dataset has %d)", ds->path, i, ds->n);
    return ds->kind == DS_CIFAR ? cifar_read(ds, i, chw, label) : folder_read(ds, i, chw, label);
}

const char *tern_dataset_item_name(const tern_dataset *ds, int i, char *buf, size_t n) {
    if (!buf || n == 0) return ds->kind == DS_FOLDER && i >= 0 && i < ds->n ? ds->names[i] : "";
    if (i < 0 || i >= ds->n) snprintf(buf, n, "(no item %d)", i);
    else if (ds->kind == DS_FOLDER) snprintf(buf, n, "%s", ds->names[i]);
    else snprintf(buf, n, "record %d", i);
    return buf;
}

void tern_dataset_free(tern_dataset *ds) {
    if (!ds) return;
    if (ds->fd >= 0) close(ds->fd);
    if (ds->names)
        for (int i = 0; i < ds->n; i++) free(ds->names[i]);
    free(ds->names);
    free(ds->labels);
    free(ds->path);
    free(ds);
}
