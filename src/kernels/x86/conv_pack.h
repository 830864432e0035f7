/* The x86 conv kernels' shared packing: what conv_pack_avx2.c writes at load time and the
 * kernels (conv_avx2.c: AVX2 tiles; conv_avx512vnni.c: vpdpbusd tiles) read.
 *
 * A "step" reads 4 input bytes (4 consecutive channels at one tap, broadcast to all lanes) and
 * multiplies them by 4 codes of each of 16 output channels (2 channels of s16-widened input for
 * the AVX2 8-bit path). Weights are packed per block of 16 output channels, steps in the order
 * the kernel walks them, each segment (part of a cluster sharing one scale) followed by its
 * scales, so a block is one sequential stream: parameters, then per segment its 64-byte code
 * vectors and a 64-byte scale vector. The header says how (kind, steps, segments) and holds the
 * per-step (tap, channel, row and byte offset) table; rows of input are copied once into a
 * padded form (padding, the signed xor 0x80, cluster-pair interleave or s16 widening applied).
 * Packing is done for the AVX2 layout (vnni = 0: s16 segment bounds, lane halves, Q_* params)
 * or the VNNI one (vnni = 1: one segment per cluster, channels in lane order, P_* params).
 * Signed input: bytes are xor'ed with 0x80 when rows are copied (x + 128, unsigned), and
 * -128 * sum_g a_g * sum(codes of g) is folded into the bias at pack time. */
#ifndef TERN_CONV_PACK_H
#define TERN_CONV_PACK_H
#include "kernels/kernels.h"
#include <immintrin.h>
#include <limits.h>
#include <string.h>

enum { KIND_MADDUBS = 0, KIND_MADD16 = 1, KIND_RAW = 2 };   /* RAW: rows copied as they are */
enum { NR = 16 };   /* output channels per block */
/* Per block of 16 output channels: int32 bias[16] (signed-input correction folded in), mpos[16],
 * mneg[16], cfix[16]; then int64 rnd[16], tsh[16] in "vector order", the lanes vpmuldq sees:
 * the depthwise kernel (requant8, ymm): for each group of 8 channels, the 4 even channels then
 * the 4 odd ones; the VNNI kernel (zmm): the 8 even channels, then the 8 odd ones. */
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

typedef struct pk_hdr {
    int32_t kind, elem;        /* elem: bytes per activation in the rows read (1, or 2 widened) */
    int32_t nsteps, nseg;      /* per group (all groups share the plan) */
    int32_t ncb;               /* blocks of 16 output channels per group */
    int32_t direct_ok;         /* no step reads past channel cin-1 of its pixel */
    int32_t pair_n;            /* N if rows are copied with cluster pairs interleaved, else 0 */
    int32_t vnni;              /* packed for the VNNI kernel (else the AVX2 one) */
    int32_t dpw;               /* VNNI: every segment's sum fits s16 (vpdpwssd applies the scale) */
    int32_t blend;             /* VNNI: some channel's mneg matters (requantisation picks m by sign) */
    int32_t pad_;
    int64_t blk_bytes;         /* one block: params, then per segment its steps' codes and scales */
    int64_t off_step, off_seg, off_blk;
} pk_hdr;

typedef struct pk_step {
    int32_t tap, cb;           /* tap = ky*kw+kx; cb: first channel in group */
    int32_t dy, dx;            /* input rows (ky*dh) and bytes within a row ((kx*dw*cin + cb)*elem) */
} pk_step;

#define A64(n) TERN_ALIGN_UP((size_t)(n), (size_t)64)

/* The walk over one group's reduction: steps, their lane clusters and the segments. st/cl/segn
 * may be NULL to count. cl[2*s+h]: cluster of lane half h of step s (-1: none). */
void tern_cpk_plan(const tern_qconv *c, int vnni, pk_step *st, int32_t *cl, int32_t *segn, int *pnsteps, int *pnseg);
size_t tern_cpk_packed_size(const tern_qconv *c, int vnni);
/* Fails (TERN_STATUS_NOMEM, message set) only if its pack-time table cannot be allocated. */
enum tern_status tern_cpk_pack(const tern_qconv *c, int vnni, void *packed);
/* Padded rows: input columns -pad_l .. -pad_l+row_w-1 and 64 bytes of slack, row_bytes each. */
int tern_cpk_row_w(const tern_qconv *c, int w);
size_t tern_cpk_row_bytes(const tern_qconv *c, int w);
int tern_cpk_n_slots(const tern_qconv *c);   /* input rows one output row reads */
/* Copy input row xr (w pixels, or NULL for a row of padding) into a padded row of bytes bytes. */
void tern_cpk_fill_row(const tern_qconv *c, int kind, int pn, const uint8_t *xr, int w, int wp, uint8_t *dst, size_t bytes);

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

#endif
