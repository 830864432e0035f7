/* Peak of vpmaddubsw on one core: 12 independent accumulator chains, so the loop is bound by
 * issue rate, not latency. */
#include "kernels/peak.h"
#include <immintrin.h>
#include <time.h>

static int64_t ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int64_t tern_peak_macs_per_s__avx2(void) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-1);
    __m256i r0 = _mm256_setzero_si256(), r1 = r0, r2 = r0, r3 = r0, r4 = r0, r5 = r0, r6 = r0, r7 = r0, r8 = r0, r9 = r0, r10 = r0, r11 = r0;
    int64_t best = 0;
    for (int rep = 0; rep < 5; rep++) {
        const int64_t iters = 2000000;
        int64_t t0 = ns();
        for (int64_t i = 0; i < iters; i++) {
            r0 = _mm256_maddubs_epi16(a, b); r1 = _mm256_maddubs_epi16(a, r0);
            r2 = _mm256_maddubs_epi16(a, b); r3 = _mm256_maddubs_epi16(a, r2);
            r4 = _mm256_maddubs_epi16(a, b); r5 = _mm256_maddubs_epi16(a, r4);
            r6 = _mm256_maddubs_epi16(a, b); r7 = _mm256_maddubs_epi16(a, r6);
            r8 = _mm256_maddubs_epi16(a, b); r9 = _mm256_maddubs_epi16(a, r8);
            r10 = _mm256_maddubs_epi16(a, b); r11 = _mm256_maddubs_epi16(a, r10);
            __asm__ volatile("" : "+x"(a), "+x"(b));
        }
        int64_t dt = ns() - t0;
        __asm__ volatile("" ::"x"(r1), "x"(r3), "x"(r5), "x"(r7), "x"(r9), "x"(r11));
        int64_t macs = iters * 12 * 32;
        int64_t rate = dt > 0 ? macs * 1000 / dt * 1000000 : 0; /* macs per second */
        if (rate > best) best = rate;
    }
    return best;
}
