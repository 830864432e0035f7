/* Minimal test harness. A test binary runs its cases with RUN(fn); each failed CHECK prints the
 * file, line and message. main returns check_summary(): prints "N passed, N failed" for the
 * binary and exits non-zero on any failure. SKIP(msg) marks a case skipped, saying why. */
#ifndef TERN_CHECK_H
#define TERN_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failed_now, check_pass, check_fail, check_skip;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            check_failed_now = 1;                                               \
        }                                                                       \
    } while (0)

#define SKIP(...)                                                               \
    do {                                                                        \
        fprintf(stderr, "  skip: ");                                            \
        fprintf(stderr, __VA_ARGS__);                                           \
        fprintf(stderr, "\n");                                                  \
        check_failed_now = -1;                                                  \
        return;                                                                 \
    } while (0)

#define RUN(fn)                                                                 \
    do {                                                                        \
        check_failed_now = 0;                                                   \
        fn();                                                                   \
        if (check_failed_now > 0) { check_fail++; fprintf(stderr, "FAIL %s\n", #fn); } \
        else if (check_failed_now < 0) { check_skip++; fprintf(stderr, "skip %s\n", #fn); } \
        else { check_pass++; fprintf(stderr, "ok   %s\n", #fn); }               \
    } while (0)

static inline int check_summary(void) {
    printf("%d passed, %d failed, %d skipped\n", check_pass, check_fail, check_skip);
    return check_fail ? 1 : 0;
}

/* Where the shared data lives: $TERN_DATA, else ../shared/data relative to the repo. */
static inline const char *check_data_dir(void) {
    const char *d = getenv("TERN_DATA");
    return d && *d ? d : "../shared/data";
}
#endif
