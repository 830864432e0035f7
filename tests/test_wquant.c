/* Weight quantizer math (src/quant/wquant.h) against brute force and hand-computed cases.
 * Deterministic: every random case comes from a fixed-seed splitmix64. */
#include "check.h"
#include "quant/wquant.h"
#include <math.h>

/* ---- deterministic random data ------------------------------------------------------------ */

static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s; }
static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(void) { return (rng_u64() >> 11) * (1.0 / 9007199254740992.0); } /* [0,1) */
static float rng_sym(void) { return (float)(2 * rng_unit() - 1); }                       /* [-1,1) */
static int rng_int(int n) { return (int)(rng_u64() % (uint64_t)n); }

enum dist { D_UNIFORM, D_GAUSS, D_HEAVY, D_INTEGER, D_LEVELS, D_SPARSE, D_ZERO, D_COUNT };
static const char *dist_name[D_COUNT] = {"uniform", "gauss", "heavy", "integer", "levels", "sparse", "zero"};

/* Fills w[n] with one distribution. INTEGER and LEVELS repeat magnitudes (ties); SPARSE has
 * ~40% zeros; ZERO is all zeros with some negative zeros. */
static void fill(float *w, int n, enum dist d) {
    static const float levels[3] = {0.25f, 0.5f, 1.0f};
    for (int i = 0; i < n; i++) {
        float x;
        switch (d) {
        case D_UNIFORM: x = rng_sym(); break;
        case D_GAUSS: x = (rng_sym() + rng_sym() + rng_sym() + rng_sym()) * 0.5f; break;
        case D_HEAVY: { float u = rng_sym(); x = u * u * u * 3; break; }
        case D_INTEGER: x = (float)(rng_int(7) - 3); break;
        case D_LEVELS: x = rng_int(4) ? levels[rng_int(3)] * (rng_int(2) ? 1 : -1) : 0.0f; break;
        case D_SPARSE: x = rng_unit() < 0.4 ? 0.0f : rng_sym(); break;
        default: x = rng_int(2) ? -0.0f : 0.0f; break;
        }
        w[i] = x;
    }
}

static double sumsq(const float *w, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)w[i] * w[i];
    return s;
}

static double approx_err(const float *w, int n, float a, const int8_t *q) {
    double e = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)w[i] - (double)a * q[i];
        e += d * d;
    }
    return e;
}

/* ---- ternary: exact rule vs brute force --------------------------------------------------- */

/* min over a >= 0, t in {-1,0,1}^n of ||w - a t||^2. For fixed t the best a is max(0, <w,t>/<t,t>)
 * giving ||w||^2 - <w,t>^2/<t,t> when <w,t> > 0, else ||w||^2. Enumerates all 3^n t with a base-3
 * counter, updating <w,t> and <t,t> in O(1) amortised. *nopt: how many t reach the minimum within
 * a relative 1e-9 (1 means the optimum is unique). */
static double brute_ternary(const float *w, int n, int8_t *tbest, int *nopt) {
    int8_t t[16] = {0};
    double w2 = sumsq(w, n), dot = 0, best = w2, tol = 1e-9 * w2;
    int nnz = 0;
    *nopt = 1;   /* t = 0 */
    memset(tbest, 0, (size_t)n);
    for (;;) {
        int i = 0;   /* increment: digit 0 -> +1 -> -1 -> 0 (carry) */
        for (; i < n; i++) {
            if (t[i] == 0) { t[i] = 1; dot += w[i]; nnz++; break; }
            if (t[i] == 1) { t[i] = -1; dot -= 2.0 * w[i]; break; }
            t[i] = 0; dot += w[i]; nnz--;
        }
        if (i == n) break;   /* wrapped around to all zeros */
        double obj = dot > 0 ? w2 - dot * dot / nnz : w2;
        if (obj < best - tol) {
            best = obj, *nopt = 1;
            memcpy(tbest, t, (size_t)n);
        } else if (fabs(obj - best) <= tol) {
            (*nopt)++;
        }
    }
    return best;
}

static int ternary_codes_ok(const float *w, int n, float a, const int8_t *q) {
    if (!(a >= 0) || !isfinite(a)) return 0;
    for (int i = 0; i < n; i++) {
        if (q[i] < -1 || q[i] > 1) return 0;
        if (q[i] && (q[i] > 0) != (w[i] > 0)) return 0;   /* sign of w */
        if (q[i] && w[i] == 0) return 0;
    }
    if (a == 0)
        for (int i = 0; i < n; i++)
            if (q[i]) return 0;
    return 1;
}

