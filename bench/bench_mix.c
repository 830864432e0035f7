/* What bounds the VNNI kernels on this CPU: instruction mixes timed against vpdpbusd alone, and
 * how much of a ternary model's work a zero-skipping kernel could skip.
 *
 *   bench_mix [model.tern ...]
 *
 * 1. Mixes (AVX-512 VNNI CPUs only): a block of independent vpdpbusd zmm plus other instructions a
 *    conv kernel issues per step or per output (the segment scale, the requantisation, broadcasts,
 *    shuffles); each line gives cycles per block in units of one vpdpbusd (so "12 dpbusd" reads
 *    about 12 where vpdpbusd issues once a cycle) and the share of the vpdpbusd peak left.
 * 2. For each .tern: per ternary layer, the fraction of zero codes and of all-zero groups of 4
 *    codes as a vpdpbusd step holds them (4 input channels at one tap, one output channel), as 4
 *    taps of one channel, and as a whole 16-channel step (what a dense 16-lane kernel could skip). */
#include "format/qmodel.h"
#include "kernels/kernels.h"
#include <stdio.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#if defined(__x86_64__)
static unsigned char buf[256] __attribute__((aligned(64)));
#define CLOB "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
    "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", \
    "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31"
#define D12 "vpdpbusd %%zmm30,%%zmm31,%%zmm0\n vpdpbusd %%zmm30,%%zmm31,%%zmm1\n vpdpbusd %%zmm30,%%zmm31,%%zmm2\n" \
    "vpdpbusd %%zmm30,%%zmm31,%%zmm3\n vpdpbusd %%zmm30,%%zmm31,%%zmm4\n vpdpbusd %%zmm30,%%zmm31,%%zmm5\n"        \
    "vpdpbusd %%zmm30,%%zmm31,%%zmm6\n vpdpbusd %%zmm30,%%zmm31,%%zmm7\n vpdpbusd %%zmm30,%%zmm31,%%zmm8\n"        \
    "vpdpbusd %%zmm30,%%zmm31,%%zmm9\n vpdpbusd %%zmm30,%%zmm31,%%zmm10\n vpdpbusd %%zmm30,%%zmm31,%%zmm11\n"
#define X4(op) op " %%zmm28,%%zmm27,%%zmm20\n " op " %%zmm28,%%zmm27,%%zmm21\n " op " %%zmm28,%%zmm27,%%zmm22\n " op " %%zmm28,%%zmm27,%%zmm23\n"
#define B(r, o) "vpbroadcastd " #o "(%0),%%zmm" #r "\n"
#define B12 B(12, 0) B(13, 4) B(14, 8) B(15, 12) B(16, 16) B(17, 20) B(18, 24) B(19, 28) B(24, 32) B(25, 36) B(26, 40) B(29, 44)
static const char *mix_names[] = {
    "12 vpdpbusd", "+ 4 vpdpwssd (segment scales)", "+ 4 vpmulld", "+ 4 vpmuldq (requantisation)", "+ 4 vpaddd",
    "+ 4 vpsrlvq", "+ 4 vpermt2w", "+ 12 vpbroadcastd m32", "+ 12 vpbroadcastd m32 + 4 vpaddd", "+ 12 vpbroadcastd m32 + 8 vpaddd",
};
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double run_mix(int id, long n) {
    const double t0 = cpu_now();
    for (long i = 0; i < n; i++) switch (id) {
        case 0: __asm__ volatile(D12 ::"r"(buf) : CLOB); break;
        case 1: __asm__ volatile(D12 X4("vpdpwssd") ::"r"(buf) : CLOB); break;
        case 2: __asm__ volatile(D12 X4("vpmulld") ::"r"(buf) : CLOB); break;
        case 3: __asm__ volatile(D12 X4("vpmuldq") ::"r"(buf) : CLOB); break;
        case 4: __asm__ volatile(D12 X4("vpaddd") ::"r"(buf) : CLOB); break;
        case 5: __asm__ volatile(D12 X4("vpsrlvq") ::"r"(buf) : CLOB); break;
        case 6: __asm__ volatile(D12 X4("vpermt2w") ::"r"(buf) : CLOB); break;
        case 7: __asm__ volatile(D12 B12 ::"r"(buf) : CLOB); break;
        case 8: __asm__ volatile(D12 B12 X4("vpaddd") ::"r"(buf) : CLOB); break;
        case 9: __asm__ volatile(D12 B12 X4("vpaddd") X4("vpaddd") ::"r"(buf) : CLOB); break;
        }
    return cpu_now() - t0;
}
#endif

