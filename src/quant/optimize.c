/* Post-training optimisation of the weights.
 *
 * For each weight layer in graph order, with x the layer's input in the network whose earlier
 * layers already carry their quantized weights (an FP32 simulation: weights s*q, float
 * activations) and y the FP32 network's pre-activation output of the same layer on the same
 * image, we minimise per output channel o
 *     E[(y_o - b_o - v_o . x)^2] + damp,      v_o = dequantized weights (scale_g * code_k)
 * a quadratic v^T H v - 2 v^T t with H = E[x x^T], t = E[x (y_o - b_o)]. With bias correction
 * the statistics are centred (covariances) and b_o = E[y_o] - v_o . E[x], the optimal bias for
 * the chosen v_o: this removes the mean output shift caused by quantization, including what the
 * earlier layers' quantization passed on. Scales: for fixed codes the objective is a quadratic in
 * the cluster scales, minimised exactly under a >= 0 (projected coordinate descent). Codes:
 * coordinate descent over single weights (ternary: any other value in {-1,0,1}; n-bit: +-1 steps),
 * each accepted only if it lowers the objective, alternating with the scale refit (--opt-method
 * cd); or GPTQ error feedback (src/quant/gptq.c: each rounding error pushed onto the weights not
 * yet quantized through the Cholesky factor of H^-1) followed by the same refit (gptq), optionally
 * then the coordinate descent (gptq+cd).
 *
 * The pass runs the network once (see "the layer-by-layer runner" below): cost linear in depth. */

#include "quant/internal.h"
#include "graph/fp32.h"
#include "quant/gptq.h"
#include <math.h>
#include <string.h>

#define OPT_MAX_ROWS 65536      /* default of opt_rows: positions sampled per layer (patches), spread over the images */

typedef struct {
    int K, cout;
    int64_t n;                  /* rows accumulated */
    double *sx, *sy, *syy;      /* [K], [cout], [cout] */
    double *gxx;                /* [K][K] */
    double *gxy;                /* [K][cout] */
} opt_stats;

/* Output error of channel oc with weights v[K] and the best bias: Var(y - v.x), from the raw
 * sums (for the --verbose report). */
static double row_err(const opt_stats *s, int oc, const float *v, double *var_y) {
    int K = s->K;
    double inv = 1.0 / (double)s->n, my = s->sy[oc] * inv, e = s->syy[oc] * inv - my * my;
    *var_y = e;
    for (int i = 0; i < K; i++) {
        if (v[i] == 0) continue;
        double mi = s->sx[i] * inv, hv = 0;
        for (int j = 0; j < K; j++) {
            if (v[j] == 0) continue;
            double g = i <= j ? s->gxx[(size_t)i * K + j] : s->gxx[(size_t)j * K + i];
            hv += (g * inv - mi * s->sx[j] * inv) * v[j];
        }
        e += v[i] * hv - 2 * v[i] * (s->gxy[(size_t)i * s->cout + oc] * inv - mi * my);
    }
    return e;
}

/* Optimise one output channel: codes c[K] and scales a[ncl] in place; H [K][K] (full), t [K]. */
static void opt_row(const double *H, const double *t, int K, int khw, int N, int ncl, int qmax, int ternary,
                    int do_scales, int do_round, int8_t *c, float *a, double *r, double *M, double *rg,
                    int *nzi, double *nza, double *nzc) {
    int per = ncl == 1 ? K : N * khw; /* weights per cluster */
    for (int round = 0; round < (do_round ? 4 : 1); round++) {
        if (do_scales) { /* exact least squares for the scales of the fixed codes, a >= 0 */
            tern_gptq_normal_eq(H, t, K, per, c, M, rg);
            for (int it = 0; it < 100; it++) {
                double change = 0;
                for (int g = 0; g < ncl; g++) {
                    double d = M[(size_t)g * ncl + g];
                    if (!(d > 0)) { a[g] = 0; continue; }
                    double num = rg[g];
                    for (int h = 0; h < ncl; h++)
                        if (h != g) num -= M[(size_t)g * ncl + h] * a[h];
                    double v = num / d;
                    if (v < 0) v = 0;
                    change += fabs(v - a[g]);
                    a[g] = (float)v;
                }
                if (change < 1e-9) break;
            }
        }
        if (!do_round || round == 3) break;
        /* r = H v - t: each r_i summed over the non-zero codes in ascending k, as
         * acc += h_ik * a_g * c_k; four rows' sums side by side (independent chains) */
        int nnz = 0;
        for (int k0 = 0, g = 0; k0 < K; k0 += per, g++)
            for (int k = k0; k < K && k < k0 + per; k++)
                if (c[k]) { nzi[nnz] = k; nza[nnz] = a[g]; nzc[nnz++] = c[k]; }
        int i = 0;
        for (; i + 4 <= K; i += 4) {
            const double *h0 = H + (size_t)i * K, *h1 = h0 + K, *h2 = h1 + K, *h3 = h2 + K;
            double s0 = -t[i], s1 = -t[i + 1], s2 = -t[i + 2], s3 = -t[i + 3];
            for (int m = 0; m < nnz; m++) {
                int k = nzi[m];
                double am = nza[m], cm = nzc[m];
                s0 += h0[k] * am * cm; s1 += h1[k] * am * cm; s2 += h2[k] * am * cm; s3 += h3[k] * am * cm;
            }
            r[i] = s0; r[i + 1] = s1; r[i + 2] = s2; r[i + 3] = s3;
        }
        for (; i < K; i++) {
            double acc = -t[i];
            const double *h = H + (size_t)i * K;
            for (int m = 0; m < nnz; m++) acc += h[nzi[m]] * nza[m] * nzc[m];
            r[i] = acc;
        }
        int flips = 0;
        for (int sweep = 0; sweep < 4; sweep++) {
            int fl = 0;
            for (int k = 0, g = 0, kg = 0; k < K; k++) {
                if (kg == per) { g++; kg = 0; }
                kg++;
                double ak = a[g];
                if (!(ak > 0)) continue;
                double hkk = H[(size_t)k * K + k], best = -1e-12 * ak * ak * hkk;
                int bc = c[k];
                for (int cand = c[k] - (ternary ? 2 : 1); cand <= c[k] + (ternary ? 2 : 1); cand++) {
                    if (cand == c[k] || cand < -qmax || cand > qmax) continue;
                    double d = ak * (cand - c[k]), df = 2 * d * r[k] + d * d * hkk;
                    if (df < best) { best = df; bc = cand; }
                }
                if (bc != c[k]) {
                    double d = ak * (bc - c[k]);
                    const double *h = H + (size_t)k * K;
                    for (int i = 0; i < K; i++) r[i] += d * h[i];
                    c[k] = (int8_t)bc;
                    fl++;
                }
            }
            flips += fl;
            if (!fl) break;
        }
        if (!flips) break;
    }
}

