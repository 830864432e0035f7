/* Weight quantizers (method.md, "Weights"). Pure math on floats; see wquant.h for the contract.
 *
 * Numerics: sums of squares and of magnitudes are accumulated in double so that the choice of
 * k (ternary) or s (n-bit) does not depend on float rounding of long sums. Non-finite inputs are
 * a caller bug (tern_wquant_tensor rejects them); the cluster functions read them as 0 so that
 * sorting stays well defined and no NaN can reach a scale. */
#include "quant/wquant.h"
#include <limits.h>
#include <math.h>
#include <string.h>

static inline float val(float x) { return isfinite(x) ? x : 0.0f; }
static inline float mag(float x) { return fabsf(val(x)); }
static inline int8_t sgn(float x) { return mag(x) == 0.0f ? 0 : x > 0 ? 1 : -1; }

/* ---------------------------------------------------------------------------------------------
 * Ternary, exact rule.
 *
 * For a fixed support set P (|P| = k) the best signs are sign(w) and the best scale is
 * a = S/k with S = sum_{P} |w|, giving error ||w||^2 - S^2/k; for a given k, S is largest when P
 * holds the k largest |w|. So the optimum is k* = argmax_k S_k^2/k over the sorted magnitudes.
 *
 * Ties: within a run of equal magnitudes v, g(x) = (S0 + x v)^2 / (k0 + x) has
 * g'(x) ∝ (S0 + x v) (v (2 k0 + x) - S0), whose second factor increases with x: g falls then
 * rises, so an interior point of the run is never better than both of its ends. We therefore only
 * evaluate k at run ends: a tied run is entirely in or entirely out, the objective is still the
 * global optimum, and the result depends only on the multiset of values (permuting w permutes q;
 * no index tie-break needed). Between different k with equal objective the smallest k (sparsest)
 * wins. Zeros never enter (adding a 0 divides S^2 by more); all-zero gives k = 0, a = 0, q = 0.
 * --------------------------------------------------------------------------------------------- */

static int cmp_desc(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a < b) - (a > b);
}

/* Threshold T (the k*-th largest magnitude, or +inf when k* = 0) and a, via a sorted copy of
 * the magnitudes in scratch[n]. O(n log n). */
static float exact_sorted(const float *w, int n, float *scratch, float *thr) {
    for (int i = 0; i < n; i++) scratch[i] = mag(w[i]);
    qsort(scratch, (size_t)n, sizeof *scratch, cmp_desc);
    double s = 0, best_f = 0, best_s = 0;
    int best_k = 0;
    for (int j = 0; j < n && scratch[j] > 0; j++) {
        s += scratch[j];
        if (j + 1 < n && scratch[j + 1] == scratch[j]) continue;  /* not a run end */
        double f = s * s / (j + 1);
        if (f > best_f) best_f = f, best_s = s, best_k = j + 1;
    }
    *thr = best_k ? scratch[best_k - 1] : INFINITY;
    return best_k ? (float)(best_s / best_k) : 0.0f;
}

/* The same choice without scratch memory: walk the distinct magnitudes in descending order by
 * rescanning. O(n * distinct values); used for tiny clusters and when allocation fails. */
static float exact_scan(const float *w, int n, float *thr) {
    double s = 0, best_f = 0, best_s = 0;
    int k = 0, best_k = 0;
    float cur = INFINITY, best_t = INFINITY;
    for (;;) {
        float v = 0;
        int cnt = 0;
        for (int i = 0; i < n; i++) {
            float m = mag(w[i]);
            if (m < cur && m > v) v = m, cnt = 1;
            else if (m == v && v > 0) cnt++;
        }
        if (v == 0) break;
        s += (double)v * cnt;   /* exact: float times a small integer fits a double */
        k += cnt;
        double f = s * s / k;
        if (f > best_f) best_f = f, best_s = s, best_k = k, best_t = v;
        cur = v;
    }
    *thr = best_t;
    return best_k ? (float)(best_s / best_k) : 0.0f;
}

static float twn(const float *w, int n, int8_t *q) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += mag(w[i]);
    double d = 0.7 * (n > 0 ? sum / n : 0);
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        float m = mag(w[i]);
        int on = m > d;   /* strict: an all-zero cluster selects nothing */
        q[i] = on ? sgn(w[i]) : 0;
        if (on) s += m, k++;
    }
    return k ? (float)(s / k) : 0.0f;
}

