/* FP32 executor: walks the graph in order, allocating each activation when produced and
 * freeing it after its last reader. */
#include "graph/fp32.h"
#include <cblas.h>
#include <string.h>

void openblas_set_num_threads(int);

/* OpenBLAS threads on top of tern's own splitting of the batch, or on per-image GEMMs as small
 * as these (16 x 1024 x 144), made 2 threads 3x slower than 1 (issue 13): a batch is split over
 * tern's threads instead, every GEMM on one; only unsplit runs (one image, an observer) use
 * OpenBLAS threads. */
static int fp32_threads = 1, fp32_openblas = 0;
void tern_fp32_set_threads(int n) {
    fp32_threads = n < 1 ? 1 : n;
    openblas_set_num_threads(1);
}
void tern_fp32_set_openblas(int on) { fp32_openblas = on != 0; }
int tern_fp32_uses_openblas(void) { return fp32_openblas; }

typedef struct fp32_par {
    tern_pool *pool;
    int n;
    tern_fp32_ctx **sub;        /* [n] one context per part of the batch */
    float *out;                 /* the whole batch's output */
    size_t out_cap;             /* floats */
} fp32_par;

static void par_free(fp32_par *P) {
    if (!P) return;
    for (int i = 0; i < P->n; i++) tern_fp32_ctx_free(P->sub[i]);
    free(P->sub);
    free(P->out);
    tern_pool_free(P->pool);
    free(P);
}

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
    par_free(x->par);
    tern_pool_free(x->gemm_pool);
    free(x);
}

static enum tern_status run_one(tern_fp32_ctx *x, const float *in, int batch, const float **y,
                                int64_t *ydims, int *yndim) {
    const tern_graph *g = x->g;
    if (batch < 1) return tern_errorf(TERN_STATUS_INVALID_ARG, "batch must be >= 1");
    /* the deterministic SGEMM splits its columns over the threads (the result does not depend on it) */
    const int gt = x->gemm_single || fp32_openblas ? 1 : fp32_threads;
    if (gt > 1 && (!x->gemm_pool || tern_pool_size(x->gemm_pool) != gt)) {
        tern_pool_free(x->gemm_pool);
        if (!(x->gemm_pool = tern_pool_create(gt))) return tern_errorf(TERN_STATUS_NOMEM, "out of memory creating %d threads", gt);
    } else if (gt == 1 && x->gemm_pool) {
        tern_pool_free(x->gemm_pool);
        x->gemm_pool = NULL;
    }
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

/* ---- batch-parallel runs ---- */
typedef struct par_job {
    fp32_par *P;
    const float *in;
    size_t in_per;                          /* floats per input image */
    int batch;
    struct { enum tern_status st; const float *y; int64_t dims[TERN_MAX_DIMS]; int nd; char err[256]; } part[64];
} par_job;

static void par_part(void *arg, int i, int tid) {
    (void)tid;
    par_job *J = arg;
    const int b0 = (int)((int64_t)i * J->batch / J->P->n), b1 = (int)((int64_t)(i + 1) * J->batch / J->P->n);
    J->part[i].st = run_one(J->P->sub[i], J->in + (size_t)b0 * J->in_per, b1 - b0, &J->part[i].y, J->part[i].dims, &J->part[i].nd);
    if (J->part[i].st) snprintf(J->part[i].err, sizeof J->part[i].err, "%s", tern_last_error());
}

static enum tern_status run_par(tern_fp32_ctx *x, int n, const float *in, int batch, const float **y, int64_t *ydims, int *yndim) {
    fp32_par *P = x->par;
    if (P && P->n != n) { par_free(P); x->par = P = NULL; }
    if (!P) {
        if (!(P = tern_calloc(1, sizeof *P))) return TERN_STATUS_NOMEM;
        x->par = P;
        P->n = n;
        if (!(P->pool = tern_pool_create(n)) || !(P->sub = tern_calloc((size_t)n, sizeof *P->sub))) return TERN_STATUS_NOMEM;
        for (int i = 0; i < n; i++)
            if (!(P->sub[i] = tern_fp32_ctx_new(x->g))) return TERN_STATUS_NOMEM;
            else P->sub[i]->gemm_single = 1;
    }
    const tern_value *iv = &x->g->values[x->g->input];
    par_job *J = tern_calloc(1, sizeof *J);
    if (!J) return TERN_STATUS_NOMEM;
    J->P = P;
    J->in = in;
    J->batch = batch;
    J->in_per = 1;
    for (int d = 1; d < iv->ndim; d++) J->in_per *= (size_t)iv->dims[d];
    openblas_set_num_threads(1);
    tern_pool_run(P->pool, par_part, J, n);
    enum tern_status st = TERN_STATUS_OK;
    for (int i = 0; i < n && !st; i++)
        if (J->part[i].st) st = tern_errorf(J->part[i].st, "%s", J->part[i].err);
    size_t per = 1;
    if (!st)
        for (int d = 1; d < J->part[0].nd; d++) per *= (size_t)J->part[0].dims[d];
    if (!st && P->out_cap < per * (size_t)batch) {
        free(P->out);
        P->out_cap = 0;
        if (!(P->out = tern_malloc(sizeof(float) * per * (size_t)batch))) st = TERN_STATUS_NOMEM;
        else P->out_cap = per * (size_t)batch;
    }
    if (!st) {
        for (int i = 0; i < n; i++) {
            const int b0 = (int)((int64_t)i * batch / n), b1 = (int)((int64_t)(i + 1) * batch / n);
            memcpy(P->out + per * (size_t)b0, J->part[i].y, sizeof(float) * per * (size_t)(b1 - b0));
        }
        *y = P->out;
        *yndim = J->part[0].nd;
        memcpy(ydims, J->part[0].dims, sizeof(int64_t) * (size_t)*yndim);
        ydims[0] = batch;
        x->batch = batch;
    }
    free(J);
    return st;
}

enum tern_status tern_fp32_run(tern_fp32_ctx *x, const float *in, int batch, const float **y,
                               int64_t *ydims, int *yndim) {
    const int n = TERN_MIN(TERN_MIN(fp32_threads, batch), 64);
    if (n > 1 && !x->observe && !x->keep_all) return run_par(x, n, in, batch, y, ydims, yndim);
    openblas_set_num_threads(1);   /* measured: 2 OpenBLAS threads took ResNet-56 batch 1 from 67 to 1140 ms */
    return run_one(x, in, batch, y, ydims, yndim);
}