static void test_exact_vs_bruteforce(void) {
    rng_seed(1);
    long total = 0, unique = 0, worse = 0, code_mismatch = 0, bad = 0;
    double worst_rel = 0;
    for (int n = 1; n <= 10; n++) {
        int reps = n <= 8 ? 300 : 40;
        for (int d = 0; d < D_COUNT; d++) {
            for (int r = 0; r < (d == D_ZERO ? 3 : reps); r++) {
                float w[16];
                int8_t q[16], tb[16];
                int nopt;
                fill(w, n, (enum dist)d);
                float a = tern_ternary_cluster(w, n, TERN_TRULE_EXACT, q);
                double best = brute_ternary(w, n, tb, &nopt);
                double e = approx_err(w, n, a, q), w2 = sumsq(w, n);
                total++;
                if (!ternary_codes_ok(w, n, a, q)) {
                    if (bad++ < 5) CHECK(0, "n=%d %s: invalid a=%g or codes", n, dist_name[d], a);
                }
                double rel = w2 > 0 ? (e - best) / w2 : e;
                if (rel > worst_rel) worst_rel = rel;
                if (rel > 1e-6) {
                    if (worse++ < 5) CHECK(0, "n=%d %s: error %.9g > optimum %.9g", n, dist_name[d], e, best);
                }
                if (nopt == 1) {
                    unique++;
                    if (memcmp(q, tb, (size_t)n) != 0 && code_mismatch++ < 5)
                        CHECK(0, "n=%d %s: codes differ from the unique optimum", n, dist_name[d]);
                }
                if (d == D_ZERO) CHECK(a == 0 && e == 0, "all-zero n=%d: a=%g err=%g", n, a, e);
            }
        }
    }
    fprintf(stderr, "  exact rule: %ld clusters (n=1..10), %ld with a unique optimum (codes compared), "
            "worst relative excess %.3g\n", total, unique, worst_rel);
    CHECK(worse == 0 && code_mismatch == 0 && bad == 0, "%ld worse, %ld code mismatches, %ld invalid",
          worse, code_mismatch, bad);
    CHECK(unique > total / 2, "too few unique optima to compare codes (%ld of %ld)", unique, total);
}

static void test_exact_known(void) {
    int8_t q[8];
    float a;
    /* k=1 and k=4 tie (9 = 36/4): the sparser choice, consistently. */
    a = tern_ternary_cluster((const float[]){3, 1, 1, 1}, 4, TERN_TRULE_EXACT, q);
    CHECK(a == 3 && q[0] == 1 && !q[1] && !q[2] && !q[3], "3,1,1,1: a=%g q=%d%d%d%d", a, q[0], q[1], q[2], q[3]);
    a = tern_ternary_cluster((const float[]){1, 3, 1, 1, 0, -0.0f}, 6, TERN_TRULE_EXACT, q);
    CHECK(a == 3 && q[1] == 1 && !q[0] && !q[2] && !q[3] && !q[4] && !q[5], "permuted tie: a=%g", a);
    a = tern_ternary_cluster((const float[]){2, -1}, 2, TERN_TRULE_EXACT, q);   /* 4 vs 9/2 */
    CHECK(a == 1.5f && q[0] == 1 && q[1] == -1, "2,-1: a=%g", a);
    a = tern_ternary_cluster((const float[]){4, 1}, 2, TERN_TRULE_EXACT, q);    /* 16 vs 25/2 */
    CHECK(a == 4 && q[0] == 1 && q[1] == 0, "4,1: a=%g", a);
    /* a tied run is never cut: 0.5 x3 after 2 -> (2+1.5)^2/4 = 3.0625 < 4 ... all out */
    a = tern_ternary_cluster((const float[]){0.5f, 2, -0.5f, 0.5f, 0.1f, 0}, 6, TERN_TRULE_EXACT, q);
    CHECK(a == 2 && q[1] == 1 && !q[0] && !q[2] && !q[3] && !q[4], "run out: a=%g", a);
    /* 1.5 x3 after 2: (2+4.5)^2/4 = 10.56 > 4: all in */
    a = tern_ternary_cluster((const float[]){1.5f, 2, -1.5f, 1.5f, 0.1f, 0}, 6, TERN_TRULE_EXACT, q);
    CHECK(a == 1.625f && q[0] == 1 && q[1] == 1 && q[2] == -1 && q[3] == 1 && !q[4] && !q[5], "run in: a=%g", a);
    a = tern_ternary_cluster((const float[]){-2.5f}, 1, TERN_TRULE_EXACT, q);
    CHECK(a == 2.5f && q[0] == -1, "n=1: a=%g q=%d", a, q[0]);
    q[0] = 5;
    a = tern_ternary_cluster((const float[]){0}, 1, TERN_TRULE_EXACT, q);
    CHECK(a == 0 && q[0] == 0, "n=1 zero: a=%g q=%d", a, q[0]);
    a = tern_ternary_cluster((const float[]){-0.0f, 0, 0, -0.0f, 0, 0, 0}, 7, TERN_TRULE_EXACT, q);
    CHECK(a == 0 && !q[0] && !q[3] && !q[6], "all zero n=7: a=%g", a);
    a = tern_ternary_cluster(NULL, 0, TERN_TRULE_EXACT, q);
    CHECK(a == 0, "n=0: a=%g", a);
}

