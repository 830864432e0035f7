/* Per-layer policy files of tern quantize (tools/layer_policy.c). */
#ifndef TERN_CLI_LAYER_POLICY_H
#define TERN_CLI_LAYER_POLICY_H
#include "quant/quantize.h"
#include "data/data.h"
#include <stdio.h>

/* Append the rules of FILE to q->rules; 0 (message printed, naming file and line) on error. */
int cli_layers_read(const char *path, tern_qopts *q);
/* Write every weight layer's resolved precision under q (atomically); 0 on error. */
int cli_layers_write(const char *path, const tern_graph *g, const tern_qopts *q, const char *why);
/* 0 (message printed) if a rule of q names no weight layer of g. */
int cli_layers_check(const tern_graph *g, const tern_qopts *q);
/* "8", "t:4", "4:all" (N <= 0: all). */
void cli_wspec_str(int wtype, int N, char *buf, size_t n);

/* --sensitivity (tools/sensitivity.c): the table or JSON on stdout; 0 (message printed) on error.
 * The split: drop_count images of ds that are not among calib_idx[0..ncalib). */
int cli_sensitivity(const tern_graph *g, const tern_qopts *q, tern_dataset *ds, const int *calib_idx, const uint8_t *calib_px,
                    int ncalib, int drop_count, int json);

#endif
