/* The machine's measured peak for the integer instruction the fast kernels rely on, so benchmarks
 * can report a layer's speed as a share of it (measured, not assumed from a datasheet). */
#ifndef TERN_PEAK_H
#define TERN_PEAK_H
#include "core/core.h"
/* 8-bit multiply-accumulates per second of one core for the given ISA level: for AVX-512 VNNI,
 * independent vpdpbusd zmm (64 u8 x s8 products each); for AVX2, vpmaddubsw ymm (32 each), both
 * at full issue rate. 0 if no fast ISA. Takes ~0.2 s. */
int64_t tern_peak_macs_per_s(enum tern_isa isa);
/* The instruction that peak is of, e.g. "vpdpbusd zmm" ("-" without a fast ISA). */
const char *tern_peak_name(enum tern_isa isa);
int64_t tern_peak_macs_per_s__avx2(void);
int64_t tern_peak_macs_per_s__avx512vnni(void);
#endif
