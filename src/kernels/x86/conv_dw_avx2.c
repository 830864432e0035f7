/* AVX2 depthwise convolution (one input and one output channel per group), any code type,
 * bit-exact against conv_ref.
 * 16 channels at a time: a tap's 16 input bytes are widened to s16, two taps are interleaved
 * word by word (vpunpckl/hwd) so vpmaddwd gives, per channel, w[t0]*x[t0] + w[t1]*x[t1] in s32:
 * exact for 8-bit codes too. The unpack splits channels into vector A = {0-3, 8-11} and
 * B = {4-7, 12-15}; codes and requantisation params are packed in that order, and vpackssdw
 * of A and B puts the channels back in order. The cluster scale (one per channel) multiplies
 * the tap sum at the end (vpmulld, int32 wrap-around like the reference). Rows go through a ring
 * of padded rows (conv_pack.h), requantisation is requant8. */
#include "kernels/x86/conv_pack.h"

typedef struct dw_hdr { int32_t nblk, ntp; int64_t blk_bytes; } dw_hdr;
#define DW_HDR 64

static int dw_chan(int v, int m) { return (m / 4) * 8 + v * 4 + m % 4; }   /* vector v, s32 lane m */

static size_t dw_packed_size(const tern_qconv *c) {
    const int nblk = (c->cout + NR - 1) / NR, ntp = (c->kh * c->kw + 1) / 2;
    return DW_HDR + (size_t)nblk * (PARAM_BYTES + (size_t)ntp * 64 + 64);
}

static enum tern_status dw_pack(const tern_qconv *c, void *packed) {
    dw_hdr *H = packed;
    const int khw = c->kh * c->kw;
    H->nblk = (c->cout + NR - 1) / NR;
    H->ntp = (khw + 1) / 2;
    H->blk_bytes = PARAM_BYTES + (int64_t)H->ntp * 64 + 64;
    for (int b = 0; b < H->nblk; b++) {
        uint8_t *blk = (uint8_t *)packed + DW_HDR + (size_t)b * H->blk_bytes;
        memset(blk, 0, (size_t)H->blk_bytes);
        int32_t *P = (int32_t *)blk;
        int64_t *P64 = (int64_t *)blk;
        for (int v = 0; v < 2; v++)
            for (int m = 0; m < 8; m++) {
                const int o = b * NR + dw_chan(v, m), j = v * 8 + m;
                if (o >= c->cout) continue;
                const int sh = c->shift[o] < 0 ? 0 : c->shift[o] > 31 ? 31 : c->shift[o];
                const int vj = v * 8 + (m % 2) * 4 + m / 2;
                P[P_BIAS + j] = c->bias[o];
                P[P_MPOS + j] = c->mpos[o];
                P[P_MNEG + j] = c->mneg[o];
                P[P_CFIX + j] = (int32_t)(uint32_t)(1ull << (31 - sh));
                P64[P_RND / 2 + vj] = (int64_t)((1ull << 62) + (1ull << 30) + (sh > 0 ? 1ull << (30 + sh) : 0));
                P64[P_TSH / 2 + vj] = 31 + sh;
            }
        int16_t *q = (int16_t *)(blk + PARAM_BYTES);
        for (int tp = 0; tp < H->ntp; tp++, q += 32)
            for (int v = 0; v < 2; v++)
                for (int wq = 0; wq < 16; wq++) {   /* word wq of vector v: channel, tap of the pair */
                    const int o = b * NR + (wq / 8) * 8 + v * 4 + (wq % 8) / 2, t = 2 * tp + wq % 2;
                    if (o < c->cout && t < khw) q[v * 16 + wq] = c->w[(size_t)o * khw + t];
                }
        int32_t *cs = (int32_t *)(blk + PARAM_BYTES + (size_t)H->ntp * 64);
        for (int v = 0; v < 2; v++)
            for (int m = 0; m < 8; m++) {
                const int o = b * NR + dw_chan(v, m);
                if (o < c->cout) cs[v * 8 + m] = c->cscale[o];
            }
    }
    return TERN_STATUS_OK;
}

static size_t dw_scratch_size(const tern_qconv *c, int w) {
    return A64((size_t)c->kh * c->kw * sizeof(void *)) + A64((size_t)c->kh * sizeof(void *)) +
           A64((size_t)tern_cpk_n_slots(c) * sizeof(int)) + (size_t)(tern_cpk_n_slots(c) + 1) * A64((size_t)tern_cpk_row_w(c, w) * c->cin + 64);
}

static inline __m256i dw_widen(const uint8_t *p, int sgn) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    return sgn ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b);
}

