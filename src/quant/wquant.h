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
 *        (sum of k largest)^2 / k; a = sum/k). TWN: D = 0.7 mean|w|, a = mean |w| over |w| > D.
 * All-zero (or empty) clusters give a = 0 and q = 0. Inputs must be finite. */
float tern_ternary_cluster(const float *w, int n, enum tern_trule rule, int8_t *q);

/* Symmetric n-bit codes q[n] in [-qmax, qmax] (qmax = 7 for 4-bit, 127 for 8-bit) and scale
 * s >= 0 minimising ||w - s*q||^2 with q = clamp(round(w/s)), s found by search. */
float tern_nbit_cluster(const float *w, int n, int qmax, int8_t *q);

/* Quantize a whole tensor. wtype TERNARY/INT4 use clusters of `cluster` input channels
 * (cluster >= cin_g means one per output channel); INT8 always uses one per output channel.
 * q: [cout][cin_g*khw] codes; scales: [cout][nclusters] with nclusters = ceil(cin_g/cluster)
 * (1 for INT8). Rejects NaN/Inf with a TERN_STATUS_NUMERIC error naming `layer`. */
enum tern_status tern_wquant_tensor(const float *w, int cout, int cin_g, int khw, enum tern_wtype wtype,
                                    int cluster, enum tern_trule rule, const char *layer,
                                    int8_t *q, float *scales);

/* Signal-to-quantization-noise ratio in dB of approximation wq of w (inf if exact). */
double tern_sqnr_db(const float *w, const float *wq, size_t n);

#endif
