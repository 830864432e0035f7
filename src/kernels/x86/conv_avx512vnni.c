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
 *   - ternary and 4-bit: segments of at most 32 (4) steps, 128 products of at most 255 * 1
 *     (16 of 255 * 7), so a segment's sum s fits s16, and vpdpwssd with the scale dword (cs, 0:
 *     scales are 0..32767) adds exactly cs * s to the accumulator: one instruction per segment
 *     instead of vpmulld + vpaddd;
 *   - 8-bit: vpmulld by the scale and vpaddd at a cluster's end (a single cluster, the usual
 *     8-bit case, multiplies once at the end).
 * Tiles: R pixels x CB blocks of 16 output channels, so one broadcast of a pixel's 4 bytes feeds
 * CB vpdpbusd and one code vector R of them: 7 x 2 (14 sums, 14 accumulators, 2 code vectors and a
 * broadcast of the 32 zmm), 12 x 1 for a lone block (12 independent vpdpbusd chains: 10 leave
 * the 5-cycle latency exposed at 2 per cycle; GCC keeps 2 of the 12 offsets in xmm registers);
 * with one segment (no separate accumulators) 10 x 2. Output rows go in bands as in the AVX2 kernel: a band's input rows are copied once
 * (padding and xor applied) one after the other, or read in place, and a table of per-pixel
 * offsets lets a tile take its pixels across row ends. A band's last tile repeats its last pixel.
 * Requantisation is requant8's arithmetic on 16 lanes (v_requant), stored with vpmovdb; a residual
 * add (run_add) is fused into that epilogue in int32. */
#include "kernels/x86/conv_pack.h"

/* a fused residual add (tern_qadd's parameters): y = clamp(rshift_round((conv << lc) + (r << lr), rs)) */
typedef struct vadd { int rsgn, lc, lr, rs, qmin, qmax; } vadd;

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

/* v_requant on 8 lanes: channels j8..j8+7; their even (odd) lanes' 64-bit constants are qwords
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
/* store one pixel's 16 clamped channels (nc of them) as bytes at d */
static inline void v_store16(v16 v, int osgn, uint8_t *d, int nc) {
    /* values are within the byte type's range: the low byte of each dword is the result */
    const __m256i t = _mm256_packs_epi32(v.lo, v.hi);                 /* 0-3 8-11 | 4-7 12-15 */
    const __m256i u = osgn ? _mm256_packs_epi16(t, t) : _mm256_packus_epi16(t, t);
    const __m128i ob = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    if (nc == NR) _mm_storeu_si128((__m128i *)d, ob);
    else {
        uint8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, ob);
        memcpy(d, tmp, (size_t)nc);
    }
}
/* the fused residual add on one pixel's 16 clamped conv values (nc residual bytes at rp) */
static inline __m256i add8(__m256i v, __m128i rb, const vadd *A) {
    const __m256i r = A->rsgn ? _mm256_cvtepi8_epi32(rb) : _mm256_cvtepu8_epi32(rb);
    __m256i t = _mm256_add_epi32(_mm256_sll_epi32(v, _mm_cvtsi32_si128(A->lc)), _mm256_sll_epi32(r, _mm_cvtsi32_si128(A->lr)));
    t = _mm256_sra_epi32(_mm256_add_epi32(t, _mm256_set1_epi32(A->rs > 0 ? 1 << (A->rs - 1) : 0)), _mm_cvtsi32_si128(A->rs));
    return _mm256_min_epi32(_mm256_max_epi32(t, _mm256_set1_epi32(A->qmin)), _mm256_set1_epi32(A->qmax));
}
static inline v16 v_fuse_add(v16 v, const vadd *A, const uint8_t *rp, int nc) {
    uint8_t tmp[16] = {0};
    memcpy(tmp, rp, (size_t)nc);
    const __m128i rb = _mm_loadu_si128((const __m128i *)tmp);
    return (v16){add8(v.lo, rb, A), add8(v.hi, _mm_srli_si128(rb, 8), A)};
}
/* the depthwise kernel's operations: 32 bytes widened to s16 (lo: channels 0-15, hi: 16-31, as the
 * zmm's 128-bit lanes 0-1 and 2-3), word interleaves within 128-bit lanes, the requantised vectors
 * of two interleaves packed back into 32 bytes in channel order */
