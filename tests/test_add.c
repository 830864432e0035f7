/* Residual add kernel: the reference against an independent int64 evaluation of the formula in
 * kernels.h, and the AVX2 kernel bit for bit against the reference. */
#include "check.h"
#include "kernels/kernels.h"

static uint32_t rng = 99;
static uint32_t rnd(void) { rng = rng * 1664525u + 1013904223u; return rng >> 8; }

static int32_t expect(int32_t a, int32_t b, int la, int lb, int rs, int qmin, int qmax) {
    int64_t s = (int64_t)a * ((int64_t)1 << la) + (int64_t)b * ((int64_t)1 << lb);
    if (rs > 0) s = (s + ((int64_t)1 << (rs - 1))) >> rs;
    return (int32_t)(s < qmin ? qmin : s > qmax ? qmax : s);
}

static void sweep(tern_add_fn fn, int against_formula) {
    uint8_t a[300], b[300], y[300], r[300];
    for (int iter = 0; iter < 3000; iter++) {
        int as = rnd() & 1, bs = rnd() & 1, la = rnd() % 9, lb = rnd() % 9, rs = rnd() % 12;
        int n = 1 + rnd() % 290;
        int qmin, qmax;
        switch (rnd() % 4) {
        case 0: qmin = 0; qmax = 255; break;             /* ReLU, unsigned */
        case 1: qmin = -128; qmax = 127; break;          /* signed */
        case 2: qmin = (int)(rnd() % 100); qmax = qmin + (int)(rnd() % 156); break; /* clip, unsigned */
        default: qmin = -(int)(rnd() % 129); qmax = (int)(rnd() % 128); break;      /* clip, signed */
        }
        for (int i = 0; i < n; i++) { a[i] = (uint8_t)rnd(); b[i] = (uint8_t)rnd(); }
        if (iter % 7 == 0) for (int i = 0; i < n; i++) { a[i] = as ? 0x80 : 0xff; b[i] = bs ? 0x7f : 0xff; } /* extremes */
        fn(a, as, b, bs, y, (size_t)n, la, lb, rs, qmin, qmax);
        if (against_formula) {
            for (int i = 0; i < n; i++) {
                int32_t want = expect(as ? (int8_t)a[i] : a[i], bs ? (int8_t)b[i] : b[i], la, lb, rs, qmin, qmax);
                int32_t got = qmin < 0 ? (int8_t)y[i] : y[i];
                if (got != want) { CHECK(0, "iter %d i %d: %d != %d", iter, i, got, want); return; }
            }
        } else {
            tern_add_ref(a, as, b, bs, r, (size_t)n, la, lb, rs, qmin, qmax);
            for (int i = 0; i < n; i++)
                if (y[i] != r[i]) { CHECK(0, "iter %d n %d i %d: avx2 %d ref %d (as %d bs %d la %d lb %d rs %d q %d..%d)", iter, n, i, y[i], r[i], as, bs, la, lb, rs, qmin, qmax); return; }
        }
    }
}

static void test_ref_formula(void) { sweep(tern_add_ref, 1); }
static void test_avx2_exact(void) {
    if (tern_cpu_isa() < TERN_ISA_AVX2) SKIP("CPU has no AVX2");
    sweep(tern_add__avx2, 0);
}

int main(void) {
    RUN(test_ref_formula);
    RUN(test_avx2_exact);
    return check_summary();
}
