/* Error-feedback quantization (src/quant/gptq.c) against independent references on tiny layers:
 * the factorisation against the definition (U^T U H = I), GPTQ against a direct re-solve of the
 * not-yet-quantized weights after every step, the H = I case against the plain quantizer, the
 * scale refit against the closed form, and the whole row against brute force over all ternary codes. */
#include "check.h"
#include "quant/gptq.h"
#include "quant/wquant.h"
#include "quant/quantize.h"
#include <math.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift64*, [0,1) */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(1 - urand())) * cos(6.283185307179586 * urand()); }

/* A layer's statistics: n input rows x = A z (correlated), y = x . w0 + noise; H = E[x x^T],
 * t = E[x y]. corr 0 gives independent inputs of unequal power. */
static void make_problem(int K, double corr, double *H, double *t, double *w0) {
    int n = 4 * K + 20;
    double A[64 * 64], x[64];
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) A[i * K + j] = (i == j ? 1 + urand() : 0) + corr * nrand();
    for (int i = 0; i < K; i++) w0[i] = nrand() * (0.5 + urand());
    memset(H, 0, sizeof(double) * K * K);
    memset(t, 0, sizeof(double) * K);
    for (int r = 0; r < n; r++) {
        double z[64], y = 0;
        for (int i = 0; i < K; i++) z[i] = nrand();
        for (int i = 0; i < K; i++) {
            x[i] = 0;
            for (int j = 0; j < K; j++) x[i] += A[i * K + j] * z[j];
            y += x[i] * w0[i];
        }
        y += 0.1 * nrand();
        for (int i = 0; i < K; i++) {
            t[i] += x[i] * y / n;
            for (int j = 0; j < K; j++) H[i * K + j] += x[i] * x[j] / n;
        }
    }
}

/* Solve S z = b (m x m, Gaussian elimination with partial pivoting; S and b are overwritten). */
static void solve(double *S, double *b, int m) {
    for (int c = 0; c < m; c++) {
        int p = c;
        for (int r = c + 1; r < m; r++) if (fabs(S[r * m + c]) > fabs(S[p * m + c])) p = r;
        for (int j = 0; j < m; j++) { double tmp = S[c * m + j]; S[c * m + j] = S[p * m + j]; S[p * m + j] = tmp; }
        double tb = b[c]; b[c] = b[p]; b[p] = tb;
        for (int r = c + 1; r < m; r++) {
            double f = S[r * m + c] / S[c * m + c];
            for (int j = c; j < m; j++) S[r * m + j] -= f * S[c * m + j];
            b[r] -= f * b[c];
        }
    }
    for (int c = m - 1; c >= 0; c--) {
        for (int j = c + 1; j < m; j++) b[c] -= S[c * m + j] * b[j];
        b[c] /= S[c * m + c];
    }
}

/* The free weights k0..K-1 that minimise E given v[0..k0-1] fixed: H_FF w = t_F - H_FX v_X. */
static void resolve_free(const double *H, const double *t, int K, int k0, const double *v, double *w) {
    int m = K - k0;
    double S[64 * 64], b[64];
    for (int i = 0; i < m; i++) {
        b[i] = t[k0 + i];
        for (int j = 0; j < k0; j++) b[i] -= H[(k0 + i) * K + j] * v[j];
        for (int j = 0; j < m; j++) S[i * m + j] = H[(k0 + i) * K + k0 + j];
    }
    solve(S, b, m);
    for (int i = 0; i < m; i++) w[k0 + i] = b[i];
}

static int8_t rcode(double w, double s, int qmax) {
    if (!(s > 0)) return 0;
    double r = round(w / s);
    return (int8_t)(r > qmax ? qmax : r < -qmax ? -qmax : r);
}

