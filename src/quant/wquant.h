/* Weight quantizers (method.md, "Weights"): ternary per cluster (exact and TWN rules),
 * 4-bit per cluster and 8-bit per output channel, each minimising squared error.
 * A conv weight tensor is w[cout][cin_g][kh][kw]; a cluster is N consecutive input channels of
 * one output filter with all their taps (N*kh*kw consecutive floats; the last cluster of a
 * filter is shorter when N does not divide cin_g). The float scales returned here are turned into
 * integer mantissas by the model quantizer; this file is pure math. */
#ifndef TERN_WQUANT_H
#define TERN_WQUANT_H
#include "core/core.h"
#include "kernels/kernels.h"

enum tern_trule { TERN_TRULE_EXACT = 0, TERN_TRULE_TWN = 1 };

/* Ternary codes q[n] in {-1,0,1} and scale a >= 0 for one cluster.
 * EXACT: the global minimiser of ||w - a*q||^2 (sort |w| descending, choose k maximising
 *        (sum of k largest)^2 / k; a = sum/k), O(n log n). Equal magnitudes are all kept or all
 *        dropped (an optimal cut never splits them), and between equally good k the smallest
 *        wins, so the result depends only on the values: permuting w permutes q.
 * TWN:   D = 0.7 mean|w|, a = mean |w| over |w| > D (strictly).
 * q[i] = sign(w[i]) or 0. All-zero (or empty) clusters give a = 0 and q = 0. Inputs must be
 * finite (non-finite ones are read as 0). Deterministic and thread-safe; allocates only for
 * n > 256 and falls back to an allocation-free O(n * distinct values) scan if that fails. */
float tern_ternary_cluster(const float *w, int n, enum tern_trule rule, int8_t *q);

/* Symmetric n-bit codes q[n] in [-qmax, qmax] (qmax = 7 for 4-bit, 127 for 8-bit; any 1..127
 * works) and scale s >= 0 minimising ||w - s*q||^2 with q = clamp(round(w/s)) (round half away
 * from zero), so q is always what the returned s gives. The exact global minimum for qmax <= 15
 * and for n <= 258; larger 8-bit clusters use a grid plus an exact sweep of a window around its
 * best (tested within 2% of the optimal error, usually equal). Never worse than s = max|w|/qmax;
 * among equal errors the smaller s. All-zero gives s = 0, q = 0. Deterministic, thread-safe. */
float tern_nbit_cluster(const float *w, int n, int qmax, int8_t *q);

/* Quantize a whole tensor w[cout][cin_g][khw]. wtype TERNARY/INT4 use clusters of `cluster`
 * input channels (cluster >= cin_g means one per output channel; rule applies to TERNARY only);
 * INT8 always uses one per output channel and ignores `cluster`. Each cluster's result equals
 * tern_ternary_cluster / tern_nbit_cluster on its weights.
 * q: [cout][cin_g*khw] codes; scales: [cout][nclusters] with nclusters = ceil(cin_g/cluster)
 * (1 for INT8). Checks every weight first: NaN/Inf give TERN_STATUS_NUMERIC with a message naming
 * `layer` and the weight's index, and nothing is written. Bad shapes or options give
 * TERN_STATUS_INVALID_ARG, a failed scratch allocation TERN_STATUS_NOMEM. */
enum tern_status tern_wquant_tensor(const float *w, int cout, int cin_g, int khw, enum tern_wtype wtype,
                                    int cluster, enum tern_trule rule, const char *layer,
                                    int8_t *q, float *scales);

/* Signal-to-quantization-noise ratio in dB of approximation wq of w: 10 log10(sum w^2 / sum
 * (w - wq)^2). +inf if exact (also for all-zero and n = 0), -inf if w is all zero but wq is not. */
double tern_sqnr_db(const float *w, const float *wq, size_t n);

#endif
