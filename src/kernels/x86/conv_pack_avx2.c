/* Weight packing and row copies shared by the x86 conv kernels (conv_avx2.c, conv_avx512vnni.c):
 * the plan of steps and segments, the packed layout (conv_pack.h) and the padded input rows.
 * Built with the AVX2 flags; the VNNI kernel calls it at load time and for its row copies. */
#include "kernels/x86/conv_pack.h"

/* Output channel (within the block) that lane d of the two accumulator vectors holds. The AVX2
 * kernels put channels 0-3 and 8-11 in vector 0, 4-7 and 12-15 in vector 1, so that vpackssdw
 * of the two gives the 16 channels in order; the VNNI tile keeps them in order. */
static inline int lane_chan(int vnni, int d) {
    if (vnni) return d;
    const int v = d / 8, l = d % 8;
    return (l / 4) * 8 + v * 4 + l % 4;
}

static int max_seg_steps(const tern_qconv *c, int vnni) {
    /* VNNI: a segment's sum must fit s16 for vpdpwssd to apply its scale (conv_avx512vnni.c):
     * ternary <= 32 steps (128 products of 255 * |1|), 4-bit <= 4 steps (16 products of 255 * 7
     * = 28560); 8-bit codes: a whole cluster, scaled by vpmulld */
    if (vnni) return c->wtype == TERN_WTYPE_TERNARY ? 32 : c->wtype == TERN_WTYPE_INT4 ? 4 : INT_MAX;
    return c->wtype == TERN_WTYPE_TERNARY ? 64 : c->wtype == TERN_WTYPE_INT4 ? 9 : INT_MAX;
}
static int kind_of(const tern_qconv *c, int vnni) {
    if (vnni) return KIND_MADDUBS;
    return c->wtype == TERN_WTYPE_INT8 ? KIND_MADD16 : KIND_MADDUBS;
}

/* Single-cluster convs without horizontal dilation (the 8-bit first conv, --cluster all): the
 * kw taps of one kernel row are kw*cin contiguous elements of the row, so steps run across
 * them (3x3 over 3 channels, s16 pairs: 15 steps instead of 18). Only when it saves steps. */
static int merged_taps(const tern_qconv *c, int vnni) {
    const int per = kind_of(c, vnni) == KIND_MADD16 ? 2 : 4, cing = c->cin / c->groups;
    if (c->groups != 1 || tern_qconv_nclusters(c) != 1 || c->dw != 1 || c->kw < 2) return 0;
    return (c->kw * cing + per - 1) / per < c->kw * ((cing + per - 1) / per);
}

/* Cluster pairs (N = 4 or 8, cin per group a multiple of 2N): rows are copied with each 2N-channel
 * block reordered so that dword i holds channels 2i,2i+1 of cluster g then 2i,2i+1 of cluster g+1.
 * A step then feeds g into lane half 0 and g+1 into half 1, and one vpmaddwd flush serves both
 * clusters: half the flushes, for the price of a vpshufb per 32 bytes when rows are copied.
 * Only when the pair's steps still fit one segment (s16 bound) and clusters are short. */
static int pair_n(const tern_qconv *c, int vnni) {
    const int N = c->cluster, cing = c->cin / c->groups;
    if (vnni || kind_of(c, vnni) != KIND_MADDUBS || (N != 4 && N != 8) || cing % (2 * N) || merged_taps(c, vnni)) return 0;
    return 2 * (c->kh * c->kw * N / 4) <= max_seg_steps(c, vnni) ? N : 0;
}

/* Where byte k of a paired step at channel offset cb comes from: the channel of the group. */
static int pair_src(int N, int cb, int k) {
    const int blk = cb / (2 * N) * (2 * N), i = (cb % (2 * N)) / 4;
    return blk + (k < 2 ? 2 * i + k : N + 2 * i + k - 2);
}

/* The walk over one group's reduction: steps, their lane clusters and the segments.
 * st/cl/segn may be NULL to count. cl[2*s+h]: cluster of lane half h of step s (-1: none). */
