/* AVX2 running max (max pooling), channel sums (global average pool) and residual add. Add: 32 elements per step in four int32 vectors, packed back with saturation,
 * then clamped to qmin..qmax; bit-exact with tern_add_ref. */
#include "kernels/kernels.h"
#include <immintrin.h>

static inline __m256i widen(__m128i v, int sgn) { return sgn ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v); }

void tern_add__avx2(const uint8_t *a, int a_signed, const uint8_t *b, int b_signed, uint8_t *y, size_t n,
                    int la, int lb, int rs, int qmin, int qmax) {
    const __m128i sla = _mm_cvtsi32_si128(la), slb = _mm_cvtsi32_si128(lb), srs = _mm_cvtsi32_si128(rs);
    const __m256i rnd = _mm256_set1_epi32(rs > 0 ? 1 << (rs - 1) : 0);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const int out_signed = qmin < 0;
    const __m256i lo = _mm256_set1_epi8((char)qmin), hi = _mm256_set1_epi8((char)qmax);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + i)), vb = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i r[4];
        for (int q = 0; q < 4; q++) {
            __m128i ha = q < 2 ? _mm256_castsi256_si128(va) : _mm256_extracti128_si256(va, 1);
            __m128i hb = q < 2 ? _mm256_castsi256_si128(vb) : _mm256_extracti128_si256(vb, 1);
            if (q & 1) { ha = _mm_srli_si128(ha, 8); hb = _mm_srli_si128(hb, 8); }
            __m256i s = _mm256_add_epi32(_mm256_sll_epi32(widen(ha, a_signed), sla), _mm256_sll_epi32(widen(hb, b_signed), slb));
            r[q] = _mm256_sra_epi32(_mm256_add_epi32(s, rnd), srs);
        }
        /* int32 -> int16 (saturating) -> 8-bit (saturating to the output type); packs work per
         * 128-bit lane, so restore element order with one cross-lane permute */
        __m256i w0 = _mm256_packs_epi32(r[0], r[1]), w1 = _mm256_packs_epi32(r[2], r[3]);
        __m256i v = out_signed ? _mm256_packs_epi16(w0, w1) : _mm256_packus_epi16(w0, w1);
        v = _mm256_permutevar8x32_epi32(v, perm);
        if (out_signed) v = _mm256_min_epi8(_mm256_max_epi8(v, lo), hi);
        else v = _mm256_min_epu8(_mm256_max_epu8(v, lo), hi);
        _mm256_storeu_si256((__m256i *)(y + i), v);
    }
    if (i < n) tern_add_ref(a + i, a_signed, b + i, b_signed, y + i, n - i, la, lb, rs, qmin, qmax);
}

void tern_max__avx2(uint8_t *d, const uint8_t *s, size_t n, int is_signed) {
    size_t i = 0;
    if (is_signed)
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(d + i), _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(d + i)), _mm256_loadu_si256((const __m256i *)(s + i))));
    else
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(d + i), _mm256_max_epu8(_mm256_loadu_si256((const __m256i *)(d + i)), _mm256_loadu_si256((const __m256i *)(s + i))));
    if (i < n) tern_max_ref(d + i, s + i, n - i, is_signed);
}

void tern_maxpool2x2__avx2(const uint8_t *x, int W, int C, uint8_t *y, int OH, int OW, int is_signed) {
    for (int oy = 0; oy < OH; oy++) {
        const uint8_t *r0 = x + (size_t)(2 * oy) * W * C, *r1 = r0 + (size_t)W * C;
        uint8_t *d = y + (size_t)oy * OW * C;
        for (int ox = 0; ox < OW; ox++)
            for (int c = 0; c < C; c += 16) {
                size_t o0 = (size_t)(2 * ox) * C + c, o1 = o0 + (size_t)C;
                __m128i a = _mm_loadu_si128((const __m128i *)(r0 + o0)), b = _mm_loadu_si128((const __m128i *)(r0 + o1));
                __m128i e = _mm_loadu_si128((const __m128i *)(r1 + o0)), f = _mm_loadu_si128((const __m128i *)(r1 + o1));
                __m128i m = is_signed ? _mm_max_epi8(_mm_max_epi8(a, b), _mm_max_epi8(e, f)) : _mm_max_epu8(_mm_max_epu8(a, b), _mm_max_epu8(e, f));
                _mm_storeu_si128((__m128i *)(d + (size_t)ox * C + c), m);
            }
    }
}

/* Channel sums: 16 channels per s16 accumulator, over runs of 256 pixels (256 * 255 < 2^16 as
 * unsigned words, 256 * -128 >= -2^15 as signed ones: exact), then widened into int32. */
void tern_chansum__avx2(const uint8_t *x, int is_signed, size_t npix, int c, int32_t *sum) {
    int ch = 0;
    for (; ch + 16 <= c; ch += 16) {
        __m256i lo = _mm256_setzero_si256(), hi = lo;
        for (size_t p0 = 0; p0 < npix; p0 += 256) {
            const size_t p1 = p0 + 256 < npix ? p0 + 256 : npix;
            __m256i a = _mm256_setzero_si256();
            for (size_t p = p0; p < p1; p++) {
                const __m128i b = _mm_loadu_si128((const __m128i *)(x + p * (size_t)c + ch));
                a = _mm256_add_epi16(a, is_signed ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b));
            }
            const __m128i a0 = _mm256_castsi256_si128(a), a1 = _mm256_extracti128_si256(a, 1);
            lo = _mm256_add_epi32(lo, is_signed ? _mm256_cvtepi16_epi32(a0) : _mm256_cvtepu16_epi32(a0));
            hi = _mm256_add_epi32(hi, is_signed ? _mm256_cvtepi16_epi32(a1) : _mm256_cvtepu16_epi32(a1));
        }
        _mm256_storeu_si256((__m256i *)(sum + ch), lo);
        _mm256_storeu_si256((__m256i *)(sum + ch + 8), hi);
    }
    for (; ch < c; ch++) {   /* the last c % 16 channels */
        uint32_t t = 0;
        for (size_t p = 0; p < npix; p++) t += (uint32_t)(is_signed ? (int32_t)(int8_t)x[p * c + ch] : (int32_t)x[p * c + ch]);
        sum[ch] = (int32_t)t;
    }
}
