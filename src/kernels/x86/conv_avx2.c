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
 * Register tile: 3 output pixels x 16 output channels (6 s16 or s32 partial sums, 6 s32
 * accumulators, 2 weight vectors, 1 broadcast = 15 of 16 ymm). Weights are packed per block of 16
 * output channels, steps in the order the kernel walks them, each segment followed by its scales,
 * so a block is one sequential stream. Activations are NHWC so a step's 4 bytes are contiguous;
 * there is no im2col: each output row gets a table of per-step pointers (row, tap, channel
 * offset) and pixel i reads at pointer + i * stride * cin. Rows that need padding, the xor or the
 * widening are copied once into a small ring of padded rows in scratch; plain unsigned rows
 * without horizontal padding are read in place.
 * Requantisation is tern_requant in 8 lanes: vpmuldq on even/odd lanes, a logical 64-bit shift is
 * exact because the result fits in 32 bits, then a per-lane rounding shift with vpsravd. */
#include "kernels/kernels.h"
#include <immintrin.h>
#include <limits.h>
#include <string.h>

/* conv_avx512vnni.c includes this file with TERN_CONV_VNNI 1 to share the planning, packing, row
 * copies and requantisation. There vpdpbusd sums all 4 bytes of a step into one s32 lane: no
 * s16 bound (one segment per cluster), no lane halves (no N=2 or cluster-pair layouts), and
 * 8-bit codes take the byte path too. */
#ifndef TERN_CONV_VNNI
#define TERN_CONV_VNNI 0
#endif

enum { KIND_MADDUBS = 0, KIND_MADD16 = 1, KIND_RAW = 2 };   /* RAW: rows copied as they are */
enum { MR = 3, NR = 16 };
/* Per block of 16 output channels: int32 bias[16] (signed-input correction folded in), mpos[16],
 * mneg[16], cfix[16]; then int64 rnd[16], tsh[16] in "vector order": for each group of 8
 * channels, the 4 even channels then the 4 odd ones (the lanes vpmuldq sees). See requant8. */
enum { P_BIAS = 0, P_MPOS = 16, P_MNEG = 32, P_CFIX = 48, P_RND = 64, P_TSH = 96 };  /* int32 units */
#define PARAM_BYTES (128 * 4)

typedef struct pk_hdr {
    int32_t kind, elem;        /* elem: bytes per activation in the rows read (1, or 2 widened) */
    int32_t nsteps, nseg;      /* per group (all groups share the plan) */
    int32_t ncb;               /* blocks of 16 output channels per group */
    int32_t direct_ok;         /* no step reads past channel cin-1 of its pixel */
    int32_t pair_n;            /* N if rows are copied with cluster pairs interleaved, else 0 */
    int32_t pad_;
    int64_t blk_bytes;         /* one block: params, then per segment its steps' codes and scales */
    int64_t off_step, off_seg, off_blk;
} pk_hdr;

typedef struct pk_step { int32_t tap, cb; } pk_step;   /* tap = ky*kw+kx; cb: first channel in group */

#define A64(n) TERN_ALIGN_UP((size_t)(n), (size_t)64)

static int max_seg_steps(const tern_qconv *c) {
    if (TERN_CONV_VNNI) return INT_MAX;
    return c->wtype == TERN_WTYPE_TERNARY ? 64 : c->wtype == TERN_WTYPE_INT4 ? 9 : INT_MAX;
}
static int kind_of(const tern_qconv *c) {
    if (TERN_CONV_VNNI) return KIND_MADDUBS;
    return c->wtype == TERN_WTYPE_INT8 ? KIND_MADD16 : KIND_MADDUBS;
}

/* Single-cluster convs without horizontal dilation (the 8-bit first conv, --cluster all): the
 * kw taps of one kernel row are kw*cin contiguous elements of the row, so steps run across
 * them (3x3 over 3 channels, s16 pairs: 15 steps instead of 18). Only when it saves steps. */
static int merged_taps(const tern_qconv *c) {
    const int per = kind_of(c) == KIND_MADD16 ? 2 : 4, cing = c->cin / c->groups;
    if (c->groups != 1 || tern_qconv_nclusters(c) != 1 || c->dw != 1 || c->kw < 2) return 0;
    return (c->kw * cing + per - 1) / per < c->kw * ((cing + per - 1) / per);
}

/* Cluster pairs (N = 4 or 8, cin per group a multiple of 2N): rows are copied with each 2N-channel
 * block reordered so that dword i holds channels 2i,2i+1 of cluster g then 2i,2i+1 of cluster g+1.
 * A step then feeds g into lane half 0 and g+1 into half 1, and one vpmaddwd flush serves both
 * clusters: half the flushes, for the price of a vpshufb per 32 bytes when rows are copied.
 * Only when the pair's steps still fit one segment (s16 bound) and clusters are short. */
static int pair_n(const tern_qconv *c) {
    const int N = c->cluster, cing = c->cin / c->groups;
    if (TERN_CONV_VNNI || kind_of(c) != KIND_MADDUBS || (N != 4 && N != 8) || cing % (2 * N) || merged_taps(c)) return 0;
    return 2 * (c->kh * c->kw * N / 4) <= max_seg_steps(c) ? N : 0;
}

/* Where byte k of a paired step at channel offset cb comes from: the channel of the group. */
static int pair_src(int N, int cb, int k) {
    const int blk = cb / (2 * N) * (2 * N), i = (cb % (2 * N)) / 4;
    return blk + (k < 2 ? 2 * i + k : N + 2 * i + k - 2);
}

/* The walk over one group's reduction: steps, their lane clusters and the segments.
 * st/cl/segn may be NULL to count. cl[2*s+h]: cluster of lane half h of step s (-1: none). */
