/* AVX2 integer convolutions, bit-exact against conv_ref.
 *
 * Ternary and 4-bit codes (kind MADDUBS): the paper's per-cluster sum maps onto vpmaddubsw.
 *   A "step" reads 4 input bytes (4 consecutive channels at one tap, broadcast to all lanes) and
 *   multiplies them by 4 codes of each of 16 output channels: vpmaddubsw gives, per channel, two
 *   s16 lanes (channels 0-1 and 2-3 of the step). vpaddw accumulates steps of one cluster in s16;
 *   at the end of a "segment" vpmaddwd multiplies each lane by its cluster's scale and adds the
 *   lane pair into the channel's s32 accumulator. That is acc += a_g * s_g exactly, because:
 *   - a maddubs pair is at most 2*255*|code|: 510 for ternary, 3570 for 4-bit, so a segment of at
 *     most 64 (ternary) or 9 (4-bit) steps keeps every s16 partial sum below 32767: no saturation,
 *     no wrap. A cluster longer than that is split into several segments with the same scale;
 *     a_g*(s1+s2) == a_g*s1 + a_g*s2 in int32 arithmetic modulo 2^32, which is what the reference
 *     does (its uint32 sums), so the result is identical even if a broken model overflowed.
 *   - codes outside the cluster (a cluster shorter than the 4-byte step, channel tails, padding
 *     output channels) are packed as 0, so whatever bytes the step reads there contribute 0.
 *   - N = 2: a step's two lane halves hold two different clusters, each with its own scale.
 *   - signed input: bytes are xor'ed with 0x80 (x + 128, now unsigned) when rows are copied, and
 *     -128 * sum_g a_g * sum(codes of g) is folded into the bias at pack time.
 * 8-bit codes (kind MADD16): a maddubs pair could saturate (2*255*127 > 32767), so input rows are
 *   widened to s16 when copied and a step is vpmaddwd of 2 channels x 16 output channels into s32;
 *   each cluster (normally one per channel) is scaled with vpmulld when it ends.
 *
 * Tiles: 16 output channels x up to 6 output pixels. Weights are packed (conv_pack_avx2.c, the
 * layout in conv_pack.h) per block of 16 output channels, steps in the order the kernel walks them,
 * each segment followed by its scales, so a block is one sequential stream. Activations are NHWC so a step's 4 bytes are contiguous; there
 * is no im2col: the output rows of a run() call go in bands (band_run), whose input rows are
 * copied once (padding, the xor, cluster-pair interleave or widening applied) one after the other
 * into scratch, or read in place when already in that form; a table of per-step pointers (row,
 * tap, channel offset) then serves every pixel of the band, pixel i reading at pointer + its
 * offset, so a tile's pixels may come from several output rows. With segments of 12 steps or
 * more (3x3 convs) the tiles have 4 to 6 pixels and keep the s32 accumulators in memory (12 s16
 * sums, 2 code vectors, broadcast and product fill the 16 ymm); short segments (1x1 convs) use
 * 3-pixel tiles with register accumulators; 8-bit codes 4 pixels (one cluster) or 3.
 * Requantisation (rq8) is tern_requant on 8 lanes without the clamp: vpmuldq on even and odd
 * lanes, the rounding constant added in 64 bits, the high dword taken and shifted by s-1; the
 * two vectors of a pixel hold channels 0-3, 8-11 and 4-7, 12-15 so that the saturating packs
 * give bytes in channel order, two pixels per pack; the qmin/qmax clamp is then a byte min/max
 * (or nothing, when it is the type's range). run_add fuses a residual add into that epilogue,
 * in s16 when its shifts allow (add16_ok), else the rows are stored and added in place. */
#include "kernels/x86/conv_pack.h"


/* Bands: the output rows of a run() call are done in bands of up to band_rows(); a band's input
 * rows, padded, xor'ed, pair-interleaved or widened as the kernel needs, are copied one after
 * the other into scratch, so every output pixel of the band is at a fixed offset from the
 * band's step pointers and a tile takes its pixels across row ends. Rows already in the right
 * form (unsigned, no padding, no interleave) are read in place. */
enum { BAND_BYTES = 32 * 1024, MAXPX = 6 };

static int band_rows(const tern_qconv *c, int w) {
    const int span = (c->kh - 1) * c->dh + 1, fit = (int)(BAND_BYTES / tern_cpk_row_bytes(c, w));
    return fit > span ? (fit - span) / c->sh + 1 : 1;
}
static int band_in_rows(const tern_qconv *c, int rows) { return (rows - 1) * c->sh + (c->kh - 1) * c->dh + 1; }

/* Entries of a band's tile offset table: 6 per tile, tiles of 3 pixels or more. */
static size_t tab_entries(const tern_qconv *c, int w) {
    return (size_t)MAXPX * (((size_t)band_rows(c, w) * tern_qconv_out_w(c, w) + 2) / 3);
}

static size_t avx2_scratch_size(const tern_qconv *c, int w) {
    int ns, nseg;
    tern_cpk_plan(c, 0, NULL, NULL, NULL, &ns, &nseg);
    return A64((size_t)ns * sizeof(void *)) + A64(MAXPX * 2 * sizeof(__m256i)) + A64(tab_entries(c, w) * sizeof(int32_t)) +
           (size_t)band_in_rows(c, band_rows(c, w)) * tern_cpk_row_bytes(c, w);
}