static void zero_groups(const char *path) {
    tern_qmodel *m;
    if (tern_qmodel_load(path, &m)) { fprintf(stderr, "bench_mix: %s: %s\n", path, tern_last_error()); return; }
    printf("%s: ternary layers, share of zero codes and of all-zero groups of 4 codes\n", path);
    printf("  %-32s %10s %6s %14s %13s %12s\n", "layer", "cin->cout", "zero", "4 ch at 1 tap", "4 taps of 1 ch", "16 ch x step");
    for (int l = 0; l < m->nlayers; l++) {
        const tern_qlayer *L = &m->layers[l];
        if (L->op != TERN_QOP_CONV || L->conv.wtype != TERN_WTYPE_TERNARY) continue;
        const tern_qconv *c = &L->conv;
        const int cing = c->cin / c->groups, khw = c->kh * c->kw;
#define CODE(o, ci, t) (c->w[((size_t)(o) * cing + (ci)) * khw + (t)])
        long n = 0, z = 0, s4 = 0, s4z = 0, t4 = 0, t4z = 0, b = 0, bz = 0;
        for (int o = 0; o < c->cout; o++)
            for (int ci = 0; ci < cing; ci++)
                for (int t = 0; t < khw; t++) {
                    n++; z += CODE(o, ci, t) == 0;
                    if (ci % 4 == 0) { int a = 1; for (int j = ci; j < ci + 4 && j < cing; j++) a &= CODE(o, j, t) == 0; s4++; s4z += a; }
                    if (t % 4 == 0) { int a = 1; for (int j = t; j < t + 4 && j < khw; j++) a &= CODE(o, ci, j) == 0; t4++; t4z += a; }
                    if (o % 16 == 0 && ci % 4 == 0) {
                        int a = 1;
                        for (int oo = o; oo < o + 16 && oo < c->cout; oo++)
                            for (int j = ci; j < ci + 4 && j < cing; j++) a &= CODE(oo, j, t) == 0;
                        b++; bz += a;
                    }
                }
#undef CODE
        char io[32];
        snprintf(io, sizeof io, "%d->%d", c->cin, c->cout);
        printf("  %-32.32s %10s %5.1f%% %13.1f%% %13.1f%% %11.2f%%\n", L->name, io, 100.0 * z / n, 100.0 * s4z / s4,
               100.0 * t4z / t4, 100.0 * bz / b);
    }
    tern_qmodel_free(m);
}

int main(int argc, char **argv) {
#if defined(__x86_64__)
    if (tern_cpu_isa() >= TERN_ISA_AVX512VNNI) {
        const long n = 2000000;
        double best[16];
        for (int id = 0; id < (int)(sizeof mix_names / sizeof *mix_names); id++) best[id] = 1e30;   /* best of 5, interleaved */
        for (int rep = 0; rep < 5; rep++)
            for (int id = 0; id < (int)(sizeof mix_names / sizeof *mix_names); id++) {
                const double t = run_mix(id, n);
                if (t < best[id]) best[id] = t;
            }
        const double base = best[0];
        printf("instruction mixes (1 thread), cycles per block in vpdpbusd issue slots, share of the vpdpbusd peak:\n");
        for (int id = 0; id < (int)(sizeof mix_names / sizeof *mix_names); id++) {
            const double t = best[id];
            printf("  %-40s %6.2f  %5.1f %%\n", mix_names[id], 12.0 * t / base, 100.0 * base / t);
        }
    } else
        printf("instruction mixes: skipped (no AVX-512 VNNI on this CPU)\n");
#endif
    for (int i = 1; i < argc; i++) zero_groups(argv[i]);
    return 0;
}
