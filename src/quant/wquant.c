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
 * one |q_i| from c to c+1 (A += |w_i|, B += 2c+1). Each weight's breakpoints already decrease in m,
 * so a heap holding every weight's next breakpoint yields them in order: the exact minimum over a
 * window [lo, hi] of scales costs O(B log n) for B breakpoints in it, with O(n) memory. E is
 * continuous at breakpoints (both codes miss by s/2), so a rounding tie at the chosen s is harmless.
 *
 * 4-bit clusters and 8-bit ones up to TERN_SWEEP_N8 weights (depthwise, small first convs) sweep
 * all scales: the global minimum. For 4-bit that is also cheaper than a search (7n breakpoints
 * against ~180 trial scales of n weights). Larger 8-bit clusters (per output channel) search:
 * s = f*max|w|/qmax on a grid f = 0.305 .. 1.2 step 0.005 (f > 1 rounds the largest weight down,
 * which pays when it is an outlier or the weights sit on a coarser lattice), then the exact sweep
 * on the window f_best +- 0.05, about 0.1/f^2 * qmax * |w_i|/max|w| breakpoints per weight. That
 * window replaces finer grid passes and least-squares refits: every code pattern in it is tried
 * with its least-squares scale. On random clusters of 259 .. 4608 weights it found the global
 * minimum (tests/test_wquant.c checks against brute force).
 * Both paths finally compare against plain max-abs scaling, so they are never worse than it.
 * Among scales with equal error the smaller one is preferred (it uses more of the code range, as
 * max-abs scaling does): exactly in a sweep, within the step on the grid.
 * --------------------------------------------------------------------------------------------- */

#define TERN_SWEEP_N8 258        /* 8-bit clusters up to this size sweep every scale */

static int use_sweep(int n, int qmax) { return qmax <= 15 || n <= TERN_SWEEP_N8; }

struct bp { float b; int32_t i; };   /* a breakpoint (scale) and its weight's index */

/* Heap order: larger b first, then smaller i. The heap holds at most one breakpoint per weight,
 * so this is a total order on its entries and the sweep is deterministic. */
static inline int bp_before(struct bp x, struct bp y) { return x.b > y.b || (x.b == y.b && x.i < y.i); }

static void sift_down(struct bp *h, size_t n, size_t k) {
    struct bp x = h[k];
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= n) break;
        if (c + 1 < n && bp_before(h[c + 1], h[c])) c++;
        if (!bp_before(h[c], x)) break;
        h[k] = h[c];
        k = c;
    }
    h[k] = x;
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

/* nbit_err at ns scales s[j] at once: e[j] == nbit_err(w, n, s[j], qmax) bit for bit. Each scale
 * keeps its own double sum in the order of i (the same additions as nbit_err), eight scales per
 * pass over w in vector lanes. Per weight and scale the error d = x - s * code(x) is computed
 * for |x| instead of x: it is exactly -d for a negative x (IEEE rounding is symmetric), so d * d
 * has the same bits. code(|x|) = min(roundf(|x| / s), qmax), and roundf(a) = floor(a + 0.5) done
 * exactly in double (a float plus 0.5 is exact there; a is clamped to qmax first so that the
 * conversion to int cannot overflow). A zero, NaN or Inf weight (val() = 0) gives 0, as in
 * nbit_err. No FMA contraction: every clone gives the same bits. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3", "fp-contract=off")))
static void nbit_err_grid(const float *restrict w, int n, const float *restrict s, int ns, int qmax, double *restrict e) {
    const float fq = (float)qmax;
    const v8f fqv = {fq, fq, fq, fq, fq, fq, fq, fq};
    for (int j0 = 0; j0 < ns; j0 += 8) {
        v8f sj;
        v8d sd, acc = {0};
        for (int k = 0; k < 8; k++) {
            sj[k] = s[j0 + (j0 + k < ns ? k : 0)];
            sd[k] = (double)sj[k];
        }
        for (int i = 0; i < n; i++) {
            const float ax = mag(w[i]);
            const v8f a = (v8f){ax, ax, ax, ax, ax, ax, ax, ax} / sj;
            const v8i lt = a < fqv;
            const v8f a2 = (v8f)(((v8i)a & lt) | ((v8i)fqv & ~lt));
            const v8d c = __builtin_convertvector(__builtin_convertvector(__builtin_convertvector(a2, v8d) + 0.5, v8i), v8d);
            const v8d d = (double)ax - sd * c;
            acc += d * d;
        }
        for (int k = 0; k < 8 && j0 + k < ns; k++) e[j0 + k] = acc[k];
    }
}

/* Breakpoint c of a weight of magnitude m > 0, as the sweep sees it; non-increasing in c. */
static inline float bp_at(float m, int c) { return (float)((double)m / (c + 0.5)); }