/* Write dequantized weights (folded domain) back into the simulation graph's copies, in the
 * layout of the node's own initializers (unfolding the first layer's input normalisation). */
static enum tern_status sim_store(qctx *q, tern_graph *gs, const low_layer *l, const float *wq_f, const float *b_f,
                                  int cout, int K, int khw, int **owned_n, float ***owned, int *nowned) {
    const tern_graph *g = q->g;
    const tern_node *n = l->node;
    const tern_qopts *o = q->o;
    float *w = tern_malloc(sizeof(float) * (size_t)cout * K), *b = tern_malloc(sizeof(float) * (size_t)cout);
    if (!w || !b) { free(w); free(b); return TERN_STATUS_NOMEM; }
    memcpy(w, wq_f, sizeof(float) * (size_t)cout * K);
    memcpy(b, b_f, sizeof(float) * (size_t)cout);
    if (l->in[0] == 0) { /* engine: y = sum w_f p + b_f with p = 255 (x std + mean) */
        int cing = K / khw;
        for (int oc = 0; oc < cout; oc++)
            for (int k = 0; k < K; k++) {
                int ci = k / khw;
                float wf = w[(size_t)oc * K + k];
                w[(size_t)oc * K + k] = wf * 255.0f * o->std[ci % 3];
                b[oc] += wf * 255.0f * o->mean[ci % 3];
            }
        (void)cing;
    }
    int wv = n->in[1], bv = n->nin > 2 ? n->in[2] : -1;
    float *dst = tern_malloc(sizeof(float) * (size_t)cout * K);
    if (!dst) { free(w); free(b); return TERN_STATUS_NOMEM; }
    float alpha = n->op == TERN_OP_GEMM ? n->a.alpha : 1.0f, beta = n->op == TERN_OP_GEMM ? n->a.beta : 1.0f;
    if (n->op == TERN_OP_CONV || (n->op == TERN_OP_GEMM && n->a.trans_b))
        for (size_t i = 0; i < (size_t)cout * K; i++) dst[i] = w[i] / alpha;
    else
        for (int oc = 0; oc < cout; oc++)
            for (int k = 0; k < K; k++) dst[(size_t)k * cout + oc] = w[(size_t)oc * K + k] / alpha;
    (*owned)[*nowned] = dst;
    (*owned_n)[(*nowned)++] = wv;
    gs->values[wv].data = dst;
    if (bv >= 0 && n->op != TERN_OP_MATMUL && tern_value_numel(&g->values[bv]) == cout && beta != 0) {
        float *bd = tern_malloc(sizeof(float) * (size_t)cout);
        if (!bd) { free(w); free(b); return TERN_STATUS_NOMEM; }
        for (int oc = 0; oc < cout; oc++) bd[oc] = b[oc] / beta;
        (*owned)[*nowned] = bd;
        (*owned_n)[(*nowned)++] = bv;
        gs->values[bv].data = bd;
    }
    free(w);
    free(b);
    return TERN_STATUS_OK;
}

/* ---------------- the layer-by-layer runner ----------------
 *
 * The pass walks the graph once. Two copies of the network run side by side on the optimisation
 * images: the FP32 network (targets) and the simulation (earlier layers already quantized). Each
 * keeps, per batch of images, the activations that cross its current cut (values produced before
 * the cut and read at or after it: for a chain one tensor, for a residual block two); advancing a
 * cut runs only the nodes between the old and the new cut, so the cost is linear in the depth
 * (before, every layer re-ran both networks from the input: quadratic). The memory is the cut's
 * activations for the optimisation images, twice; the statistics are accumulated per layer. */

typedef struct {
    const tern_graph *g;        /* the network this copy runs (g, or the simulation's values) */
    const int *last;            /* [nvalues] last node reading the value, -1 if none */
    int pos;                    /* nodes [0, pos) have run */
    int nbatch, B, nimg;
    float **live;               /* [nbatch][nvalues] cut activations (NULL: not crossing the cut) */
    const signed char *grid;    /* [nvalues] or NULL: values rounded to the 8-bit DFP grid as produced */
    const int *grid_exp;        /* [nvalues] their exponents */
} cut_state;