static void dw_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                   uint8_t *y, int oy0, int oy1, void *scratch) {
    const dw_hdr *H = packed;
    const int ow = tern_qconv_out_w(c, w), khw = c->kh * c->kw, cin = c->cin, sgn = c->in_signed;
    const int wp = tern_cpk_row_w(c, w), nslot = tern_cpk_n_slots(c);
    const size_t rb = A64((size_t)wp * cin + 64);
    uint8_t *sc = scratch;
    const uint8_t **tapb = (const uint8_t **)sc; sc += A64((size_t)khw * sizeof(void *));
    const uint8_t **rowp = (const uint8_t **)sc; sc += A64((size_t)c->kh * sizeof(void *));
    int *slot_iy = (int *)sc; sc += A64((size_t)nslot * sizeof(int));
    uint8_t *padrow = sc; sc += rb;
    uint8_t *ring = sc;
    int pad_ready = 0;
    for (int s = 0; s < nslot; s++) slot_iy[s] = INT_MIN;
    const __m256i qmin = _mm256_set1_epi32(c->qmin), qmax = _mm256_set1_epi32(c->qmax);
    const ptrdiff_t pstride = (ptrdiff_t)c->sw * cin;
    for (int oy = oy0; oy < oy1; oy++) {
        for (int ky = 0; ky < c->kh; ky++) {
            const int iy = oy * c->sh - c->pad_t + ky * c->dh;
            if (iy < 0 || iy >= h) {
                if (!pad_ready) { tern_cpk_fill_row(c, KIND_RAW, 0, NULL, w, wp, padrow, rb); pad_ready = 1; }
                rowp[ky] = padrow;
            } else {
                const int s = iy % nslot;
                uint8_t *r = ring + (size_t)s * rb;
                if (slot_iy[s] != iy) { tern_cpk_fill_row(c, KIND_RAW, 0, x + (size_t)iy * w * cin, w, wp, r, rb); slot_iy[s] = iy; }
                rowp[ky] = r;
            }
        }
        for (int t = 0; t < khw; t++) tapb[t] = rowp[t / c->kw] + (size_t)(t % c->kw) * c->dw * cin;
        uint8_t *yrow = y + (size_t)oy * ow * c->cout;
        for (int b = 0; b < H->nblk; b++) {
            const uint8_t *blk = (const uint8_t *)packed + DW_HDR + (size_t)b * H->blk_bytes;
            const int32_t *P = (const int32_t *)blk;
            const __m256i *wq = (const __m256i *)(blk + PARAM_BYTES);
            const __m256i cs0 = _mm256_load_si256((const __m256i *)(blk + PARAM_BYTES + (size_t)H->ntp * 64));
            const __m256i cs1 = _mm256_load_si256((const __m256i *)(blk + PARAM_BYTES + (size_t)H->ntp * 64 + 32));
            const __m256i b0 = _mm256_load_si256((const __m256i *)P), b1 = _mm256_load_si256((const __m256i *)(P + 8));
            const int nc = TERN_MIN(NR, c->cout - b * NR);
            for (int ox = 0; ox < ow; ox++) {
                const ptrdiff_t off = (ptrdiff_t)ox * pstride + b * NR;
                __m256i sA = _mm256_setzero_si256(), sB = sA;
                for (int tp = 0; tp < H->ntp; tp++) {
                    const int t0 = 2 * tp, t1 = TERN_MIN(t0 + 1, khw - 1);   /* odd count: code 0 */
                    const __m256i x0 = dw_widen(tapb[t0] + off, sgn), x1 = dw_widen(tapb[t1] + off, sgn);
                    sA = _mm256_add_epi32(sA, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), _mm256_load_si256(wq + 2 * tp)));
                    sB = _mm256_add_epi32(sB, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), _mm256_load_si256(wq + 2 * tp + 1)));
                }
                const __m256i rA = requant8(_mm256_add_epi32(b0, _mm256_mullo_epi32(sA, cs0)), P, 0, qmin, qmax);
                const __m256i rB = requant8(_mm256_add_epi32(b1, _mm256_mullo_epi32(sB, cs1)), P, 8, qmin, qmax);
                const __m256i t = _mm256_packs_epi32(rA, rB);   /* channels 0-7 | 8-15 as s16 */
                const __m256i u = c->qmin < 0 ? _mm256_packs_epi16(t, t) : _mm256_packus_epi16(t, t);
                const __m128i o = _mm256_castsi256_si128(_mm256_permute4x64_epi64(u, 0x08));
                uint8_t *d = yrow + (size_t)ox * c->cout + b * NR;
                if (nc == NR) _mm_storeu_si128((__m128i *)d, o);
                else {
                    uint8_t tmp[16];
                    _mm_storeu_si128((__m128i *)tmp, o);
                    memcpy(d, tmp, (size_t)nc);
                }
            }
        }
    }
}

RUN_THEN_ADD(dw_run_add, dw_run)

const tern_conv_kernel tern_conv_dw_1x16__avx2 = {
    "conv_dw_1x16__avx2", dw_packed_size, dw_pack, dw_scratch_size, dw_run, dw_run_add,
};
