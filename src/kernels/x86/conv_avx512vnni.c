/* AVX-512 VNNI integer convolutions (vpdpbusd), bit-exact against conv_ref.
 *
 * Its logic is also tested on AVX2-only machines, through an exact AVX2 emulation of the few
 * 512-bit operations it uses (v_* below): `make test` builds this file with -mavx2 -mfma
 * -DTERN_VNNI_EMULATE into tests/test_conv_kernels_vnni_emu (see the Makefile), which runs every
 * sweep on it. What the emulation cannot check is the mapping of v_* onto the real intrinsics;
 * the normal test_conv_kernels checks that on any CPU that has AVX-512 VNNI.
 *
 * Packing and row copies are shared with the AVX2 kernel (conv_pack.h, packed with vnni = 1): the
 * same steps (4 input bytes of a tap x 16 output channels, 64 bytes of codes), signed input xor
 * 0x80 with the correction folded into the bias. vpdpbusd adds the 4 u8 x s8 products of a step
 * into each channel's s32 sum (no saturation, int32 wrap-around like the reference), so 8-bit
 * codes need no widening and a segment is a whole cluster, except for ternary codes:
 *   - ternary: segments of at most 32 steps (128 products of at most 255), so a segment's sum s
 *     fits s16, and vpdpwssd with the scale dword (cs, 0: scales are 0..32767) adds exactly
 *     cs * s to the accumulator: one instruction per segment instead of vpmulld + vpaddd;
 *   - 4-bit and 8-bit: vpmulld by the scale and vpaddd at a cluster's end (a single cluster,
 *     the usual 8-bit case, multiplies once at the end).
 * Tiles: R pixels x CB blocks of 16 output channels, so one broadcast of a pixel's 4 bytes feeds
 * CB vpdpbusd and one code vector R of them: 7 x 2 (14 sums, 14 accumulators, 2 code vectors and a
 * broadcast of the 32 zmm), 12 x 1 for a lone block (12 independent vpdpbusd chains: 10 leave
 * the 5-cycle latency exposed at 2 per cycle; GCC keeps 2 of the 12 offsets in xmm registers);
 * with one segment (no separate accumulators) 10 x 2. Output rows go in bands as in the AVX2 kernel: a band's input rows are copied once
 * (padding and xor applied) one after the other, or read in place, and a table of per-pixel
 * offsets lets a tile take its pixels across row ends. A band's last tile repeats its last pixel.
 * Requantisation is requant8's arithmetic on 16 lanes (rq16), stored with vpmovdb. */
#include "kernels/x86/conv_pack.h"

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
/* vpdpwssd: acc + sum of the 2 s16 x s16 products per dword (vpmaddwd is that, exactly) */
static inline v16 v_dpwssd(v16 acc, v16 a, v16 b) {
    return (v16){_mm256_add_epi32(acc.lo, _mm256_madd_epi16(a.lo, b.lo)), _mm256_add_epi32(acc.hi, _mm256_madd_epi16(a.hi, b.hi))};
}
static inline v16 v_bcast4(const uint8_t *p) { const __m256i t = bcast4(p); return (v16){t, t}; }
#define V_KEEP(x) ((void)0)

/* rq16 on 8 lanes: channels j8..j8+7; their even (odd) lanes' 64-bit constants are qwords
 * j8/2 .. j8/2+3 (8 + j8/2 ..) of the zmm vector order */