static void plan(const tern_qconv *c, pk_step *st, int32_t *cl, int32_t *segn, int *pnsteps, int *pnseg) {
    const int kind = kind_of(c), cing = c->cin / c->groups, N = c->cluster;
    const int ncl = tern_qconv_nclusters(c), khw = c->kh * c->kw, maxs = max_seg_steps(c);
    int ns = 0, nseg = 0;
#define EMIT(t_, cb_, a_, b_)                                                  \
    do {                                                                       \
        if (st) { st[ns].tap = (t_); st[ns].cb = (cb_); cl[2 * ns] = (a_); cl[2 * ns + 1] = (b_); } \
        ns++;                                                                  \
    } while (0)
#define CLOSE(n_) do { if (segn) segn[nseg] = (n_); nseg++; } while (0)
    if (merged_taps(c)) {
        /* step cb = element offset into the kernel row's kw*cin run, tap = ky*kw */
        const int per = kind == KIND_MADD16 ? 2 : 4, run = c->kw * cing;
        const int total = c->kh * ((run + per - 1) / per);
        const int nsg = total <= maxs ? 1 : (total + maxs - 1) / maxs;
        const int len = (total + nsg - 1) / nsg;
        int cnt = 0;
        for (int ky = 0; ky < c->kh; ky++)
            for (int e = 0; e < run; e += per) {
                if (cnt == len) { CLOSE(cnt); cnt = 0; }
                EMIT(ky * c->kw, e, 0, 0);
                cnt++;
            }
        CLOSE(cnt);
    } else if (pair_n(c)) {
        for (int g = 0; g < ncl; g += 2) {   /* clusters g, g+1: channels g*N .. g*N+2N-1 */
            const int total = khw * N / 2;
            const int nsg = total <= maxs ? 1 : (total + maxs - 1) / maxs;
            const int len = (total + nsg - 1) / nsg;
            int cnt = 0;
            for (int t = 0; t < khw; t++)
                for (int i = 0; i < N / 2; i++) {
                    if (cnt == len) { CLOSE(cnt); cnt = 0; }
                    EMIT(t, g * N + 4 * i, g, g + 1);
                    cnt++;
                }
            CLOSE(cnt);
        }
    } else if (kind == KIND_MADDUBS && N == 2 && !TERN_CONV_VNNI) {
        /* two clusters per step: channels 2g,2g+1 in lane half 0, 2g+2,2g+3 in half 1 */
        for (int g = 0; g < ncl; g += 2) {
            int cnt = 0;
            for (int t = 0; t < khw; t++) {
                if (cnt == maxs) { CLOSE(cnt); cnt = 0; }
                EMIT(t, 2 * g, g, g + 1 < ncl ? g + 1 : -1);
                cnt++;
            }
            CLOSE(cnt);
        }
    } else {
        const int per = kind == KIND_MADD16 ? 2 : 4;
        for (int g = 0; g < ncl; g++) {
            const int c0 = g * N, c1 = TERN_MIN(c0 + N, cing);
            const int total = khw * ((c1 - c0 + per - 1) / per);
            const int nsg = total <= maxs ? 1 : (total + maxs - 1) / maxs;
            const int len = (total + nsg - 1) / nsg;   /* balanced segments */
            int cnt = 0;
            for (int t = 0; t < khw; t++)
                for (int cb = c0; cb < c1; cb += per) {
                    if (cnt == len) { CLOSE(cnt); cnt = 0; }
                    EMIT(t, cb, g, g);
                    cnt++;
                }
            CLOSE(cnt);
        }
    }
#undef EMIT
#undef CLOSE
    *pnsteps = ns;
    *pnseg = nseg;
}

static void layout(const tern_qconv *c, pk_hdr *H) {
    int ns, nseg;
    plan(c, NULL, NULL, NULL, &ns, &nseg);
    const int coutg = c->cout / c->groups;
    H->kind = kind_of(c);
    H->elem = H->kind == KIND_MADD16 ? 2 : 1;
    H->nsteps = ns;
    H->nseg = nseg;
    H->ncb = (coutg + NR - 1) / NR;
    H->direct_ok = 0;
    H->blk_bytes = (int64_t)PARAM_BYTES + (int64_t)(ns + nseg) * 64;
    H->off_step = A64(sizeof(pk_hdr));
    H->off_seg = H->off_step + A64((size_t)ns * sizeof(pk_step));
    H->off_blk = H->off_seg + A64((size_t)nseg * sizeof(int32_t));
}

static size_t avx2_packed_size(const tern_qconv *c) {
    pk_hdr H;
    layout(c, &H);
    return (size_t)H.off_blk + (size_t)c->groups * H.ncb * (size_t)H.blk_bytes;
}