static void test_factor(void) {
    double H[40 * 40], t[40], w0[40], U[40 * 40], work[40 * 40], w[40];
    for (int trial = 0; trial < 20; trial++) {
        int K = 1 + trial * 2;
        make_problem(K, 0.5, H, t, w0);
        double ridge = -1;
        CHECK(tern_gptq_factor(H, K, U, work, &ridge) == TERN_STATUS_OK, "K %d", K);
        CHECK(ridge == 0, "well-conditioned H needed a ridge %g", ridge);
        double err = 0;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) {
                if (j < i) CHECK(U[i * K + j] == 0, "U not upper at %d,%d", i, j);
                double s = 0; /* (U^T U H)[i][j] */
                for (int k = 0; k < K; k++) {
                    double uu = 0;
                    for (int l = 0; l < K; l++) uu += U[l * K + i] * U[l * K + k];
                    s += uu * H[k * K + j];
                }
                err = fmax(err, fabs(s - (i == j)));
            }
        CHECK(err < 1e-8, "K %d: |U^T U H - I| = %g", K, err);
        tern_gptq_lsq(U, t, K, w);
        for (int i = 0; i < K; i++) {
            double s = 0;
            for (int j = 0; j < K; j++) s += H[i * K + j] * w[j];
            CHECK(fabs(s - t[i]) < 1e-8 * (1 + fabs(t[i])), "H w* != t at %d (K %d)", i, K);
        }
    }
    /* singular H (a constant-zero input): the ridge makes it factorable; NaN: a clear error */
    int K = 5;
    make_problem(K, 0.3, H, t, w0);
    for (int i = 0; i < K; i++) H[2 * K + i] = H[i * K + 2] = 0;
    double ridge = 0;
    CHECK(tern_gptq_factor(H, K, U, work, &ridge) == TERN_STATUS_OK && ridge > 0, "singular H: ridge %g", ridge);
    H[0] = NAN;
    CHECK(tern_gptq_factor(H, K, U, work, &ridge) == TERN_STATUS_NUMERIC, "NaN H accepted");
}

/* GPTQ's update through U against re-solving the free weights from scratch after each step. */
static void test_against_resolve(void) {
    static const int qmaxes[3] = {1, 7, 127};
    int checked = 0, mism = 0;
    for (int trial = 0; trial < 300; trial++) {
        int per = 1 + trial % 4, ncl = 1 + trial % 3, K = per * ncl - (trial % 5 == 0 && per > 1);
        int qmax = qmaxes[trial % 3];
        double H[16 * 16], t[16], w0[16], U[16 * 16], work[16 * 16], rw[3 * 16];
        make_problem(K, 0.8, H, t, w0);
        CHECK(tern_gptq_factor(H, K, U, work, NULL) == TERN_STATUS_OK, "factor");
        double ws[16];
        tern_gptq_lsq(U, t, K, ws);
        for (int mode = 0; mode < 2; mode++) {
            int8_t c[16], cr[16], pc[16];
            float a[16], ar[16];
            tern_gptq_row(U, ws, K, per, qmax, (enum tern_gptq_mode)mode, NULL, c, a, rw);
            /* reference: v fixed so far; the rest re-solved before every cluster and position */
            double v[16], cur[16];
            memcpy(cur, ws, sizeof cur);
            int near_tie = 0;
            for (int k0 = 0, g = 0; k0 < K; k0 += per, g++) {
                int n = K - k0 < per ? K - k0 : per;
                if (k0) resolve_free(H, t, K, k0, v, cur);
                float wf[16];
                for (int i = 0; i < n; i++) wf[i] = (float)cur[k0 + i];
                ar[g] = qmax == 1 ? tern_ternary_cluster(wf, n, TERN_TRULE_EXACT, pc) : tern_nbit_cluster(wf, n, qmax, pc);
                for (int k = k0; k < k0 + n; k++) {
                    if (k > k0) resolve_free(H, t, K, k, v, cur);
                    if (mode == TERN_GPTQ_CLUSTER) cr[k] = pc[k - k0];
                    else {
                        cr[k] = rcode(cur[k], ar[g], qmax);
                        double f = fabs(cur[k] / ar[g]);
                        if (ar[g] > 0 && fabs(f - floor(f) - 0.5) < 1e-9) near_tie = 1;
                    }
                    v[k] = (double)ar[g] * cr[k];
                }
            }
            if (near_tie) continue;
            checked++;
            int same = 1;
            for (int k = 0; k < K; k++) same &= c[k] == cr[k];
            for (int g = 0; g < ncl; g++) same &= fabsf(a[g] - ar[g]) <= 1e-5f * fmaxf(1, ar[g]);
            mism += !same;
            CHECK(same, "trial %d mode %d K %d per %d qmax %d differs from the re-solve", trial, mode, K, per, qmax);
        }
    }
    CHECK(checked > 500, "only %d cases checked", checked);
    fprintf(stderr, "  gptq vs re-solve: %d cases, %d differ\n", checked, mism);
}

