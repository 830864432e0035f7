/* AVX-512 VNNI integer convolutions (vpdpbusd), bit-exact against conv_ref.
 *
 * Its logic is also tested on AVX2-only machines, through an exact AVX2 emulation of the few
 * 512-bit operations it uses (v_* below): `make test` builds this file with -mavx2 -mfma
 * -DTERN_VNNI_EMULATE into tests/test_conv_kernels_vnni_emu (see the Makefile), which runs every
 * sweep on it. What the emulation cannot check is the mapping of v_* onto the real intrinsics;
 * the normal test_conv_kernels checks that on any CPU that has AVX-512 VNNI.
 *
 * Packing and row copies are shared with the AVX2 kernel (conv_pack.h, packed with vnni = 1): the
 * same steps (4 input bytes of a tap x 16 output channels, 64 bytes of codes), rows copied once
 * into a padded ring,
 * signed input xor 0x80 with the correction folded into the bias, the same requantisation.
 * vpdpbusd adds the 4 u8 x s8 products of a step into each channel's s32 sum (no saturation,
 * int32 wrap-around like the reference), so a cluster is one segment whatever its length and
 * 8-bit codes need no widening; at a cluster's end its scale multiplies the sum (vpmulld).
 * Tile: 8 pixels x 16 channels: 8 sums + 8 accumulators + codes + broadcast of the 32 zmm. */
#include "kernels/x86/conv_pack.h"

/* the tile's view of a row (see vnni_pixels) */
typedef struct run_ctx {
    const uint8_t *const *sp;  /* per step: address of its bytes for pixel 0 of the row */
    const int32_t *segn;
    int nseg;
    int cout, out_signed;
    __m256i qmin, qmax;
} run_ctx;

#ifdef TERN_VNNI_EMULATE
const int tern_conv_vnni_emulated = 1;   /* tells test_conv_kernels the kernel runs on AVX2 */
/* 16 x int32 as two ymm; every operation exact. */
typedef struct v16 { __m256i lo, hi; } v16;
static inline v16 v_load(const void *p) {
    return (v16){_mm256_load_si256((const __m256i *)p), _mm256_load_si256((const __m256i *)p + 1)};
}
static inline v16 v_set1(int32_t a) { const __m256i t = _mm256_set1_epi32(a); return (v16){t, t}; }
static inline v16 v_zero(void) { return v_set1(0); }
static inline v16 v_add(v16 a, v16 b) { return (v16){_mm256_add_epi32(a.lo, b.lo), _mm256_add_epi32(a.hi, b.hi)}; }
static inline v16 v_mullo(v16 a, v16 b) { return (v16){_mm256_mullo_epi32(a.lo, b.lo), _mm256_mullo_epi32(a.hi, b.hi)}; }
/* vpdpbusd: acc + sum of 4 (u8 of x) * (s8 of w) per dword: even and odd bytes widened to s16
 * (products fit), vpmaddwd sums pairs exactly in s32 */
static inline __m256i dp4(__m256i acc, __m256i x, __m256i w) {
    const __m256i xe = _mm256_and_si256(x, _mm256_set1_epi16(0x00FF)), xo = _mm256_srli_epi16(x, 8);
    const __m256i we = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8), wo = _mm256_srai_epi16(w, 8);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(xe, we), _mm256_madd_epi16(xo, wo)));
}
static inline v16 v_dpbusd(v16 acc, v16 x, v16 w) { return (v16){dp4(acc.lo, x.lo, w.lo), dp4(acc.hi, x.hi, w.hi)}; }
static inline __m256i v_lo(v16 a) { return a.lo; }
static inline __m256i v_hi(v16 a) { return a.hi; }
#define V_KEEP(x) ((void)0)
#else
typedef __m512i v16;
static inline v16 v_load(const void *p) { return _mm512_load_si512(p); }
static inline v16 v_set1(int32_t a) { return _mm512_set1_epi32(a); }
static inline v16 v_zero(void) { return _mm512_setzero_si512(); }
static inline v16 v_add(v16 a, v16 b) { return _mm512_add_epi32(a, b); }
static inline v16 v_mullo(v16 a, v16 b) { return _mm512_mullo_epi32(a, b); }
/* _mm512_dpbusd_epi32(src, a, b): src + sum over 4 bytes of unsigned a times signed b */
static inline v16 v_dpbusd(v16 acc, v16 x, v16 w) { return _mm512_dpbusd_epi32(acc, x, w); }
static inline __m256i v_lo(v16 a) { return _mm512_castsi512_si256(a); }
static inline __m256i v_hi(v16 a) { return _mm512_extracti64x4_epi64(a, 1); }
/* keeps GCC from accumulating into a copy and moving it back every step */
#define V_KEEP(x) __asm__("" : "+v"(x))
#endif

