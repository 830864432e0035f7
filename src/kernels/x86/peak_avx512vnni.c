/* Peak of vpdpbusd zmm on one core: 16 independent accumulator chains (latency ~5 cycles, up to
 * 2 per cycle), so the loop is bound by issue rate, not latency. In inline asm: with intrinsics
 * GCC 12 keeps the chains in memory. */
#include "kernels/peak.h"
#include <time.h>

static int64_t ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);   /* this thread's CPU time: the machines are shared */
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

#define DP(r) "vpdpbusd %%zmm17, %%zmm16, %%zmm" #r "\n\t"
int64_t tern_peak_macs_per_s__avx512vnni(void) {
    int64_t best = 0;
    for (int rep = 0; rep < 5; rep++) {
        const int64_t iters = 1000000;
        int64_t n = iters;
        int64_t t0 = ns();
        __asm__ volatile(
            "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
            "vpabsb %%zmm16, %%zmm17\n\t"
            "1:\n\t"
            DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7) DP(8) DP(9) DP(10) DP(11) DP(12) DP(13) DP(14) DP(15)
            "dec %[n]\n\tjnz 1b\n\t"
            "vzeroupper\n\t"
            : [n] "+r"(n)
            :
            : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
              "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "cc");
        int64_t dt = ns() - t0;
        int64_t macs = iters * 16 * 64;
        int64_t rate = dt > 0 ? macs * 1000 / dt * 1000000 : 0; /* MACs per second */
        if (rate > best) best = rate;
    }
    return best;
}
