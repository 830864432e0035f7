/* Scalar reference convolution: kernels.h's semantics written out literally, one output value at
 * a time. Every ISA kernel is tested bit for bit against this. Clarity over speed, except that it
 * is also the fallback for convs no fast kernel handles, so the obvious waste (re-deriving indices
 * per multiply) is avoided.
 *
 * The int32 sums are done in uint32: the quantizer promises they never overflow, but if a broken
 * model made them, wrapping (what every SIMD kernel does) is defined here too, rather than UB. */
#include "kernels/kernels.h"
#include <string.h>

static size_t ref_packed_size(const tern_qconv *c) { (void)c; return 0; }
static enum tern_status ref_pack(const tern_qconv *c, void *packed) { (void)c; (void)packed; return TERN_STATUS_OK; }
static size_t ref_scratch_size(const tern_qconv *c, int w) { (void)c; (void)w; return 0; }

static void ref_run(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                    uint8_t *y, int oy0, int oy1, void *scratch) {
    (void)packed; (void)scratch;
    const int ow = tern_qconv_out_w(c, w);
    const int cing = c->cin / c->groups, coutg = c->cout / c->groups;
    const int ncl = tern_qconv_nclusters(c), N = c->cluster;
    const int khw = c->kh * c->kw;
    for (int oy = oy0; oy < oy1; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int o = 0; o < c->cout; o++) {
                const int gi = o / coutg;
                const int8_t *wo = c->w + (size_t)o * cing * khw;
                uint32_t acc = (uint32_t)c->bias[o];
                for (int g = 0; g < ncl; g++) {
                    const int c0 = g * N, c1 = TERN_MIN(c0 + N, cing);
                    uint32_t s = 0;
                    for (int ci = c0; ci < c1; ci++) {
                        const int cabs = gi * cing + ci;
                        for (int ky = 0; ky < c->kh; ky++) {
                            const int iy = oy * c->sh - c->pad_t + ky * c->dh;
                            for (int kx = 0; kx < c->kw; kx++) {
                                const int ix = ox * c->sw - c->pad_l + kx * c->dw;
                                uint8_t b;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    b = c->pad_value ? c->pad_value[cabs] : 0;
                                else
                                    b = x[((size_t)iy * w + ix) * c->cin + cabs];
                                const int32_t xv = c->in_signed ? (int32_t)(int8_t)b : (int32_t)b;
                                s += (uint32_t)((int32_t)wo[(ci * c->kh + ky) * c->kw + kx] * xv);
                            }
                        }
                    }
                    acc += (uint32_t)(int32_t)c->cscale[(size_t)o * ncl + g] * s;
                }
                const size_t at = ((size_t)oy * ow + ox) * c->cout + o;
                if (c->out_wide) {
                    /* logits: the same requantisation, clamped only to int32; 4 bytes each */
                    const int32_t v = tern_requant((int32_t)acc, c->mpos[o], c->mneg[o], c->shift[o],
                                                   INT32_MIN, INT32_MAX);
                    memcpy(y + at * 4, &v, 4);
                } else {
                    const int32_t v = tern_requant((int32_t)acc, c->mpos[o], c->mneg[o], c->shift[o],
                                                   c->qmin, c->qmax);
                    y[at] = (uint8_t)v;   /* int8 stored as its byte */
                }
            }
}

/* The definition of a fused residual add: the conv rows, then the add over them in place. */
static void ref_run_add(const tern_qconv *c, const void *packed, const uint8_t *x, int h, int w,
                        uint8_t *y, int oy0, int oy1, void *scratch, const tern_qadd *a) {
    TERN_ASSERT(!c->out_wide);
    ref_run(c, packed, x, h, w, y, oy0, oy1, scratch);
    const size_t row = (size_t)tern_qconv_out_w(c, w) * c->cout, off = (size_t)oy0 * row, n = (size_t)(oy1 - oy0) * row;
    if (oy1 > oy0) tern_add_ref(y + off, c->qmin < 0, a->r + off, a->r_signed, y + off, n, a->lc, a->lr, a->rs, a->qmin, a->qmax);
}

const tern_conv_kernel tern_conv_ref = {
    .name = "conv_ref",
    .packed_size = ref_packed_size,
    .pack = ref_pack,
    .scratch_size = ref_scratch_size,
    .run = ref_run,
    .run_add = ref_run_add,
};