/* ---- epilogue ---- */
typedef struct ep_ctx {
    int cout;                   /* elements from one output pixel to the next */
    int wide;                   /* int32 output (the logits): no clamp, 4 bytes an element */
    int osgn, clamp;            /* output int8; clamp to lo8..hi8 after the saturating packs */
    __m256i lo8, hi8;
    int add, rsgn;              /* fused residual add (s16 arithmetic); residual int8 */
    int shl_c, shl_r, shr;      /* its shifts are not 0 */
    const uint8_t *r;           /* residual image */
    __m256i cmin, cmax, rnd;    /* the conv's own clamp, the add's rounding (s16) */
    __m128i lc, lr, rs;
} ep_ctx;

/* tern_requant without the clamp on one vector v (0/1) of a pixel's accumulators; the pack
 * comment in tern_cpk_pack derives it. blend: mneg differs from mpos; sh0: some shift is 0. */
static inline __attribute__((always_inline)) __m256i rq8(__m256i a, const int32_t *P, int v, int blend, int sh0) {
#define QL(off) _mm256_load_si256((const __m256i *)(P + (off) + 8 * v))
    const __m256i ao = _mm256_srli_epi64(a, 32);   /* odd lanes in the even dwords */
    __m256i me = QL(Q_ME), mo = QL(Q_MO);
    if (blend) {
        me = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(me), _mm256_castsi256_ps(QL(Q_NE)), _mm256_castsi256_ps(a)));
        mo = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(mo), _mm256_castsi256_ps(QL(Q_NO)), _mm256_castsi256_ps(ao)));
    }
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(a, me), QL(Q_RE));
    __m256i po = _mm256_add_epi64(_mm256_mul_epi32(ao, mo), QL(Q_RO));
    if (sh0) { pe = _mm256_sllv_epi64(pe, QL(Q_LE)); po = _mm256_sllv_epi64(po, QL(Q_LO)); }
    return _mm256_srav_epi32(_mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA), QL(Q_SH));
#undef QL
}

/* One pixel's 16 channels as s16 in channel order (saturated: beyond the 8-bit clamps anyway);
 * with a fused add, the conv's clamp and then the add's arithmetic, exact in s16 (add16_ok). */
static inline __attribute__((always_inline)) __m256i px16(const ep_ctx *E, const __m256i *acc, const int32_t *P,
                                                          size_t at, int nc, int blend, int sh0) {
    /* the bias: in rq8's constant unless mneg is used (the sign of acc + bias picks m) */
    const __m256i a0 = blend ? _mm256_add_epi32(acc[0], _mm256_load_si256((const __m256i *)(P + Q_BIAS))) : acc[0];
    const __m256i a1 = blend ? _mm256_add_epi32(acc[1], _mm256_load_si256((const __m256i *)(P + Q_BIAS + 8))) : acc[1];
    __m256i t = _mm256_packs_epi32(rq8(a0, P, 0, blend, sh0), rq8(a1, P, 1, blend, sh0));
    if (E->add) {
        __m128i rb;
        if (nc == NR) rb = _mm_loadu_si128((const __m128i *)(E->r + at));
        else {
            uint8_t tmp[16] = {0};
            memcpy(tmp, E->r + at, (size_t)nc);
            rb = _mm_loadu_si128((const __m128i *)tmp);
        }
        __m256i b = E->rsgn ? _mm256_cvtepi8_epi16(rb) : _mm256_cvtepu8_epi16(rb);
        t = _mm256_min_epi16(_mm256_max_epi16(t, E->cmin), E->cmax);
        /* shifts by 0 are common (ResNet: lc 0, lr 0-1, rs 0-2) */
        if (E->shl_c) t = _mm256_sll_epi16(t, E->lc);
        if (E->shl_r) b = _mm256_sll_epi16(b, E->lr);
        t = _mm256_add_epi16(t, b);
        if (E->shr) t = _mm256_sra_epi16(_mm256_add_epi16(t, E->rnd), E->rs);
    }
    return t;
}

/* Requantise n pixels (acc[2i], acc[2i+1]: pixel i, without the bias) and store them at
 * y + at + i*cout, two pixels per pack. */
static inline __attribute__((always_inline)) void epi(const ep_ctx *E, const int32_t *P, const __m256i *acc, int n,
                                                      uint8_t *y, size_t at, int nc, int blend, int sh0) {
    for (int i = 0; i < n; i += 2) {
        const int two = i + 1 < n;
        const size_t a0 = at + (size_t)i * E->cout;
        const __m256i t0 = px16(E, acc + 2 * i, P, a0, nc, blend, sh0);
        const __m256i t1 = two ? px16(E, acc + 2 * i + 2, P, a0 + E->cout, nc, blend, sh0) : t0;
        __m256i u = E->osgn ? _mm256_packs_epi16(t0, t1) : _mm256_packus_epi16(t0, t1);
        u = _mm256_permute4x64_epi64(u, 0xD8);   /* pixel 0's 16 bytes, then pixel 1's */
        if (E->clamp) u = E->osgn ? _mm256_min_epi8(_mm256_max_epi8(u, E->lo8), E->hi8) : _mm256_min_epu8(_mm256_max_epu8(u, E->lo8), E->hi8);
        uint8_t *d = y + a0;
        if (nc == NR && two && E->cout == NR) _mm256_storeu_si256((__m256i *)d, u);
        else if (nc == NR) {
            _mm_storeu_si128((__m128i *)d, _mm256_castsi256_si128(u));
            if (two) _mm_storeu_si128((__m128i *)(d + E->cout), _mm256_extracti128_si256(u, 1));
        } else {
            uint8_t tmp[32];
            _mm256_storeu_si256((__m256i *)tmp, u);
            memcpy(d, tmp, (size_t)nc);
            if (two) memcpy(d + E->cout, tmp + 16, (size_t)nc);
        }
    }
}
/* The wide (int32) output of n pixels: tern_requant clamped to int32 is rq8 as it is. */
static __attribute__((noinline)) void epi_wide(const ep_ctx *E, const int32_t *P, const __m256i *acc, int n, uint8_t *y,
                                               size_t at, int nc) {
    const int blend = (P[Q_FLAGS] & Q_F_BLEND) != 0, sh0 = (P[Q_FLAGS] & Q_F_SH0) != 0;
    for (int i = 0; i < n; i++) {
        const __m256i a0 = blend ? _mm256_add_epi32(acc[2 * i], _mm256_load_si256((const __m256i *)(P + Q_BIAS))) : acc[2 * i];
        const __m256i a1 = blend ? _mm256_add_epi32(acc[2 * i + 1], _mm256_load_si256((const __m256i *)(P + Q_BIAS + 8))) : acc[2 * i + 1];
        const __m256i r0 = rq8(a0, P, 0, blend, sh0), r1 = rq8(a1, P, 1, blend, sh0);
        int32_t v[16];   /* channels 0-7, 8-15 (see lane_chan) */
        _mm256_storeu_si256((__m256i *)v, _mm256_permute2x128_si256(r0, r1, 0x20));
        _mm256_storeu_si256((__m256i *)(v + 8), _mm256_permute2x128_si256(r0, r1, 0x31));
        memcpy(y + 4 * (at + (size_t)i * E->cout), v, 4 * (size_t)nc);
    }
}

