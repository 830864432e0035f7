/* Output files that cannot destroy data: an output path is checked before any work (it must
 * not be an input, nor an existing non-regular file such as /dev/full or a folder), and it is
 * written through a temporary file next to it that is renamed into place only when complete,
 * so a failure (disk full, killed process) leaves the old file intact and no partial file. */
#ifndef TERN_OUTFILE_H
#define TERN_OUTFILE_H
#include "core/core.h"

/* OK if `path` may be written as an output: it does not exist, or it is a regular file that is
 * not the same file (st_dev and st_ino, so links and other spellings count) as any of the
 * ninputs paths in inputs (NULL entries are skipped). `what` names the option in messages. */
enum tern_status tern_output_check(const char *path, const char *what, const char *const *inputs, int ninputs);

/* An output being written: write into f, then commit (or abort). */
typedef struct tern_outfile {
    FILE *f;
    char *path, *tmp;
} tern_outfile;
/* Checks path as tern_output_check(path, what, NULL, 0) does, creates the temporary file. */
enum tern_status tern_outfile_open(tern_outfile *o, const char *path, const char *what);
/* Flush, fsync, close and rename into place; on any error removes the temporary file and says
 * why (strerror of the failing call). Always releases o. */
enum tern_status tern_outfile_commit(tern_outfile *o);
/* Drop the temporary file, leaving any old file at path as it was. NULL-safe, idempotent. */
void tern_outfile_abort(tern_outfile *o);

#endif
