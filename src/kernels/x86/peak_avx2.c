/* Peak of vpmaddubsw on one core: 12 independent accumulator chains, so the loop is bound by
 * issue rate, not latency. */
#include "kernels/peak.h"
#include <immintrin.h>
#include <time.h>

static int64_t ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);   /* this thread's CPU time: the machines are shared */
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int64_t tern_peak_macs_per_s__avx2(void) {
    /* 12 independent dependency chains (each r_k feeds its own next step): with ~3 cycles of
     * latency that is enough to saturate the issue ports, and the compiler cannot merge them */
    __m256i b = _mm256_set1_epi8(1);
    __m256i r[12];
    for (int k = 0; k < 12; k++) r[k] = _mm256_set1_epi8((char)(k + 1));
    int64_t best = 0;
    for (int rep = 0; rep < 5; rep++) {
        const int64_t iters = 2000000;
        int64_t t0 = ns();
        for (int64_t i = 0; i < iters; i++) {
            r[0] = _mm256_maddubs_epi16(r[0], b); r[1] = _mm256_maddubs_epi16(r[1], b);
            r[2] = _mm256_maddubs_epi16(r[2], b); r[3] = _mm256_maddubs_epi16(r[3], b);
            r[4] = _mm256_maddubs_epi16(r[4], b); r[5] = _mm256_maddubs_epi16(r[5], b);
            r[6] = _mm256_maddubs_epi16(r[6], b); r[7] = _mm256_maddubs_epi16(r[7], b);
            r[8] = _mm256_maddubs_epi16(r[8], b); r[9] = _mm256_maddubs_epi16(r[9], b);
            r[10] = _mm256_maddubs_epi16(r[10], b); r[11] = _mm256_maddubs_epi16(r[11], b);
        }
        int64_t dt = ns() - t0;
        __asm__ volatile("" ::"x"(r[0]), "x"(r[1]), "x"(r[2]), "x"(r[3]), "x"(r[4]), "x"(r[5]), "x"(r[6]), "x"(r[7]),
                         "x"(r[8]), "x"(r[9]), "x"(r[10]), "x"(r[11]));
        int64_t macs = iters * 12 * 32;
        int64_t rate = dt > 0 ? macs * 1000 / dt * 1000000 : 0; /* MACs per second */
        if (rate > best) best = rate;
    }
    return best;
}