/* ---- tiles: the segment loops, in inline asm because GCC 12 keeps copying the loop-carried
 * sums between registers and spilling the accumulators around them (measured: ~25% slower).
 * One step: load 16 channels x 4 codes (2 ymm), broadcast each pixel's 4 bytes, vpmaddubsw
 * into a temporary, vpaddw into that pixel's s16 sums. At a segment's end: vpmaddwd with its
 * scales (which follow its codes) and vpaddd into the s32 accumulators. Segment lengths are a
 * 0-terminated list. ---- */
#define STEP_PIX(o, sA, sB) STEP_PIXT(o, sA, sB, "8", "9")
#define STEP_PIXT(o, sA, sB, tb, tp)                                              \
    "vpbroadcastd (%[p],%[" o "]), %%ymm" tb "\n\t"                              \
    "vpmaddubsw %%ymm6, %%ymm" tb ", %%ymm" tp "\n\t"                            \
    "vpaddw %%ymm" tp ", %%ymm" sA ", %%ymm" sA "\n\t"                           \
    "vpmaddubsw %%ymm7, %%ymm" tb ", %%ymm" tb "\n\t"                            \
    "vpaddw %%ymm" tb ", %%ymm" sB ", %%ymm" sB "\n\t"
/* a segment's first step writes the sums directly (no zeroing, no add) */
#define FIRST_PIX(o, sA, sB)                                                     \
    "vpbroadcastd (%[p],%[" o "]), %%ymm8\n\t"                                 \
    "vpmaddubsw %%ymm6, %%ymm8, %%ymm" sA "\n\t"                               \
    "vpmaddubsw %%ymm7, %%ymm8, %%ymm" sB "\n\t"
#define LOAD_STEP                                                                \
    "mov (%[sp]), %[p]\n\t"                                                    \
    "add $8, %[sp]\n\t"                                                        \
    "vmovdqa (%[wp]), %%ymm6\n\t"                                              \
    "vmovdqa 32(%[wp]), %%ymm7\n\t"                                            \
    "add $64, %[wp]\n\t"
#define SEG_HEAD "movslq (%[segn]), %[cnt]\n\tadd $4, %[segn]\n\t" LOAD_STEP
#define SEG_MID "dec %[cnt]\n\tjz 3f\n\t.p2align 6\n2:\n\t" LOAD_STEP
#define SEG_END "dec %[cnt]\n\tjnz 2b\n\t3:\n\t"
/* after the first segment (peeled: its flush stores, the others add) */
#define SEG_FIRST_DONE "add $64, %[wp]\n\tcmpl $0, (%[segn])\n\tje 9f\n\t1:\n\t"
#define SEG_NEXT "add $64, %[wp]\n\tcmpl $0, (%[segn])\n\tjnz 1b\n\t9:\n\t"
/* flush into accumulators in memory (acc, 32 bytes per vector, touched once per segment) */
#define FLM(s, woff, aoff)                                                       \
    "vpmaddwd " woff "(%[wp]), %%ymm" s ", %%ymm" s "\n\t"                       \
    "vpaddd " aoff "(%[acc]), %%ymm" s ", %%ymm" s "\n\t"                        \
    "vmovdqa %%ymm" s ", " aoff "(%[acc])\n\t"
#define FLS(s, woff, aoff)                                                       \
    "vpmaddwd " woff "(%[wp]), %%ymm" s ", %%ymm" s "\n\t"                       \
    "vmovdqa %%ymm" s ", " aoff "(%[acc])\n\t"
/* A tile's pixel offsets: int32 at ot[0..n-1], loaded into registers o0..o(n-1), the last one
 * into the pointer's own register (one register fewer). */
#define LOADO(i, last) "movslq " #i "*4(%[" last "]), %[o" #i "]\n\t"
#define LOADO3 LOADO(0, "o2") LOADO(1, "o2") "movslq 8(%[o2]), %[o2]\n\t"
#define LOADO4 LOADO(0, "o3") LOADO(1, "o3") LOADO(2, "o3") "movslq 12(%[o3]), %[o3]\n\t"
#define LOADO5 LOADO(0, "o4") LOADO(1, "o4") LOADO(2, "o4") LOADO(3, "o4") "movslq 16(%[o4]), %[o4]\n\t"
#define LOADO6 LOADO(0, "o5") LOADO(1, "o5") LOADO(2, "o5") LOADO(3, "o5") LOADO(4, "o5") "movslq 20(%[o5]), %[o5]\n\t"
#define ALL_YMM "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
    "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory"

