/* Status strings, thread-local error messages, allocation and file helpers. */
#include "core/core.h"
#include <errno.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[1024];

const char *tern_status_string(enum tern_status st) {
    switch (st) {
    case TERN_STATUS_OK: return "ok";
    case TERN_STATUS_IO: return "i/o error";
    case TERN_STATUS_FORMAT: return "malformed input";
    case TERN_STATUS_UNSUPPORTED: return "unsupported";
    case TERN_STATUS_INVALID_ARG: return "invalid argument";
    case TERN_STATUS_SHAPE: return "shape mismatch";
    case TERN_STATUS_NOMEM: return "out of memory";
    case TERN_STATUS_NUMERIC: return "numeric error";
    case TERN_STATUS_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *tern_status_str(enum tern_status st) { return tern_status_string(st); }

const char *tern_last_error(void) { return last_error; }

enum tern_status tern_errorf(enum tern_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

enum tern_status tern_error_prefix(enum tern_status st, const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%.500s: %.500s", prefix, old);
    return st;
}

void *tern_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) tern_errorf(TERN_STATUS_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *tern_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) tern_errorf(TERN_STATUS_NOMEM, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *tern_aligned_alloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, TERN_ALIGN_UP(n ? n : 1, 64)) != 0) {
        tern_errorf(TERN_STATUS_NOMEM, "out of memory allocating %zu aligned bytes", n);
        return NULL;
    }
    return p;
}

char *tern_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = tern_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

enum tern_status tern_read_file(const char *path, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return tern_errorf(TERN_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return tern_errorf(TERN_STATUS_IO, "%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return tern_errorf(TERN_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return tern_errorf(TERN_STATUS_IO, "%s: cannot seek (not a regular file?)", path);
    }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return tern_errorf(TERN_STATUS_IO, "%s: cannot determine size (not a regular file?)", path);
    }
    uint8_t *buf = tern_malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return TERN_STATUS_NOMEM;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return tern_errorf(TERN_STATUS_IO, "%s: read failed", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *len = (size_t)n;
    return TERN_STATUS_OK;
}

double tern_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