static size_t per_image(const tern_value *v) {
    size_t n = 1;
    for (int d = 1; d < v->ndim; d++) n *= (size_t)v->dims[d];
    return n;
}

/* --opt-actq: a node's output that is a lowered integer tensor is rounded in place, as the engine
 * stores it: m = floor(y 2^f + 1/2) (the engine's rounding shift rounds halves up), clamped to
 * 0..255 (grid 1) or -128..127 (grid 2), y = m 2^-f. The scaling by 2^f is exact in double. */
typedef struct { const signed char *grid; const int *exp; } actq_arg;

static void actq_observe(void *arg, const tern_node *n, const float *y, const int64_t *dims, int ndim) {
    const actq_arg *A = arg;
    int v = n->out[0];
    if (v < 0 || !A->grid[v]) return;
    int64_t cnt = 1;
    for (int d = 0; d < ndim; d++) cnt *= dims[d];
    const double sc = ldexp(1.0, A->exp[v]), inv = ldexp(1.0, -A->exp[v]);
    const double lo = A->grid[v] == 2 ? -128 : 0, hi = A->grid[v] == 2 ? 127 : 255;
    float *w = (float *)y; /* the executor's own buffer of this output */
    for (int64_t i = 0; i < cnt; i++) {
        double m = floor((double)w[i] * sc + 0.5);
        w[i] = (float)((m < lo ? lo : m > hi ? hi : m) * inv);
    }
}

/* The grid of every graph value that defines a lowered (non-wide) tensor: the exponent the build
 * gives it (shared exponents resolved, average pools capped as in tern_q_build). */
static enum tern_status actq_grid(const qctx *q, signed char *grid, int *gexp) {
    const tern_graph *g = q->g;
    int *e = tern_malloc(sizeof(int) * (size_t)(q->nqt + 1));
    if (!e) return TERN_STATUS_NOMEM;
    for (int t = 0; t < q->nqt; t++) e[t] = q->qt[t].exp;
    for (int i = 0; i < q->nll; i++) {
        const low_layer *l = &q->ll[i];
        if (q->qt[l->out].same_as >= 0) e[l->out] = e[q->qt[l->out].same_as];
        if ((l->op == TERN_QOP_AVGPOOL || l->op == TERN_QOP_GLOBALAVGPOOL) && !q->qt[l->out].wide)
            e[l->out] = tern_q_mean_exp(l->op, q->qt[l->in[0]].h, q->qt[l->in[0]].w, e[l->in[0]], e[l->out], 0);
    }
    for (int v = 0; v < g->nvalues; v++) grid[v] = 0, gexp[v] = 0;
    for (int t = 1; t < q->nqt; t++) {
        const qt_info *qt = &q->qt[t];
        if (qt->wide || q->vmap[qt->value] != t) continue;
        grid[qt->value] = qt->is_signed ? 2 : 1;
        gexp[qt->value] = e[t];
    }
    free(e);
    return TERN_STATUS_OK;
}

/* Called after each batch of an advance, with the executor holding every value of the segment. */
typedef enum tern_status (*cut_cb)(void *arg, int batch, int nb, const tern_fp32_ctx *x);

/* Run nodes [pos, pos2) on every batch. commit: the cut moves to pos2 (values crossing it are
 * kept, the others freed); otherwise the state is left as it was (cb reads the results). */
static enum tern_status cut_advance(cut_state *cs, int pos2, int commit, cut_cb cb, void *arg) {
    const tern_graph *g = cs->g;
    if (pos2 == cs->pos && commit) return TERN_STATUS_OK;
    tern_graph seg = *g;
    seg.values = tern_malloc(sizeof(tern_value) * (size_t)g->nvalues);
    if (!seg.values) return TERN_STATUS_NOMEM;
    memcpy(seg.values, g->values, sizeof(tern_value) * (size_t)g->nvalues);
    seg.nodes = g->nodes + cs->pos;
    seg.nnodes = pos2 - cs->pos;
    int v0 = -1;
    for (int v = 0; v < g->nvalues; v++)
        if (cs->live[v]) { v0 = v; break; }
    if (v0 < 0) { free(seg.values); return tern_errorf(TERN_STATUS_INTERNAL, "optimize: nothing crosses the cut at node %d", cs->pos); }
    seg.input = seg.output = v0;
    tern_fp32_ctx *x = tern_fp32_ctx_new(&seg);
    enum tern_status st = x ? TERN_STATUS_OK : TERN_STATUS_NOMEM;
    actq_arg A = {cs->grid, cs->grid_exp};
    if (x) x->keep_all = 1;
    if (x && cs->grid) { x->observe = actq_observe; x->observe_arg = &A; }
    for (int b = 0; b < cs->nbatch && !st; b++) {
        float **L = cs->live + (size_t)b * g->nvalues;
        int nb = cs->nimg - b * cs->B < cs->B ? cs->nimg - b * cs->B : cs->B;
        for (int v = 0; v < g->nvalues; v++)
            if (L[v]) { seg.values[v].data = L[v]; seg.values[v].dims[0] = nb; }
        const float *y;
        int64_t yd[TERN_MAX_DIMS];
        int ynd;
        if ((st = tern_fp32_run(x, L[v0], nb, &y, yd, &ynd))) break;
        if (cb && (st = cb(arg, b, nb, x))) break;
        if (!commit) continue;
        for (int i = cs->pos; i < pos2 && !st; i++)
            for (int j = 0; j < g->nodes[i].nout; j++) {
                int v = g->nodes[i].out[j];
                if (v < 0 || g->values[v].data || cs->last[v] < pos2) continue;
                size_t n = per_image(&g->values[v]) * (size_t)nb;
                if (!(L[v] = tern_malloc(sizeof(float) * n))) { st = TERN_STATUS_NOMEM; break; }
                memcpy(L[v], x->buf[v], sizeof(float) * n);
            }
        for (int v = 0; v < g->nvalues && !st; v++) /* the new ones all cross pos2 */
            if (L[v] && cs->last[v] < pos2) { free(L[v]); L[v] = NULL; }
    }
    tern_fp32_ctx_free(x);
    free(seg.values);
    if (!st && commit) cs->pos = pos2;
    return st;
}