/* 6 pixels: s16 sums in ymm0-5 and ymm10-15, codes ymm6-7, broadcast ymm8, product ymm9; the s32
 * accumulators (without the bias) in memory. With 18-step segments (3x3, N=4 pairs) ~10% faster
 * per MAC than 3 pixels with register accumulators, and the tile overhead is spread over twice
 * the pixels. */
#define BODY6                                                                               \
    SEG_HEAD                                                                                \
    FIRST_PIX("o0", "0", "1") FIRST_PIX("o1", "2", "3") FIRST_PIX("o2", "4", "5")         \
    FIRST_PIX("o3", "10", "11") FIRST_PIX("o4", "12", "13") FIRST_PIX("o5", "14", "15")   \
    SEG_MID                                                                                 \
    STEP_PIX("o0", "0", "1") STEP_PIX("o1", "2", "3") STEP_PIX("o2", "4", "5")            \
    STEP_PIX("o3", "10", "11") STEP_PIX("o4", "12", "13") STEP_PIX("o5", "14", "15")      \
    SEG_END
#define FL6(F)                                                                              \
    F("0", "0", "0") F("1", "32", "32") F("2", "0", "64") F("3", "32", "96")               \
    F("4", "0", "128") F("5", "32", "160") F("10", "0", "192") F("11", "32", "224")        \
    F("12", "0", "256") F("13", "32", "288") F("14", "0", "320") F("15", "32", "352")
static inline __attribute__((always_inline)) void segs6m(const uint8_t *const *sp, const int8_t *wp, const int32_t *segn, const int32_t *ot, __m256i *acc) {
    const uint8_t *p;
    long cnt, o0, o1, o2, o3, o4, o5 = (long)(intptr_t)ot;
    __asm__ volatile(
        LOADO6 BODY6 FL6(FLS) SEG_FIRST_DONE BODY6 FL6(FLM) SEG_NEXT
        : [sp] "+r"(sp), [wp] "+r"(wp), [segn] "+r"(segn), [p] "=&r"(p), [cnt] "=&r"(cnt),
          [o0] "=&r"(o0), [o1] "=&r"(o1), [o2] "=&r"(o2), [o3] "=&r"(o3), [o4] "=&r"(o4), [o5] "+r"(o5)
        : [acc] "r"(acc)
        : ALL_YMM);
}
/* 5 pixels: sums ymm0-5, 10-13; two sets of temporaries (8-9, 14-15) */
#define BODY5                                                                               \
    SEG_HEAD                                                                                \
    FIRST_PIX("o0", "0", "1") FIRST_PIX("o1", "2", "3") FIRST_PIX("o2", "4", "5")         \
    FIRST_PIX("o3", "10", "11") FIRST_PIX("o4", "12", "13")                                \
    SEG_MID                                                                                 \
    STEP_PIXT("o0", "0", "1", "8", "9") STEP_PIXT("o1", "2", "3", "14", "15")             \
    STEP_PIXT("o2", "4", "5", "8", "9") STEP_PIXT("o3", "10", "11", "14", "15")           \
    STEP_PIXT("o4", "12", "13", "8", "9")                                                  \
    SEG_END
#define FL5(F)                                                                              \
    F("0", "0", "0") F("1", "32", "32") F("2", "0", "64") F("3", "32", "96")               \
    F("4", "0", "128") F("5", "32", "160") F("10", "0", "192") F("11", "32", "224")        \
    F("12", "0", "256") F("13", "32", "288")
static inline __attribute__((always_inline)) void segs5m(const uint8_t *const *sp, const int8_t *wp, const int32_t *segn, const int32_t *ot, __m256i *acc) {
    const uint8_t *p;
    long cnt, o0, o1, o2, o3, o4 = (long)(intptr_t)ot;
    __asm__ volatile(
        LOADO5 BODY5 FL5(FLS) SEG_FIRST_DONE BODY5 FL5(FLM) SEG_NEXT
        : [sp] "+r"(sp), [wp] "+r"(wp), [segn] "+r"(segn), [p] "=&r"(p), [cnt] "=&r"(cnt),
          [o0] "=&r"(o0), [o1] "=&r"(o1), [o2] "=&r"(o2), [o3] "=&r"(o3), [o4] "+r"(o4)
        : [acc] "r"(acc)
        : ALL_YMM);
}
/* 4 pixels: sums ymm0-5, 10-11; temporaries rotate over 8-9, 12-13, 14-15 */
#define BODY4                                                                               \
    SEG_HEAD                                                                                \
    FIRST_PIX("o0", "0", "1") FIRST_PIX("o1", "2", "3") FIRST_PIX("o2", "4", "5") FIRST_PIX("o3", "10", "11") \
    SEG_MID                                                                                 \
    STEP_PIXT("o0", "0", "1", "8", "9") STEP_PIXT("o1", "2", "3", "12", "13")             \
    STEP_PIXT("o2", "4", "5", "14", "15") STEP_PIXT("o3", "10", "11", "8", "9")           \
    SEG_END
#define FL4(F)                                                                              \
    F("0", "0", "0") F("1", "32", "32") F("2", "0", "64") F("3", "32", "96")               \
    F("4", "0", "128") F("5", "32", "160") F("10", "0", "192") F("11", "32", "224")
