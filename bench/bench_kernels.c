/* Conv kernel benchmark: for each layer shape and weight type, check the selected kernel against
 * the reference, then time it over a batch of images (one image per run() call, one thread) and
 * print one line: kernel, case, GMAC/s, speedup over the reference, and the fraction of this
 * machine's measured peak for the instruction the kernel is built on (vpdpbusd zmm on an AVX-512
 * VNNI CPU, for every code type; on AVX2, vpmaddubsw for ternary and 4-bit codes, vpmaddwd for 8-bit).
 *
 *   bench_kernels [--batch N] [--quick] [--noref] [--nopeak] [filter]   (filter: substring of "case weights")
 *
 * Times are this thread's CPU time (shared machines). The peak is measured here with unrolled loops of independent instructions (inline asm, run
 * only when the CPU has AVX2). The reference is timed on a few rows only (it is slow); its rate is
 * per MAC, so the ratio is fair. */
#include "kernels/kernels.h"
#include "kernels/peak.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* CPU time of this thread: the machines are shared, and time spent descheduled is not the
 * kernel's (there is no SMT here, so a running thread has its core to itself). */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd32(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)rs; }

/* ---- instruction peaks ---- */
#if defined(__x86_64__)
#define R12(op) op "%%ymm15, %%ymm14, %%ymm0\n" op "%%ymm15, %%ymm14, %%ymm1\n" op "%%ymm15, %%ymm14, %%ymm2\n" \
    op "%%ymm15, %%ymm14, %%ymm3\n" op "%%ymm15, %%ymm14, %%ymm4\n" op "%%ymm15, %%ymm14, %%ymm5\n"          \
    op "%%ymm15, %%ymm14, %%ymm6\n" op "%%ymm15, %%ymm14, %%ymm7\n" op "%%ymm15, %%ymm14, %%ymm8\n"          \
    op "%%ymm15, %%ymm14, %%ymm9\n" op "%%ymm15, %%ymm14, %%ymm10\n" op "%%ymm15, %%ymm14, %%ymm11\n"
#define CLOB "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
    "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
/* instructions per second of: 0 vpmaddubsw, 1 vpmaddwd (independent, 24 per iteration),
 * 2 vpmaddubsw feeding vpaddw accumulators (the kernel's inner pattern; counts maddubs) */
static double peak_rate(int which, long iters) {
    __asm__ volatile("vpcmpeqb %%ymm14, %%ymm14, %%ymm14\n vpabsb %%ymm14, %%ymm15\n" ::: CLOB);
    double t0 = cpu_now();
    for (long i = 0; i < iters; i++) {
        if (which == 0) __asm__ volatile(R12("vpmaddubsw ") R12("vpmaddubsw ") ::: CLOB);
        else if (which == 1) __asm__ volatile(R12("vpmaddwd ") R12("vpmaddwd ") ::: CLOB);
        else
            __asm__ volatile(
#define MA(a, t) "vpmaddubsw %%ymm15, %%ymm14, %%ymm" #t "\n vpaddw %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n"
                MA(0, 6) MA(1, 7) MA(2, 8) MA(3, 9) MA(4, 10) MA(5, 11)
                MA(0, 12) MA(1, 13) MA(2, 6) MA(3, 7) MA(4, 8) MA(5, 9)
                MA(0, 10) MA(1, 11) MA(2, 12) MA(3, 13) MA(4, 6) MA(5, 7)
                MA(0, 8) MA(1, 9) MA(2, 10) MA(3, 11) MA(4, 12) MA(5, 13)
#undef MA
                ::: CLOB);
    }
    double t = cpu_now() - t0;
    __asm__ volatile("vzeroupper" ::: CLOB);
    return 24.0 * iters / t;
}
#endif

/* ---- cases ---- */
typedef struct shape { const char *name; int cin, cout, k, s, h, w, first, groups; } shape;
static const shape shapes[] = {
    {"r56 16->16 3x3 32x32", 16, 16, 3, 1, 32, 32, 0, 1},
    {"r56 32->32 3x3 16x16", 32, 32, 3, 1, 16, 16, 0, 1},
    {"r56 64->64 3x3 8x8", 64, 64, 3, 1, 8, 8, 0, 1},
    {"r56 16->32 3x3/2 32x32", 16, 32, 3, 2, 32, 32, 0, 1},
    {"r56 32->64 3x3/2 16x16", 32, 64, 3, 2, 16, 16, 0, 1},
    {"r56 first 3->16 3x3 32x32", 3, 16, 3, 1, 32, 32, 1, 1},
    {"td 128->256 3x3 28x28", 128, 256, 3, 1, 28, 28, 0, 1},
    {"td 16->128 3x3 56x56", 16, 128, 3, 1, 56, 56, 0, 1},
    {"td 32->256 3x3 28x28", 32, 256, 3, 1, 28, 28, 0, 1},
    {"td 64->512 3x3 14x14", 64, 512, 3, 1, 14, 14, 0, 1},
    {"td 16->32 3x3 112x112", 16, 32, 3, 1, 112, 112, 0, 1},
    {"td 128->16 1x1 56x56", 128, 16, 1, 1, 56, 56, 0, 1},
    {"td 256->32 1x1 28x28", 256, 32, 1, 1, 28, 28, 0, 1},
    {"td 512->128 1x1 14x14", 512, 128, 1, 1, 14, 14, 0, 1},
    {"td 128->1000 1x1 14x14", 128, 1000, 1, 1, 14, 14, 0, 1},
    {"td first 3->16 3x3 224x224", 3, 16, 3, 1, 224, 224, 1, 1},
    {"dw 64 3x3 28x28 (g=64)", 64, 64, 3, 1, 28, 28, 1, 64},     /* depthwise: 8-bit by default */
    {"grouped 64->64 3x3 g=4 28x28", 64, 64, 3, 1, 28, 28, 0, 4},
};