/* Reference for large n: for every distinct magnitude T, support = {|w| >= T}. O(n^2). */
static double ref_ternary_err(const float *w, int n) {
    double w2 = sumsq(w, n), best = 0;
    for (int j = 0; j < n; j++) {
        float t = fabsf(w[j]);
        if (t == 0) continue;
        double s = 0;
        int k = 0;
        for (int i = 0; i < n; i++)
            if (fabsf(w[i]) >= t) s += fabsf(w[i]), k++;
        if (s * s / k > best) best = s * s / k;
    }
    return w2 - best;
}

/* Large clusters (sorted path, stack and heap buffers): optimal error, the threshold property
 * (every kept |w| >= every dropped |w|, so tied magnitudes are all in or all out), and exact
 * permutation equivariance (the result depends only on the multiset). */
static void test_exact_large_and_permutation(void) {
    static const int sizes[] = {5, 11, 36, 255, 256, 257, 1000, 4608};
    rng_seed(2);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int n = sizes[si];
        float *w = malloc(n * sizeof *w), *wp = malloc(n * sizeof *wp);
        int8_t *q = malloc(n), *qp = malloc(n);
        int *perm = malloc(n * sizeof *perm);
        for (int d = 0; d < D_COUNT; d++) {
            fill(w, n, (enum dist)d);
            if (d == D_UNIFORM)   /* coarse rounding: many ties among many distinct values */
                for (int i = 0; i < n; i++) w[i] = roundf(w[i] * 50) / 50;
            float a = tern_ternary_cluster(w, n, TERN_TRULE_EXACT, q);
            double e = approx_err(w, n, a, q), ref = ref_ternary_err(w, n), w2 = sumsq(w, n);
            CHECK(ternary_codes_ok(w, n, a, q), "n=%d %s: invalid result", n, dist_name[d]);
            CHECK(e - ref <= 1e-6 * w2 + 1e-30, "n=%d %s: error %.9g > reference %.9g", n, dist_name[d], e, ref);
            float kept_min = INFINITY, dropped_max = 0;
            for (int i = 0; i < n; i++) {
                if (q[i]) kept_min = fminf(kept_min, fabsf(w[i]));
                else dropped_max = fmaxf(dropped_max, fabsf(w[i]));
            }
            CHECK(kept_min > dropped_max || a == 0, "n=%d %s: not a threshold cut (%g <= %g)", n,
                  dist_name[d], kept_min, dropped_max);
            for (int i = 0; i < n; i++) perm[i] = i;
            for (int i = n - 1; i > 0; i--) {
                int j = rng_int(i + 1), t = perm[i];
                perm[i] = perm[j], perm[j] = t;
            }
            for (int i = 0; i < n; i++) wp[i] = w[perm[i]];
            float ap = tern_ternary_cluster(wp, n, TERN_TRULE_EXACT, qp);
            int same = ap == a;
            for (int i = 0; i < n; i++) same &= qp[i] == q[perm[i]];
            CHECK(same, "n=%d %s: permuting w changed the result (a %g vs %g)", n, dist_name[d], a, ap);
        }
        free(w), free(wp), free(q), free(qp), free(perm);
    }
}

/* ---- ternary: TWN rule --------------------------------------------------------------------- */

