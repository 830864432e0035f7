/* Internal core: status and error messages, checked allocation, small helpers.
 * Every fallible internal call returns enum tern_status and, on failure, has set the
 * thread's last-error message with tern_errorf() saying what went wrong and where. */
#ifndef TERN_CORE_H
#define TERN_CORE_H
#include "tern.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Set the thread's last-error message and return st (so: `return tern_errorf(...)`). */
enum tern_status tern_errorf(enum tern_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix the current last-error message with context ("while importing x.onnx: ..."). */
enum tern_status tern_error_prefix(enum tern_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Allocation that sets a TERN_STATUS_NOMEM message on failure; free with free(). */
void *tern_malloc(size_t n);
void *tern_calloc(size_t n, size_t size);
/* 64-byte aligned allocation (SIMD kernels, packed weights); free with free(). */
void *tern_aligned_alloc(size_t n);
char *tern_strdup(const char *s);

/* Read a whole file into memory (adds a trailing NUL, not counted in *len). */
enum tern_status tern_read_file(const char *path, uint8_t **data, size_t *len);

/* Monotonic wall clock in seconds. */
double tern_now(void);

#define TERN_ASSERT(c) \
    do { if (!(c)) { fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)
#define TERN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TERN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TERN_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

/* CPU features, detected once. TERN_ISA=ref|avx2|avx512vnni in the environment forces a level
 * (lower than or equal to what the CPU has; asking for more than the CPU has is an error). */
enum tern_isa { TERN_ISA_REF = 0, TERN_ISA_AVX2 = 1, TERN_ISA_AVX512VNNI = 2 };
enum tern_isa tern_cpu_isa(void);      /* best the CPU supports */
enum tern_isa tern_active_isa(void);   /* what kernels use: min(cpu, TERN_ISA) */
const char *tern_isa_name(enum tern_isa isa);

/* A tiny fork-join thread pool: fn(arg, i, tid) is called for i = 0..n-1 across threads, tid
 * being the index (0 .. size-1) of the thread running it (for per-thread scratch). */
typedef struct tern_pool tern_pool;
tern_pool *tern_pool_create(int nthreads);   /* nthreads <= 1: runs inline, returns a valid pool */
void tern_pool_run(tern_pool *p, void (*fn)(void *arg, int i, int tid), void *arg, int n);
int tern_pool_size(const tern_pool *p);
void tern_pool_free(tern_pool *p);

#endif
