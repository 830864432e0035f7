/* The AVX2 micro-kernel of the deterministic SGEMM (sgemm_det.c): 6x16, 8 lanes. Compiled with
 * the AVX2 flags (which include -mfma), so contraction is turned off explicitly: every element
 * is t = a * b, then acc = acc + t, each rounded, as in the baseline kernel. */
#include "graph/fp32.h"
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("O3", "fp-contract=off")
#endif

typedef float v8 __attribute__((vector_size(32)));
static inline v8 ld8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

void tern_sgemm_det_kern_6x16__avx2(int kc, const float *a, const float *b, float *acc) {
    v8 c[6][2];
    for (int r = 0; r < 6; r++) { c[r][0] = ld8(acc + r * 16); c[r][1] = ld8(acc + r * 16 + 8); }
    for (int k = 0; k < kc; k++, a += 6, b += 16) {
        const v8 b0 = ld8(b), b1 = ld8(b + 8);
        for (int r = 0; r < 6; r++) {
            const v8 av = {a[r], a[r], a[r], a[r], a[r], a[r], a[r], a[r]};
            v8 t0 = av * b0, t1 = av * b1;
            c[r][0] = c[r][0] + t0;
            c[r][1] = c[r][1] + t1;
        }
    }
    for (int r = 0; r < 6; r++) { st8(acc + r * 16, c[r][0]); st8(acc + r * 16 + 8, c[r][1]); }
}