/* #{c in 0..qmax-1 : bp_at(m, c) >= x}: the code of magnitude m just below scale x (x > 0),
 * computed with the same float breakpoints as the sweep so that the window is consistent. */
static int count_ge(float m, int qmax, double x) {
    double est = floor(m / x + 0.5);
    int c = est < 0 ? 0 : est > qmax ? qmax : (int)est;
    while (c > 0 && bp_at(m, c - 1) < x) c--;
    while (c < qmax && bp_at(m, c) >= x) c++;
    return c;
}

/* The s in [lo, hi] (lo >= 0, hi may be +inf) minimising E, or 0 if no s > 0 there has a non-zero
 * code. heap: room for n entries. q is scratch (the running |codes|). */
static double sweep(const float *w, int n, int qmax, double lo, double hi, double w2, int8_t *q,
                    struct bp *heap) {
    size_t nh = 0;
    double A = 0, B = 0;
    for (int i = 0; i < n; i++) {
        float m = mag(w[i]);
        int c0 = m > 0 ? count_ge(m, qmax, hi) : 0;
        q[i] = (int8_t)c0;
        A += (double)m * c0, B += (double)c0 * c0;
        if (m > 0 && c0 < qmax && bp_at(m, c0) >= lo) heap[nh++] = (struct bp){bp_at(m, c0), i};
    }
    for (size_t k = nh / 2; k-- > 0;) sift_down(heap, nh, k);
    double best_e = INFINITY, best_s = 0, tie = 1e-12 * w2, top = hi;
    for (;;) {
        double bot = nh ? heap[0].b : lo;   /* the codes are fixed on [bot, top] */
        if (B > 0) {
            double s = A / B;
            s = s < bot ? bot : s > top ? top : s;
            double e = w2 - 2 * s * A + s * s * B;
            if (s > 0 && e <= best_e + tie) best_e = TERN_MIN(e, best_e), best_s = s;
        }
        if (!nh) break;
        int i = heap[0].i, c = q[i];
        float m = mag(w[i]), b;
        A += m, B += 2 * c + 1;
        q[i] = (int8_t)(c + 1);
        if (c + 1 < qmax && (b = bp_at(m, c + 1)) >= lo) heap[0] = (struct bp){b, i};
        else heap[0] = heap[--nh];
        sift_down(heap, nh, 0);
        top = bot;
    }
    return best_s;
}

/* sweep() on [lo, hi] (lo >= 0), the same result bit for bit: its heap pops every
 * breakpoint in the window in the order (b descending, weight index ascending) -- a k-way merge
 * of each weight's strictly decreasing breakpoints -- so the breakpoints are listed here weight by
 * weight and put in that order by a stable radix sort on the float bits of b (positive floats
 * order as their bits), then walked with the same arithmetic. O(B) instead of O(B log n): the
 * heap was 80 % of an 8-bit ResNet-50 quantization. Returns -1 if out of memory (the caller then
 * runs sweep()). */