static void test_twn_known(void) {
    int8_t q[8];
    float a;
    /* mean|w| = 0.65, D = 0.455: keeps 1, 0.5, -0.9 -> a = 2.4/3 */
    a = tern_ternary_cluster((const float[]){1, -0.2f, 0.5f, -0.9f}, 4, TERN_TRULE_TWN, q);
    CHECK(fabsf(a - 0.8f) < 1e-6f && q[0] == 1 && q[1] == 0 && q[2] == 1 && q[3] == -1, "twn 1: a=%g", a);
    /* mean|w| = 0.7, D = 0.49: keeps 1, -1, 0.7 -> a = 0.9 */
    a = tern_ternary_cluster((const float[]){1, -1, 0.7f, 0.1f}, 4, TERN_TRULE_TWN, q);
    CHECK(fabsf(a - 0.9f) < 1e-6f && q[0] == 1 && q[1] == -1 && q[2] == 1 && q[3] == 0, "twn 2: a=%g", a);
    /* mean 1.5, D = 1.05: only the 3 (the exact rule is indifferent here too) */
    a = tern_ternary_cluster((const float[]){3, 1, 1, 1}, 4, TERN_TRULE_TWN, q);
    CHECK(a == 3 && q[0] == 1 && !q[1] && !q[2] && !q[3], "twn 3: a=%g", a);
    /* equal magnitudes: all kept, D = 0.07 */
    a = tern_ternary_cluster((const float[]){0.1f, -0.1f, 0.1f, 0.1f}, 4, TERN_TRULE_TWN, q);
    CHECK(a == 0.1f && q[0] == 1 && q[1] == -1 && q[2] == 1 && q[3] == 1, "twn 4: a=%g", a);
    /* a single large weight: mean 0.5, D = 0.35 */
    a = tern_ternary_cluster((const float[]){0, -2, 0, 0}, 4, TERN_TRULE_TWN, q);
    CHECK(a == 2 && !q[0] && q[1] == -1 && !q[2] && !q[3], "twn 5: a=%g", a);
    a = tern_ternary_cluster((const float[]){-0.3f}, 1, TERN_TRULE_TWN, q);
    CHECK(a == 0.3f && q[0] == -1, "twn n=1: a=%g", a);
    q[0] = q[1] = q[2] = 7;
    a = tern_ternary_cluster((const float[]){0, -0.0f, 0}, 3, TERN_TRULE_TWN, q);
    CHECK(a == 0 && !q[0] && !q[1] && !q[2], "twn zero: a=%g", a);
    /* On random data TWN is never better than the exact optimum. */
    rng_seed(3);
    int worse = 0;
    for (int r = 0; r < 2000; r++) {
        float w[64];
        int8_t qe[64], qt[64];
        int n = 1 + rng_int(64);
        fill(w, n, (enum dist)(r % D_COUNT));
        float ae = tern_ternary_cluster(w, n, TERN_TRULE_EXACT, qe);
        float at = tern_ternary_cluster(w, n, TERN_TRULE_TWN, qt);
        CHECK(ternary_codes_ok(w, n, at, qt), "twn random: invalid result");
        if (approx_err(w, n, ae, qe) > approx_err(w, n, at, qt) * (1 + 1e-6) + 1e-30) worse++;
    }
    CHECK(worse == 0, "exact rule worse than TWN on %d clusters", worse);
}

/* ---- n-bit --------------------------------------------------------------------------------- */

static int code_ref(float w, float s, int qmax) {
    if (w == 0) return 0;
    float r = w / s;
    return r >= qmax ? qmax : r <= -qmax ? -qmax : (int)roundf(r);
}

static double nbit_err_at(const float *w, int n, double s, int qmax) {
    double e = 0;
    for (int i = 0; i < n; i++) {
        int c = s > 0 ? code_ref(w[i], (float)s, qmax) : 0;
        double d = (double)w[i] - (double)(float)s * c;
        e += d * d;
    }
    return e;
}

static int cmp_dbl_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The exact minimum over s > 0, by brute force: every breakpoint |w_i|/(m+0.5); on each interval
 * between two the codes are fixed (computed afresh at the midpoint), so the best s there is the
 * least-squares <w,q>/<q,q> clamped to the interval. O(n^2 qmax). Also a dense scan of 10000
 * scales in (0, 1.5 max/qmax] as an independent check; returns the lower of the two. */