static void avx2_pack(const tern_qconv *c, void *packed) {
    pk_hdr *H = packed;
    uint8_t *base = packed;
    memset(H, 0, sizeof *H);
    layout(c, H);
    pk_step *st = (pk_step *)(base + H->off_step);
    int32_t *segn = (int32_t *)(base + H->off_seg);
    int32_t *cl = malloc(sizeof(int32_t) * 2 * (size_t)(H->nsteps ? H->nsteps : 1)); /* pack time only */
    TERN_ASSERT(cl);
    int ns, nseg;
    plan(c, st, cl, segn, &ns, &nseg);
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups, khw = c->kh * c->kw;
    const int ncl = tern_qconv_nclusters(c), N = c->cluster, per = H->kind == KIND_MADD16 ? 2 : 4;
    const int merged = merged_taps(c), run = merged ? c->kw * cing : cing;
    int maxcb = 0;
    for (int s = 0; s < ns; s++) maxcb = TERN_MAX(maxcb, st[s].cb + per);
    H->pair_n = pair_n(c);
    H->direct_ok = H->kind == KIND_MADDUBS && maxcb <= run && !H->pair_n;

    for (int gi = 0; gi < c->groups; gi++)
        for (int b = 0; b < H->ncb; b++) {
            uint8_t *blk = base + H->off_blk + (size_t)(gi * H->ncb + b) * H->blk_bytes;
            int32_t *P = (int32_t *)blk;
            memset(blk, 0, (size_t)H->blk_bytes);
            for (int j = 0; j < NR; j++) {
                const int oj = b * NR + j;
                if (oj >= coutg) continue;
                const int o = gi * coutg + oj;
                uint32_t bias = (uint32_t)c->bias[o];
                if (H->kind == KIND_MADDUBS && c->in_signed) {
                    /* the kernel sees x + 128: subtract 128 * sum_g a_g * sum(codes of g) */
                    for (int g = 0; g < ncl; g++) {
                        int32_t sw = 0;
                        for (int ci = g * N; ci < TERN_MIN(g * N + N, cing); ci++)
                            for (int t = 0; t < khw; t++) sw += c->w[((size_t)o * cing + ci) * khw + t];
                        bias -= 128u * (uint32_t)(int32_t)c->cscale[(size_t)o * ncl + g] * (uint32_t)sw;
                    }
                }
                /* v = floor((acc*m + 2^30 + [s>0] 2^(30+s)) / 2^(31+s)) is both of tern_requant's
                 * rounding steps at once (floor(floor(a/b)+c)/d) == floor((a+cb)/(bd))); adding
                 * 2^62 makes the numerator non-negative so a logical shift is exact, and cfix
                 * removes the 2^(62-31-s) that the bias leaves in the result. */
                const int sh = c->shift[o] < 0 ? 0 : c->shift[o] > 31 ? 31 : c->shift[o];  /* contract: 0..31 */
                const int vj = (j / 8) * 8 + (j % 2) * 4 + (j % 8) / 2;   /* vector order */
                int64_t *P64 = (int64_t *)blk;
                P[P_BIAS + j] = (int32_t)bias;
                P[P_MPOS + j] = c->mpos[o];
                P[P_MNEG + j] = c->mneg[o];
                P[P_CFIX + j] = (int32_t)(uint32_t)(1ull << (31 - sh));
                P64[P_RND / 2 + vj] = (int64_t)((1ull << 62) + (1ull << 30) + (sh > 0 ? 1ull << (30 + sh) : 0));
                P64[P_TSH / 2 + vj] = 31 + sh;
            }
            uint8_t *q = blk + PARAM_BYTES;
            int s = 0;
            for (int sg = 0; sg < nseg; sg++) {
                const int s0 = s;
                for (; s < s0 + segn[sg]; s++, q += 64)
                    for (int j = 0; j < NR; j++) {
                        const int oj = b * NR + j;
                        if (oj >= coutg) continue;
                        const int8_t *wo = c->w + (size_t)(gi * coutg + oj) * cing * khw;
                        for (int k = 0; k < per; k++) {
                            int ci = st[s].cb + k, tap = st[s].tap;
                            const int g = cl[2 * s + (per == 4 ? k / 2 : 0)];
                            if (merged) {   /* element of the kernel row's run: tap kx, channel ci */
                                if (ci >= run) continue;
                                tap += ci / cing;
                                ci %= cing;
                            } else if (H->pair_n) {
                                ci = pair_src(N, st[s].cb, k);
                            }
                            if (g < 0 || ci >= cing || ci / N != g) continue;
                            const int8_t code = wo[(size_t)ci * khw + tap];
                            if (H->kind == KIND_MADDUBS) ((int8_t *)q)[j * 4 + k] = code;
                            else ((int16_t *)q)[j * 2 + k] = code;
                        }
                    }
                /* the segment's scales */
                for (int j = 0; j < NR; j++) {
                    const int oj = b * NR + j;
                    if (oj >= coutg) continue;
                    const int16_t *cs = c->cscale + (size_t)(gi * coutg + oj) * ncl;
                    if (H->kind == KIND_MADDUBS && !TERN_CONV_VNNI)
                        for (int h = 0; h < 2; h++) {
                            const int g = cl[2 * s0 + h];
                            ((int16_t *)q)[j * 2 + h] = g < 0 ? 0 : cs[g];
                        }
                    else
                        ((int32_t *)q)[j] = cs[cl[2 * s0]];
                }
                q += 64;
            }
        }
    free(cl);
}

/* Rows: the padded row covers input columns -pad_l .. -pad_l+wp-1 and has 64 bytes of slack so a
 * step may read up to 3 elements past the last channel. */
static int row_w(const tern_qconv *c, int w) {
    const int ow = tern_qconv_out_w(c, w);
    return (ow - 1) * c->sw + (c->kw - 1) * c->dw + 1;
}
static size_t row_bytes(const tern_qconv *c, int w) {
    const size_t elem = c->wtype == TERN_WTYPE_INT8 ? 2 : 1;
    return A64((size_t)row_w(c, w) * c->cin * elem + 64);
}
static int n_slots(const tern_qconv *c) { return (c->kh - 1) * c->dh + 1; }

static size_t avx2_scratch_size(const tern_qconv *c, int w) {
    int ns, nseg;
    plan(c, NULL, NULL, NULL, &ns, &nseg);
    const int khw = c->kh * c->kw;
    return A64((size_t)ns * sizeof(void *)) + A64((size_t)khw * sizeof(void *)) +
           A64((size_t)c->kh * sizeof(void *)) + A64((size_t)n_slots(c) * sizeof(int)) +
           (size_t)(n_slots(c) + 1) * row_bytes(c, w);
}

/* Copy input row xr (w pixels, or NULL for a row of padding) into a padded row: unsigned bytes,
 * bytes xor 0x80 (signed input, MADDUBS), or s16 (MADD16). */