static inline __attribute__((always_inline)) void segs4m(const uint8_t *const *sp, const int8_t *wp, const int32_t *segn, const int32_t *ot, __m256i *acc) {
    const uint8_t *p;
    long cnt, o0, o1, o2, o3 = (long)(intptr_t)ot;
    __asm__ volatile(
        LOADO4 BODY4 FL4(FLS) SEG_FIRST_DONE BODY4 FL4(FLM) SEG_NEXT
        : [sp] "+r"(sp), [wp] "+r"(wp), [segn] "+r"(segn), [p] "=&r"(p), [cnt] "=&r"(cnt),
          [o0] "=&r"(o0), [o1] "=&r"(o1), [o2] "=&r"(o2), [o3] "+r"(o3)
        : [acc] "r"(acc)
        : ALL_YMM);
}

/* 3 pixels with the s32 accumulators in registers (s16 sums ymm0-5, codes 6-7, temporaries
 * 8-9): for short segments (1x1 convs, 4-bit codes), where flushing to memory would cost more
 * than the steps. */
static inline __attribute__((always_inline)) void segs3r(const uint8_t *const *sp, const int8_t *wp, const int32_t *segn, const int32_t *ot, __m256i *acc) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    const uint8_t *p;
    long cnt, o0, o1, o2 = (long)(intptr_t)ot;
    __asm__ volatile(
        LOADO3
        "1:\n\t"
        SEG_HEAD
        FIRST_PIX("o0", "0", "1") FIRST_PIX("o1", "2", "3") FIRST_PIX("o2", "4", "5")
        SEG_MID
        STEP_PIX("o0", "0", "1") STEP_PIX("o1", "2", "3") STEP_PIX("o2", "4", "5")
        SEG_END
        "vpmaddwd (%[wp]), %%ymm0, %%ymm0\n\t"
        "vpmaddwd 32(%[wp]), %%ymm1, %%ymm1\n\t"
        "vpmaddwd (%[wp]), %%ymm2, %%ymm2\n\t"
        "vpmaddwd 32(%[wp]), %%ymm3, %%ymm3\n\t"
        "vpmaddwd (%[wp]), %%ymm4, %%ymm4\n\t"
        "vpmaddwd 32(%[wp]), %%ymm5, %%ymm5\n\t"
        "vpaddd %%ymm0, %[a00], %[a00]\n\t"
        "vpaddd %%ymm1, %[a01], %[a01]\n\t"
        "vpaddd %%ymm2, %[a10], %[a10]\n\t"
        "vpaddd %%ymm3, %[a11], %[a11]\n\t"
        "vpaddd %%ymm4, %[a20], %[a20]\n\t"
        "vpaddd %%ymm5, %[a21], %[a21]\n\t"
        "add $64, %[wp]\n\tcmpl $0, (%[segn])\n\tjnz 1b\n\t"
        : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20), [a21] "+x"(a21),
          [sp] "+r"(sp), [wp] "+r"(wp), [segn] "+r"(segn), [p] "=&r"(p), [cnt] "=&r"(cnt),
          [o0] "=&r"(o0), [o1] "=&r"(o1), [o2] "+r"(o2)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "cc", "memory");
    acc[0] = a00; acc[1] = a01; acc[2] = a10; acc[3] = a11; acc[4] = a20; acc[5] = a21;
}

/* 8-bit codes, one cluster (the usual case): 4 pixels x 16 channels of s32 sums in ymm registers
 * (chosen by the compiler), codes in ymm12-13, broadcast ymm14, product ymm15. The cluster scale
 * is applied once, after the loop. acc: out (without the bias), as for every tile. */
#define W8_PIX(o, sA, sB)                                                       \
    "vpbroadcastd (%[p],%[" o "]), %%ymm14\n\t"                                \
    "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"                                   \
    "vpaddd %%ymm15, %[" sA "], %[" sA "]\n\t"                                 \
    "vpmaddwd %%ymm13, %%ymm14, %%ymm14\n\t"                                   \
    "vpaddd %%ymm14, %[" sB "], %[" sB "]\n\t"
#define W8_FIRST(o, sA, sB)                                                     \
    "vpbroadcastd (%[p],%[" o "]), %%ymm14\n\t"                                \
    "vpmaddwd %%ymm12, %%ymm14, %[" sA "]\n\t"                                 \
    "vpmaddwd %%ymm13, %%ymm14, %[" sB "]\n\t"
#define W8_LOAD                                                                  \
    "mov (%[sp]), %[p]\n\t"                                                    \
    "add $8, %[sp]\n\t"                                                        \
    "vmovdqa (%[wp]), %%ymm12\n\t"                                             \
    "vmovdqa 32(%[wp]), %%ymm13\n\t"                                           \
    "add $64, %[wp]\n\t"