typedef struct conv_data {
    tern_qconv c;
    int8_t *w; int16_t *cs; int32_t *bias, *mpos, *mneg; int8_t *shift;
} conv_data;

static void make_conv(conv_data *d, const shape *s, int wtype, int N) {
    memset(d, 0, sizeof *d);
    tern_qconv *c = &d->c;
    c->cin = s->cin; c->cout = s->cout; c->groups = s->groups > 0 ? s->groups : 1;
    c->kh = c->kw = s->k; c->sh = c->sw = s->s; c->dh = c->dw = 1;
    c->pad_t = c->pad_l = c->pad_b = c->pad_r = s->k / 2;
    c->wtype = wtype;
    const int cing = s->cin / c->groups;
    c->cluster = N <= 0 || N > cing ? cing : N;
    const int ncl = tern_qconv_nclusters(c), K = cing * s->k * s->k;
    const int mc = wtype == TERN_WTYPE_TERNARY ? 1 : wtype == TERN_WTYPE_INT4 ? 7 : 127;
    d->w = malloc((size_t)s->cout * K);
    for (size_t i = 0; i < (size_t)s->cout * K; i++) d->w[i] = (int8_t)((int)(rnd32() % (2 * mc + 1)) - mc);
    d->cs = malloc(sizeof(int16_t) * s->cout * ncl);
    const int cmax = (int)fmin(32767, (1 << 28) / ((double)K * mc * 255));
    for (int i = 0; i < s->cout * ncl; i++) d->cs[i] = (int16_t)(rnd32() % (cmax + 1));
    d->bias = malloc(4 * s->cout); d->mpos = malloc(4 * s->cout); d->mneg = malloc(4 * s->cout);
    d->shift = malloc(s->cout);
    const double typ = sqrt((double)K) * mc * 128 * cmax * 0.5 + 1;
    for (int o = 0; o < s->cout; o++) {
        d->bias[o] = (int32_t)((double)(rnd32() % 2001) / 1000.0 * typ - typ);
        d->shift[o] = 4;
        d->mpos[o] = (int32_t)fmin(2147483647.0, 128.0 * ldexp(1, 35) / (3 * typ));
        d->mneg[o] = d->mpos[o] / 10;   /* LeakyReLU 0.1 */
    }
    c->w = d->w; c->cscale = d->cs; c->bias = d->bias; c->mpos = d->mpos; c->mneg = d->mneg; c->shift = d->shift;
    c->qmin = -128; c->qmax = 127;     /* LeakyReLU output is signed */
    c->in_signed = 0;                 /* after a ReLU / pixels; the s8 path costs the same */
}
static void free_conv(conv_data *d) { free(d->w); free(d->cs); free(d->bias); free(d->mpos); free(d->mneg); free(d->shift); }

int main(int argc, char **argv) {
    int batch = 64, quick = 0, noref = 0, nopeak = 0;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--noref")) noref = 1;     /* for profiling: time only the kernel */
        else if (!strcmp(argv[i], "--nopeak")) nopeak = 1;
        else filter = argv[i];
    }
    const enum tern_isa isa = tern_active_isa();
    double peak_ub = 0, peak_wd = 0;
    printf("isa %s, batch %d, 1 thread\n", tern_isa_name(isa), batch);
#if defined(__x86_64__)
    if (tern_cpu_isa() >= TERN_ISA_AVX2 && !nopeak) {
        const long it = quick ? 2000000 : 20000000;
        peak_rate(0, it / 10);   /* warm up the clock */
        const double ub = peak_rate(0, it), wd = peak_rate(1, it), mix = peak_rate(2, it);
        peak_ub = ub * 32; peak_wd = wd * 16;
        printf("peak: vpmaddubsw %.2f G/s = %.1f GMAC/s (u8 x s8, 32 per instruction); vpmaddwd %.2f G/s = %.1f GMAC/s (16 per);\n"
               "      vpmaddubsw+vpaddw accumulate %.2f G/s = %.1f GMAC/s\n",
               ub / 1e9, peak_ub / 1e9, wd / 1e9, peak_wd / 1e9, mix / 1e9, mix * 32 / 1e9);
    }