static void put_pixels(int kind, int sgn, int pn, uint8_t *dst, const uint8_t *src, size_t n) {
    if (pn) {   /* cluster-pair interleave within 2N-byte blocks (n is a multiple of 2N) */
        const __m256i sh = pn == 4 ? _mm256_setr_epi8(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15,
                                                      0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15)
                                   : _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
                                                      0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
        const __m256i xo = _mm256_set1_epi8(sgn ? (char)0x80 : 0);
        size_t i = 0;
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(dst + i),
                                _mm256_xor_si256(_mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(src + i)), sh), xo));
        for (; i < n; i += 2 * pn)
            for (int k = 0; k < 2 * pn; k++) dst[i + k] = src[i + (size_t)pair_src(pn, 4 * (k / 4), k % 4)] ^ (sgn ? 0x80 : 0);
        return;
    }
    if (kind == KIND_RAW) { memcpy(dst, src, n); return; }
    if (kind == KIND_MADDUBS) {
        if (!sgn) { memcpy(dst, src, n); return; }
        size_t i = 0;
        const __m256i k80 = _mm256_set1_epi8((char)0x80);
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i)), k80));
        for (; i < n; i++) dst[i] = src[i] ^ 0x80;
    } else {
        int16_t *d = (int16_t *)dst;
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            const __m128i b = _mm_loadu_si128((const __m128i *)(src + i));
            _mm256_storeu_si256((__m256i *)(d + i), sgn ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b));
        }
        for (; i < n; i++) d[i] = sgn ? (int16_t)(int8_t)src[i] : (int16_t)src[i];
    }
}

static void fill_row(const tern_qconv *c, int kind, int pn, const uint8_t *xr, int w, int wp, uint8_t *dst, size_t bytes) {
    const int cin = c->cin, elem = kind == KIND_MADD16 ? 2 : 1;
    /* columns -pad_l .. wp-1-pad_l; the inside part is one contiguous run of the input row */
    const int in0 = xr ? TERN_MIN(TERN_MAX(c->pad_l, 0), wp) : wp;            /* first inside column */
    const int in1 = xr ? TERN_MAX(TERN_MIN(w + c->pad_l, wp), in0) : wp;      /* end of inside */
    for (int j = 0; j < wp; j++) {
        if (j == in0 && in1 > in0) {
            put_pixels(kind, c->in_signed, pn, dst + (size_t)j * cin * elem, xr + (size_t)(j - c->pad_l) * cin, (size_t)(in1 - in0) * cin);
            j = in1 - 1;
            continue;
        }
        uint8_t *d = dst + (size_t)j * cin * elem;
        if (c->pad_value) put_pixels(kind, c->in_signed, pn, d, c->pad_value, (size_t)cin);
        else if (kind == KIND_MADDUBS) memset(d, c->in_signed ? 0x80 : 0, (size_t)cin);
        else if (kind == KIND_RAW) memset(d, 0, (size_t)cin);
        else memset(d, 0, (size_t)cin * 2);
    }
    const size_t used = (size_t)wp * cin * elem;
    memset(dst + used, 0, bytes - used);
}

static inline __m256i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* tern_requant on 8 lanes (channels j8..j8+7 of the block's params). */
static inline __attribute__((always_inline)) __m256i requant8(__m256i acc, const int32_t *P, int j8, __m256i qmin, __m256i qmax) {
    const __m256i mpos = _mm256_load_si256((const __m256i *)(P + P_MPOS + j8));
    const __m256i mneg = _mm256_load_si256((const __m256i *)(P + P_MNEG + j8));
    const __m256i m = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(mpos),
                                                           _mm256_castsi256_ps(mneg),
                                                           _mm256_castsi256_ps(acc)));
    const int64_t *P64 = (const int64_t *)P;
    __m256i pe = _mm256_mul_epi32(acc, m);
    __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), _mm256_srli_epi64(m, 32));
    pe = _mm256_add_epi64(pe, _mm256_load_si256((const __m256i *)(P64 + P_RND / 2 + j8)));
    po = _mm256_add_epi64(po, _mm256_load_si256((const __m256i *)(P64 + P_RND / 2 + j8 + 4)));
    pe = _mm256_srlv_epi64(pe, _mm256_load_si256((const __m256i *)(P64 + P_TSH / 2 + j8)));
    po = _mm256_srlv_epi64(po, _mm256_load_si256((const __m256i *)(P64 + P_TSH / 2 + j8 + 4)));
    /* the results fit in 32 bits: keep the low dwords, odd lanes moved up */
    __m256i v = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    v = _mm256_sub_epi32(v, _mm256_load_si256((const __m256i *)(P + P_CFIX + j8)));
    return _mm256_min_epi32(_mm256_max_epi32(v, qmin), qmax);
}

typedef struct run_ctx {
    const uint8_t *const *sp;  /* per step: address of its bytes for pixel 0 of the row */
    const int32_t *segn;
    int nseg;
    int cout, out_signed;
    __m256i qmin, qmax;
} run_ctx;

#if !TERN_CONV_VNNI   /* the AVX2 tiles */
/* Requantise a 3x16 tile and store n pixels x nc channels. */
static inline __attribute__((always_inline)) void store_tile(const run_ctx *X, __m256i acc[MR][2], const int32_t *P, uint8_t *y, int n, int nc) {
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#pragma GCC unroll 3
    for (int i = 0; i < MR; i++) {
        if (i >= n) break;
        const __m256i r0 = requant8(acc[i][0], P, 0, X->qmin, X->qmax);
        const __m256i r1 = requant8(acc[i][1], P, 8, X->qmin, X->qmax);
        const __m256i t = _mm256_packs_epi32(r0, r1);   /* exact: values are within -128..255 */
        const __m256i u = X->out_signed ? _mm256_packs_epi16(t, t) : _mm256_packus_epi16(t, t);
        const __m128i o = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u, perm));
        uint8_t *d = y + (size_t)i * X->cout;
        if (nc == NR) _mm_storeu_si128((__m128i *)d, o);
        else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, o);
            memcpy(d, tmp, (size_t)nc);
        }
    }
}

