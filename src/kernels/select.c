/* Which conv kernel runs a given conv: the fastest one the ISA level allows that handles it.
 * Portable file (no ISA flags): it only names kernels, it never calls one. */
#include "kernels/kernels.h"

extern const tern_conv_kernel tern_conv_t2_6x16__avx2, tern_conv_t4_6x16__avx2, tern_conv_w8_6x16__avx2,
    tern_conv_dw_1x16__avx2;
extern const tern_conv_kernel tern_conv_t2_8x16__avx512vnni, tern_conv_t4_8x16__avx512vnni,
    tern_conv_w8_8x16__avx512vnni;

const tern_conv_kernel *tern_conv_kernel_select(const tern_qconv *c, enum tern_isa isa) {
    /* depthwise: one input and one output channel per group; the blocked kernels would use one
     * of their 16 output lanes */
    const int depthwise = c->groups > 1 && c->cin == c->groups && c->cout == c->groups;
    if (c->out_wide) {   /* int32 logits: the AVX2 blocked kernels or the reference */
        if (isa < TERN_ISA_AVX2 || depthwise) return &tern_conv_ref;
        return c->wtype == TERN_WTYPE_TERNARY ? &tern_conv_t2_6x16__avx2 : c->wtype == TERN_WTYPE_INT4 ? &tern_conv_t4_6x16__avx2
                                                                                                     : &tern_conv_w8_6x16__avx2;
    }
    if (isa >= TERN_ISA_AVX512VNNI && !depthwise) {
        /* written for AVX-512 VNNI but only emulated where it was developed: see its file */
        switch (c->wtype) {
        case TERN_WTYPE_TERNARY: return &tern_conv_t2_8x16__avx512vnni;
        case TERN_WTYPE_INT4: return &tern_conv_t4_8x16__avx512vnni;
        case TERN_WTYPE_INT8: return &tern_conv_w8_8x16__avx512vnni;
        }
    }
    if (isa >= TERN_ISA_AVX2) {
        if (depthwise) return &tern_conv_dw_1x16__avx2;
        switch (c->wtype) {
        case TERN_WTYPE_TERNARY: return &tern_conv_t2_6x16__avx2;
        case TERN_WTYPE_INT4: return &tern_conv_t4_6x16__avx2;
        case TERN_WTYPE_INT8: return &tern_conv_w8_6x16__avx2;
        }
    }
    return &tern_conv_ref;
}
