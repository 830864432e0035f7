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
 * one is left as it was). Returns 0 if a pivot is not positive (not positive definite). */
int tern_gptq_cholesky(double *A, int K) {
    for (int j = 0; j < K; j++) {
        double *aj = A + (size_t)j * K;
        double d = aj[j];
        for (int k = 0; k < j; k++) d -= aj[k] * aj[k];
        if (!(d > 0) || !isfinite(d)) return 0;
        d = sqrt(d);
        aj[j] = d;
        for (int i = j + 1; i < K; i++) {
            double *ai = A + (size_t)i * K, s = ai[j];
            for (int k = 0; k < j; k++) s -= ai[k] * aj[k];
            ai[j] = s / d;
        }
    }
    return 1;
}

/* U = upper factor of H^-1: L = chol(H); Linv = L^-1; Hinv = Linv^T Linv; U = chol(Hinv)^T. */
static int factor_once(const double *H, int K, double ridge, double *U, double *A) {
    memcpy(A, H, sizeof(double) * (size_t)K * K);
    for (int i = 0; i < K; i++) A[(size_t)i * K + i] += ridge;
    if (!tern_gptq_cholesky(A, K)) return 0;
    /* Linv (lower) into U's lower triangle, column by column: Linv[i][j] for i >= j. */
    for (int j = 0; j < K; j++) {
        U[(size_t)j * K + j] = 1.0 / A[(size_t)j * K + j];
        for (int i = j + 1; i < K; i++) {
            double s = 0;
            for (int k = j; k < i; k++) s += A[(size_t)i * K + k] * U[(size_t)k * K + j];
            U[(size_t)i * K + j] = -s / A[(size_t)i * K + i];
        }
    }
    /* Hinv[i][j] = sum_{k >= max(i,j)} Linv[k][i] Linv[k][j]: full symmetric, into A. */
    for (int i = 0; i < K; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int k = i; k < K; k++) s += U[(size_t)k * K + i] * U[(size_t)k * K + j];
            A[(size_t)i * K + j] = A[(size_t)j * K + i] = s;
        }
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

void tern_gptq_refit(const double *H, const double *t, int K, int per, const int8_t *c, float *a, double *work) {
    int ncl = (K + per - 1) / per;
    double *M = work, *rg = work + (size_t)ncl * ncl;
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

double tern_gptq_objective(const double *H, const double *t, int K, int per, const int8_t *c, const float *a) {
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
