/* Error-feedback quantization of cluster weights (GPTQ / Optimal Brain Quantization, arXiv
 * 2210.17323, 2208.11580), for the post-training pass of the model quantizer.
 *
 * One output channel of a layer: weights v[K] (K = cin * kh * kw, in OIHW order, so a cluster is
 * `per` consecutive positions: N input channels with all their taps; the last cluster may be
 * shorter), codes c[K] in [-qmax, qmax] (qmax 1 = ternary, 7 = 4-bit, 127 = 8-bit), one scale
 * a_g >= 0 per cluster, v_k = a_{k/per} * c_k. The objective is the layer's output error
 *     E(v) = v^T H v - 2 v^T t      (H = E[x x^T] + ridge, t = E[x y], both given)
 * whose unconstrained minimum is w* = H^-1 t, and E(v) - E(w*) = (v - w*)^T H (v - w*).
 *
 * GPTQ visits the positions in index order; at each it fixes the weight to a code and moves the
 * weights not yet fixed to the minimum of E given everything fixed so far. With U the upper
 * Cholesky factor of H^-1 (H^-1 = U^T U) that move is w_j -= U_kj (w_k - q_k) / U_kk for j > k.
 * A cluster's scale is chosen when its first position is reached, by the plain rule of
 * src/quant/wquant.c (exact ternary, or the n-bit squared-error search) on the cluster's weights as
 * the error feedback has left them; each position is then rounded to that scale
 * (TERN_GPTQ_POSITION), or the whole cluster takes the plain rule's codes at once
 * (TERN_GPTQ_CLUSTER) and its errors are pushed on in the same way. With H diagonal (H = I) no
 * error moves, and the result is the plain quantizer's (the cluster mode: exactly
 * tern_wquant_tensor's codes and scales; the position mode: its scales, codes round(w/a)).
 *
 * Determinism: every sum here runs in double precision in a fixed order, in plain C. This is on
 * purpose not OpenBLAS/LAPACK, whose kernels are chosen per CPU and sum in a CPU-dependent order:
 * the .tern bytes must not depend on the machine that quantized (issue 15). */
#ifndef TERN_GPTQ_H
#define TERN_GPTQ_H
#include "core/core.h"
#include <stdint.h>

enum tern_gptq_mode { TERN_GPTQ_POSITION = 0, TERN_GPTQ_CLUSTER = 1 };

/* U = upper Cholesky factor of H^-1 for a symmetric positive definite H [K][K] (row-major, full).
 * If H is not numerically positive definite, a ridge of 1e-6, 1e-5 ... 1e-1 times the mean
 * diagonal is added until it is (GPTQ's "dampening"); *ridge (if not NULL) receives the ridge used
 * (0 if none). work: K*K doubles. TERN_STATUS_NUMERIC if even the largest ridge fails. */
enum tern_status tern_gptq_factor(const double *H, int K, double *U, double *work, double *ridge);

/* Row-major packed Cholesky helpers, exposed for the tests: L lower with H = L L^T (in place on a
 * copy of H, work untouched); 0 if a pivot is not positive. */
int tern_gptq_cholesky(double *A, int K);
/* the same factorisation written as the textbook row-by-row loops (the fallback when the blocked
 * form cannot allocate its copy; test_gptq checks the two give the same bits) */
int tern_gptq_cholesky_plain(double *A, int K);

/* w* = H^-1 t = U^T (U t). */
void tern_gptq_lsq(const double *U, const double *t, int K, double *wstar);

/* One GPTQ pass over a row. w: the weights to approximate (e.g. w*), K of them, not modified.
 * per: weights per cluster; qmax: 1 (ternary, exact rule), 7 or 127. fixed: NULL to choose each
 * cluster's scale as described above, or ncl given scales (then only codes are chosen; the
 * cluster mode then rounds the whole cluster to its fixed scale before pushing the errors on).
 * Writes c[K] and a[ncl] (ncl = ceil(K / per)). work: 2*K doubles + K floats' room (3*K doubles). */
void tern_gptq_row(const double *U, const double *w, int K, int per, int qmax, enum tern_gptq_mode mode,
                   const float *fixed, int8_t *c, float *a, double *work);

/* The normal equations of the scales for fixed codes c: M[g][h] = sum_{k in g, j in h} c_k c_j H_kj
 * (ncl x ncl), rg[g] = sum_{k in g} c_k t_k; sums over the non-zero codes in ascending k, then j. */
void tern_gptq_normal_eq(const double *H, const double *t, int K, int per, const int8_t *c, double *M, double *rg);
/* the same sums as the textbook loops (its fallback; test_gptq checks the bits) */
void tern_gptq_normal_eq_plain(const double *H, const double *t, int K, int per, const int8_t *c, double *M, double *rg);

/* The scales a[ncl] >= 0 minimising E for fixed codes c (exact: projected coordinate descent on
 * the ncl x ncl normal equations until it stops moving). work: ncl*ncl + ncl doubles. */
void tern_gptq_refit(const double *H, const double *t, int K, int per, const int8_t *c, float *a, double *work);

/* E(v) = v^T H v - 2 v^T t of codes c and scales a. */
double tern_gptq_objective(const double *H, const double *t, int K, int per, const int8_t *c, const float *a);
/* the same sum as the textbook double loop (its fallback; test_gptq checks the bits) */
double tern_gptq_objective_plain(const double *H, const double *t, int K, int per, const int8_t *c, const float *a);

/* The whole row optimisation: GPTQ on w0 (NULL: on w* from (U, t)) with scales chosen on the way; closed-form
 * scale refit; then up to `rounds - 1` more GPTQ passes with the refit scales fixed, each followed
 * by a refit; the best E wins (the first pass on ties). c, a: the result. work: K*3 + ncl*ncl +
 * ncl + K doubles (tern_gptq_row_work). Returns E of the result. */
size_t tern_gptq_row_work(int K, int per);
double tern_gptq_optimize_row(const double *H, const double *U, const double *t, const double *w0, int K, int per,
                              int qmax, enum tern_gptq_mode mode, int rounds, int8_t *c, float *a, double *work);

#endif