static double sweep_window(const float *w, int n, int qmax, double lo, double hi, double w2, int8_t *q) {
    double A = 0, B = 0;
    size_t nb = 0;
    for (int i = 0; i < n; i++) {
        float m = mag(w[i]);
        int c0 = m > 0 ? count_ge(m, qmax, hi) : 0;
        q[i] = (int8_t)c0;
        A += (double)m * c0, B += (double)c0 * c0;
        if (m > 0)
            for (int c = c0; c < qmax && bp_at(m, c) >= lo; c++) nb++;
    }
    uint32_t *key = malloc(sizeof(uint32_t) * (nb + 1) * 2);
    int32_t *idx = malloc(sizeof(int32_t) * (nb + 1) * 2);
    if (!key || !idx) { free(key); free(idx); return -1; }
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        float m = mag(w[i]);
        if (!(m > 0)) continue;
        for (int c = q[i]; c < qmax; c++) {
            float b = bp_at(m, c);
            if (!(b >= lo)) break;
            uint32_t u;
            memcpy(&u, &b, 4);
            key[k] = ~u;   /* ascending key = descending b */
            idx[k++] = i;
        }
    }
    uint32_t *k2 = key + nb + 1;
    int32_t *i2 = idx + nb + 1;
    for (int shift = 0; shift < 32; shift += 11) {   /* LSD radix, 11-bit digits: stable */
        size_t cnt[2049] = {0};
        for (size_t j = 0; j < nb; j++) cnt[((key[j] >> shift) & 2047) + 1]++;
        for (int d = 0; d < 2048; d++) cnt[d + 1] += cnt[d];
        for (size_t j = 0; j < nb; j++) {
            size_t o = cnt[(key[j] >> shift) & 2047]++;
            k2[o] = key[j], i2[o] = idx[j];
        }
        uint32_t *tk = key; key = k2; k2 = tk;
        int32_t *ti = idx; idx = i2; i2 = ti;
    }
    double best_e = INFINITY, best_s = 0, tie = 1e-12 * w2, top = hi;
    for (k = 0;; k++) {
        float bk = 0;
        if (k < nb) { uint32_t u = ~key[k]; memcpy(&bk, &u, 4); }
        double bot = k < nb ? bk : lo;   /* the codes are fixed on [bot, top] */
        if (B > 0) {
            double s = A / B;
            s = s < bot ? bot : s > top ? top : s;
            double e = w2 - 2 * s * A + s * s * B;
            if (s > 0 && e <= best_e + tie) best_e = TERN_MIN(e, best_e), best_s = s;
        }
        if (k == nb) break;
        int i = idx[k], c = q[i];
        A += mag(w[i]), B += 2 * c + 1;
        q[i] = (int8_t)(c + 1);
        top = bot;
    }
    /* the two buffers were swapped an odd number of times (3 passes): free the original blocks */
    free(key < k2 ? key : k2);
    free(idx < i2 ? idx : i2);
    return best_s;
}

/* heap: room for n entries, or NULL (no memory: the coarse grid alone). */
static float nbit_impl(const float *w, int n, int qmax, int8_t *q, struct bp *heap) {
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
    if (heap && use_sweep(n, qmax)) {
        double sd = sweep_window(w, n, qmax, 0, INFINITY, w2, q);
        s = (float)(sd >= 0 ? sd : sweep(w, n, qmax, 0, INFINITY, w2, q, heap));
    } else {
        double best_f = 1, best_e = INFINITY;
        float gs[180];
        double ge[180];
        for (int j = 61; j <= 240; j++) gs[j - 61] = (float)(base * (j / 200.0));
        nbit_err_grid(w, n, gs, 180, qmax, ge);
        for (int j = 61; j <= 240; j++) {   /* f = j/200 ascending: ties keep the smaller s */
            double f = j / 200.0, e = j == 200 ? e0 : ge[j - 61];
            if (e < best_e) best_e = e, best_f = f;
        }
        s = (float)(base * best_f);
        if (heap) {
            double sd = sweep_window(w, n, qmax, base * (best_f - 0.05), base * (best_f + 0.05), w2, q);
            float sw = (float)(sd >= 0 ? sd : sweep(w, n, qmax, base * (best_f - 0.05), base * (best_f + 0.05), w2, q, heap));
            if (sw > 0 && nbit_err(w, n, sw, qmax) <= best_e) s = sw;
        }
    }
    if (!(s > 0) || nbit_err(w, n, s, qmax) > e0) s = s0;
    for (int i = 0; i < n; i++) q[i] = code(w[i], s, qmax);
    return s;
}

float tern_nbit_cluster(const float *w, int n, int qmax, int8_t *q) {
    if (n <= 0) return 0.0f;
    TERN_ASSERT(qmax >= 1 && qmax <= 127);
    struct bp stack[TERN_STACK_CLUSTER];
    struct bp *heap = n <= TERN_STACK_CLUSTER ? stack : malloc((size_t)n * sizeof *heap);
    float s = nbit_impl(w, n, qmax, q, heap);
    if (heap != stack) free(heap);
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

    /* One scratch buffer for the whole tensor, sized for the largest cluster: the sorted
     * magnitudes (ternary) or the breakpoint heap (n-bit). */
    size_t bytes = 0;
    if (wtype != TERN_WTYPE_TERNARY) bytes = (size_t)maxn * sizeof(struct bp);
    else if (rule == TERN_TRULE_EXACT && maxn > TERN_SMALL_CLUSTER) bytes = (size_t)maxn * sizeof(float);
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
                s = nbit_impl(w + off, n, qmax, q + off, scratch);
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