static void cut_free(cut_state *cs) {
    if (!cs->live) return;
    for (size_t i = 0; i < (size_t)cs->nbatch * cs->g->nvalues; i++) free(cs->live[i]);
    free(cs->live);
    cs->live = NULL;
}

/* ---------------- statistics ----------------
 * Plain C in double precision with a fixed summation order: the same bytes on every CPU and
 * thread count (OpenBLAS picks its kernels, and so its rounding, per CPU). Products of two floats
 * are exact in double. For each input position i, the rows where x_i != 0 (ReLU inputs are half
 * zeros) are taken four at a time, ((p0 + p1) + (p2 + p3)) added to the running sum: an order
 * fixed by the data alone. Because every product of two floats is exact in double, a fused
 * multiply-add rounds exactly as a multiply then add: the AVX2 / AVX-512 clones of these two loops
 * (picked by the loader for the CPU) give the same bits as the SSE2 baseline. */
#define TERN_STATS_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3")))
TERN_STATS_CLONES static void axpy4(double *restrict g, const double *restrict r0, const double *restrict r1, const double *restrict r2,
                  const double *restrict r3, double x0, double x1, double x2, double x3, int n) {
    for (int j = 0; j < n; j++) g[j] += (x0 * r0[j] + x1 * r1[j]) + (x2 * r2[j] + x3 * r3[j]);
}
TERN_STATS_CLONES static void axpy1(double *restrict g, const double *restrict r0, double x0, int n) {
    for (int j = 0; j < n; j++) g[j] += x0 * r0[j];
}

TERN_STATS_CLONES static void to_double(double *restrict d, const float *restrict f, size_t n) {
    for (size_t j = 0; j < n; j++) d[j] = f[j];
}
TERN_STATS_CLONES static void sum_rows(double *restrict acc, const float *restrict x, int n) {
    for (int j = 0; j < n; j++) acc[j] += x[j];
}
TERN_STATS_CLONES static void sum_rows2(double *restrict acc, double *restrict acc2, const float *restrict y, int n) {
    for (int j = 0; j < n; j++) {
        acc[j] += y[j];
        acc2[j] += (double)y[j] * y[j];
    }
}

static void stats_add(opt_stats *s, const float *X, const float *Y, int rows) {
    int K = s->K, C = s->cout;
    for (int r = 0; r < rows; r++) { /* each sum over the rows in order, the positions side by side */
        sum_rows(s->sx, X + (size_t)r * K, K);
        sum_rows2(s->sy, s->syy, Y + (size_t)r * C, C);
    }
    enum { RB = 64 };
    double *xd = tern_malloc(sizeof(double) * (size_t)RB * K), *yd = tern_malloc(sizeof(double) * (size_t)RB * C);
    if (!xd || !yd) { free(xd); free(yd); s->n = -1; return; }
    for (int r0 = 0; r0 < rows; r0 += RB) {
        int rb = rows - r0 < RB ? rows - r0 : RB;
        to_double(xd, X + (size_t)r0 * K, (size_t)rb * K);
        to_double(yd, Y + (size_t)r0 * C, (size_t)rb * C);
        for (int i = 0; i < K; i++) {
            double *gi = s->gxx + (size_t)i * K + i, *ti = s->gxy + (size_t)i * C;
            int nz[RB], m = 0;
            for (int r = 0; r < rb; r++) { /* the rows with x_i != 0, in order (branch-free) */
                nz[m] = r;
                m += xd[(size_t)r * K + i] != 0;
            }
            int k = 0;
            for (; k + 4 <= m; k += 4) {
                const double *a = xd + (size_t)nz[k] * K, *b = xd + (size_t)nz[k + 1] * K, *c = xd + (size_t)nz[k + 2] * K, *d = xd + (size_t)nz[k + 3] * K;
                axpy4(gi, a + i, b + i, c + i, d + i, a[i], b[i], c[i], d[i], K - i);
                axpy4(ti, yd + (size_t)nz[k] * C, yd + (size_t)nz[k + 1] * C, yd + (size_t)nz[k + 2] * C, yd + (size_t)nz[k + 3] * C,
                      a[i], b[i], c[i], d[i], C);
            }
            for (; k < m; k++) {
                const double *a = xd + (size_t)nz[k] * K;
                axpy1(gi, a + i, a[i], K - i);
                axpy1(ti, yd + (size_t)nz[k] * C, a[i], C);
            }
        }
    }
    s->n += rows;
    free(xd);
    free(yd);
}

/* One layer's row gathering: im2col of the simulation's input patches, the FP32 outputs. */
typedef struct {
    qctx *q;
    const low_layer *l;
    const cut_state *sim;
    opt_stats *S;
    float *X, *Y;
    int stride, B;
} gather;