static double brute_nbit(const float *w, int n, int qmax, double *dense) {
    double *b = malloc(((size_t)n * qmax + 2) * sizeof *b), maxabs = 0, w2 = sumsq(w, n);
    int nb = 0;
    for (int i = 0; i < n; i++) {
        maxabs = fmax(maxabs, fabsf(w[i]));
        if (w[i] != 0)
            for (int m = 0; m < qmax; m++) b[nb++] = fabsf(w[i]) / (m + 0.5);
    }
    b[nb++] = 0;
    qsort(b, (size_t)nb, sizeof *b, cmp_dbl_desc);
    double best = w2;
    for (int j = 0; j + 1 < nb; j++) {
        double hi = b[j], lo = b[j + 1];
        if (hi == lo) continue;
        double mid = 0.5 * (hi + lo), wq = 0, qq = 0;
        for (int i = 0; i < n; i++) {
            double r = w[i] / mid;
            int c = r >= qmax ? qmax : r <= -qmax ? -qmax : (int)round(r);
            wq += (double)w[i] * c, qq += (double)c * c;
        }
        double s = qq > 0 ? wq / qq : hi;
        s = s < lo ? lo : s > hi ? hi : s;
        if (s > 0) best = fmin(best, w2 - 2 * s * wq + s * s * qq);   /* codes fixed on [lo, hi] */
    }
    free(b);
    *dense = w2;
    for (int j = 1; j <= 10000; j++) *dense = fmin(*dense, nbit_err_at(w, n, maxabs / qmax * 1.5 * j / 10000, qmax));
    return fmin(best, *dense);
}

/* Grid + window search vs the exact optimum, relative. Measured worst on random clusters of
 * 300 .. 4608 weights: 1.3% (n = 300); the cases below come out within 1e-5. */
#define NBIT_SEARCH_SLACK 0.02

static void nbit_case(const float *w, int n, int qmax, int exact_expected, double *worst_rel, const char *what) {
    int8_t *q = malloc((size_t)n);
    float s = tern_nbit_cluster(w, n, qmax, q);
    double maxabs = 0;
    for (int i = 0; i < n; i++) maxabs = fmax(maxabs, fabsf(w[i]));
    CHECK(isfinite(s) && s >= 0, "%s: scale %g", what, s);
    int in_range = 1, consistent = 1;
    for (int i = 0; i < n; i++) {
        in_range &= q[i] >= -qmax && q[i] <= qmax;
        consistent &= q[i] == (s > 0 ? code_ref(w[i], s, qmax) : 0);
    }
    CHECK(in_range, "%s: codes out of [-%d, %d]", what, qmax, qmax);
    CHECK(consistent, "%s: codes are not clamp(round(w/s)) for the returned s=%g", what, s);
    double e = approx_err(w, n, s, q), w2 = sumsq(w, n);
    if (maxabs == 0) {
        CHECK(s == 0 && e == 0, "%s: all-zero gives s=%g", what, s);
        free(q);
        return;
    }
    double e_max = nbit_err_at(w, n, maxabs / qmax, qmax);
    CHECK(e <= e_max * (1 + 1e-12) + 1e-30, "%s: error %.9g worse than max-abs scaling %.9g", what, e, e_max);
    double dense, best = brute_nbit(w, n, qmax, &dense);
    /* The returned scale is a float: allow its rounding (1e-9 of ||w||^2) besides the relative slack. */
    double floor_ = 1e-9 * w2, rel = (e - best) / (best + floor_);
    if (rel > *worst_rel) *worst_rel = rel;
    if (exact_expected)
        CHECK(e - best <= 1e-6 * best + floor_, "%s: error %.9g above the exact optimum %.9g", what, e, best);
    else
        CHECK(e - best <= NBIT_SEARCH_SLACK * best + floor_, "%s: error %.9g more than %g above the optimum %.9g",
              what, e, NBIT_SEARCH_SLACK, best);
    CHECK(e <= dense * (1 + 1e-6) + floor_, "%s: error %.9g worse than the dense scan %.9g", what, e, dense);
    free(q);
}

