/* Error-feedback quantization of cluster weights (GPTQ / OBQ). Contract in gptq.h.
 *
 * All linear algebra is written out here in double precision with a fixed summation order, not
 * called from OpenBLAS/LAPACK: those libraries pick their kernels per CPU (and per thread count),
 * so their rounding differs between machines, and the .tern file must come out byte-identical on
 * any x86-64 CPU (issue 15). The layers this runs on have K <= a few thousand, where O(K^3) once per
 * layer and O(K^2) per output channel are cheap next to collecting the statistics. */
#include "quant/gptq.h"
#include "quant/wquant.h"
#include <math.h>
#include <string.h>

/* In-place Cholesky H = L L^T of a row-major K x K matrix; L goes to the lower triangle (the upper
 * one is left as it was). Returns 0 if a pivot is not positive (not positive definite).
 *
 * Each element is the textbook (Cholesky-Crout) sum, s = a_ij - sum_{k<j} l_ik l_jk taken in
 * ascending k, then / l_jj; but the columns of L are kept in a transposed copy (LT[k][i] = l_ik)
 * so that, for a column j, the sums of all rows i > j advance together over contiguous memory
 * (vectorised; each sum still receives its terms one at a time in ascending k: the same bits as
 * the row-by-row dot products). tests/test_gptq.c checks the bits against that plain form. */
int tern_gptq_cholesky_plain(double *A, int K) {
    for (int j = 0; j < K; j++) {
        double *aj = A + (size_t)j * K;
        double d = aj[j];
        for (int k = 0; k < j; k++) d -= aj[k] * aj[k];
        if (!(d > 0) || !isfinite(d)) return 0;
        d = sqrt(d);
        aj[j] = d;
        for (int i = j + 1; i < K; i++) {
            double *ai = A + (size_t)i * K, t = ai[j];
            for (int k = 0; k < j; k++) t -= ai[k] * aj[k];
            ai[j] = t / d;
        }
    }
    return 1;
}

int tern_gptq_cholesky(double *A, int K) {
    double *LT = tern_malloc(sizeof(double) * ((size_t)K * K + 1)), *sb = tern_malloc(sizeof(double) * 4 * ((size_t)K + 1));
    if (!LT || !sb) { /* no room for the copy: the plain row-by-row form */
        free(LT);
        free(sb);
        return tern_gptq_cholesky_plain(A, K);
    }
    /* Columns in blocks of four: the terms k below the block are subtracted from the four
     * columns' sums in one pass over LT's rows (each sum still in ascending k), then the terms
     * inside the block, then each column is finished in turn. */
    int ok = 1;
    for (int j0 = 0; j0 < K && ok; j0 += 4) {
        int nbk = K - j0 < 4 ? K - j0 : 4;
        double *sc[4];
        for (int b = 0; b < nbk; b++) {
            sc[b] = sb + (size_t)b * K;
            for (int i = j0; i < K; i++) sc[b][i] = A[(size_t)i * K + j0 + b];
        }
        for (int k = 0; k < j0; k++) {
            const double *lk = LT + (size_t)k * K;
            if (nbk == 4) {
                double l0 = lk[j0], l1 = lk[j0 + 1], l2 = lk[j0 + 2], l3 = lk[j0 + 3];
                double *s0 = sc[0], *s1 = sc[1], *s2 = sc[2], *s3 = sc[3];
                for (int i = j0; i < K; i++) {
                    double x = lk[i];
                    s0[i] -= x * l0; s1[i] -= x * l1; s2[i] -= x * l2; s3[i] -= x * l3;
                }
            } else
                for (int b = 0; b < nbk; b++) {
                    double l = lk[j0 + b], *sbb = sc[b];
                    for (int i = j0; i < K; i++) sbb[i] -= lk[i] * l;
                }
        }
        for (int b = 0; b < nbk && ok; b++) {
            int j = j0 + b;
            double *sj = sc[b];
            for (int k = j0; k < j; k++) { /* the block's earlier columns */
                const double *lk = LT + (size_t)k * K;
                double ljk = lk[j];
                for (int i = j; i < K; i++) sj[i] -= lk[i] * ljk;
            }
            double d = sj[j];
            if (!(d > 0) || !isfinite(d)) { ok = 0; break; }
            d = sqrt(d);
            double *lj = LT + (size_t)j * K;
            lj[j] = d;
            for (int i = j + 1; i < K; i++) lj[i] = sj[i] / d;
        }
    }
    if (ok)
        for (int i = 0; i < K; i++)
            for (int j = 0; j <= i; j++) A[(size_t)i * K + j] = LT[(size_t)j * K + i];
    free(LT);
    free(sb);
    return ok;
}