static enum tern_status gather_cb(void *arg, int batch, int nb, const tern_fp32_ctx *x) {
    gather *G = arg;
    const low_layer *l = G->l;
    const tern_node *n = l->node;
    const tern_qopts *o = G->q->o;
    const qt_info *xt = &G->q->qt[l->in[0]], *yt = &G->q->qt[l->out];
    const float *xs = G->sim->live[(size_t)batch * G->sim->g->nvalues + n->in[0]], *yf = x->buf[n->out[0]];
    if (!xs || !yf) return tern_errorf(TERN_STATUS_INTERNAL, "optimize: layer '%s': input or output missing at the cut", n->name);
    int kh = n->op == TERN_OP_CONV ? (int)n->a.kernel[0] : xt->h, kw = n->op == TERN_OP_CONV ? (int)n->a.kernel[1] : xt->w;
    int cing = xt->c, K = cing * kh * kw, cout = yt->c, ow = yt->w, npos = yt->h * yt->w, ih = xt->h, iw = xt->w;
    int sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0;
    if (n->op == TERN_OP_CONV) {
        sh = (int)n->a.strides[0]; sw = (int)n->a.strides[1];
        dh = (int)n->a.dilations[0]; dw = (int)n->a.dilations[1];
        pt = (int)n->a.pads[0]; pl = (int)n->a.pads[1];
    }
    int rows = 0, s0 = batch * G->B, first = l->in[0] == 0;
    for (int i = 0; i < nb; i++) {
        const float *xi = xs + (size_t)i * cing * ih * iw, *yi = yf + (size_t)i * cout * npos;
        for (int p = (s0 + i) % G->stride; p < npos; p += G->stride) {
            float *xr = G->X + (size_t)rows * K, *yr = G->Y + (size_t)rows * cout;
            if (n->op == TERN_OP_CONV) {
                int oy = p / ow, ox = p % ow, iy0 = oy * sh - pt, ix0 = ox * sw - pl;
                int inside = iy0 >= 0 && iy0 + (kh - 1) * dh < ih && ix0 >= 0 && ix0 + (kw - 1) * dw < iw;
                for (int ci = 0; ci < cing; ci++) {
                    const float *xc = xi + (size_t)ci * ih * iw;
                    float *xk = xr + (size_t)ci * kh * kw;
                    for (int ky = 0; ky < kh; ky++) {
                        int iy = iy0 + ky * dh;
                        float *xo = xk + ky * kw;
                        if (inside) {
                            const float *src = xc + (size_t)iy * iw + ix0;
                            if (dw == 1) memcpy(xo, src, sizeof(float) * (size_t)kw);
                            else for (int kx = 0; kx < kw; kx++) xo[kx] = src[kx * dw];
                        } else
                            for (int kx = 0; kx < kw; kx++) {
                                int ix = ix0 + kx * dw;
                                xo[kx] = iy >= 0 && iy < ih && ix >= 0 && ix < iw ? xc[(size_t)iy * iw + ix] : 0.0f;
                            }
                    }
                    if (first) { /* the first layer sees the normalisation folded out: the pixel code */
                        float sd = o->std[ci % 3], mn = o->mean[ci % 3];
                        for (int k = 0; k < kh * kw; k++) xk[k] = 255.0f * (xk[k] * sd + mn);
                    }
                }
            } else
                memcpy(xr, xi, sizeof(float) * (size_t)K);
            for (int oc = 0; oc < cout; oc++) yr[oc] = yi[(size_t)oc * npos + p];
            rows++;
        }
    }
    stats_add(G->S, G->X, G->Y, rows);
    return G->S->n < 0 ? TERN_STATUS_NOMEM : TERN_STATUS_OK;
}

/* Degenerate statistics: input channels never non-zero on the optimisation images, or an input
 * that does not vary at all. Such a layer's codes are fitted to nothing; say so once per layer. */
static int warn_degenerate(const opt_stats *S, const tern_node *n, int widx, int cing, int khw, int nimg, int verbose, int *first_layer) {
    int dead = 0, first = -1;
    double var_all = 0, inv = 1.0 / (double)S->n;
    for (int ci = 0; ci < cing; ci++) {
        int on = 0;
        for (int k = ci * khw; k < (ci + 1) * khw; k++) {
            double m = S->sx[k] * inv, v = S->gxx[(size_t)k * S->K + k] * inv - m * m;
            on |= S->gxx[(size_t)k * S->K + k] > 0;
            var_all += v > 0 ? v : 0;
        }
        if (!on) { dead++; if (first < 0) first = ci; }
    }
    if (dead == cing || !(var_all > 0)) {
        fprintf(stderr, "tern: warning: layer %d '%s': its input is constant on the %d optimisation images (statistics degenerate)\n", widx, n->name, nimg);
        return 0;
    }
    if (dead && verbose)
        fprintf(stderr, "tern: warning: layer %d '%s': %d of %d input channels (first: %d) never active on the %d optimisation images\n",
                widx, n->name, dead, cing, first, nimg);
    /* a few dead ReLU channels are normal in trained nets (ResNet-20: 1-3 of 16-64 in 11 layers);
     * the summary counts the layers where a quarter or more of the input never fires */
    const int many = 4 * dead >= cing;
    if (many && *first_layer < 0) *first_layer = widx;
    return many;
}

