/* Small integer ops: residual add (reference against an independent int64 evaluation of the
 * formula in kernels.h, AVX2 bit for bit against the reference) and max pooling (AVX2 running
 * max and 2x2 pool against direct scalar maxima). */
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

static void test_max_and_pool(void) {
    if (tern_cpu_isa() < TERN_ISA_AVX2) SKIP("CPU has no AVX2");
    uint8_t x[6 * 10 * 48], y[3 * 5 * 48], d1[200], d2[200], s[200];
    for (int iter = 0; iter < 400; iter++) {
        int sg = iter & 1, n = 1 + (int)(rnd() % 199);
        for (int i = 0; i < n; i++) { d1[i] = d2[i] = (uint8_t)rnd(); s[i] = (uint8_t)rnd(); }
        tern_max__avx2(d1, s, (size_t)n, sg);
        for (int i = 0; i < n; i++) {
            int a = sg ? (int8_t)d2[i] : d2[i], b = sg ? (int8_t)s[i] : s[i];
            uint8_t want = (uint8_t)(a > b ? a : b);
            if (d1[i] != want) { CHECK(0, "running max iter %d i %d", iter, i); return; }
        }
        int C = 16 * (1 + (int)(rnd() % 3)), H = 2 + (int)(rnd() % 5), W = 2 + (int)(rnd() % 9), OH = H / 2, OW = W / 2;
        for (int i = 0; i < H * W * C; i++) x[i] = (uint8_t)rnd();
        tern_maxpool2x2__avx2(x, W, C, y, OH, OW, sg);
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int c = 0; c < C; c++) {
                    int m = -1000;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            uint8_t v = x[((2 * oy + dy) * W + 2 * ox + dx) * C + c];
                            int iv = sg ? (int8_t)v : v;
                            m = iv > m ? iv : m;
                        }
                    if (y[(oy * OW + ox) * C + c] != (uint8_t)m) { CHECK(0, "pool iter %d (%d,%d,%d)", iter, oy, ox, c); return; }
                }
    }
}

int main(void) {
    RUN(test_max_and_pool);
    RUN(test_ref_formula);
    RUN(test_avx2_exact);
    return check_summary();
}