/* U = upper factor of H^-1: L = chol(H); Linv = L^-1; Hinv = Linv^T Linv; U = chol(Hinv)^T.
 * Every sum in ascending index order from 0.0 (as the plain triple loops; tests/test_gptq.c
 * compares the bits), organised so that the inner loops run over contiguous rows. */
static int factor_once(const double *H, int K, double ridge, double *U, double *A) {
    memcpy(A, H, sizeof(double) * (size_t)K * K);
    for (int i = 0; i < K; i++) A[(size_t)i * K + i] += ridge;
    if (!tern_gptq_cholesky(A, K)) return 0;
    /* Linv (lower) into U's lower triangle, row by row: Linv[i][j] = -(sum_{k=j}^{i-1} L[i][k]
     * Linv[k][j]) / L[i][i] for j < i; the sums for all j of row i advance together over k. The
     * upper triangle of U (scratch: K doubles per row) holds the partial sums of row i. */
    for (int i = 0; i < K; i++) {
        double *ui = U + (size_t)i * K, *acc = ui; /* acc[0..i): sums, then Linv[i][0..i) */
        const double *ai = A + (size_t)i * K;
        for (int j = 0; j < i; j++) acc[j] = 0;
        for (int k = 0; k < i; k++) {
            const double *uk = U + (size_t)k * K;
            double aik = ai[k];
            for (int j = 0; j <= k; j++) acc[j] += aik * uk[j];
        }
        double dii = ai[i];
        for (int j = 0; j < i; j++) ui[j] = -acc[j] / dii;
        ui[i] = 1.0 / dii;
    }
    /* Hinv[i][j] = sum_{k >= i} Linv[k][i] Linv[k][j] (j <= i): full symmetric, into A. Row i's sums
     * for all j advance together over k; the sums live in A's row i (L is no longer needed). */
    for (int i = 0; i < K; i++) {
        double *hi = A + (size_t)i * K;
        for (int j = 0; j <= i; j++) hi[j] = 0;
        for (int k = i; k < K; k++) {
            const double *uk = U + (size_t)k * K;
            double c = uk[i];
            for (int j = 0; j <= i; j++) hi[j] += c * uk[j];
        }
    }
    for (int i = 0; i < K; i++)
        for (int j = 0; j < i; j++) A[(size_t)j * K + i] = A[(size_t)i * K + j];
    if (!tern_gptq_cholesky(A, K)) return 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) U[(size_t)i * K + j] = j >= i ? A[(size_t)j * K + i] : 0.0;
    return 1;
}

enum tern_status tern_gptq_factor(const double *H, int K, double *U, double *work, double *ridge) {
    double mean = 0;
    for (int i = 0; i < K; i++) mean += H[(size_t)i * K + i];
    mean = K > 0 ? mean / K : 0;
    if (!(mean > 0) || !isfinite(mean)) mean = 1;
    if (factor_once(H, K, 0, U, work)) {
        if (ridge) *ridge = 0;
        return TERN_STATUS_OK;
    }
    for (double r = 1e-6; r <= 0.11; r *= 10)
        if (factor_once(H, K, r * mean, U, work)) {
            if (ridge) *ridge = r * mean;
            return TERN_STATUS_OK;
        }
    return tern_errorf(TERN_STATUS_NUMERIC, "gptq: input statistics not positive definite even with a ridge of 0.1 x the mean power (K %d)", K);
}

void tern_gptq_lsq(const double *U, const double *t, int K, double *wstar) {
    /* z = U t (U upper), then w* = U^T z */
    for (int i = 0; i < K; i++) {
        double s = 0;
        for (int j = i; j < K; j++) s += U[(size_t)i * K + j] * t[j];
        wstar[i] = s;
    }
    for (int j = K - 1; j >= 0; j--) {
        double s = 0;
        for (int i = 0; i <= j; i++) s += U[(size_t)i * K + j] * wstar[i];
        wstar[j] = s; /* only wstar[0..j] (still z) is read for column j: overwrite from the end */
    }
}

static inline int8_t round_code(double w, double s, int qmax) {
    if (!(s > 0)) return 0;
    double r = round(w / s); /* half away from zero, as wquant.c */
    return (int8_t)(r > qmax ? qmax : r < -qmax ? -qmax : r);
}