/* Requantise a 4x16 tile and store n pixels x nc channels. */
static inline __attribute__((always_inline)) void store_tile4(const run_ctx *X, __m256i acc[4][2], const int32_t *P, uint8_t *y, int n, int nc) {
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        if (i >= n) break;
        const __m256i r0 = requant8(acc[i][0], P, 0, X->qmin, X->qmax);
        const __m256i r1 = requant8(acc[i][1], P, 8, X->qmin, X->qmax);
        const __m256i t = _mm256_packs_epi32(r0, r1);   /* exact: values are within -128..255 */
        const __m256i u = X->out_signed ? _mm256_packs_epi16(t, t) : _mm256_packus_epi16(t, t);
        const __m128i o = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u, perm));
        uint8_t *d = y + (size_t)i * X->cout;
        if (nc == NR) _mm_storeu_si128((__m128i *)d, o);
        else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, o);
            memcpy(d, tmp, (size_t)nc);
        }
    }
}

/* The segment loops, in inline asm because GCC 12 keeps copying the loop-carried sums between
 * registers and spilling the accumulators around them (measured: ~25% slower). One step:
 * load 16 channels x 4 codes (2 ymm), broadcast each pixel's 4 bytes, vpmaddubsw into a
 * temporary, vpaddw into that pixel's s16 sums. At a segment's end: vpmaddwd with its scales
 * (which follow its codes) and vpaddd into the s32 accumulators. */
#define STEP_PIX(o, sA, sB)                                                      \
    "vpbroadcastd (%[p],%[" o "]), %%ymm8\n\t"                                 \
    "vpmaddubsw %%ymm6, %%ymm8, %%ymm9\n\t"                                    \
    "vpaddw %%ymm9, %%ymm" sA ", %%ymm" sA "\n\t"                              \
    "vpmaddubsw %%ymm7, %%ymm8, %%ymm8\n\t"                                    \
    "vpaddw %%ymm8, %%ymm" sB ", %%ymm" sB "\n\t"
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

/* 3 pixels: s16 sums in ymm0-5, codes ymm6-7, temporaries ymm8-9, s32 accumulators in the
 * remaining 6 registers. */
static inline __attribute__((always_inline)) void segs3(const uint8_t *const *sp, const int8_t *wp, const int32_t *segn,
                                                        int nseg, ptrdiff_t o0, ptrdiff_t o1, ptrdiff_t o2, __m256i acc[3][2]) {
    __m256i a00 = acc[0][0], a01 = acc[0][1], a10 = acc[1][0], a11 = acc[1][1], a20 = acc[2][0], a21 = acc[2][1];
    const uint8_t *p;
    long cnt;
    __asm__ volatile(
        "1:\n\t"
        "movslq (%[segn]), %[cnt]\n\t"
        "add $4, %[segn]\n\t"
        LOAD_STEP
        FIRST_PIX("o0", "0", "1")
        FIRST_PIX("o1", "2", "3")
        FIRST_PIX("o2", "4", "5")
        "dec %[cnt]\n\t"
        "jz 3f\n\t"
        "2:\n\t"
        LOAD_STEP
        STEP_PIX("o0", "0", "1")
        STEP_PIX("o1", "2", "3")
        STEP_PIX("o2", "4", "5")
        "dec %[cnt]\n\t"
        "jnz 2b\n\t"
        "3:\n\t"
        "vpmaddwd (%[wp]), %%ymm0, %%ymm0\n\t"
        "vpmaddwd 32(%[wp]), %%ymm1, %%ymm1\n\t"
        "vpmaddwd (%[wp]), %%ymm2, %%ymm2\n\t"
        "vpmaddwd 32(%[wp]), %%ymm3, %%ymm3\n\t"
        "vpmaddwd (%[wp]), %%ymm4, %%ymm4\n\t"
        "vpmaddwd 32(%[wp]), %%ymm5, %%ymm5\n\t"
        "add $64, %[wp]\n\t"
        "vpaddd %%ymm0, %[a00], %[a00]\n\t"
        "vpaddd %%ymm1, %[a01], %[a01]\n\t"
        "vpaddd %%ymm2, %[a10], %[a10]\n\t"
        "vpaddd %%ymm3, %[a11], %[a11]\n\t"
        "vpaddd %%ymm4, %[a20], %[a20]\n\t"
        "vpaddd %%ymm5, %[a21], %[a21]\n\t"
        "dec %[nseg]\n\t"
        "jnz 1b\n\t"
        : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20), [a21] "+x"(a21),
          [sp] "+r"(sp), [wp] "+r"(wp), [segn] "+r"(segn), [nseg] "+r"(nseg), [p] "=&r"(p), [cnt] "=&r"(cnt)
        : [o0] "r"(o0), [o1] "r"(o1), [o2] "r"(o2)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "cc", "memory");
    acc[0][0] = a00; acc[0][1] = a01; acc[1][0] = a10; acc[1][1] = a11; acc[2][0] = a20; acc[2][1] = a21;
}

/* 4 pixels: s16 sums in ymm0-5 and ymm10-11, the s32 accumulators in memory (acc, 8 x 32 bytes,
 * touched once per segment). */