static inline __m256i rq8z(__m256i acc, const int32_t *P, int j8, int blend, __m256i qmin, __m256i qmax) {
    __m256i m = _mm256_load_si256((const __m256i *)(P + P_MPOS + j8));
    if (blend)
        m = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(m), _mm256_castsi256_ps(_mm256_load_si256((const __m256i *)(P + P_MNEG + j8))),
                                                 _mm256_castsi256_ps(acc)));
    const int64_t *P64 = (const int64_t *)P;
    __m256i pe = _mm256_mul_epi32(acc, m);
    __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), _mm256_srli_epi64(m, 32));
    pe = _mm256_add_epi64(pe, _mm256_loadu_si256((const __m256i *)(P64 + P_RND / 2 + j8 / 2)));
    po = _mm256_add_epi64(po, _mm256_loadu_si256((const __m256i *)(P64 + P_RND / 2 + 8 + j8 / 2)));
    pe = _mm256_srlv_epi64(pe, _mm256_loadu_si256((const __m256i *)(P64 + P_TSH / 2 + j8 / 2)));
    po = _mm256_srlv_epi64(po, _mm256_loadu_si256((const __m256i *)(P64 + P_TSH / 2 + 8 + j8 / 2)));
    __m256i v = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    v = _mm256_sub_epi32(v, _mm256_load_si256((const __m256i *)(P + P_CFIX + j8)));
    return _mm256_min_epi32(_mm256_max_epi32(v, qmin), qmax);
}
/* requantise one pixel's 16 channels and store nc bytes at d */
static inline void v_requant_store(v16 acc, const int32_t *P, int blend, v16 qmin, v16 qmax, int osgn, uint8_t *d, int nc) {
    const __m256i r0 = rq8z(acc.lo, P, 0, blend, qmin.lo, qmax.lo), r1 = rq8z(acc.hi, P, 8, blend, qmin.hi, qmax.hi);
    /* values are within the byte type's range: the low byte of each dword is the result */
    const __m256i t = _mm256_packs_epi32(r0, r1);                     /* 0-3 8-11 | 4-7 12-15 */
    const __m256i u = osgn ? _mm256_packs_epi16(t, t) : _mm256_packus_epi16(t, t);
    const __m128i ob = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    if (nc == NR) _mm_storeu_si128((__m128i *)d, ob);
    else {
        uint8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, ob);
        memcpy(d, tmp, (size_t)nc);
    }
}
#else
typedef __m512i v16;
static inline v16 v_load(const void *p) { return _mm512_load_si512(p); }
static inline v16 v_set1(int32_t a) { return _mm512_set1_epi32(a); }
static inline v16 v_zero(void) { return _mm512_setzero_si512(); }
static inline v16 v_add(v16 a, v16 b) { return _mm512_add_epi32(a, b); }
static inline v16 v_mullo(v16 a, v16 b) { return _mm512_mullo_epi32(a, b); }
/* _mm512_dpbusd_epi32(src, a, b): src + sum over 4 bytes of unsigned a times signed b */
static inline v16 v_dpbusd(v16 acc, v16 x, v16 w) { return _mm512_dpbusd_epi32(acc, x, w); }
/* _mm512_dpwssd_epi32(src, a, b): src + sum over 2 words of a times b (no saturation) */
static inline v16 v_dpwssd(v16 acc, v16 a, v16 b) { return _mm512_dpwssd_epi32(acc, a, b); }
static inline v16 v_bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
/* keeps GCC from accumulating into a copy and moving it back every step */
#define V_KEEP(x) __asm__("" : "+v"(x))

/* requant8's arithmetic (see tern_cpk_pack) on the 16 lanes of a zmm; P64 in zmm vector order */
static inline void v_requant_store(v16 acc, const int32_t *P, int blend, v16 qmin, v16 qmax, int osgn, uint8_t *d, int nc) {
    (void)osgn;
    __m512i m = _mm512_load_si512(P + P_MPOS);
    if (blend) m = _mm512_mask_mov_epi32(m, _mm512_movepi32_mask(acc), _mm512_load_si512(P + P_MNEG));
    const int64_t *P64 = (const int64_t *)P;
    __m512i pe = _mm512_mul_epi32(acc, m);
    __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), _mm512_srli_epi64(m, 32));
    pe = _mm512_srlv_epi64(_mm512_add_epi64(pe, _mm512_load_si512(P64 + P_RND / 2)), _mm512_load_si512(P64 + P_TSH / 2));
    po = _mm512_srlv_epi64(_mm512_add_epi64(po, _mm512_load_si512(P64 + P_RND / 2 + 8)), _mm512_load_si512(P64 + P_TSH / 2 + 8));
    __m512i v = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
    v = _mm512_sub_epi32(v, _mm512_load_si512(P + P_CFIX));
    v = _mm512_min_epi32(_mm512_max_epi32(v, qmin), qmax);
    /* within the byte type's range after the clamp: vpmovdb's truncation is the stored byte */
    _mm512_mask_cvtepi32_storeu_epi8(d, (__mmask16)((1u << nc) - 1), v);
}
#endif

/* ---- tiles ---- */
typedef struct tile_ctx {
    const uint8_t *const *sp;  /* per step: address of its bytes for pixel offset 0 */
    const int32_t *segn;       /* segment lengths, 0-terminated */
    int64_t blk_bytes;         /* from one block's packed stream to the next */
    int cout, qmin, qmax, blend;
} tile_ctx;

enum { MODE_DPW = 0, MODE_MUL = 1, MODE_ONE = 2 };   /* scale per segment: vpdpwssd, vpmulld; one segment */
enum { RMAX = 12 };

/* R pixels (offsets o[0..R-1]) x CB blocks (blk, blk + blk_bytes); n pixels and nc channels of
 * the last block are stored. Constant R, CB and mode at every call: GCC unrolls and keeps the
 * sums in registers. */
