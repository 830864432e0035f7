/* Deterministic FP32 GEMM for the paths that feed the quantizer (calibration, post-training
 * statistics, the accuracy budget's FP32 reference): C = A * op(B).
 *
 * Every element of C is the plain sequential float sum over k = 0, 1, ..., K-1 of
 * A[i][k] * B[k][j], each product and each addition rounded to float (no FMA contraction: this
 * file is compiled with -std=c11, where GCC does not contract, and without -mfma; clang is told
 * by the pragma). Blocking over K keeps that order (a block resumes from the stored partial
 * sum), the tile shape and the vector width only decide which elements are computed side by
 * side, and threads split the columns, never K. So the result is a function of the inputs only:
 * the same bits on any x86-64 CPU, at any thread count, unlike OpenBLAS, whose kernels and
 * summation order change with the CPU (AVX2 vs AVX-512) and the thread count.
 *
 * Speed: register tiles over packed panels, 6x8 with the baseline ISA (SSE2, any x86-64) and
 * 6x16 with AVX2 (sgemm_det_avx2.c): the lanes only decide which elements are computed side by
 * side, so both give the same bits (tests/t_repro.sh checks it through TERN_ISA). */
#include "graph/fp32.h"
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("O3", "fp-contract=off")
#endif

#define KC 256          /* K block: a packed B panel of KC x 16 floats is 16 KB (L1) */
#define MAX_MR 6
#define MAX_NR 16

/* The micro-kernels: acc[mr][nr] = acc + a[kc][mr] (x) b[kc][nr], k in order, per element
 * t = a * b then acc = acc + t. sgemm_det_avx2.c has the AVX2 one (8 lanes, the same
 * arithmetic per element: bit-identical results). */
typedef float v4 __attribute__((vector_size(16)));
static inline v4 ld4(const float *p) { v4 v; memcpy(&v, p, sizeof v); return v; }
static inline void st4(float *p, v4 v) { memcpy(p, &v, sizeof v); }

static void kern_6x8(int kc, const float *a, const float *b, float *acc) {
    v4 c[6][2];
    for (int r = 0; r < 6; r++) { c[r][0] = ld4(acc + r * 8); c[r][1] = ld4(acc + r * 8 + 4); }
    for (int k = 0; k < kc; k++, a += 6, b += 8) {
        const v4 b0 = ld4(b), b1 = ld4(b + 4);
        for (int r = 0; r < 6; r++) {
            const v4 av = {a[r], a[r], a[r], a[r]};
            v4 t0 = av * b0, t1 = av * b1;
            c[r][0] = c[r][0] + t0;
            c[r][1] = c[r][1] + t1;
        }
    }
    for (int r = 0; r < 6; r++) { st4(acc + r * 8, c[r][0]); st4(acc + r * 8 + 4, c[r][1]); }
}

typedef struct {
    int M, N, K, transb, ldb, ldc, mr, nr;
    void (*kern)(int kc, const float *a, const float *b, float *acc);
    const float *Ap;    /* packed A: [ceil(M/mr)][K][mr], zero-padded rows */
    const float *B;
    float *C;
    int npanels;        /* column panels of nr */
} job;

/* Pack rows i0..i0+mr-1 of A (row-major, lda) into [K][mr], zeros past M. */
static void pack_a(const float *A, int lda, int M, int K, int i0, int mr, float *dst) {
    for (int k = 0; k < K; k++)
        for (int r = 0; r < mr; r++) dst[(size_t)k * mr + r] = i0 + r < M ? A[(size_t)(i0 + r) * lda + k] : 0.0f;
}

/* Pack columns j0..j0+nr-1, rows k0..k0+kc-1 of op(B) into [kc][nr], zeros past N. */
static void pack_b(const job *jb, int j0, int k0, int kc, float *dst) {
    const int nr = jb->nr, nv = jb->N - j0 < nr ? jb->N - j0 : nr;
    for (int k = 0; k < kc; k++) {
        float *d = dst + (size_t)k * nr;
        if (!jb->transb) memcpy(d, jb->B + (size_t)(k0 + k) * jb->ldb + j0, sizeof(float) * (size_t)nv);
        else
            for (int c = 0; c < nv; c++) d[c] = jb->B[(size_t)(j0 + c) * jb->ldb + k0 + k];
        for (int c = nv; c < nr; c++) d[c] = 0.0f;
    }
}

static void run_panel(void *arg, int p, int tid) {
    (void)tid;
    const job *jb = arg;
    const int mr = jb->mr, nr = jb->nr;
    float bp[KC * MAX_NR], acc[MAX_MR * MAX_NR];
    const int j0 = p * nr, nv = jb->N - j0 < nr ? jb->N - j0 : nr;
    for (int k0 = 0; k0 < jb->K; k0 += KC) {
        const int kc = jb->K - k0 < KC ? jb->K - k0 : KC;
        pack_b(jb, j0, k0, kc, bp);
        for (int i0 = 0; i0 < jb->M; i0 += mr) {
            const int mv = jb->M - i0 < mr ? jb->M - i0 : mr;
            float *c0 = jb->C + (size_t)i0 * jb->ldc + j0;
            if (k0 == 0) memset(acc, 0, sizeof(float) * (size_t)(mr * nr));
            else /* resume from the partial sums: the order over k is unchanged */
                for (int r = 0; r < mr; r++)
                    for (int c = 0; c < nr; c++) acc[r * nr + c] = r < mv && c < nv ? c0[(size_t)r * jb->ldc + c] : 0.0f;
            jb->kern(kc, jb->Ap + ((size_t)(i0 / mr) * jb->K + k0) * mr, bp, acc);
            for (int r = 0; r < mv; r++) memcpy(c0 + (size_t)r * jb->ldc, acc + r * nr, sizeof(float) * (size_t)nv);
        }
    }
}

enum tern_status tern_sgemm_det(int M, int N, int K, const float *A, int lda, const float *B, int ldb, int transb,
                                float *C, int ldc, tern_pool *pool) {
    if (M <= 0 || N <= 0) return TERN_STATUS_OK;
    if (K <= 0) {
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
        return TERN_STATUS_OK;
    }
    job jb = {M, N, K, transb, ldb, ldc, 6, 8, kern_6x8, NULL, B, C, 0};
    if (tern_active_isa() >= TERN_ISA_AVX2) { jb.nr = 16; jb.kern = tern_sgemm_det_kern_6x16__avx2; }
    const int mt = (M + jb.mr - 1) / jb.mr;
    float *Ap = tern_malloc(sizeof(float) * (size_t)mt * jb.mr * (size_t)K);
    if (!Ap) return TERN_STATUS_NOMEM;
    for (int t = 0; t < mt; t++) pack_a(A, lda, M, K, t * jb.mr, jb.mr, Ap + (size_t)t * K * jb.mr);
    jb.Ap = Ap;
    jb.npanels = (N + jb.nr - 1) / jb.nr;
    if (pool && tern_pool_size(pool) > 1 && jb.npanels > 1) tern_pool_run(pool, run_panel, &jb, jb.npanels);
    else
        for (int p = 0; p < jb.npanels; p++) run_panel(&jb, p, 0);
    free(Ap);
    return TERN_STATUS_OK;
}