/* H diagonal: no error moves; cluster mode == tern_wquant_tensor, position mode == its scales
 * with codes round(w/a). */
static void test_diagonal_is_plain(void) {
    for (int trial = 0; trial < 200; trial++) {
        int khw = trial % 2 ? 9 : 1, N = 1 + trial % 5, cin = N * (1 + trial % 3) + trial % 2, K = cin * khw;
        int wt = trial % 3 == 0 ? TERN_WTYPE_TERNARY : trial % 3 == 1 ? TERN_WTYPE_INT4 : TERN_WTYPE_INT8;
        int qmax = wt == TERN_WTYPE_TERNARY ? 1 : wt == TERN_WTYPE_INT4 ? 7 : 127;
        int per = wt == TERN_WTYPE_INT8 ? K : N * khw, ncl = (K + per - 1) / per;
        static double H[256 * 256], U[256 * 256], work[256 * 256], rw[3 * 256];
        float wf[256], sp[256], a[256];
        double w[256];
        int8_t qp[256], c[256];
        memset(H, 0, sizeof(double) * K * K);
        for (int i = 0; i < K; i++) H[i * K + i] = trial % 4 == 0 ? 1.0 : 0.25 + 3 * urand();
        for (int i = 0; i < K; i++) w[i] = wf[i] = (float)(nrand() * (trial % 7 == 0 && i % 3 ? 0 : 1));
        CHECK(tern_gptq_factor(H, K, U, work, NULL) == TERN_STATUS_OK, "factor");
        CHECK(tern_wquant_tensor(wf, 1, cin, khw, wt, wt == TERN_WTYPE_INT8 ? cin : N, TERN_TRULE_EXACT, "t", qp, sp) == TERN_STATUS_OK, "wquant");
        tern_gptq_row(U, w, K, per, qmax, TERN_GPTQ_CLUSTER, NULL, c, a, rw);
        int same = 1;
        for (int k = 0; k < K; k++) same &= c[k] == qp[k];
        for (int g = 0; g < ncl; g++) same &= a[g] == sp[g];
        CHECK(same, "trial %d: cluster mode with diagonal H differs from the plain quantizer", trial);
        tern_gptq_row(U, w, K, per, qmax, TERN_GPTQ_POSITION, NULL, c, a, rw);
        same = 1;
        for (int g = 0; g < ncl; g++) same &= a[g] == sp[g];
        for (int k = 0; k < K; k++) same &= c[k] == rcode(w[k], sp[k / per], qmax);
        CHECK(same, "trial %d: position mode with diagonal H is not plain rounding", trial);
    }
}

/* The refit against the closed form: one cluster a = max(0, c.t / c^T H c); several clusters: no
 * single scale can move (coordinate-wise optimal, KKT) and E is not above a grid around it. */
static void test_refit(void) {
    for (int trial = 0; trial < 200; trial++) {
        int per = 1 + trial % 4, ncl = 1 + trial % 3, K = per * ncl;
        double H[12 * 12], t[12], w0[12], fw[16];
        int8_t c[12];
        float a[4];
        make_problem(K, 0.6, H, t, w0);
        for (int k = 0; k < K; k++) c[k] = (int8_t)((int)(urand() * 3) - 1);
        for (int g = 0; g < ncl; g++) a[g] = (float)urand();
        tern_gptq_refit(H, t, K, per, c, a, fw);
        if (ncl == 1) {
            double ct = 0, chc = 0;
            for (int i = 0; i < K; i++) {
                ct += c[i] * t[i];
                for (int j = 0; j < K; j++) chc += c[i] * H[i * K + j] * c[j];
            }
            double want = chc > 0 && ct > 0 ? ct / chc : 0;
            CHECK(fabs(a[0] - want) <= 1e-5 * fmax(1, want), "trial %d: refit %g, closed form %g", trial, a[0], want);
        }
        double e = tern_gptq_objective(H, t, K, per, c, a);
        for (int g = 0; g < ncl; g++)
            for (int d = -3; d <= 3; d++) {
                float b[4];
                memcpy(b, a, sizeof b);
                b[g] = fmaxf(0, a[g] + 0.01f * d);
                CHECK(tern_gptq_objective(H, t, K, per, c, b) >= e - 1e-7 * (1 + fabs(e)), "trial %d: moving scale %d by %d%% lowers E", trial, g, d);
            }
    }
}

