/* tern info MODEL: the layer table of an ONNX model (or a .tern file, see cmd_info_tern). */
#include "cli.h"
#include "graph/graph.h"
#include "api/api.h"
#include <string.h>

static int64_t params_of(const tern_graph *g, const tern_node *n) {
    int64_t p = 0;
    for (int j = 1; j < n->nin; j++)
        if (n->in[j] >= 0 && g->values[n->in[j]].data && g->values[n->in[j]].dtype == TERN_DTYPE_F32)
            p += tern_value_numel(&g->values[n->in[j]]);
    return p;
}

int cmd_info(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: tern info MODEL(.onnx|.tern) [--json]\n");
            return 0;
        }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (argv[i][0] == '-' || path) { fprintf(stderr, "tern info: unexpected argument '%s'\n", argv[i]); return 2; }
        path = argv[i];
    }
    if (!path) { fprintf(stderr, "usage: tern info MODEL(.onnx|.tern) [--json]\n"); return 2; }
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".tern")) {
        tern_model *m;
        if (tern_model_load(path, NULL, &m)) return cli_fail("info");
        cli_report_model(m, path, NULL, o.json);
        tern_model_free(m);
        return 0;
    }
    tern_graph *g;
    if (tern_onnx_import(path, &g)) return cli_fail("info");
    int64_t tp = 0, tm = 0;
    char shape[128];
    if (o.json) printf("{\"model\": \"%s\", \"layers\": [", path);
    else {
        tern_value_shape_str(&g->values[g->input], shape, sizeof shape);
        printf("%s: input %s %s, %d nodes\n", path, g->values[g->input].name, shape, g->nnodes);
        char meta[256];
        tern_graph_meta_str(g, meta, sizeof meta);
        if (meta[0]) printf("preprocessing (metadata_props): %s\n", meta);
        printf("%4s  %-34s %-18s %-20s %10s %14s\n", "#", "name", "op", "output", "params", "MACs");
    }
    for (int i = 0; i < g->nnodes; i++) {
        const tern_node *n = &g->nodes[i];
        int64_t p = params_of(g, n), mac = tern_node_macs(g, n);
        tp += p;
        tm += mac;
        tern_value_shape_str(&g->values[n->out[0]], shape, sizeof shape);
        if (o.json)
            printf("%s\n  {\"index\": %d, \"name\": \"%s\", \"op\": \"%s\", \"output\": \"%s\", \"params\": %lld, \"macs\": %lld}",
                   i ? "," : "", i, n->name, tern_ops[n->op].name, shape, (long long)p, (long long)mac);
        else
            printf("%4d  %-34.34s %-18s %-20s %10lld %14lld\n", i, n->name, tern_ops[n->op].name, shape, (long long)p, (long long)mac);
    }
    if (o.json) printf("\n], \"params\": %lld, \"macs\": %lld}\n", (long long)tp, (long long)tm);
    else printf("total: %lld parameters, %lld MACs per image (%.3f GMAC)\n", (long long)tp, (long long)tm, tm / 1e9);
    tern_graph_free(g);
    return 0;
}
