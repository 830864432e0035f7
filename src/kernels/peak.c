#include "kernels/peak.h"

int64_t tern_peak_macs_per_s(enum tern_isa isa) {
    return isa >= TERN_ISA_AVX2 ? tern_peak_macs_per_s__avx2() : 0;
}
