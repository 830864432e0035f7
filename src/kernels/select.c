/* Which conv kernel runs a given conv: the fastest one the ISA level allows that handles it.
 * Portable file (no ISA flags): it only names kernels, it never calls one. */
#include "kernels/kernels.h"

extern const tern_conv_kernel tern_conv_t2_3x16__avx2, tern_conv_t4_3x16__avx2, tern_conv_w8_3x16__avx2,
    tern_conv_dw_1x16__avx2;

const tern_conv_kernel *tern_conv_kernel_select(const tern_qconv *c, enum tern_isa isa) {
    if (c->out_wide) return &tern_conv_ref;   /* int32 logits: reference only (kernels.h) */
    if (isa >= TERN_ISA_AVX2) {
        /* depthwise: one input and one output channel per group; the blocked kernels would use
         * one of their 16 output lanes */
        if (c->groups > 1 && c->cin == c->groups && c->cout == c->groups) return &tern_conv_dw_1x16__avx2;
        switch (c->wtype) {
        case TERN_WTYPE_TERNARY: return &tern_conv_t2_3x16__avx2;
        case TERN_WTYPE_INT4: return &tern_conv_t4_3x16__avx2;
        case TERN_WTYPE_INT8: return &tern_conv_w8_3x16__avx2;
        }
    }
    return &tern_conv_ref;
}