static inline __attribute__((always_inline)) void w8x4(const uint8_t *const *sp, const int8_t *wp, long cnt, const int32_t *ot, __m256i *acc) {
    const uint8_t *p;
    long o0, o1, o2, o3 = (long)(intptr_t)ot;
    __m256i s00, s01, s10, s11, s20, s21, s30, s31;
    __asm__ volatile(
        LOADO4
        W8_LOAD
        W8_FIRST("o0", "s00", "s01") W8_FIRST("o1", "s10", "s11")
        W8_FIRST("o2", "s20", "s21") W8_FIRST("o3", "s30", "s31")
        "dec %[cnt]\n\t"
        "jz 3f\n\t"
        ".p2align 6\n2:\n\t"
        W8_LOAD
        W8_PIX("o0", "s00", "s01") W8_PIX("o1", "s10", "s11")
        W8_PIX("o2", "s20", "s21") W8_PIX("o3", "s30", "s31")
        "dec %[cnt]\n\t"
        "jnz 2b\n\t"
        "3:\n\t"
        : [s00] "=&x"(s00), [s01] "=&x"(s01), [s10] "=&x"(s10), [s11] "=&x"(s11),
          [s20] "=&x"(s20), [s21] "=&x"(s21), [s30] "=&x"(s30), [s31] "=&x"(s31),
          [sp] "+r"(sp), [wp] "+r"(wp), [p] "=&r"(p), [cnt] "+r"(cnt),
          [o0] "=&r"(o0), [o1] "=&r"(o1), [o2] "=&r"(o2), [o3] "+r"(o3)
        :
        : "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    const __m256i c0 = _mm256_load_si256((const __m256i *)wp), c1 = _mm256_load_si256((const __m256i *)(wp + 32));
    acc[0] = _mm256_mullo_epi32(s00, c0); acc[1] = _mm256_mullo_epi32(s01, c1);
    acc[2] = _mm256_mullo_epi32(s10, c0); acc[3] = _mm256_mullo_epi32(s11, c1);
    acc[4] = _mm256_mullo_epi32(s20, c0); acc[5] = _mm256_mullo_epi32(s21, c1);
    acc[6] = _mm256_mullo_epi32(s30, c0); acc[7] = _mm256_mullo_epi32(s31, c1);
}

/* 6 pixels, 8-bit codes, one cluster: sums in ymm0-11, codes 12-13, broadcast 14, product 15;
 * the cluster scale is applied (vpmulld) and the sums stored at the end. */
#define W8R_PIX(o, sA, sB)                                                      \
    "vpbroadcastd (%[p],%[" o "]), %%ymm14\n\t"                                \
    "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"                                   \
    "vpaddd %%ymm15, %%ymm" sA ", %%ymm" sA "\n\t"                              \
    "vpmaddwd %%ymm13, %%ymm14, %%ymm14\n\t"                                   \
    "vpaddd %%ymm14, %%ymm" sB ", %%ymm" sB "\n\t"
#define W8R_FIRST(o, sA, sB)                                                    \
    "vpbroadcastd (%[p],%[" o "]), %%ymm14\n\t"                                \
    "vpmaddwd %%ymm12, %%ymm14, %%ymm" sA "\n\t"                               \
    "vpmaddwd %%ymm13, %%ymm14, %%ymm" sB "\n\t"
#define W8R_OUT(s, coff, aoff)                                                  \
    "vpmulld " coff "(%[wp]), %%ymm" s ", %%ymm" s "\n\t"                        \
    "vmovdqa %%ymm" s ", " aoff "(%[acc])\n\t"
static inline __attribute__((always_inline)) void w8x6(const uint8_t *const *sp, const int8_t *wp, long cnt, const int32_t *ot, __m256i *acc) {
    const uint8_t *p;
    long o0, o1, o2, o3, o4, o5 = (long)(intptr_t)ot;
    __asm__ volatile(
        LOADO6
        W8_LOAD
        W8R_FIRST("o0", "0", "1") W8R_FIRST("o1", "2", "3") W8R_FIRST("o2", "4", "5")
        W8R_FIRST("o3", "6", "7") W8R_FIRST("o4", "8", "9") W8R_FIRST("o5", "10", "11")
        "dec %[cnt]\n\t"
        "jz 3f\n\t"
        ".p2align 6\n2:\n\t"
        W8_LOAD
        W8R_PIX("o0", "0", "1") W8R_PIX("o1", "2", "3") W8R_PIX("o2", "4", "5")
        W8R_PIX("o3", "6", "7") W8R_PIX("o4", "8", "9") W8R_PIX("o5", "10", "11")
        "dec %[cnt]\n\t"
        "jnz 2b\n\t"
        "3:\n\t"
        W8R_OUT("0", "0", "0") W8R_OUT("1", "32", "32") W8R_OUT("2", "0", "64") W8R_OUT("3", "32", "96")
        W8R_OUT("4", "0", "128") W8R_OUT("5", "32", "160") W8R_OUT("6", "0", "192") W8R_OUT("7", "32", "224")
        W8R_OUT("8", "0", "256") W8R_OUT("9", "32", "288") W8R_OUT("10", "0", "320") W8R_OUT("11", "32", "352")
        : [sp] "+r"(sp), [wp] "+r"(wp), [p] "=&r"(p), [cnt] "+r"(cnt),
          [o0] "=&r"(o0), [o1] "=&r"(o1), [o2] "=&r"(o2), [o3] "=&r"(o3), [o4] "=&r"(o4), [o5] "+r"(o5)
        : [acc] "r"(acc)
        : ALL_YMM);
}

/* 3 pixels, 8-bit codes on s16-widened rows, any number of clusters. */
static inline __attribute__((always_inline)) void madd16x3(const uint8_t *const *sp, const int8_t *wp, const int32_t *segn, const int32_t *o, __m256i *acc) {
    for (int i = 0; i < 6; i++) acc[i] = _mm256_setzero_si256();
    for (; *segn; segn++) {
        __m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00;
        for (int k = 0; k < *segn; k++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)wp);
            const __m256i w1 = _mm256_load_si256((const __m256i *)(wp + 32));
            const uint8_t *p = *sp++;
            __m256i x = bcast4(p + o[0]);
            s00 = _mm256_add_epi32(s00, _mm256_madd_epi16(x, w0));
            s01 = _mm256_add_epi32(s01, _mm256_madd_epi16(x, w1));
            x = bcast4(p + o[1]);
            s10 = _mm256_add_epi32(s10, _mm256_madd_epi16(x, w0));
            s11 = _mm256_add_epi32(s11, _mm256_madd_epi16(x, w1));
            x = bcast4(p + o[2]);
            s20 = _mm256_add_epi32(s20, _mm256_madd_epi16(x, w0));
            s21 = _mm256_add_epi32(s21, _mm256_madd_epi16(x, w1));
            wp += 64;
        }
        const __m256i c0 = _mm256_load_si256((const __m256i *)wp), c1 = _mm256_load_si256((const __m256i *)(wp + 32));
        wp += 64;
        acc[0] = _mm256_add_epi32(acc[0], _mm256_mullo_epi32(s00, c0));
        acc[1] = _mm256_add_epi32(acc[1], _mm256_mullo_epi32(s01, c1));
        acc[2] = _mm256_add_epi32(acc[2], _mm256_mullo_epi32(s10, c0));
        acc[3] = _mm256_add_epi32(acc[3], _mm256_mullo_epi32(s11, c1));
        acc[4] = _mm256_add_epi32(acc[4], _mm256_mullo_epi32(s20, c0));
        acc[5] = _mm256_add_epi32(acc[5], _mm256_mullo_epi32(s21, c1));
    }
}

