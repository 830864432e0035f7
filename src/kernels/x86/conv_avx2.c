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
 * Tiles: 16 output channels x up to 6 output pixels. Weights are packed per block of 16 output
 * channels, steps in the order the kernel walks them, each segment followed by its scales, so a
 * block is one sequential stream. Activations are NHWC so a step's 4 bytes are contiguous; there
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
#include "kernels/kernels.h"
#include <immintrin.h>
#include <limits.h>
#include <string.h>

/* conv_avx512vnni.c includes this file with TERN_CONV_VNNI 1 to share the planning, packing and
 * row copies; it keeps the row-by-row driver (a ring of padded rows, avx2_run below #else) and
 * requant8 with its parameter layout (P_*). There vpdpbusd sums all 4 bytes of a step into one
 * s32 lane: no s16 bound (one segment per cluster), no lane halves (no N=2 or cluster-pair
 * layouts), and 8-bit codes take the byte path too. */
#ifndef TERN_CONV_VNNI
#define TERN_CONV_VNNI 0
#endif

enum { KIND_MADDUBS = 0, KIND_MADD16 = 1, KIND_RAW = 2 };   /* RAW: rows copied as they are */
enum { NR = 16 };   /* output channels per block */
/* Per block of 16 output channels: int32 bias[16] (signed-input correction folded in), mpos[16],
 * mneg[16], cfix[16]; then int64 rnd[16], tsh[16] in "vector order": for each group of 8
 * channels, the 4 even channels then the 4 odd ones (the lanes vpmuldq sees). See requant8. */
enum { P_BIAS = 0, P_MPOS = 16, P_MNEG = 32, P_CFIX = 48, P_RND = 64, P_TSH = 96 };  /* int32 units */
#define PARAM_BYTES (128 * 4)
/* The AVX2 blocked kernels' parameters instead (int32 units; see rq8): per lane d (vector d/8,
 * lane d%8) bias, mpos, mneg, the sravd count; per vpmuldq half (even lanes E, odd lanes O) the
 * multipliers in the even dwords, the 64-bit rounding constants and the sh = 0 left shifts;
 * then flags for the block (Q_F_*). */
enum { Q_BIAS = 0, Q_ME = 16, Q_MO = 32, Q_NE = 48, Q_NO = 64, Q_RE = 80, Q_RO = 96, Q_SH = 112, Q_LE = 128,
       Q_LO = 144, Q_FLAGS = 160 };
enum { Q_F_BLEND = 1, Q_F_SH0 = 2, Q_F_BIAS_IN_R = 4 };
#define QPARAM_BYTES (176 * 4)
#define BLK_PARAM (TERN_CONV_VNNI ? PARAM_BYTES : QPARAM_BYTES)

/* Output channel (within the block) that lane d of the two accumulator vectors holds. The AVX2
 * kernels put channels 0-3 and 8-11 in vector 0, 4-7 and 12-15 in vector 1, so that vpackssdw
 * of the two gives the 16 channels in order; the VNNI tile keeps them in order. */
static inline int lane_chan(int d) {
    if (TERN_CONV_VNNI) return d;
    const int v = d / 8, l = d % 8;
    return (l / 4) * 8 + v * 4 + l % 4;
}

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

