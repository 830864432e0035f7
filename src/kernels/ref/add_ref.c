/* Reference residual add, running max and channel sums (kernels.h): define the results the
 * AVX2 versions must match. */
#include "kernels/kernels.h"

#define ADD_LOOP(TA, TB)                                                                       \
    for (size_t i = 0; i < n; i++) {                                                           \
        int32_t v = ((int32_t)((const TA *)a)[i] * (1 << la)) + ((int32_t)((const TB *)b)[i] * (1 << lb)); \
        v = (v + rnd) >> rs;                                                                   \
        y[i] = (uint8_t)(v < qmin ? qmin : v > qmax ? qmax : v);                               \
    }

void tern_add_ref(const uint8_t *a, int a_signed, const uint8_t *b, int b_signed, uint8_t *y, size_t n,
                  int la, int lb, int rs, int qmin, int qmax) {
    const int32_t rnd = rs > 0 ? 1 << (rs - 1) : 0;
    if (!a_signed && !b_signed) ADD_LOOP(uint8_t, uint8_t)
    else if (a_signed && !b_signed) ADD_LOOP(int8_t, uint8_t)
    else if (!a_signed && b_signed) ADD_LOOP(uint8_t, int8_t)
    else ADD_LOOP(int8_t, int8_t)
}

void tern_max_ref(uint8_t *d, const uint8_t *s, size_t n, int is_signed) {
    if (is_signed)
        for (size_t i = 0; i < n; i++) d[i] = (int8_t)s[i] > (int8_t)d[i] ? s[i] : d[i];
    else
        for (size_t i = 0; i < n; i++) d[i] = s[i] > d[i] ? s[i] : d[i];
}

void tern_chansum_ref(const uint8_t *x, int is_signed, size_t npix, int c, int32_t *sum) {
    for (int ch = 0; ch < c; ch++) {
        uint32_t s = 0;   /* wraps like the int64 sum cast to int32 */
        for (size_t p = 0; p < npix; p++) s += (uint32_t)(is_signed ? (int32_t)(int8_t)x[p * c + ch] : (int32_t)x[p * c + ch]);
        sum[ch] = (int32_t)s;
    }
}
