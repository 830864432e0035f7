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
    o->opt_images = 0;          /* by the number of classes: tern_q_opt_images */
    o->opt_damp = 1e-3f;
    o->opt_method = TERN_OPT_GPTQ_CD; /* measured best (docs/RESULTS.md, issue 12) */
}

/* The post-training pass's images when the user gave none: a quarter of the classes, at least 64
 * and at most 256. A 10-class CIFAR net's statistics are settled by 64 images (6 per class); a
 * 1000-class ImageNet net gains 4 points of ternary top-1 from 64 to 256 (docs/RESULTS.md, held-out
 * calibration images), at about twice the quantization time. */
int tern_q_opt_images(const tern_qopts *o, const tern_graph *g, int ncalib) {
    int n = o->opt_images;
    if (n <= 0) {
        int64_t classes = tern_value_numel_per_image(&g->values[g->output]);
        n = classes / 4 < 64 ? 64 : classes / 4 > 256 ? 256 : (int)(classes / 4);
    }
    return n < ncalib ? n : ncalib;
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

int tern_qopts_add_rule(tern_qopts *o, const char *rule) {
    int cap = (int)(sizeof o->rules / sizeof o->rules[0]);
    const char *eq = strchr(rule, '=');
    tern_layer_rule *r = &o->rules[o->nrules < cap ? o->nrules : 0];
    if (o->nrules >= cap) { tern_errorf(TERN_STATUS_INVALID_ARG, "too many per-layer rules (at most %d)", cap); return 0; }
    if (!eq || eq == rule || (size_t)(eq - rule) >= sizeof r->key) {
        tern_errorf(TERN_STATUS_INVALID_ARG, "bad layer rule '%s' (NAME_OR_INDEX=SPEC, the name shorter than %d)", rule, (int)sizeof r->key);
        return 0;
    }
    memcpy(r->key, rule, (size_t)(eq - rule));
    r->key[eq - rule] = 0;
    r->wtype = o->wtype;
    r->cluster = o->cluster;
    if (!tern_parse_wspec(eq + 1, &r->wtype, &r->cluster)) {
        tern_errorf(TERN_STATUS_INVALID_ARG, "bad layer spec '%s' (t, 4 or 8, optionally :N or :all)", eq + 1);
        return 0;
    }
    o->nrules++;
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

tern_wpolicy tern_wpolicy_resolve(int wtype, int cluster, int cing) {
    tern_wpolicy p = {.wtype = wtype};
    p.N = wtype == TERN_WTYPE_INT8 || cluster <= 0 || cluster > cing ? cing : cluster;
    p.ncl = wtype == TERN_WTYPE_INT8 ? 1 : (cing + p.N - 1) / p.N;
    p.qmax = wtype == TERN_WTYPE_TERNARY ? 1 : wtype == TERN_WTYPE_INT4 ? 7 : 127;
    return p;
}

tern_wpolicy tern_q_layer_policy(qctx *q, const low_layer *l) {
    const tern_qopts *o = q->o;
    const tern_node *n = l->node;
    int wtype = o->wtype, cluster = o->cluster;
    int groups = n->op == TERN_OP_CONV ? (int)n->a.group : 1, cin = q->qt[l->in[0]].c;
    int depthwise = groups > 1 && groups == cin;
    if (o->keep_ends_8bit && (l->in[0] == 0 || l->widx == q->nweight - 1)) wtype = TERN_WTYPE_INT8;
    if (o->depthwise_8bit && depthwise) wtype = TERN_WTYPE_INT8;
    char idx[16];
    snprintf(idx, sizeof idx, "%d", l->widx);
    for (int r = 0; r < o->nrules; r++)
        if (!strcmp(o->rules[r].key, n->name) || !strcmp(o->rules[r].key, idx)) {
            wtype = o->rules[r].wtype;
            cluster = o->rules[r].cluster;
        }
    return tern_wpolicy_resolve(wtype, cluster, cin / groups);
}