/* ---- the band driver ---- */
typedef struct tile_plan {
    int kind;                   /* 0 MADDUBS 4-6 pixel tiles, 1 MADDUBS 3-pixel, 2 8-bit one cluster, 3 8-bit */
    int npix, ntile, nbase, nextra;
} tile_plan;

/* The tiles of one block over the band's pixels, each requantised and stored as it is done. The
 * tiles' pixel offsets: tab, 6 int32 a tile (the last one repeated past its pixel count).
 * blend/sh0: rq8's variant (constants in the common case). */
static inline __attribute__((always_inline)) void block_tiles(const tile_plan *T, const ep_ctx *E, const uint8_t *const *sp,
                                                              const int32_t *segn, const int32_t *P, const int8_t *wq,
                                                              const int32_t *tab, __m256i *acc,
                                                              uint8_t *y, size_t at, int nc, int blend, int sh0) {
    for (int t = 0, p = 0; t < T->ntile; t++) {
        const int n = TERN_MIN(T->nbase + (t < T->nextra), T->npix - p);   /* pixels of this tile */
        const int32_t *ot = tab + MAXPX * t;
        switch (T->kind) {
        case 0:
            if (n == 6) segs6m(sp, wq, segn, ot, acc);
            else if (n == 5) segs5m(sp, wq, segn, ot, acc);
            else if (n == 4) segs4m(sp, wq, segn, ot, acc);
            else segs3r(sp, wq, segn, ot, acc);
            break;
        case 1: segs3r(sp, wq, segn, ot, acc); break;
        case 2:
            if (n > 4) w8x6(sp, wq, segn[0], ot, acc);
            else w8x4(sp, wq, segn[0], ot, acc);
            break;
        default: madd16x3(sp, wq, segn, ot, acc); break;
        }
        if (E->wide) epi_wide(E, P, acc, n, y, at, nc);
        else epi(E, P, acc, n, y, at, nc, blend, sh0);
        at += (size_t)n * E->cout;
        p += n;
    }
}

/* Tiles for npix pixels: tiles of tmax pixels; 4-6 pixel tiles share the pixels evenly over
 * ceil(npix / 6) (4 to 6 each once npix >= 13) instead of leaving a short last tile. The last
 * 3-pixel tile may be shorter. */
static void tile_split(tile_plan *T, int npix, int tmax) {
    T->npix = npix;
    T->ntile = (npix + tmax - 1) / tmax;
    T->nbase = tmax == MAXPX ? npix / T->ntile : tmax;
    T->nextra = tmax == MAXPX ? npix % T->ntile : 0;
}