static inline v16 v_widen32(const uint8_t *p, int sgn) {
    const __m128i a = _mm_loadu_si128((const __m128i *)p), b = _mm_loadu_si128((const __m128i *)(p + 16));
    return sgn ? (v16){_mm256_cvtepi8_epi16(a), _mm256_cvtepi8_epi16(b)} : (v16){_mm256_cvtepu8_epi16(a), _mm256_cvtepu8_epi16(b)};
}
static inline v16 v_unpacklo16(v16 a, v16 b) { return (v16){_mm256_unpacklo_epi16(a.lo, b.lo), _mm256_unpacklo_epi16(a.hi, b.hi)}; }
static inline v16 v_unpackhi16(v16 a, v16 b) { return (v16){_mm256_unpackhi_epi16(a.lo, b.lo), _mm256_unpackhi_epi16(a.hi, b.hi)}; }
static inline v16 v_requant(v16 acc, const int32_t *P, int blend, v16 qmin, v16 qmax) {
    return (v16){rq8z(acc.lo, P, 0, blend, qmin.lo, qmax.lo), rq8z(acc.hi, P, 8, blend, qmin.hi, qmax.hi)};
}
/* the tile epilogue's constants, set up once per tile (natively: held in registers) */
typedef struct vrq { const int32_t *P; } vrq;
static inline vrq v_rq(const int32_t *P) { return (vrq){P}; }
static inline v16 v_requantk(v16 acc, const vrq *R, int blend, v16 qmin, v16 qmax) { return v_requant(acc, R->P, blend, qmin, qmax); }
typedef struct vaddk { vadd a; } vaddk;
static inline vaddk v_addk(const vadd *A) { return (vaddk){*A}; }
static inline v16 v_fuse_addk(v16 v, const vaddk *K, const uint8_t *rp, int nc) { return v_fuse_add(v, &K->a, rp, nc); }
static inline void v_store32(v16 a, v16 b, int osgn, uint8_t *d, int nc) {
    const __m256i lo = _mm256_packs_epi32(a.lo, b.lo), hi = _mm256_packs_epi32(a.hi, b.hi);   /* s16, channel order */
    const __m256i u = _mm256_permute4x64_epi64(osgn ? _mm256_packs_epi16(lo, hi) : _mm256_packus_epi16(lo, hi), 0xD8);
    if (nc == 32) _mm256_storeu_si256((__m256i *)d, u);
    else {
        uint8_t tmp[32];
        _mm256_storeu_si256((__m256i *)tmp, u);
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

/* store one pixel's 16 clamped channels (nc of them): within the byte type's range after the
 * clamp, vpmovdb's truncation is the stored byte */
static inline void v_store16(v16 v, int osgn, uint8_t *d, int nc) {
    (void)osgn;
    _mm512_mask_cvtepi32_storeu_epi8(d, (__mmask16)((1u << nc) - 1), v);
}
static inline v16 v_widen32(const uint8_t *p, int sgn) {
    const __m256i a = _mm256_loadu_si256((const __m256i *)p);
    return sgn ? _mm512_cvtepi8_epi16(a) : _mm512_cvtepu8_epi16(a);
}
static inline v16 v_unpacklo16(v16 a, v16 b) { return _mm512_unpacklo_epi16(a, b); }
static inline v16 v_unpackhi16(v16 a, v16 b) { return _mm512_unpackhi_epi16(a, b); }
/* the tile epilogue's constants, set up once per tile and held in registers (the byte stores
 * could alias the parameter block, so GCC would reload it for every pixel) */
typedef struct vrq { __m512i mpos, mneg, rnde, rndo, tshe, tsho, cfix; } vrq;
static inline vrq v_rq(const int32_t *P) {
    const int64_t *P64 = (const int64_t *)P;
    return (vrq){_mm512_load_si512(P + P_MPOS), _mm512_load_si512(P + P_MNEG), _mm512_load_si512(P64 + P_RND / 2),
                 _mm512_load_si512(P64 + P_RND / 2 + 8), _mm512_load_si512(P64 + P_TSH / 2), _mm512_load_si512(P64 + P_TSH / 2 + 8),
                 _mm512_load_si512(P + P_CFIX)};
}
static inline v16 v_requantk(v16 acc, const vrq *R, int blend, v16 qmin, v16 qmax) {   /* requant8's arithmetic */
    __m512i m = R->mpos;
    if (blend) m = _mm512_mask_mov_epi32(m, _mm512_movepi32_mask(acc), R->mneg);
    __m512i pe = _mm512_mul_epi32(acc, m);
    __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), _mm512_srli_epi64(m, 32));
    pe = _mm512_srlv_epi64(_mm512_add_epi64(pe, R->rnde), R->tshe);
    po = _mm512_srlv_epi64(_mm512_add_epi64(po, R->rndo), R->tsho);
    const __m512i v = _mm512_sub_epi32(_mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32)), R->cfix);
    return _mm512_min_epi32(_mm512_max_epi32(v, qmin), qmax);
}
typedef struct vaddk { __m128i lc, lr, rs; __m512i rnd, qmin, qmax; int rsgn; } vaddk;
static inline vaddk v_addk(const vadd *A) {
    return (vaddk){_mm_cvtsi32_si128(A->lc), _mm_cvtsi32_si128(A->lr), _mm_cvtsi32_si128(A->rs),
                   _mm512_set1_epi32(A->rs > 0 ? 1 << (A->rs - 1) : 0), _mm512_set1_epi32(A->qmin), _mm512_set1_epi32(A->qmax), A->rsgn};
}
/* the fused residual add on one pixel's 16 clamped conv values (nc residual bytes at rp) */
static inline v16 v_fuse_addk(v16 v, const vaddk *K, const uint8_t *rp, int nc) {
    const __m128i rb = _mm_maskz_loadu_epi8((__mmask16)((1u << nc) - 1), rp);
    const __m512i r = K->rsgn ? _mm512_cvtepi8_epi32(rb) : _mm512_cvtepu8_epi32(rb);
    __m512i t = _mm512_add_epi32(_mm512_sll_epi32(v, K->lc), _mm512_sll_epi32(r, K->lr));
    t = _mm512_sra_epi32(_mm512_add_epi32(t, K->rnd), K->rs);
    return _mm512_min_epi32(_mm512_max_epi32(t, K->qmin), K->qmax);
}
/* the same, reading the constants from the parameter block / the add's parameters */
static inline v16 v_requant(v16 acc, const int32_t *P, int blend, v16 qmin, v16 qmax) {
    const vrq R = v_rq(P);
    return v_requantk(acc, &R, blend, qmin, qmax);
}
static inline v16 v_fuse_add(v16 v, const vadd *A, const uint8_t *rp, int nc) {
    const vaddk K = v_addk(A);
    return v_fuse_addk(v, &K, rp, nc);
}
static inline void v_store32(v16 a, v16 b, int osgn, uint8_t *d, int nc) {
    (void)osgn;   /* clamped values: vpmovwb's truncation is the stored byte */
    _mm256_mask_storeu_epi8(d, (__mmask32)(nc >= 32 ? 0xFFFFFFFFu : (1u << nc) - 1), _mm512_cvtepi16_epi8(_mm512_packs_epi32(a, b)));
}
#endif