static inline __attribute__((always_inline)) void segs4(const uint8_t *const *sp, const int8_t *wp, const int32_t *segn,
                                                        int nseg, ptrdiff_t o0, ptrdiff_t o1, ptrdiff_t o2, ptrdiff_t o3,
                                                        __m256i *acc) {
    const uint8_t *p;
    long cnt;
#define FLUSH4(s, woff, aoff)                                                    \
    "vpmaddwd " woff "(%[wp]), %%ymm" s ", %%ymm" s "\n\t"                       \
    "vpaddd " aoff "(%[acc]), %%ymm" s ", %%ymm" s "\n\t"                        \
    "vmovdqa %%ymm" s ", " aoff "(%[acc])\n\t"
    __asm__ volatile(
        "1:\n\t"
        "movslq (%[segn]), %[cnt]\n\t"
        "add $4, %[segn]\n\t"
        LOAD_STEP
        FIRST_PIX("o0", "0", "1")
        FIRST_PIX("o1", "2", "3")
        FIRST_PIX("o2", "4", "5")
        FIRST_PIX("o3", "10", "11")
        "dec %[cnt]\n\t"
        "jz 3f\n\t"
        "2:\n\t"
        LOAD_STEP
        STEP_PIX("o0", "0", "1")
        STEP_PIX("o1", "2", "3")
        STEP_PIX("o2", "4", "5")
        STEP_PIX("o3", "10", "11")
        "dec %[cnt]\n\t"
        "jnz 2b\n\t"
        "3:\n\t"
        FLUSH4("0", "0", "0") FLUSH4("1", "32", "32")
        FLUSH4("2", "0", "64") FLUSH4("3", "32", "96")
        FLUSH4("4", "0", "128") FLUSH4("5", "32", "160")
        FLUSH4("10", "0", "192") FLUSH4("11", "32", "224")
        "add $64, %[wp]\n\t"
        "dec %[nseg]\n\t"
        "jnz 1b\n\t"
        : [sp] "+r"(sp), [wp] "+r"(wp), [segn] "+r"(segn), [nseg] "+r"(nseg), [p] "=&r"(p), [cnt] "=&r"(cnt)
        : [o0] "r"(o0), [o1] "r"(o1), [o2] "r"(o2), [o3] "r"(o3), [acc] "r"(acc)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "cc", "memory");
#undef FLUSH4
}

/* 3 pixels x 16 channels, ternary / 4-bit codes. o0..o2: byte offsets of the pixels from the
 * step pointers. */
static void ukr_maddubs(const run_ctx *X, const uint8_t *blk, ptrdiff_t o0, ptrdiff_t o1, ptrdiff_t o2,
                        uint8_t *y, int n, int nc) {
    const int32_t *P = (const int32_t *)blk;
    __m256i acc[MR][2];
    const __m256i b0 = _mm256_load_si256((const __m256i *)P), b1 = _mm256_load_si256((const __m256i *)(P + 8));
    acc[0][0] = acc[1][0] = acc[2][0] = b0;
    acc[0][1] = acc[1][1] = acc[2][1] = b1;
    segs3(X->sp, (const int8_t *)(blk + PARAM_BYTES), X->segn, X->nseg, o0, o1, o2, acc);
    store_tile(X, acc, P, y, n, nc);
}

/* 4 pixels x 16 channels, ternary / 4-bit codes: 8 s16 sums + 2 weights + 1 broadcast in
 * registers; the s32 accumulators live in L1 (touched once per segment). */
static void ukr_maddubs4(const run_ctx *X, const uint8_t *blk, const ptrdiff_t *o, uint8_t *y, int n, int nc) {
    const int32_t *P = (const int32_t *)blk;
    __m256i acc[4][2];
    const __m256i b0 = _mm256_load_si256((const __m256i *)P), b1 = _mm256_load_si256((const __m256i *)(P + 8));
    acc[0][0] = acc[1][0] = acc[2][0] = acc[3][0] = b0;
    acc[0][1] = acc[1][1] = acc[2][1] = acc[3][1] = b1;
    segs4(X->sp, (const int8_t *)(blk + PARAM_BYTES), X->segn, X->nseg, o[0], o[1], o[2], o[3], &acc[0][0]);
    store_tile4(X, acc, P, y, n, nc);
}