typedef struct pk_step {
    int32_t tap, cb;           /* tap = ky*kw+kx; cb: first channel in group */
    int32_t dy, dx;            /* input rows (ky*dh) and bytes within a row ((kx*dw*cin + cb)*elem) */
} pk_step;

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
    H->blk_bytes = (int64_t)BLK_PARAM + (int64_t)(ns + nseg) * 64;
    H->off_step = A64(sizeof(pk_hdr));
    H->off_seg = H->off_step + A64((size_t)ns * sizeof(pk_step));
    H->off_blk = H->off_seg + A64((size_t)(nseg + 1) * sizeof(int32_t));   /* segment lengths, then 0 */
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
    segn[nseg] = 0;
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups, khw = c->kh * c->kw;
    const int ncl = tern_qconv_nclusters(c), N = c->cluster, per = H->kind == KIND_MADD16 ? 2 : 4;
    const int merged = merged_taps(c), run = merged ? c->kw * cing : cing;
    int maxcb = 0;
    for (int s = 0; s < ns; s++) maxcb = TERN_MAX(maxcb, st[s].cb + per);
    H->pair_n = pair_n(c);
    H->direct_ok = H->kind == KIND_MADDUBS && maxcb <= run && !H->pair_n;
    for (int s = 0; s < ns; s++) {
        st[s].dy = st[s].tap / c->kw * c->dh;
        st[s].dx = ((st[s].tap % c->kw) * c->dw * c->cin + st[s].cb) * H->elem;
    }

    for (int gi = 0; gi < c->groups; gi++)
        for (int b = 0; b < H->ncb; b++) {
            uint8_t *blk = base + H->off_blk + (size_t)(gi * H->ncb + b) * H->blk_bytes;
            int32_t *P = (int32_t *)blk;
            memset(blk, 0, (size_t)H->blk_bytes);
            for (int d = 0; d < NR; d++) {
                const int j = lane_chan(d), oj = b * NR + j;
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
                const int sh = c->shift[o] < 0 ? 0 : c->shift[o] > 31 ? 31 : c->shift[o];  /* contract: 0..31 */
                int64_t *P64 = (int64_t *)blk;
#if TERN_CONV_VNNI
                /* v = floor((acc*m + 2^30 + [s>0] 2^(30+s)) / 2^(31+s)) is both of tern_requant's
                 * rounding steps at once (floor(floor(a/b)+c)/d) == floor((a+cb)/(bd))); adding
                 * 2^62 makes the numerator non-negative so a logical shift is exact, and cfix
                 * removes the 2^(62-31-s) that the bias leaves in the result. */
                const int vj = (d / 8) * 8 + (d % 2) * 4 + (d % 8) / 2;   /* vector order */
                P[P_BIAS + d] = (int32_t)bias;
                P[P_MPOS + d] = c->mpos[o];
                P[P_MNEG + d] = c->mneg[o];
                P[P_CFIX + d] = (int32_t)(uint32_t)(1ull << (31 - sh));
                P64[P_RND / 2 + vj] = (int64_t)((1ull << 62) + (1ull << 30) + (sh > 0 ? 1ull << (30 + sh) : 0));
                P64[P_TSH / 2 + vj] = 31 + sh;
#else
                /* rq8: v = floor(X / 2^(31+s)) with X = acc*m + 2^30 + [s>0] 2^(30+s), both of
                 * tern_requant's rounding steps at once (floor(floor(a/b)+c)/d) == floor((a+cb)/(bd))).
                 * |X| < 2^63, so vpmuldq + vpaddq are exact; the high dword of X (X << 1 when s = 0)
                 * is floor(X / 2^32) (floor(X / 2^31)), and an arithmetic shift by s-1 finishes. */
                const int v = d / 8, l = d % 8, q = Q_FLAGS;
                P[Q_BIAS + d] = (int32_t)bias;
                P[Q_ME + d] = c->mpos[o];
                P[Q_NE + d] = c->mneg[o];
                if (l & 1) { P[Q_MO + d - 1] = c->mpos[o]; P[Q_NO + d - 1] = c->mneg[o]; }   /* even dword below */
                P64[((l & 1) ? Q_RO : Q_RE) / 2 + v * 4 + l / 2] = (int64_t)((1ull << 30) + (sh > 0 ? 1ull << (30 + sh) : 0));
                P64[((l & 1) ? Q_LO : Q_LE) / 2 + v * 4 + l / 2] = sh == 0;
                P[Q_SH + d] = sh > 0 ? sh - 1 : 0;
                /* mneg matters unless it equals mpos, or is 0 under a clamp at >= 0: acc < 0 times
                 * mpos >= 0 gives v <= 0 as mneg = 0 gives v = 0, and both clamp to qmin (a wide
                 * output has no such clamp) */
                if (c->mneg[o] != c->mpos[o] && !(c->mneg[o] == 0 && c->mpos[o] >= 0 && c->qmin >= 0 && !c->out_wide))
                    P[q] |= Q_F_BLEND;
                if (sh == 0) P[q] |= Q_F_SH0;
#endif
            }
#if !TERN_CONV_VNNI
            if (!(P[Q_FLAGS] & Q_F_BLEND)) {
                /* one multiplier per lane: acc*m + R == (acc - bias)*m + (bias*m + R), so the bias
                 * goes into the 64-bit constant and the kernel's sums need no bias added (they
                 * stay within int32: the contract's |acc| < 2^30 and the quantizer's bias) */
                int64_t *P64 = (int64_t *)blk;
                for (int d = 0; d < NR; d++) {
                    const int v = d / 8, l = d % 8;
                    P64[((l & 1) ? Q_RO : Q_RE) / 2 + v * 4 + l / 2] += (int64_t)P[Q_BIAS + d] * P[Q_ME + d];
                }
                P[Q_FLAGS] |= Q_F_BIAS_IN_R;
            }
#endif
            uint8_t *q = blk + BLK_PARAM;
            int s = 0;
            for (int sg = 0; sg < nseg; sg++) {
                const int s0 = s;
                for (; s < s0 + segn[sg]; s++, q += 64)
                    for (int d = 0; d < NR; d++) {
                        const int oj = b * NR + lane_chan(d);
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
                            if (H->kind == KIND_MADDUBS) ((int8_t *)q)[d * 4 + k] = code;
                            else ((int16_t *)q)[d * 2 + k] = code;
                        }
                    }
                /* the segment's scales */
                for (int d = 0; d < NR; d++) {
                    const int oj = b * NR + lane_chan(d);
                    if (oj >= coutg) continue;
                    const int16_t *cs = c->cscale + (size_t)(gi * coutg + oj) * ncl;
                    if (H->kind == KIND_MADDUBS && !TERN_CONV_VNNI)
                        for (int h = 0; h < 2; h++) {
                            const int g = cl[2 * s0 + h];
                            ((int16_t *)q)[d * 2 + h] = g < 0 ? 0 : cs[g];
                        }
                    else
                        ((int32_t *)q)[d] = cs[cl[2 * s0]];
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

/* n bytes of value b: the short runs of a row (padding columns, slack) without library calls */
static inline void fill_bytes(uint8_t *d, size_t n, uint8_t b) {
    const __m256i v = _mm256_set1_epi8((char)b);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) _mm256_storeu_si256((__m256i *)(d + i), v);
    if (i + 16 <= n) { _mm_storeu_si128((__m128i *)(d + i), _mm256_castsi256_si128(v)); i += 16; }
    for (; i < n; i++) d[i] = b;
}

static void fill_row(const tern_qconv *c, int kind, int pn, const uint8_t *xr, int w, int wp, uint8_t *dst, size_t bytes) {
    const int cin = c->cin, elem = kind == KIND_MADD16 ? 2 : 1;
    const size_t px = (size_t)cin * elem, used = (size_t)wp * px;
    /* columns -pad_l .. wp-1-pad_l; the inside part is one contiguous run of the input row */
    const int in0 = xr ? TERN_MIN(TERN_MAX(c->pad_l, 0), wp) : wp;            /* first inside column */
    const int in1 = xr ? TERN_MAX(TERN_MIN(w + c->pad_l, wp), in0) : wp;      /* end of inside */
    if (in1 > in0) put_pixels(kind, c->in_signed, pn, dst + (size_t)in0 * px, xr + (size_t)(in0 - c->pad_l) * cin, (size_t)(in1 - in0) * cin);
    if (c->pad_value) {
        for (int j = 0; j < wp; j++)
            if (j < in0 || j >= in1) put_pixels(kind, c->in_signed, pn, dst + (size_t)j * px, c->pad_value, (size_t)cin);
    } else {   /* a zero byte is 0x80 once xor'ed (signed input) */
        const uint8_t z = kind == KIND_MADDUBS && c->in_signed ? 0x80 : 0;
        fill_bytes(dst, (size_t)in0 * px, z);
        fill_bytes(dst + (size_t)in1 * px, (size_t)(wp - in1) * px, z);
    }
    fill_bytes(dst + used, bytes - used, 0);
}

static inline __m256i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* tern_requant on 8 lanes (channels j8..j8+7 of the block's params), P_* layout: the VNNI tile
 * and the depthwise kernel (the blocked AVX2 kernels use rq8). */
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

/* the VNNI tile's view of a row (see vnni_pixels) */
typedef struct run_ctx {
    const uint8_t *const *sp;  /* per step: address of its bytes for pixel 0 of the row */
    const int32_t *segn;
    int nseg;
    int cout, out_signed;
    __m256i qmin, qmax;
} run_ctx;

#if !TERN_CONV_VNNI   /* the AVX2 blocked kernels: bands of rows, tiles, epilogue */

/* Bands: the output rows of a run() call are done in bands of up to band_rows(); a band's input
 * rows, padded, xor'ed, pair-interleaved or widened as the kernel needs, are copied one after
 * the other into scratch, so every output pixel of the band is at a fixed offset from the
 * band's step pointers and a tile takes its pixels across row ends. Rows already in the right
 * form (unsigned, no padding, no interleave) are read in place. */
enum { BAND_BYTES = 32 * 1024, MAXPX = 6 };

static int band_rows(const tern_qconv *c, int w) {
    const int span = (c->kh - 1) * c->dh + 1, fit = (int)(BAND_BYTES / row_bytes(c, w));
    return fit > span ? (fit - span) / c->sh + 1 : 1;
}
static int band_in_rows(const tern_qconv *c, int rows) { return (rows - 1) * c->sh + (c->kh - 1) * c->dh + 1; }

/* Entries of a band's tile offset table: 6 per tile, tiles of 3 pixels or more. */
static size_t tab_entries(const tern_qconv *c, int w) {
    return (size_t)MAXPX * (((size_t)band_rows(c, w) * tern_qconv_out_w(c, w) + 2) / 3);
}

static size_t avx2_scratch_size(const tern_qconv *c, int w) {
    int ns, nseg;
    plan(c, NULL, NULL, NULL, &ns, &nseg);
    return A64((size_t)ns * sizeof(void *)) + A64(MAXPX * 2 * sizeof(__m256i)) + A64(tab_entries(c, w) * sizeof(int32_t)) +
           (size_t)band_in_rows(c, band_rows(c, w)) * row_bytes(c, w);
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
 * comment in avx2_pack derives it. blend: mneg differs from mpos; sh0: some shift is 0. */
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
    const int wp = row_w(c, w), B = band_rows(c, w);
    const size_t rb = row_bytes(c, w);
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
                fill_row(c, H->kind, H->pair_n, iy < 0 || iy >= h ? NULL : x + (size_t)iy * w * cin, w, wp, band + k * rb, rb);
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

#else
/* conv_avx512vnni.c provides the tiles; rows go through a ring of padded rows */
static void vnni_pixels(const tern_qconv *c, const pk_hdr *H, run_ctx *X, int npix, ptrdiff_t pstride, uint8_t *yrow);
#define do_pixels vnni_pixels

static size_t avx2_scratch_size(const tern_qconv *c, int w) {
    int ns, nseg;
    plan(c, NULL, NULL, NULL, &ns, &nseg);
    const int khw = c->kh * c->kw;
    return A64((size_t)ns * sizeof(void *)) + A64((size_t)khw * sizeof(void *)) +
           A64((size_t)c->kh * sizeof(void *)) + A64((size_t)n_slots(c) * sizeof(int)) +
           (size_t)(n_slots(c) + 1) * row_bytes(c, w);
}

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

#endif

/* run_add for kernels without a fused epilogue: the conv rows, then the add over them in place
 * (exactly the unfused sequence; tern_add__avx2 is AVX2, which every caller here has). */
#define RUN_THEN_ADD(name, run)                                                                        \
    static void name(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w, uint8_t *y, \
                     int oy0, int oy1, void *scratch, const tern_qadd *a) {                           \
        run(c, packed, x, h, w, y, oy0, oy1, scratch);                                                 \
        const size_t row = (size_t)tern_qconv_out_w(c, w) * c->cout, off = (size_t)oy0 * row;         \
        if (oy1 > oy0)                                                                                 \
            tern_add__avx2(y + off, c->qmin < 0, a->r + off, a->r_signed, y + off, (size_t)(oy1 - oy0) * row, \
                           a->lc, a->lr, a->rs, a->qmin, a->qmax);                                     \
    }
#if TERN_CONV_VNNI
RUN_THEN_ADD(avx2_run_add, avx2_run)
#else
RUN_THEN_ADD(run_then_add, avx2_run)
#endif

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

RUN_THEN_ADD(dw_run_add, dw_run)

const tern_conv_kernel tern_conv_dw_1x16__avx2 = {
    "conv_dw_1x16__avx2", dw_packed_size, dw_pack, dw_scratch_size, dw_run, dw_run_add,
};

const tern_conv_kernel tern_conv_t2_6x16__avx2 = {
    "conv_t2_6x16__avx2", avx2_packed_size, avx2_pack, avx2_scratch_size, avx2_run, avx2_run_add,
};
const tern_conv_kernel tern_conv_t4_6x16__avx2 = {
    "conv_t4_6x16__avx2", avx2_packed_size, avx2_pack, avx2_scratch_size, avx2_run, avx2_run_add,
};
const tern_conv_kernel tern_conv_w8_6x16__avx2 = {
    "conv_w8_6x16__avx2", avx2_packed_size, avx2_pack, avx2_scratch_size, avx2_run, avx2_run_add,
};
#endif
