/* Safe output files: see outfile.h. */
#include "core/outfile.h"
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum tern_status tern_output_check(const char *path, const char *what, const char *const *inputs, int ninputs) {
    if (!path || !*path) return tern_errorf(TERN_STATUS_INVALID_ARG, "%s: empty output path", what);
    struct stat so;
    if (stat(path, &so) != 0) {
        if (errno == ENOENT) return TERN_STATUS_OK; /* a new file (a missing folder fails when it is created) */
        return tern_errorf(TERN_STATUS_IO, "%s %s: cannot check the output path: %s", what, path, strerror(errno));
    }
    if (!S_ISREG(so.st_mode))
        return tern_errorf(TERN_STATUS_INVALID_ARG, "%s %s: exists and is not a regular file (%s); refusing to replace it",
                           what, path, S_ISDIR(so.st_mode) ? "a folder" : S_ISCHR(so.st_mode) || S_ISBLK(so.st_mode) ? "a device" : "a pipe, socket or other special file");
    for (int i = 0; i < ninputs; i++) {
        struct stat si;
        if (!inputs[i] || stat(inputs[i], &si) != 0) continue;
        if (si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            return tern_errorf(TERN_STATUS_INVALID_ARG, "%s %s: is the same file as the input %s; refusing to overwrite an input", what, path, inputs[i]);
    }
    return TERN_STATUS_OK;
}

enum tern_status tern_outfile_open(tern_outfile *o, const char *path, const char *what) {
    memset(o, 0, sizeof *o);
    enum tern_status st = tern_output_check(path, what, NULL, 0);
    if (st) return st;
    size_t n = strlen(path);
    o->path = tern_strdup(path);
    o->tmp = tern_malloc(n + 16);
    if (!o->path || !o->tmp) {
        tern_outfile_abort(o);
        return TERN_STATUS_NOMEM;
    }
    memcpy(o->tmp, path, n);
    memcpy(o->tmp + n, ".tmp-XXXXXX", 12); /* same folder: rename() is atomic, never crosses filesystems */
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        st = tern_errorf(TERN_STATUS_IO, "%s %s: cannot create a file there: %s", what, path, strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        tern_outfile_abort(o);
        return st;
    }
    if (fchmod(fd, 0644) != 0 || !(o->f = fdopen(fd, "w"))) {
        st = tern_errorf(TERN_STATUS_IO, "%s %s: cannot open the temporary file: %s", what, path, strerror(errno));
        close(fd);
        tern_outfile_abort(o);
        return st;
    }
    return TERN_STATUS_OK;
}

enum tern_status tern_outfile_commit(tern_outfile *o) {
    const char *fail = NULL;
    int err = 0;
    if (!o->f) fail = "not open";
    else if (fflush(o->f) != 0 || ferror(o->f)) { fail = "write failed"; err = errno; }
    else if (fsync(fileno(o->f)) != 0) { fail = "fsync failed"; err = errno; }
    if (o->f && fclose(o->f) != 0 && !fail) { fail = "close failed"; err = errno; }
    o->f = NULL;
    if (!fail && rename(o->tmp, o->path) != 0) { fail = "cannot rename the temporary file into place"; err = errno; }
    enum tern_status st = TERN_STATUS_OK;
    if (fail) st = tern_errorf(TERN_STATUS_IO, "%s: %s: %s", o->path ? o->path : "?", fail, err ? strerror(err) : "unknown error");
    else { free(o->tmp); o->tmp = NULL; }
    tern_outfile_abort(o);
    return st;
}

void tern_outfile_abort(tern_outfile *o) {
    if (!o) return;
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}