/* 8-bit codes, one cluster (the usual case): 4 pixels x 16 channels of s32 sums in ymm registers
 * (chosen by the compiler), codes in ymm12-13, broadcast ymm14, product ymm15. The cluster scale
 * is applied once, after the loop. */
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
static void ukr_w8x4(const run_ctx *X, const uint8_t *blk, const ptrdiff_t *o, uint8_t *y, int n, int nc) {
    const int32_t *P = (const int32_t *)blk;
    const uint8_t *const *sp = X->sp;
    const int8_t *wp = (const int8_t *)(blk + PARAM_BYTES);
    const uint8_t *p;
    long cnt = X->segn[0];
    __m256i s00, s01, s10, s11, s20, s21, s30, s31;
    __asm__ volatile(
        W8_LOAD
        W8_FIRST("o0", "s00", "s01") W8_FIRST("o1", "s10", "s11")
        W8_FIRST("o2", "s20", "s21") W8_FIRST("o3", "s30", "s31")
        "dec %[cnt]\n\t"
        "jz 3f\n\t"
        "2:\n\t"
        W8_LOAD
        W8_PIX("o0", "s00", "s01") W8_PIX("o1", "s10", "s11")
        W8_PIX("o2", "s20", "s21") W8_PIX("o3", "s30", "s31")
        "dec %[cnt]\n\t"
        "jnz 2b\n\t"
        "3:\n\t"
        : [s00] "=&x"(s00), [s01] "=&x"(s01), [s10] "=&x"(s10), [s11] "=&x"(s11),
          [s20] "=&x"(s20), [s21] "=&x"(s21), [s30] "=&x"(s30), [s31] "=&x"(s31),
          [sp] "+r"(sp), [wp] "+r"(wp), [p] "=&r"(p), [cnt] "+r"(cnt)
        : [o0] "r"(o[0]), [o1] "r"(o[1]), [o2] "r"(o[2]), [o3] "r"(o[3])
        : "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    const __m256i c0 = _mm256_load_si256((const __m256i *)wp), c1 = _mm256_load_si256((const __m256i *)(wp + 32));
    const __m256i b0 = _mm256_load_si256((const __m256i *)P), b1 = _mm256_load_si256((const __m256i *)(P + 8));
    __m256i acc[4][2] = {
        {_mm256_add_epi32(b0, _mm256_mullo_epi32(s00, c0)), _mm256_add_epi32(b1, _mm256_mullo_epi32(s01, c1))},
        {_mm256_add_epi32(b0, _mm256_mullo_epi32(s10, c0)), _mm256_add_epi32(b1, _mm256_mullo_epi32(s11, c1))},
        {_mm256_add_epi32(b0, _mm256_mullo_epi32(s20, c0)), _mm256_add_epi32(b1, _mm256_mullo_epi32(s21, c1))},
        {_mm256_add_epi32(b0, _mm256_mullo_epi32(s30, c0)), _mm256_add_epi32(b1, _mm256_mullo_epi32(s31, c1))},
    };
    store_tile4(X, acc, P, y, n, nc);
}

/* 3 pixels x 16 channels, 8-bit codes on s16-widened rows. */
static void ukr_madd16(const run_ctx *X, const uint8_t *blk, ptrdiff_t o0, ptrdiff_t o1, ptrdiff_t o2,
                       uint8_t *y, int n, int nc) {
    const int32_t *P = (const int32_t *)blk;
    const int8_t *wp = (const int8_t *)(blk + PARAM_BYTES);
    const uint8_t *const *sp = X->sp;
    __m256i acc[MR][2];
    const __m256i b0 = _mm256_load_si256((const __m256i *)P), b1 = _mm256_load_si256((const __m256i *)(P + 8));
    acc[0][0] = acc[1][0] = acc[2][0] = b0;
    acc[0][1] = acc[1][1] = acc[2][1] = b1;
    for (int sg = 0; sg < X->nseg; sg++) {
        const int ns = X->segn[sg];
        __m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00;
        for (int k = 0; k < ns; k++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)wp);
            const __m256i w1 = _mm256_load_si256((const __m256i *)(wp + 32));
            const uint8_t *p = *sp++;
            __m256i x = bcast4(p + o0);
            s00 = _mm256_add_epi32(s00, _mm256_madd_epi16(x, w0));
            s01 = _mm256_add_epi32(s01, _mm256_madd_epi16(x, w1));
            x = bcast4(p + o1);
            s10 = _mm256_add_epi32(s10, _mm256_madd_epi16(x, w0));
            s11 = _mm256_add_epi32(s11, _mm256_madd_epi16(x, w1));
            x = bcast4(p + o2);
            s20 = _mm256_add_epi32(s20, _mm256_madd_epi16(x, w0));
            s21 = _mm256_add_epi32(s21, _mm256_madd_epi16(x, w1));
            wp += 64;
        }
        const __m256i c0 = _mm256_load_si256((const __m256i *)wp), c1 = _mm256_load_si256((const __m256i *)(wp + 32));
        wp += 64;
        acc[0][0] = _mm256_add_epi32(acc[0][0], _mm256_mullo_epi32(s00, c0));
        acc[0][1] = _mm256_add_epi32(acc[0][1], _mm256_mullo_epi32(s01, c1));
        acc[1][0] = _mm256_add_epi32(acc[1][0], _mm256_mullo_epi32(s10, c0));
        acc[1][1] = _mm256_add_epi32(acc[1][1], _mm256_mullo_epi32(s11, c1));
        acc[2][0] = _mm256_add_epi32(acc[2][0], _mm256_mullo_epi32(s20, c0));
        acc[2][1] = _mm256_add_epi32(acc[2][1], _mm256_mullo_epi32(s21, c1));
    }
    store_tile(X, acc, P, y, n, nc);
}

/* One run of npix output pixels whose step pointers are in X->sp; pixel i reads at +i*pstride. */
static void do_pixels(const tern_qconv *c, const pk_hdr *H, run_ctx *X, int npix, ptrdiff_t pstride, uint8_t *yrow) {
    const uint8_t *base = (const uint8_t *)H;
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups;
    /* Tiling: 3-pixel tiles keep the s32 accumulators in registers and are the fastest per
     * pixel; 4-pixel tiles (accumulators in L1) cover npix exactly (any npix >= 6 is 3a + 4b)
     * instead of a partly wasted last 3-pixel tile, worth it unless segments are so short that
     * the memory flushes dominate. */
    const int n4 = H->kind == KIND_MADDUBS && H->nsteps >= 4 * H->nseg && npix >= 4 * (npix % 3) ? npix % 3 : 0;
    for (int gi = 0; gi < c->groups; gi++) {
        const ptrdiff_t goff = (ptrdiff_t)gi * cing * H->elem;
        for (int b = 0; b < H->ncb; b++) {
            const uint8_t *blk = base + H->off_blk + (size_t)(gi * H->ncb + b) * H->blk_bytes;
            const int nc = TERN_MIN(NR, coutg - b * NR);
            uint8_t *yb = yrow + gi * coutg + b * NR;
            int px = 0;
            if (H->kind == KIND_MADD16 && H->nseg == 1) {
                for (; px < npix; px += 4) {
                    const int n = TERN_MIN(4, npix - px);
                    ptrdiff_t o[4];
                    for (int i = 0; i < 4; i++) o[i] = goff + (ptrdiff_t)(px + TERN_MIN(i, n - 1)) * pstride;
                    ukr_w8x4(X, blk, o, yb + (size_t)px * c->cout, n, nc);
                }
                continue;
            }
            if (n4) {
                /* first the 4-pixel tiles that make the rest a multiple of 3 */
                for (int t = 0; t < n4; t++, px += 4) {
                    const ptrdiff_t o[4] = {goff + (ptrdiff_t)px * pstride, goff + (ptrdiff_t)(px + 1) * pstride,
                                            goff + (ptrdiff_t)(px + 2) * pstride, goff + (ptrdiff_t)(px + 3) * pstride};
                    ukr_maddubs4(X, blk, o, yb + (size_t)px * c->cout, 4, nc);
                }
            }
            for (; px < npix; px += MR) {
                const int n = TERN_MIN(MR, npix - px);
                const ptrdiff_t o0 = goff + (ptrdiff_t)px * pstride;
                const ptrdiff_t o1 = o0 + (n > 1 ? pstride : 0), o2 = o0 + (n > 2 ? 2 * pstride : (n > 1 ? pstride : 0));
                if (H->kind == KIND_MADDUBS) ukr_maddubs(X, blk, o0, o1, o2, yb + (size_t)px * c->cout, n, nc);
                else ukr_madd16(X, blk, o0, o1, o2, yb + (size_t)px * c->cout, n, nc);
            }
        }
    }
}