static void test_nbit(void) {
    /* 4-bit and 8-bit up to n = 258 sweep every scale (exact); larger 8-bit clusters search. */
    static const struct { int n, qmax, reps; } cases[] = {
        {1, 7, 20}, {2, 7, 50}, {3, 7, 50}, {9, 7, 50}, {16, 7, 50}, {36, 7, 50}, {100, 7, 10}, {585, 7, 2},
        {1000, 7, 1}, {1, 127, 20}, {2, 127, 20}, {9, 127, 20}, {33, 127, 5}, {147, 127, 1}, {258, 127, 1},
        {259, 127, 1}, {300, 127, 1},
    };
    rng_seed(4);
    double worst_exact = 0, worst_grid = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int n = cases[ci].n, qmax = cases[ci].qmax;
        int exact = qmax == 7 || n <= 258;
        float *w = malloc(n * sizeof *w);
        for (int r = 0; r < cases[ci].reps; r++) {
            for (int d = 0; d < D_COUNT; d++) {
                char what[64];
                snprintf(what, sizeof what, "n=%d qmax=%d %s #%d", n, qmax, dist_name[d], r);
                fill(w, n, (enum dist)d);
                nbit_case(w, n, qmax, exact, exact ? &worst_exact : &worst_grid, what);
            }
        }
        free(w);
    }
    fprintf(stderr, "  n-bit: worst excess over the brute-force optimum: sweep %.3g, grid %.3g (relative)\n",
            worst_exact, worst_grid);
    int8_t q[4];
    float s = tern_nbit_cluster((const float[]){0.7f, -0.3f, 0.1f}, 3, 7, q);   /* exact at s = 0.1 only */
    CHECK(fabsf(s - 0.1f) < 1e-7f && q[0] == 7 && q[1] == -3 && q[2] == 1, "0.7,-0.3,0.1: s=%g q=%d,%d,%d",
          s, q[0], q[1], q[2]);
    /* n = 1 fits exactly at s = 3/m for every m <= 7: the smallest, as max-abs scaling gives. */
    s = tern_nbit_cluster((const float[]){-3}, 1, 7, q);
    CHECK(fabsf(s - 3.0f / 7) < 1e-7f && q[0] == -7, "n=1: s=%g q=%d", s, q[0]);
    s = tern_nbit_cluster((const float[]){0, -0.0f, 0}, 3, 127, q);
    CHECK(s == 0 && !q[0] && !q[1] && !q[2], "all zero: s=%g", s);
}

/* ---- whole tensors ------------------------------------------------------------------------- */

/* Each (o, cluster) slice must equal the cluster function on exactly those weights. */
static void check_tensor_layout(const float *w, int cout, int cin_g, int khw, enum tern_wtype wt, int N,
                                enum tern_trule rule, const char *what) {
    int chans = wt == TERN_WTYPE_INT8 || N >= cin_g ? cin_g : N;
    int ncl = (cin_g + chans - 1) / chans, per_o = cin_g * khw;
    int8_t *q = malloc((size_t)cout * per_o + 16), *qc = malloc((size_t)per_o);
    float *sc = malloc(((size_t)cout * ncl + 4) * sizeof *sc);
    memset(q + (size_t)cout * per_o, 0x55, 16);
    for (int i = 0; i < 4; i++) sc[(size_t)cout * ncl + i] = -123.0f;
    enum tern_status st = tern_wquant_tensor(w, cout, cin_g, khw, wt, N, rule, "layout", q, sc);
    CHECK(st == TERN_STATUS_OK, "%s: status %s: %s", what, tern_status_str(st), tern_last_error());
    int mism = 0;
    for (int o = 0; o < cout; o++)
        for (int g = 0; g < ncl; g++) {
            int c0 = g * chans, n = TERN_MIN(chans, cin_g - c0) * khw;
            const float *ws = w + (size_t)o * per_o + (size_t)c0 * khw;
            float s = wt == TERN_WTYPE_TERNARY ? tern_ternary_cluster(ws, n, rule, qc)
                                               : tern_nbit_cluster(ws, n, wt == TERN_WTYPE_INT8 ? 127 : 7, qc);
            if (s != sc[o * ncl + g] || memcmp(qc, q + (size_t)o * per_o + (size_t)c0 * khw, (size_t)n)) mism++;
        }
    CHECK(mism == 0, "%s: %d clusters differ from the cluster function on their slice", what, mism);
    int over = 0;
    for (int i = 0; i < 16; i++) over |= q[(size_t)cout * per_o + i] != 0x55;
    for (int i = 0; i < 4; i++) over |= sc[(size_t)cout * ncl + i] != -123.0f;
    CHECK(!over, "%s: wrote past q or scales", what);
    free(q), free(qc), free(sc);
}