/* ---- tiles ---- */
typedef struct tile_ctx {
    const uint8_t *const *sp;  /* per step: address of its bytes for pixel offset 0 */
    const int32_t *segn;       /* segment lengths, 0-terminated */
    int64_t blk_bytes;         /* from one block's packed stream to the next */
    int cout, qmin, qmax, blend;
    int osgn;                  /* the stored bytes are int8 */
    const vadd *add;           /* fused residual add, or NULL */
    uintptr_t roff;            /* residual byte = output address + roff */
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
    const int blend = T->blend, osgn = T->osgn, cout = T->cout;
    const uintptr_t roff = T->roff;
    if (CB > 1) {   /* 7 x 2 and 10 x 2: their sums leave no registers for the constants (measured: 8-bit 10 x 2
                     * 30 % slower with them held); read them per pixel */
        for (int i = 0; i < n; i++)
#pragma GCC unroll 2
            for (int b = 0; b < CB; b++) {
                uint8_t *d = y + (size_t)i * cout + b * NR;
                const int m = b == CB - 1 ? nc : NR;
                v16 v = v_requant(acc[i * CB + b], (const int32_t *)(blk + b * bs), blend, qmin, qmax);
                if (T->add) v = v_fuse_add(v, T->add, (const uint8_t *)((uintptr_t)d + roff), m);
                v_store16(v, osgn, d, m);
            }
        return;
    }
    /* 12 x 1: the constants of the one block, held for the whole tile */
    vaddk K;
    if (T->add) K = v_addk(T->add);
    const vrq Rq = v_rq((const int32_t *)blk);
    for (int i = 0; i < n; i++) {
        uint8_t *d = y + (size_t)i * cout;
        v16 v = v_requantk(acc[i], &Rq, blend, qmin, qmax);
        if (T->add) v = v_fuse_addk(v, &K, (const uint8_t *)((uintptr_t)d + roff), nc);
        v_store16(v, osgn, d, nc);
    }
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

static void vnni_band(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                      uint8_t *y, int oy0, int oy1, void *scratch, const tern_qadd *a) {
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
    vadd A;
    if (a) A = (vadd){.rsgn = a->r_signed, .lc = a->lc, .lr = a->lr, .rs = a->rs, .qmin = a->qmin, .qmax = a->qmax};
    const tile_ctx T = {
        .sp = sp, .segn = (const int32_t *)(pbase + H->off_seg), .blk_bytes = H->blk_bytes,
        .cout = c->cout, .qmin = c->qmin, .qmax = c->qmax, .blend = H->blend,
        .osgn = a ? a->qmin < 0 : c->qmin < 0, .add = a ? &A : NULL, .roff = a ? (uintptr_t)a->r - (uintptr_t)y : 0,
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

/* ---- depthwise (one input and one output channel per group), any code type ----
 * 32 channels at a time: a tap's 32 input bytes are widened to s16 (vpmovzxbw), two taps are
 * interleaved word by word within 128-bit lanes (vpunpckl/hwd), and vpdpwssd adds, per channel,
 * w[t0]*x[t0] + w[t1]*x[t1] to its s32 sum: exact for 8-bit codes too. The interleaves split the
 * channels into vector A (dword d: channel (d/4)*8 + d%4) and B (the same + 4); codes,
 * parameters and scales are packed in that order, and vpackssdw of A and B puts the 32 channels
 * back in order (vpmovwb stores them). The channel's one cluster scale multiplies the tap sum at
 * the end (vpmulld, int32 wrap-around like the reference). Rows go through a ring of padded rows. */
typedef struct dwz_hdr { int32_t nblk, ntp, blend, pad_; int64_t blk_bytes; } dwz_hdr;
enum { DWZ_HDR = 64, DWZ_NR = 32 };
/* block: params of A, of B (PARAM_BYTES each, zmm vector order); per tap pair 2 x 64 bytes of s16
 * codes (A, B); the scales of A and B (int32) */
static int dwz_chan(int v, int d) { return (d / 4) * 8 + v * 4 + d % 4; }

static size_t dwz_packed_size(const tern_qconv *c) {
    const int nblk = (c->cout + DWZ_NR - 1) / DWZ_NR, ntp = (c->kh * c->kw + 1) / 2;
    return DWZ_HDR + (size_t)nblk * (2 * PARAM_BYTES + (size_t)ntp * 128 + 128);
}

static enum tern_status dwz_pack(const tern_qconv *c, void *packed) {
    dwz_hdr *H = packed;
    const int khw = c->kh * c->kw;
    memset(H, 0, sizeof *H);
    H->nblk = (c->cout + DWZ_NR - 1) / DWZ_NR;
    H->ntp = (khw + 1) / 2;
    H->blk_bytes = 2 * PARAM_BYTES + (int64_t)H->ntp * 128 + 128;
    for (int b = 0; b < H->nblk; b++) {
        uint8_t *blk = (uint8_t *)packed + DWZ_HDR + (size_t)b * H->blk_bytes;
        memset(blk, 0, (size_t)H->blk_bytes);
        for (int v = 0; v < 2; v++)
            for (int d = 0; d < 16; d++) {
                const int o = b * DWZ_NR + dwz_chan(v, d);
                if (o >= c->cout) continue;
                int32_t *P = (int32_t *)(blk + v * PARAM_BYTES);
                int64_t *P64 = (int64_t *)P;
                const int sh = c->shift[o] < 0 ? 0 : c->shift[o] > 31 ? 31 : c->shift[o], vj = (d % 2) * 8 + d / 2;
                P[P_BIAS + d] = c->bias[o];
                P[P_MPOS + d] = c->mpos[o];
                P[P_MNEG + d] = c->mneg[o];
                P[P_CFIX + d] = (int32_t)(uint32_t)(1ull << (31 - sh));
                P64[P_RND / 2 + vj] = (int64_t)((1ull << 62) + (1ull << 30) + (sh > 0 ? 1ull << (30 + sh) : 0));
                P64[P_TSH / 2 + vj] = 31 + sh;
                if (c->mneg[o] != c->mpos[o] && !(c->mneg[o] == 0 && c->mpos[o] >= 0 && c->qmin >= 0)) H->blend = 1;
                int16_t *q = (int16_t *)(blk + 2 * PARAM_BYTES) + v * 32;
                for (int tp = 0; tp < H->ntp; tp++, q += 64)
                    for (int h = 0; h < 2; h++)
                        if (2 * tp + h < khw) q[2 * d + h] = c->w[(size_t)o * khw + 2 * tp + h];
                ((int32_t *)(blk + 2 * PARAM_BYTES + (size_t)H->ntp * 128))[v * 16 + d] = c->cscale[o];
            }
    }
    return TERN_STATUS_OK;
}

static size_t dwz_scratch_size(const tern_qconv *c, int w) {
    return A64((size_t)c->kh * c->kw * sizeof(void *)) + A64((size_t)c->kh * sizeof(void *)) +
           A64((size_t)tern_cpk_n_slots(c) * sizeof(int)) + (size_t)(tern_cpk_n_slots(c) + 1) * A64((size_t)tern_cpk_row_w(c, w) * c->cin + 64);
}

static void dwz_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                    uint8_t *y, int oy0, int oy1, void *scratch) {
    const dwz_hdr *H = packed;
    const int ow = tern_qconv_out_w(c, w), khw = c->kh * c->kw, cin = c->cin, sgn = c->in_signed;
    const int wp = tern_cpk_row_w(c, w), nslot = tern_cpk_n_slots(c);
    const size_t rb = A64((size_t)wp * cin + 64);   /* 64 bytes of slack: a block reads 32 channels */
    uint8_t *sc = scratch;
    const uint8_t **tapb = (const uint8_t **)sc; sc += A64((size_t)khw * sizeof(void *));
    const uint8_t **rowp = (const uint8_t **)sc; sc += A64((size_t)c->kh * sizeof(void *));
    int *slot_iy = (int *)sc; sc += A64((size_t)nslot * sizeof(int));
    uint8_t *padrow = sc; sc += rb;
    uint8_t *ring = sc;
    int pad_ready = 0;
    for (int s = 0; s < nslot; s++) slot_iy[s] = INT_MIN;
    const v16 qmin = v_set1(c->qmin), qmax = v_set1(c->qmax);
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
            const uint8_t *blk = (const uint8_t *)packed + DWZ_HDR + (size_t)b * H->blk_bytes;
            const uint8_t *wq = blk + 2 * PARAM_BYTES;
            const uint8_t *cs = wq + (size_t)H->ntp * 128;
            const v16 csA = v_load(cs), csB = v_load(cs + 64), bA = v_load(blk), bB = v_load(blk + PARAM_BYTES);
            const int nc = TERN_MIN(DWZ_NR, c->cout - b * DWZ_NR);
            for (int ox = 0; ox < ow; ox++) {
                const ptrdiff_t off = (ptrdiff_t)ox * pstride + b * DWZ_NR;
                v16 sA = v_zero(), sB = v_zero();
                for (int tp = 0; tp < H->ntp; tp++) {
                    const int t0 = 2 * tp, t1 = TERN_MIN(t0 + 1, khw - 1);   /* odd count: code 0 */
                    const v16 x0 = v_widen32(tapb[t0] + off, sgn), x1 = v_widen32(tapb[t1] + off, sgn);
                    sA = v_dpwssd(sA, v_unpacklo16(x0, x1), v_load(wq + (size_t)tp * 128));
                    sB = v_dpwssd(sB, v_unpackhi16(x0, x1), v_load(wq + (size_t)tp * 128 + 64));
                }
                const v16 rA = v_requant(v_add(bA, v_mullo(sA, csA)), (const int32_t *)blk, H->blend, qmin, qmax);
                const v16 rB = v_requant(v_add(bB, v_mullo(sB, csB)), (const int32_t *)(blk + PARAM_BYTES), H->blend, qmin, qmax);
                v_store32(rA, rB, c->qmin < 0, yrow + (size_t)ox * c->cout + b * DWZ_NR, nc);
            }
        }
    }
}