/* scratch: n floats, or NULL (then the scan, which needs none). */
static float ternary_impl(const float *w, int n, enum tern_trule rule, int8_t *q, float *scratch) {
    if (n <= 0) return 0.0f;
    if (rule == TERN_TRULE_TWN) return twn(w, n, q);
    float thr;
    float a = scratch ? exact_sorted(w, n, scratch, &thr) : exact_scan(w, n, &thr);
    for (int i = 0; i < n; i++) q[i] = mag(w[i]) >= thr ? sgn(w[i]) : 0;
    return a;
}

#define TERN_SMALL_CLUSTER 4     /* at or below: scan (no sort, no buffer) */
#define TERN_STACK_CLUSTER 256   /* at or below: sort in a stack buffer */

float tern_ternary_cluster(const float *w, int n, enum tern_trule rule, int8_t *q) {
    if (n <= TERN_SMALL_CLUSTER || rule == TERN_TRULE_TWN) return ternary_impl(w, n, rule, q, NULL);
    float stack[TERN_STACK_CLUSTER];
    float *buf = n <= TERN_STACK_CLUSTER ? stack : malloc((size_t)n * sizeof *buf);
    float a = ternary_impl(w, n, rule, q, buf);   /* buf NULL (no memory): the scan */
    if (buf != stack) free(buf);
    return a;
}

/* ---------------------------------------------------------------------------------------------
 * Symmetric n-bit: minimise E(s) = ||w - s q(s)||^2 with q(s) = clamp(round(w/s), -qmax, qmax).
 *
 * Exact sweep. |q_i(s)| = #{m in 0..qmax-1 : s <= b_im} with breakpoints b_im = |w_i| / (m + 0.5),
 * so q(s) is constant between consecutive breakpoints. On such an interval
 * E(s) = ||w||^2 - 2 s A + s^2 B with A = <|w|, |q|>, B = <q, q>, minimised at the least-squares
 * scale A/B clamped to the interval. Walking the breakpoints from large s to small, each raises
 * one |q_i| from c to c+1 (A += |w_i|, B += 2c+1): the exact minimum over a window [lo, hi] of
 * scales costs one sort of the breakpoints inside it. E is continuous at breakpoints (both codes
 * miss by s/2), so a rounding tie at the chosen s is harmless.
 *
 * 4-bit clusters (up to n = 149796) and 8-bit ones up to n = 258 (depthwise, small first convs)
 * sweep all scales: the global minimum. For 4-bit this is also faster than a search (7n
 * breakpoints against ~180 trial scales of n weights each). Larger 8-bit clusters (per output
 * channel) search: s = f*max|w|/qmax on a grid f = 0.305 .. 1.2 step 0.005 (f > 1: the largest
 * weight is rounded down, which pays when it is an outlier or the weights sit on a coarser
 * lattice), then the exact sweep on the window f_best +- 0.05, which holds about
 * 0.1/f^2 * qmax * |w_i|/max|w| breakpoints per weight. The window sweep replaces finer grid passes
 * and least-squares refits: every code pattern in it is tried with its least-squares scale. On
 * random clusters of 259 .. 4608 weights it matched the global minimum (tests/test_wquant.c
 * checks it against brute force).
 * Both paths finally compare against plain max-abs scaling, so they are never worse than it.
 * Among scales with equal error the smaller one is preferred (it uses more of the code range, as
 * max-abs scaling does): exactly in a sweep, within the step on the grid.
 * --------------------------------------------------------------------------------------------- */

/* Sweep every scale? (Its scratch is n*qmax breakpoints.) */
static int use_sweep(int n, int qmax) {
    int64_t nb = (int64_t)n * qmax;
    return qmax <= 15 ? nb <= (1 << 20) : nb <= (1 << 15);
}

struct bp { float b; int32_t i; };

static int cmp_bp(const void *pa, const void *pb) {
    const struct bp *a = pa, *b = pb;
    if (a->b != b->b) return (a->b < b->b) - (a->b > b->b);
    return (a->i > b->i) - (a->i < b->i);
}

static inline int8_t code(float w, float s, int qmax) {
    float r = mag(w) == 0.0f ? 0.0f : w / s;   /* s > 0 */
    if (r >= (float)qmax) return (int8_t)qmax;
    if (r <= -(float)qmax) return (int8_t)-qmax;
    return (int8_t)roundf(r);
}

static double nbit_err(const float *w, int n, float s, int qmax) {
    double e = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)val(w[i]) - (double)s * code(w[i], s, qmax);
        e += d * d;
    }
    return e;
}

/* Breakpoint c of a weight of magnitude m > 0, exactly as stored; non-increasing in c. */
static inline float bp_at(float m, int c) { return (float)((double)m / (c + 0.5)); }