static void test_tensor_clusters(void) {
    /* cout 3, cin_g 5, 3 taps, N = 2: clusters are channels {0,1}, {2,3}, {4}. Every weight of
     * cluster g of filter o has magnitude 1 + 10 o + g (random sign), so each scale must be exactly
     * that value, which it is only if the grouping is right. */
    enum { CO = 3, CI = 5, T = 3 };
    float w[CO * CI * T];
    int8_t q[CO * CI * T];
    float sc[CO * 3];
    rng_seed(5);
    for (int o = 0; o < CO; o++)
        for (int c = 0; c < CI; c++)
            for (int t = 0; t < T; t++)
                w[(o * CI + c) * T + t] = (float)(1 + 10 * o + c / 2) * (rng_int(2) ? 1 : -1);
    enum tern_status st = tern_wquant_tensor(w, CO, CI, T, TERN_WTYPE_TERNARY, 2, TERN_TRULE_EXACT, "c", q, sc);
    CHECK(st == TERN_STATUS_OK, "status %d", st);
    for (int o = 0; o < CO; o++)
        for (int g = 0; g < 3; g++)
            CHECK(sc[o * 3 + g] == (float)(1 + 10 * o + g), "scale[%d][%d] = %g", o, g, sc[o * 3 + g]);
    int signs = 1;
    for (int i = 0; i < CO * CI * T; i++) signs &= q[i] == (w[i] > 0 ? 1 : -1);
    CHECK(signs, "codes are not the signs");
    /* N >= cin_g: one scale per output channel. */
    for (int o = 0; o < CO; o++)
        for (int i = 0; i < CI * T; i++) w[o * CI * T + i] = fabsf(w[o * CI * T + i]) > 0 ? 2.0f + o : 0;
    st = tern_wquant_tensor(w, CO, CI, T, TERN_WTYPE_TERNARY, 7, TERN_TRULE_EXACT, "c", q, sc);
    CHECK(st == TERN_STATUS_OK && sc[0] == 2 && sc[1] == 3 && sc[2] == 4, "N>cin: %g %g %g", sc[0], sc[1], sc[2]);

    /* Random tensors: every slice matches the cluster function (boundaries, last short cluster,
     * scratch sizing, no writes past the end). */
    static const struct { int cout, cin_g, khw, N; } shapes[] = {
        {3, 5, 3, 2}, {4, 7, 9, 4}, {2, 7, 9, 7}, {2, 7, 9, 64}, {5, 1, 1, 4}, {3, 16, 1, 1}, {2, 9, 1, 4},
        {2, 100, 9, 70}, /* INT4: 630-weight clusters take the grid, the last 270 the sweep */
        {2, 3, 49, 4},   /* a first conv */
    };
    static const enum tern_wtype wts[] = {TERN_WTYPE_TERNARY, TERN_WTYPE_INT4, TERN_WTYPE_INT8};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int n = shapes[si].cout * shapes[si].cin_g * shapes[si].khw;
        float *wr = malloc(n * sizeof *wr);
        fill(wr, n, (enum dist)(si % D_COUNT));
        for (size_t wi = 0; wi < 3; wi++)
            for (int rule = 0; rule < (wts[wi] == TERN_WTYPE_TERNARY ? 2 : 1); rule++) {
                char what[96];
                snprintf(what, sizeof what, "%dx%dx%d N=%d wtype %d rule %d", shapes[si].cout, shapes[si].cin_g,
                         shapes[si].khw, shapes[si].N, wts[wi], rule);
                check_tensor_layout(wr, shapes[si].cout, shapes[si].cin_g, shapes[si].khw, wts[wi], shapes[si].N,
                                    (enum tern_trule)rule, what);
            }
        free(wr);
    }
}

static void test_tensor_int8_per_channel(void) {
    /* INT8 ignores N: one scale per output channel even with N = 1. Filter 1 is filter 0 times 4
     * (exact in float), so its scale must be exactly 4x and its codes identical; a shared or
     * per-cluster scale would break one or the other. */
    enum { CO = 2, CI = 4, T = 9 };
    float w[CO * CI * T], sc[CO * CI];
    int8_t q[CO * CI * T];
    rng_seed(6);
    for (int i = 0; i < CI * T; i++) w[i] = rng_sym(), w[CI * T + i] = 4 * w[i];
    for (int i = 0; i < CO * CI; i++) sc[i] = -1;
    enum tern_status st = tern_wquant_tensor(w, CO, CI, T, TERN_WTYPE_INT8, 1, TERN_TRULE_EXACT, "fc", q, sc);
    CHECK(st == TERN_STATUS_OK, "status %d", st);
    CHECK(sc[0] > 0 && sc[1] == 4 * sc[0], "scales %g %g", sc[0], sc[1]);
    CHECK(memcmp(q, q + CI * T, CI * T) == 0, "codes of the scaled filter differ");
    CHECK(sc[2] == -1 && sc[3] == -1, "wrote more than cout scales");
    /* Integer weights -2..2 fit exactly at s = 1/m for m = 1..63; the smallest such s is chosen. */
    for (int i = 0; i < CI * T; i++) w[i] = (float)((i % 5) - 2);
    st = tern_wquant_tensor(w, 1, CI, T, TERN_WTYPE_INT8, 1, TERN_TRULE_EXACT, "fc", q, sc);
    int ok = st == TERN_STATUS_OK && fabsf(sc[0] - 1.0f / 63) < 1e-9f;
    for (int i = 0; i < CI * T; i++) ok &= q[i] == 63 * ((i % 5) - 2);
    CHECK(ok, "integer weights: s=%g (want 1/63), q[0]=%d", sc[0], q[0]);
}

