/* The integer engine: runs a tern_qmodel on batches of raw 8-bit images with integer arithmetic
 * only (this file and the kernels contain no floating-point operation; tests check the object
 * code). Buffers are planned once at creation; conv weights are packed once for the chosen
 * kernel; runs never allocate. */
#ifndef TERN_QEXEC_H
#define TERN_QEXEC_H
#include "format/qmodel.h"

typedef struct tern_qexec tern_qexec;

/* max_batch: the largest batch run() will get; isa: kernel level (tern_active_isa() normally). */
enum tern_status tern_qexec_new(const tern_qmodel *m, int max_batch, int nthreads, enum tern_isa isa, tern_qexec **out);
/* pixels: [batch][c][h][w] uint8 as the model's input spec says. logits: [batch][nclasses],
 * valid until the next run. */
enum tern_status tern_qexec_run(tern_qexec *e, const uint8_t *pixels, int batch, const int32_t **logits);
void tern_qexec_free(tern_qexec *e);

/* Per-layer time of the runs so far, in nanoseconds (integer), when profiling is on: the calling
 * thread's CPU time for a one-thread engine (robust on shared machines), else wall time. */
void tern_qexec_profile(tern_qexec *e, int on);
const int64_t *tern_qexec_layer_ns(const tern_qexec *e);
/* Bytes of tensor t after a run ([batch][h][w][c] per the model's tensor table). A tensor's
 * memory is reused once no later layer reads it, so only tensors still live at the end (the
 * input's last readers aside) are meaningful; run with keep_all set to keep every tensor. */
const uint8_t *tern_qexec_tensor(const tern_qexec *e, int t, int img);   /* image img's tensor t, NULL if not stored */
/* Give every tensor its own memory (for debugging and layer-by-layer tests); call before run. */
enum tern_status tern_qexec_keep_all(tern_qexec *e);
/* Name of the conv kernel chosen for layer i (NULL for other ops). */
const char *tern_qexec_kernel_name(const tern_qexec *e, int i);

#endif
