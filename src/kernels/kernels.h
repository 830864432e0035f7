/* Integer kernels. The reference kernels (src/kernels/ref) define every result bit for bit; the
 * ISA kernels (src/kernels/x86/<name>_<isa>.c) must reproduce them exactly.
 *
 * Activations are 8-bit dynamic fixed point stored NHWC (channels last): a tensor is bytes
 * m[h][w][c] per image meaning x = m * 2^-exp, read as uint8 (unsigned tensors) or int8 (signed).
 */
#ifndef TERN_KERNELS_H
#define TERN_KERNELS_H
#include "core/core.h"

enum tern_wtype {               /* weight code range of a conv / fully connected layer */
    TERN_WTYPE_TERNARY = 2,     /* codes in {-1, 0, +1} */
    TERN_WTYPE_INT4 = 4,        /* codes in [-7, 7] */
    TERN_WTYPE_INT8 = 8         /* codes in [-127, 127]; one cluster per output channel */
};

/* One integer convolution (a fully connected layer is a conv over a 1x1 or HxW map).
 *
 * Semantics, for each image, output pixel (oy, ox) and output channel o of group gi:
 *   acc = bias[o]
 *   for each cluster g of o (input channels g*N .. g*N+N-1 of the group, last one shorter):
 *       s = sum over those channels ci and all taps (ky, kx) of w[o][ci][ky][kx] * x(ci, ky, kx)
 *           where x is the input byte at (oy*sh - pad_t + ky*dh, ox*sw - pad_l + kx*dw), or
 *           pad_value[ci] (0 if pad_value is NULL) outside the input
 *       acc += cscale[o][g] * s
 *   m = acc < 0 ? mneg[o] : mpos[o]
 *   v = (int32)(((int64)acc * m + 2^30) >> 31)             arithmetic shift (floor)
 *   if shift[o] > 0: v = (int32)(((int64)v + 2^(shift[o]-1)) >> shift[o])
 *   y = clamp(v, qmin, qmax)                               stored as int8 if qmin < 0, else uint8
 * All of acc/s arithmetic is int32; the quantizer guarantees it cannot overflow (kernels may
 * assume |acc| < 2^30; nothing more is promised about partial sums, so a kernel that keeps them
 * in narrower lanes, e.g. s16, must bound them itself).
 * ReLU is mneg = 0 with qmin = 0; LeakyReLU is mneg = alpha * mpos; Clip is qmin/qmax.
 */
typedef struct tern_qconv {
    int cin, cout, groups;        /* channels in/out (totals); groups divides both */
    int kh, kw, sh, sw, dh, dw;   /* kernel, stride, dilation */
    int pad_t, pad_l, pad_b, pad_r;
    int wtype;                    /* enum tern_wtype */
    int cluster;                  /* N: input channels per cluster, 1 .. cin/groups */
    const int8_t *w;              /* [cout][cin/groups][kh][kw] codes (ONNX OIHW order) */
    const int16_t *cscale;        /* [cout][nclusters] cluster scale mantissas, 0..32767 */
    const int32_t *bias;          /* [cout] at the accumulator's scale */
    const int32_t *mpos, *mneg;   /* [cout] requantisation multipliers, 0 .. 2^31-1 */
    const int8_t *shift;          /* [cout] rounding right shift, 0..31 */
    int qmin, qmax;               /* output clamp, within -128..127 or 0..255 */
    int in_signed;                /* input bytes are int8 (else uint8) */
    const uint8_t *pad_value;     /* [cin] stored byte used for padded taps; NULL means 0 */
    int out_wide;                 /* output is int32 (the logits): clamp to int32, store 4 bytes
                                     per element; the reference and the AVX2 blocked kernels */
} tern_qconv;

static inline int tern_qconv_nclusters(const tern_qconv *c) {
    int cing = c->cin / c->groups;
    return (cing + c->cluster - 1) / c->cluster;
}
static inline int tern_qconv_out_h(const tern_qconv *c, int h) {
    return (h + c->pad_t + c->pad_b - c->dh * (c->kh - 1) - 1) / c->sh + 1;
}
static inline int tern_qconv_out_w(const tern_qconv *c, int w) {
    return (w + c->pad_l + c->pad_r - c->dw * (c->kw - 1) - 1) / c->sw + 1;
}

/* The shared requantisation step (exactly as above). */
static inline int32_t tern_requant(int32_t acc, int32_t mpos, int32_t mneg, int shift, int qmin, int qmax) {
    int64_t p = (int64_t)acc * (acc < 0 ? mneg : mpos);
    int32_t v = (int32_t)((p + ((int64_t)1 << 30)) >> 31);
    if (shift > 0) v = (int32_t)(((int64_t)v + ((int64_t)1 << (shift - 1))) >> shift);
    return v < qmin ? qmin : v > qmax ? qmax : v;
}

/* The residual add fused into a conv's epilogue (see run_add): the add's other input and its
 * parameters as tern_add_fn takes them (lc, lr <= 23, rs <= 30), the conv being one side. */