/* #{c in 0..qmax-1 : bp_at(m, c) >= x}: the code of magnitude m just below scale x. Computed
 * with the same float breakpoints as the sweep so that window membership is consistent. */
static int count_ge(float m, int qmax, double x) {
    if (x <= 0) return qmax;
    double est = floor(m / x + 0.5);
    int c = est < 0 ? 0 : est > qmax ? qmax : (int)est;
    while (c > 0 && bp_at(m, c - 1) < x) c--;
    while (c < qmax && bp_at(m, c) >= x) c++;
    return c;
}

static size_t sweep_count(const float *w, int n, int qmax, double lo, double hi) {
    size_t nb = 0;
    for (int i = 0; i < n; i++) {
        float m = mag(w[i]);
        if (m > 0) nb += (size_t)(count_ge(m, qmax, lo) - count_ge(m, qmax, hi));
    }
    return nb;
}

/* The s in [lo, hi] (hi may be +inf) minimising E, or 0 if no s > 0 there has a non-zero code.
 * bps: room for sweep_count() breakpoints. q is scratch (the running |codes|). */
static double sweep(const float *w, int n, int qmax, double lo, double hi, double w2, int8_t *q,
                    struct bp *bps) {
    size_t nb = 0;
    double A = 0, B = 0;
    for (int i = 0; i < n; i++) {
        float m = mag(w[i]);
        int c0 = 0, c1 = 0;
        if (m > 0) c0 = count_ge(m, qmax, hi), c1 = count_ge(m, qmax, lo);
        q[i] = (int8_t)c0;
        A += (double)m * c0, B += (double)c0 * c0;
        for (int c = c0; c < c1; c++) bps[nb++] = (struct bp){bp_at(m, c), i};
    }
    qsort(bps, nb, sizeof *bps, cmp_bp);
    double best_e = INFINITY, best_s = 0, tie = 1e-12 * w2, top = hi;
    for (size_t j = 0;; j++) {
        double bot = j < nb ? bps[j].b : lo;   /* the codes are fixed on [bot, top] */
        if (B > 0) {
            double s = A / B;
            s = s < bot ? bot : s > top ? top : s;
            double e = w2 - 2 * s * A + s * s * B;
            if (s > 0 && e <= best_e + tie) best_e = TERN_MIN(e, best_e), best_s = s;
        }
        if (j == nb) break;
        int i = bps[j].i, c = q[i];
        A += mag(w[i]), B += 2 * c + 1;
        q[i] = (int8_t)(c + 1);
        top = bot;
    }
    return best_s;
}

