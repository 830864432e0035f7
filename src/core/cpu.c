/* CPU feature detection, once; TERN_ISA may force a lower level for testing. */
#include "core/core.h"
#include <string.h>

const char *tern_isa_name(enum tern_isa isa) {
    switch (isa) {
    case TERN_ISA_REF: return "ref";
    case TERN_ISA_AVX2: return "avx2";
    case TERN_ISA_AVX512VNNI: return "avx512vnni";
    }
    return "?";
}

enum tern_isa tern_cpu_isa(void) {
    static int isa = -1;
    if (isa < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
            isa = TERN_ISA_AVX512VNNI;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            isa = TERN_ISA_AVX2;
        else
            isa = TERN_ISA_REF;
    }
    return (enum tern_isa)isa;
}

/* An unusable TERN_ISA is reported once on stderr and ignored (library code never exits). */
enum tern_isa tern_active_isa(void) {
    static int warned;
    enum tern_isa cpu = tern_cpu_isa();
    const char *e = getenv("TERN_ISA");
    if (!e || !*e) return cpu;
    for (int i = TERN_ISA_REF; i <= TERN_ISA_AVX512VNNI; i++)
        if (strcmp(e, tern_isa_name((enum tern_isa)i)) == 0) {
            if (i <= (int)cpu) return (enum tern_isa)i;
            if (!warned++) fprintf(stderr, "tern: TERN_ISA=%s but this CPU only supports %s; using %s\n", e, tern_isa_name(cpu), tern_isa_name(cpu));
            return cpu;
        }
    if (!warned++) fprintf(stderr, "tern: TERN_ISA=%s is not one of ref, avx2, avx512vnni; using %s\n", e, tern_isa_name(cpu));
    return cpu;
}