static void band_run(const tern_qconv *c, const pk_hdr *H, const uint8_t *x, int h, int w,
                     uint8_t *y, int oy0, int oy1, void *scratch, const ep_ctx *E) {
    const uint8_t *pbase = (const uint8_t *)H;
    const pk_step *st = (const pk_step *)(pbase + H->off_step);
    const int32_t *segn = (const int32_t *)(pbase + H->off_seg);
    const int ow = tern_qconv_out_w(c, w), cin = c->cin, elem = H->elem;
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups;
    const int wp = tern_cpk_row_w(c, w), B = band_rows(c, w);
    const size_t rb = tern_cpk_row_bytes(c, w);
    uint8_t *sc = scratch;
    const uint8_t **sp = (const uint8_t **)sc; sc += A64((size_t)H->nsteps * sizeof(void *));
    __m256i *acc = (__m256i *)sc; sc += A64(MAXPX * 2 * sizeof(__m256i));
    int32_t *tab = (int32_t *)sc; sc += A64(tab_entries(c, w) * sizeof(int32_t));
    uint8_t *band = sc;
    const int direct = H->kind == KIND_MADDUBS && !c->in_signed && H->direct_ok && c->pad_l == 0 && wp <= w;
    /* tile shapes: long segments (3x3 and larger) take 4-6 pixel tiles with the accumulators in
     * memory, short ones 3-pixel tiles with them in registers; 8-bit codes 4-6 (one cluster) or 3 */
    tile_plan T;
    T.kind = H->kind == KIND_MADD16 ? (H->nseg == 1 ? 2 : 3) : H->nsteps >= 4 * H->nseg ? 0 : 1;
    const int tmax = T.kind == 0 || T.kind == 2 ? MAXPX : 3;
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
                tern_cpk_fill_row(c, H->kind, H->pair_n, iy < 0 || iy >= h ? NULL : x + (size_t)iy * w * cin, w, wp, band + k * rb, rb);
            }
            base = band;
            rs = (ptrdiff_t)rb;
        }
        tile_split(&T, (by1 - by0) * ow, tmax);
        {   /* the tiles' pixel offsets from the step pointers */
            const int32_t rstep = (int32_t)(c->sh * rs), cstep = (int32_t)((ptrdiff_t)c->sw * cin * elem);
            int r = 0, q = 0;
            for (int t = 0, p = 0; t < T.ntile; t++) {
                const int n = TERN_MIN(T.nbase + (t < T.nextra), T.npix - p);
                int32_t *ot = tab + MAXPX * t;
                for (int i = 0; i < n; i++) {
                    ot[i] = r * rstep + q * cstep;
                    if (++q == ow) { q = 0; r++; }
                }
                for (int i = n; i < MAXPX; i++) ot[i] = ot[n - 1];
                p += n;
            }
        }
        for (int gi = 0; gi < c->groups; gi++) {
            const ptrdiff_t goff = (ptrdiff_t)gi * cing * elem;   /* the group's first channel */
            for (int s = 0; s < H->nsteps; s++) sp[s] = base + st[s].dy * rs + st[s].dx + goff;
            for (int b = 0; b < H->ncb; b++) {
                const uint8_t *blk = pbase + H->off_blk + (size_t)(gi * H->ncb + b) * H->blk_bytes;
                const int32_t *P = (const int32_t *)blk;
                const int8_t *wq = (const int8_t *)(blk + QPARAM_BYTES);
                const int nc = TERN_MIN(NR, coutg - b * NR);
                const size_t at = (size_t)by0 * ow * c->cout + (size_t)gi * coutg + (size_t)b * NR;
                const int fl = P[Q_FLAGS] & (Q_F_BLEND | Q_F_SH0);
                if (!fl) block_tiles(&T, E, sp, segn, P, wq, tab, acc, y, at, nc, 0, 0);
                else if (fl == Q_F_BLEND) block_tiles(&T, E, sp, segn, P, wq, tab, acc, y, at, nc, 1, 0);
                else block_tiles(&T, E, sp, segn, P, wq, tab, acc, y, at, nc, (fl & Q_F_BLEND) != 0, 1);
            }
        }
    }
}

static void ep_init(ep_ctx *E, const tern_qconv *c, int qmin, int qmax) {
    memset(E, 0, sizeof *E);
    E->cout = c->cout;
    E->wide = c->out_wide;
    E->osgn = qmin < 0;
    E->clamp = E->osgn ? qmin > -128 || qmax < 127 : qmin > 0 || qmax < 255;
    E->lo8 = _mm256_set1_epi8((char)qmin);
    E->hi8 = _mm256_set1_epi8((char)qmax);
}

static void avx2_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                     uint8_t *y, int oy0, int oy1, void *scratch) {
    ep_ctx E;
    ep_init(&E, c, c->qmin, c->qmax);
    band_run(c, packed, x, h, w, y, oy0, oy1, scratch, &E);
}

static void run_then_add(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w, uint8_t *y,
                         int oy0, int oy1, void *scratch, const tern_qadd *a);

/* The fused add is done in s16 when every value it can meet fits: conv value << lc plus
 * residual << lr plus the rounding. Otherwise the conv rows are stored and added in place. */
static int add16_ok(const tern_qconv *c, const tern_qadd *a) {
    if (a->lc > 14 || a->lr > 14 || a->rs > 15) return 0;
    const int64_t rl = a->r_signed ? -128 : 0, rh = a->r_signed ? 127 : 255;
    const int64_t lo = (int64_t)c->qmin * (1 << a->lc) + rl * (1 << a->lr);
    const int64_t hi = (int64_t)c->qmax * (1 << a->lc) + rh * (1 << a->lr) + (a->rs > 0 ? 1 << (a->rs - 1) : 0);
    return lo >= -32768 && hi <= 32767;
}

static void avx2_run_add(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                         uint8_t *y, int oy0, int oy1, void *scratch, const tern_qadd *a) {
    if (!add16_ok(c, a)) {
        run_then_add(c, packed, x, h, w, y, oy0, oy1, scratch, a);
        return;
    }
    ep_ctx E;
    ep_init(&E, c, a->qmin, a->qmax);
    E.add = 1;
    E.rsgn = a->r_signed;
    E.r = a->r;
    E.cmin = _mm256_set1_epi16((short)c->qmin);
    E.cmax = _mm256_set1_epi16((short)c->qmax);
    E.rnd = _mm256_set1_epi16((short)(a->rs > 0 ? 1 << (a->rs - 1) : 0));
    E.shl_c = a->lc != 0;
    E.shl_r = a->lr != 0;
    E.shr = a->rs != 0;
    E.lc = _mm_cvtsi32_si128(a->lc);
    E.lr = _mm_cvtsi32_si128(a->lr);
    E.rs = _mm_cvtsi32_si128(a->rs);
    band_run(c, packed, x, h, w, y, oy0, oy1, scratch, &E);
}

RUN_THEN_ADD(run_then_add, avx2_run)
static size_t avx2_packed_size(const tern_qconv *c) { return tern_cpk_packed_size(c, 0); }
static enum tern_status avx2_pack(const tern_qconv *c, void *packed) { return tern_cpk_pack(c, 0, packed); }

/* every code type: vpmaddubsw (ternary, 4-bit) or vpmaddwd on widened rows (8-bit) */
const tern_conv_kernel tern_conv_6x16__avx2 = {
    "conv_6x16__avx2", avx2_packed_size, avx2_pack, avx2_scratch_size, avx2_run, avx2_run_add,
};