/* Brute force over all 3^K ternary codes (each with its optimal scales) of rows of 2 and 3
 * clusters (4..6 weights): the optimum E*. GPTQ (+ refit) never goes below it (a consistency check of E), reaches
 * it often, and beats the plain quantizer of w* (with refit scales) far more often than it loses. */
static void test_brute_force(void) {
    for (int corr = 0; corr < 2; corr++) {
        double gap_g = 0, gap_p = 0;
        int opt_hits = 0, trials = 150, wins = 0, losses = 0;
        for (int trial = 0; trial < trials; trial++) {
            int per = 2 + trial % 2, ncl = 2 + (trial % 4 == 0), K = per * ncl; /* K 4..6 */
            double H[81], t[81], w0[9], U[81], work[81], ws[9];
            static double gw[1024];
            make_problem(K, corr ? 0.9 : 0.0, H, t, w0);
            CHECK(tern_gptq_factor(H, K, U, work, NULL) == TERN_STATUS_OK, "factor");
            tern_gptq_lsq(U, t, K, ws);
            double best = INFINITY, fw[32];
            int total = 1;
            for (int k = 0; k < K; k++) total *= 3;
            for (int m = 0; m < total; m++) {
                int8_t c[9];
                float a[3] = {1, 1, 1};
                for (int k = 0, r = m; k < K; k++, r /= 3) c[k] = (int8_t)(r % 3 - 1);
                tern_gptq_refit(H, t, K, per, c, a, fw);
                double e = tern_gptq_objective(H, t, K, per, c, a);
                if (e < best) best = e;
            }
            int8_t c[9], cp[9];
            float a[3], ap[3], wf[9];
            double eg = tern_gptq_optimize_row(H, U, t, NULL, K, per, 1, TERN_GPTQ_POSITION, 3, c, a, gw);
            CHECK(fabs(eg - tern_gptq_objective(H, t, K, per, c, a)) <= 1e-9 * (1 + fabs(eg)), "returned E is not E of the result");
            for (int k = 0; k < K; k++) wf[k] = (float)ws[k];
            CHECK(tern_wquant_tensor(wf, 1, ncl, per, TERN_WTYPE_TERNARY, 1, TERN_TRULE_EXACT, "t", cp, ap) == TERN_STATUS_OK, "wquant");
            tern_gptq_refit(H, t, K, per, cp, ap, fw);
            double ep = tern_gptq_objective(H, t, K, per, cp, ap);
            /* E - E(w*) >= 0 is the error above the unconstrained optimum */
            double e0 = 0;
            for (int i = 0; i < K; i++) e0 -= ws[i] * t[i];
            CHECK(eg >= best - 1e-9 * (1 + fabs(best)), "trial %d: GPTQ %g below the brute-force optimum %g", trial, eg, best);
            CHECK(ep >= best - 1e-9 * (1 + fabs(best)), "trial %d: plain %g below the brute-force optimum %g", trial, ep, best);
            opt_hits += eg <= best + 1e-9 * (1 + fabs(best));
            wins += eg < ep - 1e-9 * (1 + fabs(ep));
            losses += eg > ep + 1e-9 * (1 + fabs(ep));
            gap_g += (eg - best) / (best - e0 > 0 ? best - e0 : 1);
            gap_p += (ep - best) / (best - e0 > 0 ? best - e0 : 1);
        }
        fprintf(stderr, "  brute force (%s inputs): GPTQ optimal in %d/%d, better than plain in %d, worse in %d; mean excess over optimum: GPTQ %.3f, plain %.3f\n",
                corr ? "correlated" : "independent", opt_hits, trials, wins, losses, gap_g / trials, gap_p / trials);
        CHECK(wins > 2 * losses, "GPTQ better than plain %d times, worse %d times", wins, losses);
        CHECK(gap_g <= gap_p, "GPTQ mean excess %.3f above plain %.3f", gap_g / trials, gap_p / trials);
        CHECK(opt_hits > trials / 5, "GPTQ hit the optimum only %d/%d times", opt_hits, trials);
    }
}