#endif
    /* on a VNNI CPU every kernel is measured against the vpdpbusd zmm peak (what its 8-bit MACs
     * can reach there); on AVX2 against vpmaddubsw (ternary, 4-bit) or vpmaddwd (8-bit) */
    double peak_dp = 0;
    if (isa >= TERN_ISA_AVX512VNNI && !nopeak) {
        peak_dp = (double)tern_peak_macs_per_s(isa);
        printf("peak: %s %.1f GMAC/s (64 u8 x s8 per instruction); %%peak below is against it\n", tern_peak_name(isa), peak_dp / 1e9);
    } else if (peak_ub > 0)
        printf("%%peak below: against vpmaddubsw (t2, w4) and vpmaddwd (w8)\n");
    printf("%-26s %-28s %-8s %9s %8s %8s %7s\n", "kernel", "case", "weights", "GMAC/s", "ref", "speedup", "%peak");
    static const struct { int wtype, N; const char *name; } wts[] = {
        {TERN_WTYPE_TERNARY, 4, "t2 N=4"}, {TERN_WTYPE_INT4, 4, "w4 N=4"}, {TERN_WTYPE_INT8, 0, "w8"}};
    int bad = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *s = &shapes[si];
        for (int wi = 0; wi < 3; wi++) {
            if (s->first && wts[wi].wtype != TERN_WTYPE_INT8) continue;   /* first conv stays 8-bit */
            char full[96];
            snprintf(full, sizeof full, "%s %s", s->name, wts[wi].name);
            if (filter && !strstr(full, filter)) continue;
            conv_data d;
            make_conv(&d, s, wts[wi].wtype, wts[wi].N);
            const tern_qconv *c = &d.c;
            const tern_conv_kernel *k = tern_conv_kernel_select(c, isa);
            const int oh = tern_qconv_out_h(c, s->h), ow = tern_qconv_out_w(c, s->w);
            const size_t xsz = (size_t)s->h * s->w * s->cin, ysz = (size_t)oh * ow * s->cout;
            const int nimg = TERN_MIN(batch, 8);   /* distinct images, cycled over the batch */
            uint8_t *x = malloc(xsz * nimg), *y = malloc(ysz), *yr = malloc(ysz);
            for (size_t i = 0; i < xsz * nimg; i++) x[i] = (uint8_t)rnd32();
            uint8_t *packed = tern_aligned_alloc(k->packed_size(c) + 1);
            uint8_t *scratch = tern_aligned_alloc(k->scratch_size(c, s->w) + 1);
            if (k->pack(c, packed) != TERN_STATUS_OK) {
                printf("%s: %s\n", full, tern_last_error());
                return 1;
            }
            /* check first: a few rows at both ends of image 0 */
            const int nchk = TERN_MIN(oh, 3);
            memset(y, 0, ysz); memset(yr, 1, ysz);
            tern_conv_ref.run(c, NULL, x, s->h, s->w, yr, 0, nchk, NULL);
            tern_conv_ref.run(c, NULL, x, s->h, s->w, yr, oh - nchk, oh, NULL);
            k->run(c, packed, x, s->h, s->w, y, 0, oh, scratch);
            const size_t rowb = (size_t)ow * s->cout;
            if (memcmp(y, yr, nchk * rowb) || memcmp(y + (oh - nchk) * rowb, yr + (oh - nchk) * rowb, nchk * rowb)) {
                printf("%-26s %-28s %-8s MISMATCH against the reference\n", k->name, s->name, wts[wi].name);
                bad = 1;
            }
            /* time: best of 3 batches */
            const double macs = (double)s->cout * oh * ow * (s->cin / c->groups) * s->k * s->k;
            double best = 1e30;
            for (int rep = 0; rep < (quick ? 1 : 3); rep++) {
                const double t0 = cpu_now();
                for (int b = 0; b < batch; b++) k->run(c, packed, x + (b % nimg) * xsz, s->h, s->w, y, 0, oh, scratch);
                best = fmin(best, cpu_now() - t0);
            }
            const double rate = macs * batch / best;
            /* reference: rows until ~0.2 s */
            int rows = 0;
            const double t0 = cpu_now();
            double tr;
            do {
                tern_conv_ref.run(c, NULL, x, s->h, s->w, yr, rows % oh, rows % oh + 1, NULL);
                rows++;
                tr = cpu_now() - t0;
            } while (!noref && tr < (quick ? 0.05 : 0.2));
            const double rref = macs / oh * rows / tr;
            const double pk = peak_dp > 0 ? peak_dp : wts[wi].wtype == TERN_WTYPE_INT8 ? peak_wd : peak_ub;
            char pks[16] = "-";
            if (pk > 0 && k != &tern_conv_ref) snprintf(pks, sizeof pks, "%.0f%%", 100 * rate / pk);
            if (noref)
                printf("%-26s %-28s %-8s %9.2f %8s %8s %7s\n", k->name, s->name, wts[wi].name, rate / 1e9, "-", "-", pks);
            else
                printf("%-26s %-28s %-8s %9.2f %8.3f %7.1fx %7s\n", k->name, s->name, wts[wi].name, rate / 1e9, rref / 1e9,
                       rate / rref, pks);
            fflush(stdout);
            free(x); free(y); free(yr); free(packed); free(scratch);
            free_conv(&d);
        }
    }
    return bad;
}
