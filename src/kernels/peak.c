#include "kernels/peak.h"

int64_t tern_peak_macs_per_s(enum tern_isa isa) {
    return isa >= TERN_ISA_AVX512VNNI ? tern_peak_macs_per_s__avx512vnni() : isa >= TERN_ISA_AVX2 ? tern_peak_macs_per_s__avx2() : 0;
}
const char *tern_peak_name(enum tern_isa isa) {
    return isa >= TERN_ISA_AVX512VNNI ? "vpdpbusd zmm" : isa >= TERN_ISA_AVX2 ? "vpmaddubsw ymm" : "-";
}