enum tern_status tern_q_optimize(qctx *q, const uint8_t *calib, int ncalib) {
    const tern_graph *g = q->g;
    const tern_qopts *o = q->o;
    int nweight = q->nweight;
    q->wl = tern_calloc((size_t)nweight + 1, sizeof *q->wl);
    tern_graph gs = *g; /* the simulation: same nodes, values whose weights we replace */
    gs.values = tern_malloc(sizeof(tern_value) * (size_t)g->nvalues);
    int *owned_n = tern_malloc(sizeof(int) * (size_t)(2 * nweight + 2));
    float **owned = tern_calloc((size_t)(2 * nweight + 2), sizeof(float *));
    int *last = tern_malloc(sizeof(int) * (size_t)g->nvalues + 1);
    signed char *grid = o->opt_actq ? tern_malloc((size_t)g->nvalues + 1) : NULL;
    int *grid_exp = o->opt_actq ? tern_malloc(sizeof(int) * (size_t)g->nvalues + 1) : NULL;
    int nowned = 0;
    const qt_info *t0 = &q->qt[0];
    int nsrc = tern_q_opt_images(o, g, ncalib);
    int nimg = o->opt_flip ? 2 * nsrc : nsrc; /* with --opt-flip, every image also mirrored */
    int B = 16, nbatch = (nimg + B - 1) / B;
    size_t per = (size_t)t0->c * t0->h * t0->w, plane = (size_t)t0->h * t0->w;
    cut_state fp = {.g = g, .last = last, .nbatch = nbatch, .B = B, .nimg = nimg};
    cut_state sim = {.g = &gs, .last = last, .nbatch = nbatch, .B = B, .nimg = nimg};
    enum tern_status st = TERN_STATUS_OK;
    if (!q->wl || !gs.values || !owned_n || !owned || !last || (o->opt_actq && (!grid || !grid_exp))) { st = TERN_STATUS_NOMEM; goto out; }
    if (grid && (st = actq_grid(q, grid, grid_exp))) goto out;
    sim.grid = grid;
    sim.grid_exp = grid_exp;
    memcpy(gs.values, g->values, sizeof(tern_value) * (size_t)g->nvalues);
    fp.live = tern_calloc((size_t)nbatch * g->nvalues, sizeof(float *));
    sim.live = tern_calloc((size_t)nbatch * g->nvalues, sizeof(float *));
    if (!fp.live || !sim.live) { st = TERN_STATUS_NOMEM; goto out; }
    for (int v = 0; v < g->nvalues; v++) last[v] = v == g->output ? g->nnodes : -1;
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            if (g->nodes[i].in[j] >= 0) last[g->nodes[i].in[j]] = i;
    /* the input batches, normalised as the FP32 model wants them (both copies start from them) */
    for (int b = 0; b < nbatch && !st; b++) {
        int nb = nimg - b * B < B ? nimg - b * B : B;
        float *in = tern_malloc(sizeof(float) * per * (size_t)nb), *in2 = tern_malloc(sizeof(float) * per * (size_t)nb);
        fp.live[(size_t)b * g->nvalues + g->input] = in;
        sim.live[(size_t)b * g->nvalues + g->input] = in2;
        if (!in || !in2) { st = TERN_STATUS_NOMEM; break; }
        for (int i = 0; i < nb; i++) {
            int v = b * B + i, flip = o->opt_flip ? v & 1 : 0, img = (int)((int64_t)(o->opt_flip ? v >> 1 : v) * ncalib / nsrc);
            int W = t0->w;
            for (int c = 0; c < t0->c; c++)
                for (size_t p = 0; p < plane; p++) {
                    size_t sp = flip ? p - p % W + (W - 1 - p % W) : p;
                    in[(size_t)i * per + c * plane + p] = ((float)calib[(size_t)img * per + c * plane + sp] / 255.0f - o->mean[c % 3]) / o->std[c % 3];
                }
        }
        memcpy(in2, in, sizeof(float) * per * (size_t)nb);
    }
    double t_start = tern_now();
    int ndead = 0, dead_first = -1; /* layers with input channels never active */
    /* the earlier layers' results, while their precision is unchanged (src/quant/cache.c) */
    tern_qcache *cache = tern_qcache_pass_begin(o->cache, q, calib, ncalib) ? o->cache : NULL;
    int reuse = cache != NULL;
    for (int li = 0; li < q->nll && !st; li++) {
        const low_layer *l = &q->ll[li];
        if (l->widx < 0) continue;
        const tern_node *n = l->node;
        const qt_info *xt = &q->qt[l->in[0]], *yt = &q->qt[l->out];
        tern_wpolicy pol = tern_q_layer_policy(q, l);
        int groups = n->op == TERN_OP_CONV ? (int)n->a.group : 1;
        if (reuse && !tern_qcache_layer_get(cache, l->widx, &pol, groups != 1 ? NULL : &q->wl[l->widx], &ndead, &dead_first)) {
            reuse = 0; /* from here on every layer is computed, and what the cache held after it is stale */
            for (int j = l->widx; j < q->nweight; j++) tern_qcache_layer_drop(cache, j);
        }
        if (groups != 1) { /* grouped convs keep the plain quantizer */
            if (cache && !reuse) tern_qcache_layer_put(cache, l->widx, &pol, NULL, 0, 0, 0);
            continue;
        }
        int kh = n->op == TERN_OP_CONV ? (int)n->a.kernel[0] : xt->h, kw = n->op == TERN_OP_CONV ? (int)n->a.kernel[1] : xt->w;
        int khw = kh * kw, cing = xt->c, K = cing * khw, cout = yt->c;
        int wtype = pol.wtype, N = pol.N, ncl = pol.ncl, qmax = pol.qmax;
        int cper = ncl == 1 ? K : N * khw; /* weights per cluster */
        float *w = NULL, *bias = NULL, *wq = NULL, *X = NULL, *Y = NULL;
        double *H = NULL, *tv = NULL, *r = NULL, *M = NULL, *rg = NULL, *U = NULL, *gw = NULL, *nza = NULL, *nzc = NULL;
        int *nzi = NULL;
        opt_stats S = {0};
        opt_layer *ol = &q->wl[l->widx];
        int dead_here = 0;
        if (reuse) { /* the cached codes, scales and bias: only the simulation needs them */
            wq = tern_malloc(sizeof(float) * (size_t)cout * K);
            if (!wq) { st = TERN_STATUS_NOMEM; goto next; }
            goto store;
        }
        if ((st = tern_q_weights_of(q, l, &w, &bias))) goto next;
        if (l->in[0] == 0) tern_q_fold_input(o, w, bias, cout, 1, cing, khw);
        ol->codes = tern_malloc((size_t)cout * K);
        ol->scales = tern_malloc(sizeof(float) * (size_t)cout * ncl);
        ol->bias = tern_malloc(sizeof(float) * (size_t)cout);
        wq = tern_malloc(sizeof(float) * (size_t)cout * K);
        if (!ol->codes || !ol->scales || !ol->bias || !wq) { st = TERN_STATUS_NOMEM; goto next; }
        if ((st = tern_wquant_tensor(w, cout, cing, khw, (enum tern_wtype)wtype, N, o->trule, n->name, ol->codes, ol->scales))) goto next;
        memcpy(ol->bias, bias, sizeof(float) * (size_t)cout);
        /* statistics: the simulation's input at the cut before this node, the FP32 network's output
         * of this node (run on its own cut, not kept) */
        int ni = (int)(n - g->nodes);
        if ((st = cut_advance(&fp, ni, 1, NULL, NULL)) || (st = cut_advance(&sim, ni, 1, NULL, NULL))) goto next;
        int npos = yt->h * yt->w;
        int64_t total = (int64_t)nimg * npos;
        int64_t maxr = o->opt_rows > 0 ? o->opt_rows : OPT_MAX_ROWS;
        int stride = (int)((total + maxr - 1) / maxr);
        if (stride < 1) stride = 1;
        int maxrows = B * ((npos + stride - 1) / stride + 1);
        S.K = K;
        S.cout = cout;
        S.sx = tern_calloc((size_t)K, sizeof(double));
        S.sy = tern_calloc((size_t)cout, sizeof(double));
        S.syy = tern_calloc((size_t)cout, sizeof(double));
        S.gxx = tern_calloc((size_t)K * K, sizeof(double));
        S.gxy = tern_calloc((size_t)K * cout, sizeof(double));
        X = tern_malloc(sizeof(float) * (size_t)maxrows * K);
        Y = tern_malloc(sizeof(float) * (size_t)maxrows * cout);
        if (!S.sx || !S.sy || !S.syy || !S.gxx || !S.gxy || !X || !Y) { st = TERN_STATUS_NOMEM; goto next; }
        gather G = {.q = q, .l = l, .sim = &sim, .S = &S, .X = X, .Y = Y, .stride = stride, .B = B};
        if ((st = cut_advance(&fp, ni + 1, 0, gather_cb, &G))) goto next;
        dead_here = warn_degenerate(&S, n, l->widx, cing, khw, nimg, o->verbose, &dead_first);
        ndead += dead_here;
        /* H (symmetric, full), damped */
        H = tern_malloc(sizeof(double) * (size_t)K * K);
        tv = tern_malloc(sizeof(double) * (size_t)K);
        r = tern_malloc(sizeof(double) * (size_t)K);
        M = tern_malloc(sizeof(double) * (size_t)ncl * ncl);
        rg = tern_malloc(sizeof(double) * (size_t)ncl);
        nzi = tern_malloc(sizeof(int) * (size_t)K);
        nza = tern_malloc(sizeof(double) * (size_t)K);
        nzc = tern_malloc(sizeof(double) * (size_t)K);
        if (!H || !tv || !r || !M || !rg || !nzi || !nza || !nzc) { st = TERN_STATUS_NOMEM; goto next; }
        double inv = 1.0 / (double)S.n, dsum = 0;
        for (int i = 0; i < K; i++)
            for (int j = i; j < K; j++) {
                double v = S.gxx[(size_t)i * K + j] * inv;
                if (o->bias_corr) v -= S.sx[i] * inv * S.sx[j] * inv;
                H[(size_t)i * K + j] = H[(size_t)j * K + i] = v;
            }
        for (int i = 0; i < K; i++) dsum += H[(size_t)i * K + i];
        for (int i = 0; i < K; i++) H[(size_t)i * K + i] += o->opt_damp * dsum / K;
        int use_gptq = o->opt_round && o->opt_method != TERN_OPT_CD;
        if (use_gptq) {
            U = tern_malloc(sizeof(double) * (size_t)K * K);
            gw = tern_malloc(sizeof(double) * ((size_t)K * K > tern_gptq_row_work(K, cper) ? (size_t)K * K : tern_gptq_row_work(K, cper)));
            if (!U || !gw) { st = TERN_STATUS_NOMEM; goto next; }
            if ((st = tern_gptq_factor(H, K, U, gw, NULL))) { st = tern_error_prefix(st, "layer '%s'", n->name); goto next; }
        }
        double e_fp = 0, e_plain = 0, e_opt = 0, vy = 0;
        if (o->verbose)
            for (int oc = 0; oc < cout; oc++) {
                float *v = wq + (size_t)oc * K;
                for (int k = 0; k < K; k++) v[k] = ol->scales[(size_t)oc * ncl + k / cper] * ol->codes[(size_t)oc * K + k];
                e_plain += row_err(&S, oc, v, &vy);
                e_fp += row_err(&S, oc, w + (size_t)oc * K, &vy);
            }
        for (int oc = 0; oc < cout; oc++) {
            double my = S.sy[oc] * inv;
            for (int k = 0; k < K; k++) {
                double e = S.gxy[(size_t)k * cout + oc] * inv, mx = S.sx[k] * inv;
                tv[k] = o->bias_corr ? e - mx * my : e - mx * bias[oc];
            }
            if (o->opt_mix > 0) { /* shrink the target towards the FP32 weights': H w */
                const float *wo = w + (size_t)oc * K;
                for (int k = 0; k < K; k++) {
                    const double *h = H + (size_t)k * K;
                    double hw = 0;
                    for (int j = 0; j < K; j++) hw += h[j] * wo[j];
                    tv[k] = (1.0 - o->opt_mix) * tv[k] + o->opt_mix * hw;
                }
            }
            int8_t *c = ol->codes + (size_t)oc * K;
            float *a = ol->scales + (size_t)oc * ncl;
            if (use_gptq) {
                /* GPTQ on the FP32 weights with H from the simulated input (measured better than on
                 * the least-squares w* = H^-1 t, which over-fits the optimisation images: ResNet-20
                 * t:4 78.0 vs 74.9 %, docs/RESULTS.md), then the refit and bias on the true target */
                for (int k = 0; k < K; k++) r[k] = w[(size_t)oc * K + k];
                tern_gptq_optimize_row(H, U, tv, r, K, cper, qmax, TERN_GPTQ_POSITION, 3, c, a, gw);
            }
            if ((o->opt_scales || o->opt_round) && (!use_gptq || o->opt_method == TERN_OPT_GPTQ_CD))
                opt_row(H, tv, K, khw, N, ncl, qmax, wtype == TERN_WTYPE_TERNARY, o->opt_scales, o->opt_round, c, a, r, M, rg, nzi, nza, nzc);
            if (o->bias_corr) {
                double d = 0;
                for (int k = 0; k < K; k++) d += (double)a[k / cper] * c[k] * S.sx[k] * inv;
                ol->bias[oc] = (float)(my - d);
            }
        }
        if (cache) tern_qcache_layer_put(cache, l->widx, &pol, ol, cout, K, dead_here);
    store:
        for (int oc = 0; oc < cout; oc++)
            for (int k = 0; k < K; k++)
                wq[(size_t)oc * K + k] = ol->scales[(size_t)oc * ncl + k / cper] * ol->codes[(size_t)oc * K + k];
        if (o->verbose && !reuse) {
            double v_all = 0;
            for (int oc = 0; oc < cout; oc++) {
                e_opt += row_err(&S, oc, wq + (size_t)oc * K, &vy);
                v_all += vy;
            }
            /* output SQNR on the optimisation images, best bias: FP32 weights (the input's error
             * alone), plain quantizer, after the options */
            fprintf(stderr, "optimize: layer %d %s (%s:%d) K %d, %lld rows, SQNR dB: fp-w %.1f plain %.1f opt %.1f, %.1f s\n", l->widx, n->name,
                    wtype == TERN_WTYPE_TERNARY ? "t" : wtype == TERN_WTYPE_INT4 ? "4" : "8", N, K, (long long)S.n,
                    10 * log10(v_all / e_fp), 10 * log10(v_all / e_plain), 10 * log10(v_all / e_opt), tern_now() - t_start);
        }
        st = sim_store(q, &gs, l, wq, ol->bias, cout, K, khw, &owned_n, &owned, &nowned);
    next:
        if (st && ol->codes) { free(ol->codes); ol->codes = NULL; }
        free(w); free(bias); free(wq); free(X); free(Y);
        free(H); free(tv); free(r); free(M); free(rg); free(U); free(gw); free(nzi); free(nza); free(nzc);
        free(S.sx); free(S.sy); free(S.syy); free(S.gxx); free(S.gxy);
    }
    if (!st && ndead)
        fprintf(stderr, "tern: warning: %d weight layers (first: layer %d) have a quarter or more of their input channels never active on the %d optimisation images%s\n",
                ndead, dead_first, nimg, o->verbose ? "" : " (--verbose lists them)");
    for (int i = 0; !st && o->export_to && i < nowned; i++) {
        tern_value *v = &o->export_to->values[owned_n[i]];
        size_t nb = sizeof(float) * (size_t)tern_value_numel(&g->values[owned_n[i]]);
        if (o->export_to->nvalues != g->nvalues || !v->data || tern_value_numel(v) != tern_value_numel(&g->values[owned_n[i]]))
            st = tern_errorf(TERN_STATUS_INVALID_ARG, "quantize: the export graph does not match '%s'", g->path);
        else memcpy(v->data, owned[i], nb);
    }
out:
    cut_free(&fp);
    cut_free(&sim);
    for (int i = 0; i < nowned; i++) free(owned[i]);
    free(owned);
    free(owned_n);
    free(last);
    free(grid);
    free(grid_exp);
    free(gs.values);
    return st;
}