/* Same inputs, same bytes: two runs of the whole row give identical codes and scales. */
static void test_deterministic(void) {
    int K = 36, per = 9;
    double H[36 * 36], t[36], w0[36], U[36 * 36], work[36 * 36];
    static double gw[4096];
    make_problem(K, 0.7, H, t, w0);
    CHECK(tern_gptq_factor(H, K, U, work, NULL) == TERN_STATUS_OK, "factor");
    int8_t c1[36], c2[36];
    float a1[4], a2[4];
    tern_gptq_optimize_row(H, U, t, NULL, K, per, 7, TERN_GPTQ_POSITION, 3, c1, a1, gw);
    memset(gw, 0xff, sizeof gw);
    tern_gptq_optimize_row(H, U, t, NULL, K, per, 7, TERN_GPTQ_POSITION, 3, c2, a2, gw);
    CHECK(!memcmp(c1, c2, sizeof c1) && !memcmp(a1, a2, sizeof a1), "two runs differ");
    CHECK(tern_gptq_row_work(K, per) <= sizeof gw / sizeof gw[0], "work size");
}

/* ---- the plain textbook loops the library's factorisation and sums were first written as; the
 * library reorganises them for speed (blocked, contiguous, side-by-side sums) and must give the
 * same bits, since the .tern bytes of every model depend on them. ---- */
static int plain_factor(const double *H, int K, double *U, double *A) {
    memcpy(A, H, sizeof(double) * (size_t)K * K);
    if (!tern_gptq_cholesky_plain(A, K)) return 0;
    for (int j = 0; j < K; j++) {
        U[(size_t)j * K + j] = 1.0 / A[(size_t)j * K + j];
        for (int i = j + 1; i < K; i++) {
            double s = 0;
            for (int k = j; k < i; k++) s += A[(size_t)i * K + k] * U[(size_t)k * K + j];
            U[(size_t)i * K + j] = -s / A[(size_t)i * K + i];
        }
    }
    for (int i = 0; i < K; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int k = i; k < K; k++) s += U[(size_t)k * K + i] * U[(size_t)k * K + j];
            A[(size_t)i * K + j] = A[(size_t)j * K + i] = s;
        }
    if (!tern_gptq_cholesky_plain(A, K)) return 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) U[(size_t)i * K + j] = j >= i ? A[(size_t)j * K + i] : 0.0;
    return 1;
}

/* Random covariance-like H (n rows of correlated, half-zero "ReLU" inputs), K up to 200. */
static void random_h(int K, double *H, double *t) {
    int n = 2 * K + 8;
    double *x = malloc(sizeof(double) * (size_t)K);
    memset(H, 0, sizeof(double) * (size_t)K * K);
    for (int i = 0; i < K; i++) t[i] = nrand();
    for (int r = 0; r < n; r++) {
        double z = nrand();
        for (int i = 0; i < K; i++) { x[i] = 0.7 * z + nrand(); if (x[i] < -0.3) x[i] = 0; }
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) H[(size_t)i * K + j] += x[i] * x[j] / n;
    }
    for (int i = 0; i < K; i++) H[(size_t)i * K + i] += 1e-3;
    free(x);
}

