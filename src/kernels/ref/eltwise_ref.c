/* Reference element-wise kernels for the integer engine's LUT and MUL layers (kernels.h): they
 * define every result bit. Plain integer C; a fast version must match them exactly. */
#include "kernels/kernels.h"

void tern_lut_ref(const uint8_t *x, size_t n, const uint8_t *lut, uint8_t *y) {
    for (size_t i = 0; i < n; i++) y[i] = lut[x[i]];
}

static inline int32_t byte_val(uint8_t v, int is_signed) { return is_signed ? (int32_t)(int8_t)v : (int32_t)v; }

void tern_mul_ref(const uint8_t *a, int a_signed, const uint8_t *b, int b_signed, int b_per_channel, uint8_t *y,
                  size_t npix, int c, int la, int rs, int qmin, int qmax) {
    const int64_t rnd = rs > 0 ? (int64_t)1 << (rs - 1) : 0;
    for (size_t p = 0; p < npix; p++) {
        const uint8_t *bp = b_per_channel ? b : b + p * (size_t)c;
        for (int ch = 0; ch < c; ch++) {
            int64_t v = (int64_t)byte_val(a[p * (size_t)c + ch], a_signed) * byte_val(bp[ch], b_signed);
            v = ((v * ((int64_t)1 << la)) + rnd) >> rs;   /* |a*b| <= 2^16, la <= 31: fits int64 */
            y[p * (size_t)c + ch] = (uint8_t)(v < qmin ? qmin : v > qmax ? qmax : v);
        }
    }
}

void tern_chanperm_ref(const uint8_t *x, size_t npix, int c, const int32_t *perm, uint8_t *y) {
    for (size_t p = 0; p < npix; p++)
        for (int j = 0; j < c; j++) y[p * (size_t)c + j] = x[p * (size_t)c + perm[j]];
}
