/* libFuzzer target for the ONNX importer: any bytes must give either a graph that the rest of
 * tern can rely on, or a clean error with a message naming the input, never a crash, an
 * out-of-bounds access, UB, a leak or a huge allocation. The path covered is the whole of
 * tern_onnx_import: protobuf parse, validation, graph building, shape inference with constant
 * folding, BatchNorm folding, Identity removal, pruning and the finiteness check; then the
 * report queries (MACs, shapes) and, for small graphs, one FP32 run on a zero image. */
#include "graph/fp32.h"
#include <string.h>

#define NAME "fuzz.onnx"
#define RUN_MAX_MACS 2000000        /* FP32-run graphs up to this many MACs per image */
#define RUN_MAX_FLOATS 1000000      /* ... and this many activation floats in all */

static void check_graph(const tern_graph *g) {
    if (g->input < 0 || g->output < 0 || g->input >= g->nvalues || g->output >= g->nvalues) __builtin_trap();
    int64_t macs = 0, floats = 0;
    char buf[256];
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *n = &g->nodes[i];
        int64_t m = tern_node_macs(g, n);
        if (m < 0 || m > TERN_MAX_MACS) __builtin_trap();
        macs += m;
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] < -1 || n->in[j] >= g->nvalues) __builtin_trap();
        for (int j = 0; j < n->nout; j++) {
            if (n->out[j] < -1 || n->out[j] >= g->nvalues) __builtin_trap();
            if (n->out[j] < 0) continue;
            const tern_value *v = &g->values[n->out[j]];
            int64_t e = tern_value_numel_checked(v);
            if (!v->shape_known || e < 0) __builtin_trap();
            floats += e;
            tern_value_shape_str(v, buf, sizeof buf);
        }
    }
    if (tern_value_numel_checked(&g->values[g->input]) < 0) __builtin_trap();
    if (macs > RUN_MAX_MACS || floats > RUN_MAX_FLOATS) return;
    tern_fp32_ctx *x = tern_fp32_ctx_new(g);
    float *in = calloc((size_t)tern_value_numel(&g->values[g->input]) + 1, sizeof(float));
    if (x && in) {
        const float *y;
        int64_t yd[TERN_MAX_DIMS];
        int yn;
        tern_fp32_run(x, in, 1, &y, yd, &yn);
    }
    free(in);
    tern_fp32_ctx_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tern_graph *g = NULL;
    enum tern_status st = tern_onnx_import_mem(data, size, NAME, &g);
    if (st == TERN_STATUS_OK) {
        if (!g) __builtin_trap();
        check_graph(g);
    } else if (g || !strstr(tern_last_error(), NAME)) {
        __builtin_trap(); /* a failure leaves no graph and says where */
    }
    tern_graph_free(g);
    return 0;
}