#else
/* conv_avx512vnni.c provides the tiles */
static void vnni_pixels(const tern_qconv *c, const pk_hdr *H, run_ctx *X, int npix, ptrdiff_t pstride, uint8_t *yrow);
#define do_pixels vnni_pixels
#endif

static void avx2_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                     uint8_t *y, int oy0, int oy1, void *scratch) {
    const pk_hdr *H = packed;
    const uint8_t *pbase = packed;
    const pk_step *st = (const pk_step *)(pbase + H->off_step);
    const int ow = tern_qconv_out_w(c, w), khw = c->kh * c->kw, cin = c->cin, elem = H->elem;
    const int wp = row_w(c, w), nslot = n_slots(c);
    const size_t rb = row_bytes(c, w);
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
        do_pixels(c, H, &X, (oy1 - oy0) * ow, pstride, y + (size_t)oy0 * ow * c->cout);
        return;
    }
    for (int oy = oy0; oy < oy1; oy++) {
        for (int ky = 0; ky < c->kh; ky++) {
            const int iy = oy * c->sh - c->pad_t + ky * c->dh;
            if (iy < 0 || iy >= h) {
                if (!pad_ready) { fill_row(c, H->kind, H->pair_n, NULL, w, wp, padrow, rb); pad_ready = 1; }
                rowp[ky] = padrow;
            } else if (direct) {
                rowp[ky] = x + (size_t)iy * w * cin;
            } else {
                const int s = iy % nslot;
                uint8_t *r = ring + (size_t)s * rb;
                if (slot_iy[s] != iy) { fill_row(c, H->kind, H->pair_n, x + (size_t)iy * w * cin, w, wp, r, rb); slot_iy[s] = iy; }
                rowp[ky] = r;
            }
        }
        for (int t = 0; t < khw; t++) tapb[t] = rowp[t / c->kw] + (size_t)(t % c->kw) * c->dw * cin * elem;
        for (int s = 0; s < H->nsteps; s++) sp[s] = tapb[st[s].tap] + (size_t)st[s].cb * elem;
        do_pixels(c, H, &X, ow, pstride, y + (size_t)oy * ow * c->cout);
    }
}

#if !TERN_CONV_VNNI   /* depthwise and the AVX2 kernel tables */
/* ---- depthwise (one input and one output channel per group), any code type ----
 * 16 channels at a time: a tap's 16 input bytes are widened to s16, two taps are interleaved
 * word by word (vpunpckl/hwd) so vpmaddwd gives, per channel, w[t0]*x[t0] + w[t1]*x[t1] in s32:
 * exact for 8-bit codes too. The unpack splits channels into vector A = {0-3, 8-11} and
 * B = {4-7, 12-15}; codes and requantisation params are packed in that order, and vpackssdw
 * of A and B puts the channels back in order. The cluster scale (one per channel) multiplies
 * the tap sum at the end (vpmulld, int32 wrap-around like the reference). */
typedef struct dw_hdr { int32_t nblk, ntp; int64_t blk_bytes; } dw_hdr;
#define DW_HDR 64

static int dw_chan(int v, int m) { return (m / 4) * 8 + v * 4 + m % 4; }   /* vector v, s32 lane m */

static size_t dw_packed_size(const tern_qconv *c) {
    const int nblk = (c->cout + NR - 1) / NR, ntp = (c->kh * c->kw + 1) / 2;
    return DW_HDR + (size_t)nblk * (PARAM_BYTES + (size_t)ntp * 64 + 64);
}

static void dw_pack(const tern_qconv *c, void *packed) {
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
}

static size_t dw_scratch_size(const tern_qconv *c, int w) {
    return A64((size_t)c->kh * c->kw * sizeof(void *)) + A64((size_t)c->kh * sizeof(void *)) +
           A64((size_t)n_slots(c) * sizeof(int)) + (size_t)(n_slots(c) + 1) * A64((size_t)row_w(c, w) * c->cin + 64);
}

static inline __m256i dw_widen(const uint8_t *p, int sgn) {
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    return sgn ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b);
}

static void dw_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                   uint8_t *y, int oy0, int oy1, void *scratch) {
    const dw_hdr *H = packed;
    const int ow = tern_qconv_out_w(c, w), khw = c->kh * c->kw, cin = c->cin, sgn = c->in_signed;
    const int wp = row_w(c, w), nslot = n_slots(c);
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
                if (!pad_ready) { fill_row(c, KIND_RAW, 0, NULL, w, wp, padrow, rb); pad_ready = 1; }
                rowp[ky] = padrow;
            } else {
                const int s = iy % nslot;
                uint8_t *r = ring + (size_t)s * rb;
                if (slot_iy[s] != iy) { fill_row(c, KIND_RAW, 0, x + (size_t)iy * w * cin, w, wp, r, rb); slot_iy[s] = iy; }
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

const tern_conv_kernel tern_conv_dw_1x16__avx2 = {
    "conv_dw_1x16__avx2", dw_packed_size, dw_pack, dw_scratch_size, dw_run,
};

const tern_conv_kernel tern_conv_t2_3x16__avx2 = {
    "conv_t2_3x16__avx2", avx2_packed_size, avx2_pack, avx2_scratch_size, avx2_run,
};
const tern_conv_kernel tern_conv_t4_3x16__avx2 = {
    "conv_t4_3x16__avx2", avx2_packed_size, avx2_pack, avx2_scratch_size, avx2_run,
};
const tern_conv_kernel tern_conv_w8_3x16__avx2 = {
    "conv_w8_3x16__avx2", avx2_packed_size, avx2_pack, avx2_scratch_size, avx2_run,
};
#endif
