/* The machine's measured peak for the integer instruction the fast kernels rely on, so benchmarks
 * can report a layer's speed as a share of it (measured, not assumed from a datasheet). */
#ifndef TERN_PEAK_H
#define TERN_PEAK_H
#include "core/core.h"
/* 8-bit multiply-accumulates per second of one core for the active ISA: for AVX2, independent
 * vpmaddubsw (32 u8 x s8 products each) at full issue rate. 0 if no fast ISA. Takes ~0.2 s. */
int64_t tern_peak_macs_per_s(enum tern_isa isa);
int64_t tern_peak_macs_per_s__avx2(void);
#endif