enum { VMR = 8 };

/* 8 pixels x 16 channels. o[i]: byte offset of pixel i from the step pointers. */
static void vnni_tile(const run_ctx *X, const uint8_t *blk, const ptrdiff_t *o, uint8_t *y, int n, int nc) {
    const int32_t *P = (const int32_t *)blk;
    const int8_t *wp = (const int8_t *)(blk + PARAM_BYTES);
    const uint8_t *const *sp = X->sp;
    v16 acc[VMR];
    const v16 bias = v_load(P + P_BIAS);
#pragma GCC unroll 8
    for (int i = 0; i < VMR; i++) acc[i] = bias;
    for (int sg = 0; sg < X->nseg; sg++) {
        v16 s[VMR];
#pragma GCC unroll 8
        for (int i = 0; i < VMR; i++) s[i] = v_zero();
        for (int k = 0; k < X->segn[sg]; k++) {
            const v16 w = v_load(wp);
            const uint8_t *p = *sp++;
            wp += 64;
#pragma GCC unroll 8
            for (int i = 0; i < VMR; i++) {
                int32_t b;
                memcpy(&b, p + o[i], 4);
                s[i] = v_dpbusd(s[i], v_set1(b), w);
            }
#pragma GCC unroll 8
            for (int i = 0; i < VMR; i++) V_KEEP(s[i]);
        }
        const v16 cs = v_load(wp);   /* int32 scale per channel */
        wp += 64;
#pragma GCC unroll 8
        for (int i = 0; i < VMR; i++) acc[i] = v_add(acc[i], v_mullo(s[i], cs));
    }
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < n; i++) {
        const __m256i r0 = requant8(v_lo(acc[i]), P, 0, X->qmin, X->qmax);
        const __m256i r1 = requant8(v_hi(acc[i]), P, 8, X->qmin, X->qmax);
        const __m256i t = _mm256_packs_epi32(r0, r1);
        const __m256i u = X->out_signed ? _mm256_packs_epi16(t, t) : _mm256_packus_epi16(t, t);
        const __m128i ob = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u, perm));
        uint8_t *d = y + (size_t)i * X->cout;
        if (nc == NR) _mm_storeu_si128((__m128i *)d, ob);
        else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, ob);
            memcpy(d, tmp, (size_t)nc);
        }
    }
}

static void vnni_pixels(const tern_qconv *c, const pk_hdr *H, run_ctx *X, int npix, ptrdiff_t pstride, uint8_t *yrow) {
    const uint8_t *base = (const uint8_t *)H;
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups;
    for (int gi = 0; gi < c->groups; gi++) {
        const ptrdiff_t goff = (ptrdiff_t)gi * cing;
        for (int b = 0; b < H->ncb; b++) {
            const uint8_t *blk = base + H->off_blk + (size_t)(gi * H->ncb + b) * H->blk_bytes;
            const int nc = TERN_MIN(NR, coutg - b * NR);
            uint8_t *yb = yrow + gi * coutg + b * NR;
            for (int px = 0; px < npix; px += VMR) {
                const int n = TERN_MIN(VMR, npix - px);
                ptrdiff_t o[VMR];
                for (int i = 0; i < VMR; i++) o[i] = goff + (ptrdiff_t)(px + TERN_MIN(i, n - 1)) * pstride;
                vnni_tile(X, blk, o, yb + (size_t)px * c->cout, n, nc);
            }
        }
    }
}

/* ---- the driver: output rows one by one over a ring of padded input rows ---- */
/* conv_avx512vnni.c provides the tiles; rows go through a ring of padded rows */

static size_t vnni_scratch_size(const tern_qconv *c, int w) {
    int ns, nseg;
    tern_cpk_plan(c, 1, NULL, NULL, NULL, &ns, &nseg);
    const int khw = c->kh * c->kw;
    return A64((size_t)ns * sizeof(void *)) + A64((size_t)khw * sizeof(void *)) +
           A64((size_t)c->kh * sizeof(void *)) + A64((size_t)tern_cpk_n_slots(c) * sizeof(int)) +
           (size_t)(tern_cpk_n_slots(c) + 1) * tern_cpk_row_bytes(c, w);
}