void tern_cpk_plan(const tern_qconv *c, int vnni, pk_step *st, int32_t *cl, int32_t *segn, int *pnsteps, int *pnseg) {
    const int kind = kind_of(c, vnni), cing = c->cin / c->groups, N = c->cluster;
    const int ncl = tern_qconv_nclusters(c), khw = c->kh * c->kw, maxs = max_seg_steps(c, vnni);
    int ns = 0, nseg = 0;
#define EMIT(t_, cb_, a_, b_)                                                  \
    do {                                                                       \
        if (st) { st[ns].tap = (t_); st[ns].cb = (cb_); cl[2 * ns] = (a_); cl[2 * ns + 1] = (b_); } \
        ns++;                                                                  \
    } while (0)
#define CLOSE(n_) do { if (segn) segn[nseg] = (n_); nseg++; } while (0)
    if (merged_taps(c, vnni)) {
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
    } else if (pair_n(c, vnni)) {
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
    } else if (kind == KIND_MADDUBS && N == 2 && !vnni) {
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

static void layout(const tern_qconv *c, int vnni, pk_hdr *H) {
    int ns, nseg;
    tern_cpk_plan(c, vnni, NULL, NULL, NULL, &ns, &nseg);
    const int coutg = c->cout / c->groups;
    H->kind = kind_of(c, vnni);
    H->elem = H->kind == KIND_MADD16 ? 2 : 1;
    H->nsteps = ns;
    H->nseg = nseg;
    H->ncb = (coutg + NR - 1) / NR;
    H->direct_ok = 0;
    H->vnni = vnni;
    H->blk_bytes = (int64_t)(vnni ? PARAM_BYTES : QPARAM_BYTES) + (int64_t)(ns + nseg) * 64;
    H->off_step = A64(sizeof(pk_hdr));
    H->off_seg = H->off_step + A64((size_t)ns * sizeof(pk_step));
    H->off_blk = H->off_seg + A64((size_t)(nseg + 1) * sizeof(int32_t));   /* segment lengths, then 0 */
}

size_t tern_cpk_packed_size(const tern_qconv *c, int vnni) {
    pk_hdr H;
    layout(c, vnni, &H);
    return (size_t)H.off_blk + (size_t)c->groups * H.ncb * (size_t)H.blk_bytes;
}

enum tern_status tern_cpk_pack(const tern_qconv *c, int vnni, void *packed) {
    pk_hdr *H = packed;
    uint8_t *base = packed;
    memset(H, 0, sizeof *H);
    layout(c, vnni, H);
    pk_step *st = (pk_step *)(base + H->off_step);
    int32_t *segn = (int32_t *)(base + H->off_seg);
    int32_t *cl = tern_malloc(sizeof(int32_t) * 2 * (size_t)(H->nsteps ? H->nsteps : 1)); /* pack time only */
    if (!cl) return tern_error_prefix(TERN_STATUS_NOMEM, "packing the weights of a %dx%d conv %d->%d", c->kh, c->kw, c->cin, c->cout);
    int ns, nseg;
    tern_cpk_plan(c, vnni, st, cl, segn, &ns, &nseg);
    segn[nseg] = 0;
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups, khw = c->kh * c->kw;
    const int ncl = tern_qconv_nclusters(c), N = c->cluster, per = H->kind == KIND_MADD16 ? 2 : 4;
    const int merged = merged_taps(c, vnni), run = merged ? c->kw * cing : cing;
    int maxcb = 0;
    for (int s = 0; s < ns; s++) maxcb = TERN_MAX(maxcb, st[s].cb + per);
    H->pair_n = pair_n(c, vnni);
    H->dpw = vnni && c->wtype != TERN_WTYPE_INT8;
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
                const int j = lane_chan(vnni, d), oj = b * NR + j;
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
                if (vnni) {
                    /* v = floor((acc*m + 2^30 + [s>0] 2^(30+s)) / 2^(31+s)) is both of tern_requant's
                     * rounding steps at once (floor(floor(a/b)+c)/d) == floor((a+cb)/(bd))); adding
                     * 2^62 makes the numerator non-negative so a logical shift is exact, and cfix
                     * removes the 2^(62-31-s) that the bias leaves in the result. */
                    const int vj = (d % 2) * 8 + d / 2;   /* zmm vector order: even channels, then odd */
                    P[P_BIAS + d] = (int32_t)bias;
                    P[P_MPOS + d] = c->mpos[o];
                    P[P_MNEG + d] = c->mneg[o];
                    P[P_CFIX + d] = (int32_t)(uint32_t)(1ull << (31 - sh));
                    P64[P_RND / 2 + vj] = (int64_t)((1ull << 62) + (1ull << 30) + (sh > 0 ? 1ull << (30 + sh) : 0));
                    P64[P_TSH / 2 + vj] = 31 + sh;
                    /* mneg matters unless it equals mpos, or is 0 under a clamp at >= 0 (as below) */
                    if (c->mneg[o] != c->mpos[o] && !(c->mneg[o] == 0 && c->mpos[o] >= 0 && c->qmin >= 0 && !c->out_wide))
                        H->blend = 1;
                } else {
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
                }
            }
            if (!vnni && !(P[Q_FLAGS] & Q_F_BLEND)) {
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
            uint8_t *q = blk + (vnni ? PARAM_BYTES : QPARAM_BYTES);
            int s = 0;
            for (int sg = 0; sg < nseg; sg++) {
                const int s0 = s;
                for (; s < s0 + segn[sg]; s++, q += 64)
                    for (int d = 0; d < NR; d++) {
                        const int oj = b * NR + lane_chan(vnni, d);
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
                    const int oj = b * NR + lane_chan(vnni, d);
                    if (oj >= coutg) continue;
                    const int16_t *cs = c->cscale + (size_t)(gi * coutg + oj) * ncl;
                    if (H->kind == KIND_MADDUBS && !vnni)
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
    return TERN_STATUS_OK;
}

/* Rows: the padded row covers input columns -pad_l .. -pad_l+wp-1 and has 64 bytes of slack so a
 * step may read up to 3 elements past the last channel. */
int tern_cpk_row_w(const tern_qconv *c, int w) {
    const int ow = tern_qconv_out_w(c, w);
    return (ow - 1) * c->sw + (c->kw - 1) * c->dw + 1;
}
size_t tern_cpk_row_bytes(const tern_qconv *c, int w) {
    const size_t elem = c->wtype == TERN_WTYPE_INT8 ? 2 : 1;
    return A64((size_t)tern_cpk_row_w(c, w) * c->cin * elem + 64);
}
int tern_cpk_n_slots(const tern_qconv *c) { return (c->kh - 1) * c->dh + 1; }

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

void tern_cpk_fill_row(const tern_qconv *c, int kind, int pn, const uint8_t *xr, int w, int wp, uint8_t *dst, size_t bytes) {
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