void tern_gptq_row(const double *U, const double *w, int K, int per, int qmax, enum tern_gptq_mode mode,
                   const float *fixed, int8_t *c, float *a, double *work) {
    double *cur = work;
    float *wf = (float *)(work + K);           /* the cluster as floats for the plain rule */
    int8_t *pc = (int8_t *)(work + 2 * K);     /* the plain rule's codes */
    memcpy(cur, w, sizeof(double) * (size_t)K);
    for (int k0 = 0, g = 0; k0 < K; k0 += per, g++) {
        int n = K - k0 < per ? K - k0 : per;
        float s;
        if (fixed) s = fixed[g];
        else {
            for (int i = 0; i < n; i++) wf[i] = (float)cur[k0 + i];
            s = qmax == 1 ? tern_ternary_cluster(wf, n, TERN_TRULE_EXACT, pc) : tern_nbit_cluster(wf, n, qmax, pc);
        }
        a[g] = s;
        if (mode == TERN_GPTQ_CLUSTER)
            for (int i = 0; i < n; i++) c[k0 + i] = fixed ? round_code(cur[k0 + i], s, qmax) : pc[i];
        for (int k = k0; k < k0 + n; k++) {
            if (mode == TERN_GPTQ_POSITION) c[k] = round_code(cur[k], s, qmax);
            const double *u = U + (size_t)k * K;
            double e = (cur[k] - (double)s * c[k]) / u[k];
            for (int j = k + 1; j < K; j++) cur[j] -= e * u[j];
        }
    }
}

/* The non-zero positions of c in ascending order (idx, returns their number) and, per cluster h,
 * where its positions start in idx (seg[h] .. seg[h+1]). */
static int nz_list(const int8_t *c, int K, int per, int *idx, int *seg) {
    int n = 0, ncl = (K + per - 1) / per;
    for (int h = 0; h < ncl; h++) {
        seg[h] = n;
        int e = (h + 1) * per < K ? (h + 1) * per : K;
        for (int k = h * per; k < e; k++)
            if (c[k]) idx[n++] = k;
    }
    seg[ncl] = n;
    return n;
}

void tern_gptq_normal_eq_plain(const double *H, const double *t, int K, int per, const int8_t *c, double *M, double *rg) {
    int ncl = (K + per - 1) / per;
    memset(M, 0, sizeof(double) * (size_t)ncl * ncl);
    memset(rg, 0, sizeof(double) * (size_t)ncl);
    for (int k = 0; k < K; k++) {
        if (!c[k]) continue;
        int gk = k / per;
        rg[gk] += c[k] * t[k];
        const double *h = H + (size_t)k * K;
        for (int j = 0; j < K; j++)
            if (c[j]) M[(size_t)gk * ncl + j / per] += (double)c[k] * c[j] * h[j];
    }
}

void tern_gptq_normal_eq(const double *H, const double *t, int K, int per, const int8_t *c, double *M, double *rg) {
    int ncl = (K + per - 1) / per;
    int *idx = tern_malloc(sizeof(int) * ((size_t)K + (size_t)ncl + 2)), *seg = idx ? idx + K : NULL;
    if (!idx) { /* the plain loops (the same sums in the same order) */
        tern_gptq_normal_eq_plain(H, t, K, per, c, M, rg);
        return;
    }
    memset(M, 0, sizeof(double) * (size_t)ncl * ncl);
    memset(rg, 0, sizeof(double) * (size_t)ncl);
    int n = nz_list(c, K, per, idx, seg);
    for (int gk = 0; gk < ncl; gk++)
        for (int m = seg[gk]; m < seg[gk + 1]; m++) {
            int k = idx[m];
            rg[gk] += c[k] * t[k];
            const double *h = H + (size_t)k * K;
            double ck = c[k], *Mg = M + (size_t)gk * ncl;
            for (int hh = 0; hh < ncl; hh++) {
                double acc = Mg[hh];
                for (int p = seg[hh]; p < seg[hh + 1]; p++) acc += ck * c[idx[p]] * h[idx[p]];
                Mg[hh] = acc;
            }
        }
    (void)n;
    free(idx);
}

void tern_gptq_refit(const double *H, const double *t, int K, int per, const int8_t *c, float *a, double *work) {
    int ncl = (K + per - 1) / per;
    double *M = work, *rg = work + (size_t)ncl * ncl;
    tern_gptq_normal_eq(H, t, K, per, c, M, rg);
    double scale = 0;
    for (int g = 0; g < ncl; g++) scale += fabs((double)a[g]);
    for (int it = 0; it < 200; it++) {
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
        if (change <= 1e-12 * (scale > 0 ? scale : 1)) break;
    }
}

