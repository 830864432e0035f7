/* Write fine-tuned weights back into a copy of the source ONNX file: every float initializer
 * whose name is a constant of the graph with the same element count gets the graph's data
 * (in place, keeping raw_data or float_data as the file had it). Everything else in the file
 * (nodes, attributes, metadata) is kept as is. */
#include "onnx/onnx.h"
#include "onnx.pb-c.h"
#include <string.h>

enum tern_status tern_onnx_patch_weights(const char *src, const char *dst, const tern_graph *g, const int *values, int nvalues) {
    uint8_t *buf;
    size_t len;
    enum tern_status st = tern_read_file(src, &buf, &len);
    if (st) return st;
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    free(buf);
    if (!m || !m->graph) {
        if (m) onnx__model_proto__free_unpacked(m, NULL);
        return tern_errorf(TERN_STATUS_FORMAT, "%s: not a valid ONNX model", src);
    }
    Onnx__GraphProto *gr = m->graph;
    st = TERN_STATUS_OK;
    for (int k = 0; k < nvalues && !st; k++) {
        const tern_value *v = &g->values[values[k]];
        int64_t n = tern_value_numel(v);
        int done = 0;
        for (size_t i = 0; i < gr->n_initializer && !done; i++) {
            Onnx__TensorProto *t = gr->initializer[i];
            if (!t->name || strcmp(t->name, v->name) || t->data_type != 1) continue;
            int64_t tn = 1;
            for (size_t d = 0; d < t->n_dims; d++) tn *= t->dims[d];
            if (tn != n) break;
            if (t->has_raw_data && t->raw_data.len == (size_t)n * 4) { memcpy(t->raw_data.data, v->data, (size_t)n * 4); done = 1; }
            else if (t->n_float_data == (size_t)n) { memcpy(t->float_data, v->data, (size_t)n * 4); done = 1; }
        }
        if (!done)
            st = tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: no float initializer '%s' of %lld values to patch (was BatchNorm folded at import? --save-onnx needs a model whose conv weights are initializers)",
                             src, v->name, (long long)n);
    }
    if (!st) {
        size_t sz = onnx__model_proto__get_packed_size(m);
        uint8_t *out = tern_malloc(sz ? sz : 1);
        FILE *f = NULL;
        if (!out) st = TERN_STATUS_NOMEM;
        else {
            onnx__model_proto__pack(m, out);
            f = fopen(dst, "wb");
            if (!f || fwrite(out, 1, sz, f) != sz) st = tern_errorf(TERN_STATUS_IO, "%s: cannot write", dst);
            if (f && fclose(f) != 0 && !st) st = tern_errorf(TERN_STATUS_IO, "%s: cannot write", dst);
        }
        free(out);
    }
    onnx__model_proto__free_unpacked(m, NULL);
    return st;
}