static void test_tensor_rejects(void) {
    float w[2 * 3 * 4];
    int8_t q[2 * 3 * 4];
    float sc[8];
    for (int i = 0; i < 24; i++) w[i] = 0.01f * i;
    static const struct { float v; const char *word; } bad[] = {{NAN, "NaN"}, {INFINITY, "+Inf"}, {-INFINITY, "-Inf"}};
    static const enum tern_wtype wts[] = {TERN_WTYPE_TERNARY, TERN_WTYPE_INT4, TERN_WTYPE_INT8};
    for (int b = 0; b < 3; b++)
        for (int wi = 0; wi < 3; wi++) {
            float save = w[17];
            w[17] = bad[b].v;   /* output channel 1, input channel 1, tap 1 */
            enum tern_status st = tern_wquant_tensor(w, 2, 3, 4, wts[wi], 2, TERN_TRULE_EXACT, "layer3.conv2", q, sc);
            const char *e = tern_last_error();
            CHECK(st == TERN_STATUS_NUMERIC, "%s: status %d", bad[b].word, st);
            CHECK(strstr(e, "layer3.conv2") && strstr(e, bad[b].word) && strstr(e, "17"), "message: %s", e);
            w[17] = save;
        }
    enum tern_status st = tern_wquant_tensor(w, 2, 3, 4, TERN_WTYPE_TERNARY, 0, TERN_TRULE_EXACT, "fc9", q, sc);
    CHECK(st == TERN_STATUS_INVALID_ARG && strstr(tern_last_error(), "fc9"), "cluster 0: %d %s", st, tern_last_error());
    st = tern_wquant_tensor(w, 2, 0, 4, TERN_WTYPE_INT4, 2, TERN_TRULE_EXACT, "fc9", q, sc);
    CHECK(st == TERN_STATUS_INVALID_ARG, "cin_g 0: %d", st);
    st = tern_wquant_tensor(w, 2, 3, 4, (enum tern_wtype)3, 2, TERN_TRULE_EXACT, "fc9", q, sc);
    CHECK(st == TERN_STATUS_INVALID_ARG, "wtype 3: %d", st);
    st = tern_wquant_tensor(w, 0, 3, 4, TERN_WTYPE_TERNARY, 2, TERN_TRULE_EXACT, "empty", q, sc);
    CHECK(st == TERN_STATUS_OK, "cout 0: %d", st);
}

static void test_sqnr(void) {
    const float w[4] = {1, 2, 3, 4}, wq[4] = {1, 2, 3, 3}, z[4] = {0};
    double d = tern_sqnr_db(w, wq, 4);   /* 10 log10(30 / 1) */
    CHECK(fabs(d - 14.771212547196624) < 1e-9, "sqnr %g", d);
    CHECK(tern_sqnr_db(w, w, 4) == INFINITY, "exact is not +inf");
    CHECK(tern_sqnr_db(z, z, 4) == INFINITY, "all-zero exact is not +inf");
    CHECK(tern_sqnr_db(z, wq, 4) == -INFINITY, "zero signal with noise is not -inf");
    CHECK(tern_sqnr_db(w, wq, 0) == INFINITY, "empty is not +inf");
    /* a ternary approximation: w = {3,1,1,1} -> a = 3, t = {1,0,0,0}: 10 log10(12/3) */
    const float wt[4] = {3, 1, 1, 1};
    int8_t q[4];
    float a = tern_ternary_cluster(wt, 4, TERN_TRULE_EXACT, q), r[4];
    for (int i = 0; i < 4; i++) r[i] = a * q[i];
    CHECK(fabs(tern_sqnr_db(wt, r, 4) - 10 * log10(4.0)) < 1e-9, "ternary sqnr %g", tern_sqnr_db(wt, r, 4));
}

int main(void) {
    RUN(test_exact_known);
    RUN(test_exact_vs_bruteforce);
    RUN(test_exact_large_and_permutation);
    RUN(test_twn_known);
    RUN(test_nbit);
    RUN(test_tensor_clusters);
    RUN(test_tensor_int8_per_channel);
    RUN(test_tensor_rejects);
    RUN(test_sqnr);
    return check_summary();
}