static void test_same_bits_as_plain(void) {
    static const int Ks[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 27, 64, 97, 144, 150};
    int nk = (int)(sizeof Ks / sizeof Ks[0]), differ = 0, cases = 0;
    for (int ti = 0; ti < nk; ti++) {
        int K = Ks[ti];
        size_t KK = (size_t)K * K;
        double *H = malloc(sizeof(double) * KK), *t = malloc(sizeof(double) * K), *U1 = malloc(sizeof(double) * KK),
               *U2 = malloc(sizeof(double) * KK), *w1 = malloc(sizeof(double) * KK), *w2 = malloc(sizeof(double) * KK);
        random_h(K, H, t);
        /* the Cholesky alone, on a matrix whose upper triangle differs from the lower (must stay) */
        memcpy(w1, H, sizeof(double) * KK);
        for (int i = 0; i < K; i++)
            for (int j = i + 1; j < K; j++) w1[(size_t)i * K + j] = 1000 + i + j;
        memcpy(w2, w1, sizeof(double) * KK);
        CHECK(tern_gptq_cholesky_plain(w1, K) == tern_gptq_cholesky(w2, K), "K %d: cholesky verdicts differ", K);
        differ += memcmp(w1, w2, sizeof(double) * KK) != 0;
        CHECK(plain_factor(H, K, U1, w1), "K %d: plain factor failed", K);
        double ridge = -1;
        CHECK(tern_gptq_factor(H, K, U2, w2, &ridge) == TERN_STATUS_OK && ridge == 0, "K %d: factor", K);
        differ += memcmp(U1, U2, sizeof(double) * KK) != 0;
        for (int per = 1; per <= K; per = per * 3 + 1) {
            int8_t c[200];
            float a[200];
            for (int k = 0; k < K; k++) c[k] = (int8_t)((int)(urand() * 5) - 2); /* -2..2, some zeros */
            int ncl = (K + per - 1) / per;
            for (int g = 0; g < ncl; g++) a[g] = (float)(0.1 + urand());
            double *M1 = malloc(sizeof(double) * (size_t)(ncl * ncl + ncl)), *M2 = malloc(sizeof(double) * (size_t)(ncl * ncl + ncl));
            tern_gptq_normal_eq_plain(H, t, K, per, c, M1, M1 + ncl * ncl);
            tern_gptq_normal_eq(H, t, K, per, c, M2, M2 + ncl * ncl);
            differ += memcmp(M1, M2, sizeof(double) * (size_t)(ncl * ncl + ncl)) != 0;
            double e1 = tern_gptq_objective_plain(H, t, K, per, c, a), e2 = tern_gptq_objective(H, t, K, per, c, a);
            differ += memcmp(&e1, &e2, sizeof e1) != 0;
            free(M1);
            free(M2);
            cases++;
        }
        free(H); free(t); free(U1); free(U2); free(w1); free(w2);
    }
    CHECK(differ == 0, "%d of %d results differ in their bits from the plain loops", differ, 2 * nk + 2 * cases);
    fprintf(stderr, "  same bits as the plain loops: %d factorisations, %d normal equations / objectives\n", 2 * nk, 2 * cases);
}

/* The default number of optimisation images follows the classes of the graph's output: a quarter
 * of them, clamped to 64..256, never more than the calibration images; an explicit count wins. */
static void test_opt_images_rule(void) {
    tern_graph *g = tern_graph_new("rule");
    CHECK(g != NULL, "graph");
    if (!g) return;
    int v = tern_graph_add_value(g, "logits");
    g->output = v;
    g->values[v].ndim = 2;
    g->values[v].dims[0] = 1;
    tern_qopts o;
    tern_qopts_init(&o);
    static const int64_t classes[] = {10, 100, 257, 400, 1000, 21843};
    static const int want[] = {64, 64, 64, 100, 250, 256};
    for (int i = 0; i < 6; i++) {
        g->values[v].dims[1] = classes[i];
        CHECK(tern_q_opt_images(&o, g, 5000) == want[i], "%lld classes: %d, want %d", (long long)classes[i], tern_q_opt_images(&o, g, 5000), want[i]);
    }
    CHECK(tern_q_opt_images(&o, g, 100) == 100, "capped by the calibration images");
    o.opt_images = 500;
    CHECK(tern_q_opt_images(&o, g, 5000) == 500 && tern_q_opt_images(&o, g, 300) == 300, "explicit count");
    tern_graph_free(g);
}

int main(void) {
    RUN(test_opt_images_rule);
    RUN(test_factor);
    RUN(test_against_resolve);
    RUN(test_diagonal_is_plain);
    RUN(test_refit);
    RUN(test_brute_force);
    RUN(test_deterministic);
    RUN(test_same_bits_as_plain);
    return check_summary();
}