static void vnni_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                     uint8_t *y, int oy0, int oy1, void *scratch) {
    const pk_hdr *H = packed;
    const uint8_t *pbase = packed;
    const pk_step *st = (const pk_step *)(pbase + H->off_step);
    const int ow = tern_qconv_out_w(c, w), khw = c->kh * c->kw, cin = c->cin, elem = H->elem;
    const int wp = tern_cpk_row_w(c, w), nslot = tern_cpk_n_slots(c);
    const size_t rb = tern_cpk_row_bytes(c, w);
    uint8_t *sc = scratch;
    const uint8_t **sp = (const uint8_t **)sc; sc += A64((size_t)H->nsteps * sizeof(void *));
    const uint8_t **tapb = (const uint8_t **)sc; sc += A64((size_t)khw * sizeof(void *));
    const uint8_t **rowp = (const uint8_t **)sc; sc += A64((size_t)c->kh * sizeof(void *));
    int *slot_iy = (int *)sc; sc += A64((size_t)nslot * sizeof(int));
    uint8_t *padrow = sc; sc += rb;
    uint8_t *ring = sc;
    int pad_ready = 0;
    for (int s = 0; s < nslot; s++) slot_iy[s] = INT_MIN;

    run_ctx X = {
        .sp = sp, .segn = (const int32_t *)(pbase + H->off_seg), .nseg = H->nseg,
        .cout = c->cout, .out_signed = c->qmin < 0,
        .qmin = _mm256_set1_epi32(c->qmin), .qmax = _mm256_set1_epi32(c->qmax),
    };
    /* unsigned rows needing no horizontal padding and no read past a pixel's channels are used
     * in place */
    const int direct = H->kind == KIND_MADDUBS && !c->in_signed && H->direct_ok && c->pad_l == 0 && wp <= w;
    const ptrdiff_t pstride = (ptrdiff_t)c->sw * cin * elem;

    if (direct && khw == 1 && c->sh == 1 && c->sw == 1 && c->pad_t == 0 && ow == w && oy1 <= h) {
        /* 1x1 stride 1 unpadded: the rows are one contiguous run of pixels */
        for (int s = 0; s < H->nsteps; s++) sp[s] = x + (size_t)oy0 * w * cin + st[s].cb;
        vnni_pixels(c, H, &X, (oy1 - oy0) * ow, pstride, y + (size_t)oy0 * ow * c->cout);
        return;
    }
    for (int oy = oy0; oy < oy1; oy++) {
        for (int ky = 0; ky < c->kh; ky++) {
            const int iy = oy * c->sh - c->pad_t + ky * c->dh;
            if (iy < 0 || iy >= h) {
                if (!pad_ready) { tern_cpk_fill_row(c, H->kind, H->pair_n, NULL, w, wp, padrow, rb); pad_ready = 1; }
                rowp[ky] = padrow;
            } else if (direct) {
                rowp[ky] = x + (size_t)iy * w * cin;
            } else {
                const int s = iy % nslot;
                uint8_t *r = ring + (size_t)s * rb;
                if (slot_iy[s] != iy) { tern_cpk_fill_row(c, H->kind, H->pair_n, x + (size_t)iy * w * cin, w, wp, r, rb); slot_iy[s] = iy; }
                rowp[ky] = r;
            }
        }
        for (int t = 0; t < khw; t++) tapb[t] = rowp[t / c->kw] + (size_t)(t % c->kw) * c->dw * cin * elem;
        for (int s = 0; s < H->nsteps; s++) sp[s] = tapb[st[s].tap] + (size_t)st[s].cb * elem;
        vnni_pixels(c, H, &X, ow, pstride, y + (size_t)oy * ow * c->cout);
    }
}

RUN_THEN_ADD(vnni_run_add, vnni_run)
static size_t vnni_packed_size(const tern_qconv *c) { return tern_cpk_packed_size(c, 1); }
static enum tern_status vnni_pack(const tern_qconv *c, void *packed) { return tern_cpk_pack(c, 1, packed); }

/* every code type (vpdpbusd on bytes) */
const tern_conv_kernel tern_conv_8x16__avx512vnni = {
    "conv_8x16__avx512vnni", vnni_packed_size, vnni_pack, vnni_scratch_size, vnni_run, vnni_run_add,
};