typedef struct tern_qadd {
    const uint8_t *r;             /* [oh][ow][cout] residual of this image */
    int r_signed;                 /* r is int8 (else uint8) */
    int lc, lr, rs;               /* left shifts of the conv value and of r; rounding right shift */
    int qmin, qmax;               /* clamp of the sum; y is int8 if qmin < 0, else uint8 */
} tern_qadd;

/* A conv kernel variant. Weights are packed once at load time into the layout the kernel wants.
 * run() computes output rows [oy0, oy1) of one image: x is that image's input (h x w x cin bytes,
 * NHWC), y that image's output (oh x ow x cout bytes). It never allocates: scratch has
 * scratch_size(c, w) bytes, 64-byte aligned, private to the calling thread. */
typedef struct tern_conv_kernel {
    const char *name;                                   /* e.g. "conv_6x16__avx2" */
    size_t (*packed_size)(const tern_qconv *c);
    enum tern_status (*pack)(const tern_qconv *c, void *packed);  /* packed: 64-byte aligned; fails only
                                                                     on a failed pack-time allocation */
    size_t (*scratch_size)(const tern_qconv *c, int w);
    void (*run)(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                uint8_t *y, int oy0, int oy1, void *scratch);
    /* Optional (NULL: not offered): run() fused with a residual add that reads the conv's output,
     * with exactly the results of run() into y followed by tern_add_ref over the rows written:
     *   y = clamp(rshift_round((conv << a->lc) + (r << a->lr), a->rs), a->qmin, a->qmax)
     * where conv is the conv's own 8-bit output value (after its qmin/qmax) and r the residual
     * (a->r: this image's oh x ow x cout bytes, same layout as y). Used by the executor when the
     * add is the conv output's only reader; the conv's own output is then never stored. */
    void (*run_add)(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                    uint8_t *y, int oy0, int oy1, void *scratch, const struct tern_qadd *a);
} tern_conv_kernel;

/* The best kernel for this conv at the given ISA level (falls back to the reference). */
const tern_conv_kernel *tern_conv_kernel_select(const tern_qconv *c, enum tern_isa isa);
extern const tern_conv_kernel tern_conv_ref;            /* scalar reference, any conv */

/* Residual add of two 8-bit tensors (n elements each, same layout):
 *   y[i] = clamp(rshift_round((a[i] << la) + (b[i] << lb), rs), qmin, qmax)
 * with a/b read as int8 when a_signed/b_signed, else uint8, rshift_round(v, s) = (v + 2^(s-1)) >> s
 * (v for s = 0), in int32 (la, lb <= 23, rs <= 30). y is int8 if qmin < 0, else uint8. */
typedef void (*tern_add_fn)(const uint8_t *a, int a_signed, const uint8_t *b, int b_signed, uint8_t *y, size_t n,
                            int la, int lb, int rs, int qmin, int qmax);
void tern_add_ref(const uint8_t *a, int a_signed, const uint8_t *b, int b_signed, uint8_t *y, size_t n,
                  int la, int lb, int rs, int qmin, int qmax);
void tern_add__avx2(const uint8_t *a, int a_signed, const uint8_t *b, int b_signed, uint8_t *y, size_t n,
                    int la, int lb, int rs, int qmin, int qmax);
tern_add_fn tern_add_select(enum tern_isa isa);

/* Element-wise running maximum for max pooling: d[i] = max(d[i], s[i]) over n 8-bit elements,
 * compared as int8 when is_signed, else as uint8. */
typedef void (*tern_max_fn)(uint8_t *d, const uint8_t *s, size_t n, int is_signed);
void tern_max_ref(uint8_t *d, const uint8_t *s, size_t n, int is_signed);
void tern_max__avx2(uint8_t *d, const uint8_t *s, size_t n, int is_signed);
tern_max_fn tern_max_select(enum tern_isa isa);

/* Per-channel sums over the npix pixels of an NHWC image of c channels (global average pool):
 * sum[ch] = sum over p of x[p*c + ch], bytes read as int8 when is_signed, else uint8, in int32
 * (wrapping, as the reference's int64 sum cast to int32). */
typedef void (*tern_chansum_fn)(const uint8_t *x, int is_signed, size_t npix, int c, int32_t *sum);
void tern_chansum_ref(const uint8_t *x, int is_signed, size_t npix, int c, int32_t *sum);
void tern_chansum__avx2(const uint8_t *x, int is_signed, size_t npix, int c, int32_t *sum);
tern_chansum_fn tern_chansum_select(enum tern_isa isa);

/* 2x2 stride-2 max pool without padding on one NHWC image whose C is a multiple of 16:
 * y[oy][ox][c] = max of x[2oy+dy][2ox+dx][c]. Same results as the generic pool. */
void tern_maxpool2x2__avx2(const uint8_t *x, int W, int C, uint8_t *y, int OH, int OW, int is_signed);

#endif
