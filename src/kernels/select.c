/* Which kernel runs a given op: the fastest one the ISA level allows that handles it. Every
 * selector is here. Portable file (no ISA flags): it only names kernels, it never calls one. */
#include "kernels/kernels.h"

extern const tern_conv_kernel tern_conv_6x16__avx2, tern_conv_dw_1x16__avx2;
extern const tern_conv_kernel tern_conv_7x32__avx512vnni, tern_conv_dw_1x32__avx512vnni;

const tern_conv_kernel *tern_conv_kernel_select(const tern_qconv *c, enum tern_isa isa) {
    /* depthwise: one input and one output channel per group; the blocked kernels would use one
     * of their 16 output lanes */
    const int depthwise = c->groups > 1 && c->cin == c->groups && c->cout == c->groups;
    if (c->out_wide)   /* int32 logits: the AVX2 blocked kernel or the reference */
        return isa < TERN_ISA_AVX2 || depthwise ? &tern_conv_ref : &tern_conv_6x16__avx2;
    if (isa >= TERN_ISA_AVX512VNNI) return depthwise ? &tern_conv_dw_1x32__avx512vnni : &tern_conv_7x32__avx512vnni;
    if (isa >= TERN_ISA_AVX2) return depthwise ? &tern_conv_dw_1x16__avx2 : &tern_conv_6x16__avx2;
    return &tern_conv_ref;
}

tern_add_fn tern_add_select(enum tern_isa isa) { return isa >= TERN_ISA_AVX2 ? tern_add__avx2 : tern_add_ref; }
tern_max_fn tern_max_select(enum tern_isa isa) { return isa >= TERN_ISA_AVX2 ? tern_max__avx2 : tern_max_ref; }
tern_chansum_fn tern_chansum_select(enum tern_isa isa) { return isa >= TERN_ISA_AVX2 ? tern_chansum__avx2 : tern_chansum_ref; }