RUN_THEN_ADD(dwz_run_add, dwz_run)

const tern_conv_kernel tern_conv_dw_1x32__avx512vnni = {
    "conv_dw_1x32__avx512vnni", dwz_packed_size, dwz_pack, dwz_scratch_size, dwz_run, dwz_run_add,
};

static void vnni_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                     uint8_t *y, int oy0, int oy1, void *scratch) {
    vnni_band(c, packed, x, h, w, y, oy0, oy1, scratch, NULL);
}
/* the add fused into the epilogue: exact in int32 (lc, lr <= 23, rs <= 30 on 8-bit values) */
static void vnni_run_add(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                         uint8_t *y, int oy0, int oy1, void *scratch, const tern_qadd *a) {
    vnni_band(c, packed, x, h, w, y, oy0, oy1, scratch, a);
}
static size_t vnni_packed_size(const tern_qconv *c) { return tern_cpk_packed_size(c, 1); }
static enum tern_status vnni_pack(const tern_qconv *c, void *packed) { return tern_cpk_pack(c, 1, packed); }

/* every code type (vpdpbusd on bytes) */
const tern_conv_kernel tern_conv_7x32__avx512vnni = {
    "conv_7x32__avx512vnni", vnni_packed_size, vnni_pack, vnni_scratch_size, vnni_run, vnni_run_add,
};