double tern_gptq_objective_plain(const double *H, const double *t, int K, int per, const int8_t *c, const float *a) {
    double e = 0;
    for (int i = 0; i < K; i++) {
        if (!c[i]) continue;
        double vi = (double)a[i / per] * c[i], hv = 0;
        const double *h = H + (size_t)i * K;
        for (int j = 0; j < K; j++)
            if (c[j]) hv += h[j] * ((double)a[j / per] * c[j]);
        e += vi * hv - 2 * vi * t[i];
    }
    return e;
}

double tern_gptq_objective(const double *H, const double *t, int K, int per, const int8_t *c, const float *a) {
    double e = 0;
    int *idx = tern_malloc(sizeof(int) * (size_t)K + 1);
    double *v = tern_malloc(sizeof(double) * (size_t)K + 1);
    if (!idx || !v) { /* the plain loops */
        free(idx);
        free(v);
        return tern_gptq_objective_plain(H, t, K, per, c, a);
    }
    int n = 0;
    for (int k0 = 0, g = 0; k0 < K; k0 += per, g++)
        for (int k = k0; k < K && k < k0 + per; k++)
            if (c[k]) { v[n] = (double)a[g] * c[k]; idx[n++] = k; }
    /* hv_i = sum_j h_ij v_j in ascending j, four rows' sums side by side (independent chains) */
    int m = 0;
    for (; m + 4 <= n; m += 4) {
        const double *h0 = H + (size_t)idx[m] * K, *h1 = H + (size_t)idx[m + 1] * K, *h2 = H + (size_t)idx[m + 2] * K, *h3 = H + (size_t)idx[m + 3] * K;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int p = 0; p < n; p++) {
            int j = idx[p];
            double vj = v[p];
            s0 += h0[j] * vj; s1 += h1[j] * vj; s2 += h2[j] * vj; s3 += h3[j] * vj;
        }
        e += v[m] * s0 - 2 * v[m] * t[idx[m]];
        e += v[m + 1] * s1 - 2 * v[m + 1] * t[idx[m + 1]];
        e += v[m + 2] * s2 - 2 * v[m + 2] * t[idx[m + 2]];
        e += v[m + 3] * s3 - 2 * v[m + 3] * t[idx[m + 3]];
    }
    for (; m < n; m++) {
        const double *h = H + (size_t)idx[m] * K;
        double hv = 0;
        for (int p = 0; p < n; p++) hv += h[idx[p]] * v[p];
        e += v[m] * hv - 2 * v[m] * t[idx[m]];
    }
    free(idx);
    free(v);
    return e;
}

size_t tern_gptq_row_work(int K, int per) {
    size_t ncl = (size_t)(K + per - 1) / per;
    return (size_t)K * 4 + ncl * ncl + 2 * ncl + (size_t)K / 8 + 2;
}

double tern_gptq_optimize_row(const double *H, const double *U, const double *t, const double *w0, int K, int per,
                              int qmax, enum tern_gptq_mode mode, int rounds, int8_t *c, float *a, double *work) {
    int ncl = (K + per - 1) / per;
    double *wstar = work, *rw = work + K, *fw = work + 4 * (size_t)K;
    float *a2 = (float *)(fw + (size_t)ncl * ncl + ncl);
    int8_t *c2 = (int8_t *)(fw + (size_t)ncl * ncl + 2 * ncl);
    if (w0) memcpy(wstar, w0, sizeof(double) * (size_t)K);
    else tern_gptq_lsq(U, t, K, wstar);
    tern_gptq_row(U, wstar, K, per, qmax, mode, NULL, c, a, rw);
    tern_gptq_refit(H, t, K, per, c, a, fw);
    double best = tern_gptq_objective(H, t, K, per, c, a);
    for (int r = 1; r < rounds; r++) {
        memcpy(a2, a, sizeof(float) * (size_t)ncl);
        tern_gptq_row(U, wstar, K, per, qmax, mode, a2, c2, a2, rw);
        tern_gptq_refit(H, t, K, per, c2, a2, fw);
        double e = tern_gptq_objective(H, t, K, per, c2, a2);
        if (!(e < best)) break;
        best = e;
        memcpy(c, c2, (size_t)K);
        memcpy(a, a2, sizeof(float) * (size_t)ncl);
    }
    return best;
}