static inline __attribute__((always_inline)) void tile(const tile_ctx *T, const uint8_t *blk, const int32_t *o, uint8_t *y,
                                                       int n, int nc, const int R, const int CB, const int mode) {
    const uint8_t *const *sp = T->sp;
    const int32_t *segn = T->segn;
    const ptrdiff_t bs = (ptrdiff_t)T->blk_bytes;
    const int8_t *wp = (const int8_t *)(blk + PARAM_BYTES);
    ptrdiff_t off[RMAX];
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) off[i] = o[i];
    v16 acc[2 * RMAX], s[2 * RMAX];
    if (mode != MODE_ONE) {
#pragma GCC unroll 24
        for (int j = 0; j < R * CB; j++) acc[j] = v_load(blk + (j % CB) * bs);   /* the bias */
    }
    for (; *segn; segn++) {
#pragma GCC unroll 24
        for (int j = 0; j < R * CB; j++) s[j] = v_zero();
        for (int k = *segn; k > 0; k--) {
            const uint8_t *p = *sp++;
            const v16 w0 = v_load(wp), w1 = CB > 1 ? v_load(wp + bs) : w0;
            wp += 64;
#pragma GCC unroll 12
            for (int i = 0; i < R; i++) {
                const v16 b = v_bcast4(p + off[i]);
                s[i * CB] = v_dpbusd(s[i * CB], b, w0);
                if (CB > 1) s[i * CB + 1] = v_dpbusd(s[i * CB + 1], b, w1);
            }
#pragma GCC unroll 24
            for (int j = 0; j < R * CB; j++) V_KEEP(s[j]);
        }
        const v16 c0 = v_load(wp), c1 = CB > 1 ? v_load(wp + bs) : c0;   /* the segment's scales */
        wp += 64;
        if (mode == MODE_DPW) {
#pragma GCC unroll 24
            for (int j = 0; j < R * CB; j++) acc[j] = v_dpwssd(acc[j], s[j], j % CB ? c1 : c0);
        } else if (mode == MODE_MUL) {
#pragma GCC unroll 24
            for (int j = 0; j < R * CB; j++) acc[j] = v_add(acc[j], v_mullo(s[j], j % CB ? c1 : c0));
        } else {
            const v16 b0 = v_load(blk), b1 = CB > 1 ? v_load(blk + bs) : b0;
#pragma GCC unroll 24
            for (int j = 0; j < R * CB; j++) acc[j] = v_add(j % CB ? b1 : b0, v_mullo(s[j], j % CB ? c1 : c0));
        }
    }
    const v16 qmin = v_set1(T->qmin), qmax = v_set1(T->qmax);
    for (int i = 0; i < n; i++)
#pragma GCC unroll 2
        for (int b = 0; b < CB; b++)
            v_requant_store(acc[i * CB + b], (const int32_t *)(blk + b * bs), T->blend, qmin, qmax, T->qmin < 0,
                            y + (size_t)i * T->cout + b * NR, b == CB - 1 ? nc : NR);
}

#define TILE_FN(R, CB, mode)                                                                                    \
    static __attribute__((noinline)) void tile_##R##x##CB##_##mode(const tile_ctx *T, const uint8_t *blk,     \
                                                                   const int32_t *o, uint8_t *y, int n, int nc) { \
        tile(T, blk, o, y, n, nc, R, CB, mode);                                                                 \
    }
TILE_FN(7, 2, MODE_DPW)
TILE_FN(12, 1, MODE_DPW)
TILE_FN(7, 2, MODE_MUL)
TILE_FN(12, 1, MODE_MUL)
TILE_FN(10, 2, MODE_ONE)
TILE_FN(12, 1, MODE_ONE)
typedef void (*tile_fn)(const tile_ctx *, const uint8_t *, const int32_t *, uint8_t *, int, int);

/* ---- the band driver (as band_run in conv_avx2.c) ---- */
enum { BAND_BYTES = 32 * 1024 };

static int band_rows(const tern_qconv *c, int w) {
    const int span = (c->kh - 1) * c->dh + 1, fit = (int)(BAND_BYTES / tern_cpk_row_bytes(c, w));
    return fit > span ? (fit - span) / c->sh + 1 : 1;
}
static int band_in_rows(const tern_qconv *c, int rows) { return (rows - 1) * c->sh + (c->kh - 1) * c->dh + 1; }

static size_t vnni_scratch_size(const tern_qconv *c, int w) {
    int ns, nseg;
    tern_cpk_plan(c, 1, NULL, NULL, NULL, &ns, &nseg);
    const size_t npix = (size_t)band_rows(c, w) * tern_qconv_out_w(c, w) + RMAX;
    return A64((size_t)ns * sizeof(void *)) + A64(npix * sizeof(int32_t)) +
           (size_t)band_in_rows(c, band_rows(c, w)) * tern_cpk_row_bytes(c, w);
}