/* bps: room for n*qmax breakpoints (then the full sweep), or NULL (then the search). */
static float nbit_impl(const float *w, int n, int qmax, int8_t *q, struct bp *bps) {
    float maxabs = 0;
    double w2 = 0;
    for (int i = 0; i < n; i++) {
        float m = mag(w[i]);
        maxabs = m > maxabs ? m : maxabs;
        w2 += (double)m * m;
    }
    double base = (double)maxabs / qmax;
    float s0 = (float)base, s = 0;
    if (!(s0 > 0)) {   /* all zero, or magnitudes so small that the scale underflows */
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    double e0 = nbit_err(w, n, s0, qmax);
    if (bps) {
        s = (float)sweep(w, n, qmax, 0, INFINITY, w2, q, bps);
    } else {
        double best_f = 1, best_e = INFINITY;
        for (int j = 61; j <= 240; j++) {   /* f = j/200 ascending: ties keep the smaller s */
            double f = j / 200.0, e = j == 200 ? e0 : nbit_err(w, n, (float)(base * f), qmax);
            if (e < best_e) best_e = e, best_f = f;
        }
        s = (float)(base * best_f);
        double lo = base * (best_f - 0.05), hi = base * (best_f + 0.05);
        size_t nb = sweep_count(w, n, qmax, lo, hi);
        struct bp *win = malloc((nb ? nb : 1) * sizeof *win);   /* NULL: keep the grid's best */
        if (win) {
            float sw = (float)sweep(w, n, qmax, lo, hi, w2, q, win);
            if (sw > 0 && nbit_err(w, n, sw, qmax) <= best_e) s = sw;
            free(win);
        }
    }
    if (!(s > 0) || nbit_err(w, n, s, qmax) > e0) s = s0;
    for (int i = 0; i < n; i++) q[i] = code(w[i], s, qmax);
    return s;
}


float tern_nbit_cluster(const float *w, int n, int qmax, int8_t *q) {
    if (n <= 0) return 0.0f;
    TERN_ASSERT(qmax >= 1 && qmax <= 127);
    struct bp *bps = use_sweep(n, qmax) ? malloc((size_t)n * qmax * sizeof *bps) : NULL;
    float s = nbit_impl(w, n, qmax, q, bps);   /* bps NULL (large or no memory): grid */
    free(bps);
    return s;
}

/* --------------------------------------------------------------------------------------------- */

enum tern_status tern_wquant_tensor(const float *w, int cout, int cin_g, int khw, enum tern_wtype wtype,
                                    int cluster, enum tern_trule rule, const char *layer,
                                    int8_t *q, float *scales) {
    if (!layer) layer = "?";
    if (!w || !q || !scales || cout < 0 || cin_g < 1 || khw < 1 || (int64_t)cin_g * khw > INT_MAX)
        return tern_errorf(TERN_STATUS_INVALID_ARG,
                           "layer '%s': bad weight tensor shape (cout %d, cin/groups %d, taps %d)",
                           layer, cout, cin_g, khw);
    if (wtype != TERN_WTYPE_TERNARY && wtype != TERN_WTYPE_INT4 && wtype != TERN_WTYPE_INT8)
        return tern_errorf(TERN_STATUS_INVALID_ARG, "layer '%s': unknown weight type %d", layer, (int)wtype);
    if (wtype == TERN_WTYPE_TERNARY && rule != TERN_TRULE_EXACT && rule != TERN_TRULE_TWN)
        return tern_errorf(TERN_STATUS_INVALID_ARG, "layer '%s': unknown ternary rule %d", layer, (int)rule);
    if (wtype != TERN_WTYPE_INT8 && cluster < 1)
        return tern_errorf(TERN_STATUS_INVALID_ARG, "layer '%s': cluster size %d < 1", layer, cluster);

    size_t per_o = (size_t)cin_g * khw, total = (size_t)cout * per_o;
    for (size_t j = 0; j < total; j++) {
        if (isfinite(w[j])) continue;
        size_t o = j / per_o, c = j % per_o / khw, t = j % khw;
        return tern_errorf(TERN_STATUS_NUMERIC,
                           "layer '%s': weight %zu (output channel %zu, input channel %zu, tap %zu) is %s",
                           layer, j, o, c, t, isnan(w[j]) ? "NaN" : w[j] > 0 ? "+Inf" : "-Inf");
    }

    int chans = wtype == TERN_WTYPE_INT8 || cluster >= cin_g ? cin_g : cluster;
    int ncl = (cin_g + chans - 1) / chans;
    int qmax = wtype == TERN_WTYPE_INT8 ? 127 : 7;
    int maxn = chans * khw;   /* the largest cluster */

    /* One scratch buffer for the whole tensor, sized for the largest cluster. */
    size_t bytes = 0;
    if (wtype == TERN_WTYPE_TERNARY && rule == TERN_TRULE_EXACT && maxn > TERN_SMALL_CLUSTER)
        bytes = (size_t)maxn * sizeof(float);
    else if (wtype != TERN_WTYPE_TERNARY) {   /* the sweep, if the largest or the last cluster takes it */
        int lastn = (cin_g - (ncl - 1) * chans) * khw;
        int sn = use_sweep(maxn, qmax) ? maxn : use_sweep(lastn, qmax) ? lastn : 0;
        bytes = (size_t)sn * qmax * sizeof(struct bp);
    }
    void *scratch = bytes ? tern_malloc(bytes) : NULL;
    if (bytes && !scratch) return tern_error_prefix(TERN_STATUS_NOMEM, "layer '%s'", layer);

    for (int o = 0; o < cout; o++) {
        for (int g = 0; g < ncl; g++) {
            int c0 = g * chans, nc = TERN_MIN(chans, cin_g - c0), n = nc * khw;
            size_t off = (size_t)o * per_o + (size_t)c0 * khw;
            float s;
            if (wtype == TERN_WTYPE_TERNARY)
                s = ternary_impl(w + off, n, rule, q + off, n > TERN_SMALL_CLUSTER ? scratch : NULL);
            else
                s = nbit_impl(w + off, n, qmax, q + off, use_sweep(n, qmax) ? scratch : NULL);
            scales[(size_t)o * ncl + g] = s;
        }
    }
    free(scratch);
    return TERN_STATUS_OK;
}

double tern_sqnr_db(const float *w, const float *wq, size_t n) {
    double sig = 0, noise = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)w[i] - wq[i];
        sig += (double)w[i] * w[i];
        noise += d * d;
    }
    if (noise == 0) return INFINITY;          /* exact, including all-zero and n = 0 */
    if (sig == 0) return -INFINITY;           /* nothing but noise */
    return 10 * log10(sig / noise);
}
