/* Graph building, freeing and small queries. */
#include "graph/graph.h"
#include <string.h>

tern_graph *tern_graph_new(const char *path) {
    tern_graph *g = tern_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = tern_strdup(path ? path : "<memory>");
    g->input = g->output = -1;
    if (!g->path) {
        free(g);
        return NULL;
    }
    return g;
}

/* Make room for one more element in a growable array of n used / *cap allocated. */
static int grow(void **arr, int n, int *cap, size_t elem) {
    if (n < *cap) return 1;
    int c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, (size_t)c * elem);
    if (!p) {
        tern_errorf(TERN_STATUS_NOMEM, "out of memory growing the graph");
        return 0;
    }
    *arr = p;
    *cap = c;
    return 1;
}

int tern_graph_add_value(tern_graph *g, const char *name) {
    if (!grow((void **)&g->values, g->nvalues, &g->cap_values, sizeof *g->values)) return -1;
    tern_value *v = &g->values[g->nvalues];
    memset(v, 0, sizeof *v);
    v->dtype = TERN_DTYPE_F32;
    v->name = tern_strdup(name ? name : "");
    if (!v->name) return -1;
    return g->nvalues++;
}

int tern_graph_find_value(const tern_graph *g, const char *name) {
    for (int i = g->nvalues - 1; i >= 0; i--)
        if (strcmp(g->values[i].name, name) == 0) return i;
    return -1;
}

tern_node *tern_graph_add_node_n(tern_graph *g, const char *name, enum tern_op op, int nin) {
    if (g->nnodes >= TERN_MAX_NODES) {
        tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: more than %d nodes (TERN_MAX_NODES)", g->path, TERN_MAX_NODES);
        return NULL;
    }
    if (nin < 0 || nin > TERN_MAX_NODE_IN) {
        tern_errorf(TERN_STATUS_UNSUPPORTED, "%s: node '%s' has %d inputs (TERN_MAX_NODE_IN is %d)", g->path, name ? name : "", nin, TERN_MAX_NODE_IN);
        return NULL;
    }
    if (!grow((void **)&g->nodes, g->nnodes, &g->cap_nodes, sizeof *g->nodes)) return NULL;
    int slots = nin > TERN_MIN_IN ? nin : TERN_MIN_IN;
    char *nm = tern_strdup(name ? name : "");
    int *in = tern_malloc(sizeof(int) * (size_t)slots);
    if (!nm || !in) {
        free(nm);
        free(in);
        return NULL;
    }
    tern_node *n = &g->nodes[g->nnodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = nm;
    n->in = in;
    for (int i = 0; i < slots; i++) n->in[i] = -1;
    n->out[0] = n->out[1] = -1;
    g->nnodes++;
    return n;
}

tern_node *tern_graph_add_node(tern_graph *g, const char *name, enum tern_op op) {
    return tern_graph_add_node_n(g, name, op, TERN_MIN_IN);
}

void tern_node_clear(tern_node *n) {
    free(n->name);
    free(n->in);
    n->name = NULL;
    n->in = NULL;
}

void tern_graph_free(tern_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->nvalues; i++) {
        free(g->values[i].name);
        free(g->values[i].data);
    }
    for (int i = 0; i < g->nnodes; i++) tern_node_clear(&g->nodes[i]);
    free(g->values);
    free(g->nodes);
    free(g->path);
    free(g);
}

int64_t tern_value_numel(const tern_value *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++) n *= v->dims[i];
    return n;
}

int64_t tern_value_numel_checked(const tern_value *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++)
        if (v->dims[i] < 0 || v->dims[i] > TERN_MAX_NUMEL || (n *= v->dims[i]) > TERN_MAX_NUMEL) return -1;
    return n;
}

int64_t tern_value_numel_per_image(const tern_value *v) {
    int64_t n = 1;
    for (int i = 1; i < v->ndim; i++) n *= v->dims[i];
    return n;
}

int tern_dtype_size(int dtype) { return dtype == TERN_DTYPE_I64 ? 8 : 4; }

const char *tern_value_shape_str(const tern_value *v, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < v->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)v->dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

int tern_graph_consumers(const tern_graph *g, int v) {
    int c = 0;
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            if (g->nodes[i].in[j] == v) c++;
    if (g->output == v) c++;
    return c;
}

int64_t tern_node_macs(const tern_graph *g, const tern_node *n) {
    const tern_value *y = &g->values[n->out[0]];
    if (n->op == TERN_OP_CONV) {
        const tern_value *w = &g->values[n->in[1]];
        return tern_value_numel_per_image(y) * w->dims[1] * w->dims[2] * w->dims[3];
    }
    if (n->op == TERN_OP_GEMM || n->op == TERN_OP_MATMUL) {
        const tern_value *a = &g->values[n->in[0]];
        int64_t k = n->op == TERN_OP_GEMM && n->a.trans_a ? a->dims[0] : a->dims[a->ndim - 1];
        return tern_value_numel_per_image(y) * k;
    }
    return 0;
}
