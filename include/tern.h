/* tern: ternary-weight, 8-bit dynamic-fixed-point CNN inference on CPUs.
 *
 * Usage (FP32 reference path):
 *
 *     tern_graph *g;
 *     if (tern_onnx_import("resnet20.onnx", &g) != TERN_STATUS_OK) {
 *         fprintf(stderr, "%s\n", tern_last_error());
 *         return 1;
 *     }
 *     ... run with tern_fp32_run() (see src/exec) ...
 *     tern_graph_free(g);
 *
 * Every fallible call returns enum tern_status; on failure tern_last_error() says what went
 * wrong and where (file, node, layer). Free functions accept NULL.
 */
#ifndef TERN_H
#define TERN_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum tern_status {
    TERN_STATUS_OK = 0,
    TERN_STATUS_IO,           /* file missing, unreadable, or write failed */
    TERN_STATUS_FORMAT,       /* malformed or corrupt input file (ONNX, .tern, image, dataset) */
    TERN_STATUS_UNSUPPORTED,  /* valid input that tern does not handle (op, attribute, type) */
    TERN_STATUS_INVALID_ARG,  /* bad argument or option */
    TERN_STATUS_SHAPE,        /* shapes do not fit (wrong image size, bad graph shapes) */
    TERN_STATUS_NOMEM,        /* out of memory */
    TERN_STATUS_NUMERIC,      /* NaN/Inf or out-of-range numbers */
    TERN_STATUS_INTERNAL      /* a bug in tern */
};

const char *tern_status_str(enum tern_status st);
/* Message of the last failure on this thread ("" if none). */
const char *tern_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
