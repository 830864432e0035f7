/* FP32 executor: walks the graph in order, allocating each activation when produced and
 * freeing it after its last reader. */
#include "graph/fp32.h"
#include <cblas.h>
#include <string.h>

void openblas_set_num_threads(int);

void tern_fp32_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

tern_fp32_ctx *tern_fp32_ctx_new(const tern_graph *g) {
    tern_fp32_ctx *x = tern_calloc(1, sizeof *x);
    if (!x) return NULL;
    x->g = g;
    x->buf = tern_calloc((size_t)g->nvalues, sizeof *x->buf);
    x->dims = tern_calloc((size_t)g->nvalues, sizeof *x->dims);
    if (!x->buf || !x->dims) {
        tern_fp32_ctx_free(x);
        return NULL;
    }
    return x;
}

static int is_activation(const tern_fp32_ctx *x, int v) { return v >= 0 && !x->g->values[v].data; }

/* Activation buffers are recycled through a small pool kept across runs, so steady-state runs
 * neither allocate nor fault pages in. */
typedef struct pool_buf { float *p; size_t n; } pool_buf;

static float *pool_get(tern_fp32_ctx *x, size_t n) {
    pool_buf *pb = x->pool;
    int best = -1;
    for (int i = 0; i < x->npool; i++)
        if (pb[i].n >= n && (best < 0 || pb[i].n < pb[best].n)) best = i;
    if (best >= 0) {
        float *p = pb[best].p;
        pb[best] = pb[--x->npool];
        return p;
    }
    float *p = malloc(sizeof(float) * (n ? n : 1) + 64);
    if (p) {
        /* remember capacity in a header word before the data */
        *(size_t *)p = n;
        p += 16;
    }
    return p;
}

static void pool_put(tern_fp32_ctx *x, float *p) {
    if (!p) return;
    if (x->npool == x->cap_pool) {
        int cap = x->cap_pool ? 2 * x->cap_pool : 32;
        pool_buf *nb = realloc(x->pool, sizeof(pool_buf) * (size_t)cap);
        if (!nb) { free(p - 16); return; }
        x->pool = nb;
        x->cap_pool = cap;
    }
    ((pool_buf *)x->pool)[x->npool++] = (pool_buf){p, *(size_t *)(p - 16)};
}

static void release(tern_fp32_ctx *x) {
    for (int v = 0; v < x->g->nvalues; v++) {
        if (is_activation(x, v) && v != x->g->input) pool_put(x, x->buf[v]);
        x->buf[v] = NULL;
    }
}

void tern_fp32_ctx_free(tern_fp32_ctx *x) {
    if (!x) return;
    if (x->buf) release(x);
    for (int i = 0; i < x->npool; i++) free(((pool_buf *)x->pool)[i].p - 16);
    free(x->pool);
    free(x->buf);
    free(x->dims);
    free(x->col);
    free(x);
}

enum tern_status tern_fp32_run(tern_fp32_ctx *x, const float *in, int batch, const float **y,
                               int64_t *ydims, int *yndim) {
    const tern_graph *g = x->g;
    if (batch < 1) return tern_errorf(TERN_STATUS_INVALID_ARG, "batch must be >= 1");
    release(x);
    int *last = tern_malloc(sizeof(int) * (size_t)g->nvalues);
    if (!last) return TERN_STATUS_NOMEM;
    for (int v = 0; v < g->nvalues; v++) last[v] = -1;
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            if (g->nodes[i].in[j] >= 0) last[g->nodes[i].in[j]] = i;
    for (int v = 0; v < g->nvalues; v++) {
        const tern_value *val = &g->values[v];
        memcpy(x->dims[v], val->dims, sizeof x->dims[v]);
        if (val->data) x->buf[v] = val->data;
        else if (val->ndim > 0) x->dims[v][0] = batch;
    }
    x->buf[g->input] = (float *)in;
    x->batch = batch;
    enum tern_status st = TERN_STATUS_OK;
    for (int i = 0; i < g->nnodes && !st; i++) {
        const tern_node *n = &g->nodes[i];
        for (int j = 0; j < n->nout; j++) {
            int o = n->out[j];
            if (o < 0 || g->values[o].data) continue;
            int64_t cnt = 1;
            for (int d = 0; d < g->values[o].ndim; d++) cnt *= x->dims[o][d];
            x->buf[o] = pool_get(x, (size_t)cnt);
            if (!x->buf[o]) st = tern_errorf(TERN_STATUS_NOMEM, "out of memory for %s (%lld floats)", g->values[o].name, (long long)cnt);
        }
        if (st) break;
        tern_ops[n->op].run_fp32(x, n);
        if (x->observe) x->observe(x->observe_arg, n, x->buf[n->out[0]], x->dims[n->out[0]], g->values[n->out[0]].ndim);
        if (!x->keep_all)
            for (int j = 0; j < n->nin; j++) {
                int v = n->in[j];
                if (v >= 0 && last[v] == i && is_activation(x, v) && v != g->input && v != g->output) {
                    pool_put(x, x->buf[v]);
                    x->buf[v] = NULL;
                }
            }
    }
    free(last);
    if (st) return st;
    *y = x->buf[g->output];
    *yndim = g->values[g->output].ndim;
    memcpy(ydims, x->dims[g->output], sizeof(int64_t) * (size_t)*yndim);
    return TERN_STATUS_OK;
}
