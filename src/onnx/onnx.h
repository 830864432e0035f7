/* Writing ONNX files (the importer, tern_onnx_import, is declared in graph/graph.h). */
#ifndef TERN_ONNX_H
#define TERN_ONNX_H
#include "graph/graph.h"

/* Copy the ONNX file src to dst with the float initializers named like the graph values
 * `values` replaced by their current data in g (src/onnx/patch.c). Fails, writing nothing, if
 * one has no initializer of that name and size (e.g. BatchNorm folded at import). */
enum tern_status tern_onnx_patch_weights(const char *src, const char *dst, const tern_graph *g, const int *values, int nvalues);

#endif
