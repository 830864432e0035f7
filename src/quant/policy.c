/* Quantizer options, the weight spec syntax ("t:4", "8") and the per-layer precision policy. */
#include "quant/internal.h"
#include <string.h>

void tern_qopts_init(tern_qopts *o) {
    memset(o, 0, sizeof *o);
    o->wtype = TERN_WTYPE_TERNARY;
    o->cluster = 4;
    o->trule = TERN_TRULE_EXACT;
    o->calib_rule = TERN_CALIB_MSE;
    o->keep_ends_8bit = 1;
    o->depthwise_8bit = 1;
    for (int c = 0; c < 3; c++) o->std[c] = 1.0f;
    o->threads = 1;
    o->opt_images = 64;
    o->opt_damp = 1e-3f;
}

int tern_parse_wspec(const char *s, int *wtype, int *cluster) {
    char buf[32];
    snprintf(buf, sizeof buf, "%s", s);
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    if (!strcmp(buf, "t") || !strcmp(buf, "2")) *wtype = TERN_WTYPE_TERNARY;
    else if (!strcmp(buf, "4")) *wtype = TERN_WTYPE_INT4;
    else if (!strcmp(buf, "8")) *wtype = TERN_WTYPE_INT8;
    else return 0;
    if (colon) {
        if (!strcmp(colon + 1, "all")) *cluster = 0;
        else {
            char *end;
            long n = strtol(colon + 1, &end, 10);
            if (*end || n < 1 || n > 65536) return 0;
            *cluster = (int)n;
        }
    }
    return 1;
}

static int is_weight_node(const tern_node *n) {
    return n->op == TERN_OP_CONV || n->op == TERN_OP_GEMM || n->op == TERN_OP_MATMUL;
}

int tern_quant_weight_layers(const tern_graph *g, int *node_idx, int max) {
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (is_weight_node(&g->nodes[i])) {
            if (k < max) node_idx[k] = i;
            k++;
        }
    return k;
}

void tern_q_layer_policy(qctx *q, const low_layer *l, int nweight, int *wtype, int *cluster) {
    const tern_qopts *o = q->o;
    const tern_node *n = l->node;
    *wtype = o->wtype;
    *cluster = o->cluster;
    int depthwise = n->op == TERN_OP_CONV && n->a.group > 1 && n->a.group == q->qt[l->in[0]].c;
    if (o->keep_ends_8bit && (l->in[0] == 0 || l->widx == nweight - 1)) *wtype = TERN_WTYPE_INT8;
    if (o->depthwise_8bit && depthwise) *wtype = TERN_WTYPE_INT8;
    char idx[16];
    snprintf(idx, sizeof idx, "%d", l->widx);
    for (int r = 0; r < o->nrules; r++)
        if (!strcmp(o->rules[r].key, n->name) || !strcmp(o->rules[r].key, idx)) {
            *wtype = o->rules[r].wtype;
            *cluster = o->rules[r].cluster;
        }
}

/* Float weights [cout][cing*kh*kw] and bias [cout] of a weight node (Gemm/MatMul as convs
 * over the input's c x h x w, in the NCHW flatten order, which is OIHW). */