static void vnni_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                     uint8_t *y, int oy0, int oy1, void *scratch) {
    const pk_hdr *H = packed;
    const uint8_t *pbase = packed;
    const pk_step *st = (const pk_step *)(pbase + H->off_step);
    const int ow = tern_qconv_out_w(c, w), cin = c->cin;
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups;
    const int wp = tern_cpk_row_w(c, w), B = band_rows(c, w);
    const size_t rb = tern_cpk_row_bytes(c, w);
    uint8_t *sc = scratch;
    const uint8_t **sp = (const uint8_t **)sc; sc += A64((size_t)H->nsteps * sizeof(void *));
    int32_t *tab = (int32_t *)sc; sc += A64(((size_t)B * ow + RMAX) * sizeof(int32_t));
    uint8_t *band = sc;
    const int direct = !c->in_signed && H->direct_ok && c->pad_l == 0 && wp <= w;
    const tile_ctx T = {
        .sp = sp, .segn = (const int32_t *)(pbase + H->off_seg), .blk_bytes = H->blk_bytes,
        .cout = c->cout, .qmin = c->qmin, .qmax = c->qmax, .blend = H->blend,
    };
    /* the tile shapes for this layer: 2 blocks, and 1 for a last odd block */
    const int mode = H->nseg == 1 ? MODE_ONE : H->dpw ? MODE_DPW : MODE_MUL;
    const tile_fn f2 = mode == MODE_ONE ? tile_10x2_MODE_ONE : mode == MODE_DPW ? tile_7x2_MODE_DPW : tile_7x2_MODE_MUL;
    const tile_fn f1 = mode == MODE_ONE ? tile_12x1_MODE_ONE : mode == MODE_DPW ? tile_12x1_MODE_DPW : tile_12x1_MODE_MUL;
    const int r2 = mode == MODE_ONE ? 10 : 7, r1 = 12;
    for (int by0 = oy0; by0 < oy1; by0 += B) {
        const int by1 = TERN_MIN(by0 + B, oy1), nin = band_in_rows(c, by1 - by0), iy0 = by0 * c->sh - c->pad_t;
        const uint8_t *base;
        ptrdiff_t rs;
        if (direct && iy0 >= 0 && iy0 + nin <= h) {
            base = x + (size_t)iy0 * w * cin;
            rs = (ptrdiff_t)w * cin;
        } else {
            for (int k = 0; k < nin; k++) {
                const int iy = iy0 + k;
                tern_cpk_fill_row(c, H->kind, 0, iy < 0 || iy >= h ? NULL : x + (size_t)iy * w * cin, w, wp, band + k * rb, rb);
            }
            base = band;
            rs = (ptrdiff_t)rb;
        }
        /* every pixel's offset from the step pointers; the last one repeated for a short tile */
        const int npix = (by1 - by0) * ow;
        for (int r = 0, i = 0; r < by1 - by0; r++)
            for (int q = 0; q < ow; q++) tab[i++] = (int32_t)(r * c->sh * rs + (ptrdiff_t)q * c->sw * cin);
        for (int i = npix; i < npix + RMAX; i++) tab[i] = tab[npix - 1];
        for (int gi = 0; gi < c->groups; gi++) {
            for (int s = 0; s < H->nsteps; s++) sp[s] = base + st[s].dy * rs + st[s].dx + (ptrdiff_t)gi * cing;
            for (int b = 0; b < H->ncb;) {
                const int two = b + 1 < H->ncb, R = two ? r2 : r1;
                const tile_fn f = two ? f2 : f1;
                const uint8_t *blk = pbase + H->off_blk + (size_t)(gi * H->ncb + b) * H->blk_bytes;
                const int nc = TERN_MIN(NR, coutg - (b + two) * NR);
                uint8_t *yb = y + (size_t)by0 * ow * c->cout + (size_t)gi * coutg + (size_t)b * NR;
                for (int px = 0; px < npix; px += R)
                    f(&T, blk, tab + px, yb + (size_t)px * c->cout, TERN_MIN(R, npix - px), nc);
                b += 1 + two;
            }
        }
    }
}

RUN_THEN_ADD(vnni_run_add, vnni_run)
static size_t vnni_packed_size(const tern_qconv *c) { return tern_cpk_packed_size(c, 1); }
static enum tern_status vnni_pack(const tern_qconv *c, void *packed) { return tern_cpk_pack(c, 1, packed); }

/* every code type (vpdpbusd on bytes) */
const tern_conv_kernel tern_conv_7x32__avx512vnni = {
    "conv_7x32__avx512vnni", vnni_packed_size, vnni_pack, vnni_scratch_size, vnni_run, vnni_run_add,
};
