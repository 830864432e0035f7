#!/usr/bin/env bash
# Fuzzes the .tern reader (tests/fuzz_tern.c) with libFuzzer + ASan + UBSan for FUZZ_SECONDS
# (default 60). Seeds come from `test_format --make-seeds`; the corpus grows in build/fuzz/corpus
# across runs. Fails on any finding (crash, leak, UB, timeout, out-of-memory); the input that
# caused it is left in build/fuzz/artifacts/.
#   FUZZ_SECONDS=600 tests/fuzz.sh        longer run
#   FUZZ_JOBS=2 tests/fuzz.sh             parallel workers (2 cores here: default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-build/fuzz}
JOBS=${FUZZ_JOBS:-1}

CC=${FUZZ_CC:-}
if [ -z "$CC" ]; then
    for c in clang-14 clang; do command -v "$c" >/dev/null 2>&1 && { CC=$c; break; }; done
fi
have_fuzzer() {
    [ -n "$CC" ] || return 1
    local t; t=$(mktemp -d)
    printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$t/f.c"
    "$CC" -fsanitize=fuzzer,address,undefined "$t/f.c" -o "$t/f" >/dev/null 2>&1
    local rc=$?; rm -rf "$t"; return $rc
}
if ! have_fuzzer; then
    echo "fuzz.sh: clang with libFuzzer not found; installing clang-14 and libclang-rt-14-dev" >&2
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null
    CC=clang-14
    have_fuzzer || { echo "fuzz.sh: still cannot build a libFuzzer target with $CC" >&2; exit 1; }
fi

SRC="src/core/core.c src/format/qmodel.c src/format/tern_file.c"
FLAGS="-std=c11 -D_GNU_SOURCE -g -Iinclude -Isrc -Wall -Wextra -Wno-unused-parameter"
mkdir -p "$OUT/corpus" "$OUT/seeds" "$OUT/artifacts"
echo "== building $OUT/fuzz_tern with $CC"
"$CC" $FLAGS -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    $SRC tests/fuzz_tern.c -lm -o "$OUT/fuzz_tern"
"$CC" $FLAGS -O1 $SRC tests/test_format.c -lm -o "$OUT/make_seeds"
rm -f "$OUT"/seeds/*
"$OUT/make_seeds" --make-seeds "$OUT/seeds"
# the ResNet-56-sized seed is for size checks, too big to mutate usefully
rm -f "$OUT/seeds/seed3.tern"
ls -l "$OUT/seeds" | tail -n +2

rm -f "$OUT"/artifacts/*
echo "== fuzzing for ${SECONDS_TO_RUN}s"
set +e
ABS=$(cd "$OUT" && pwd)
PAR=; [ "$JOBS" -gt 1 ] && PAR="-jobs=$JOBS -workers=$JOBS"   # workers log to fuzz-N.log in $OUT
(cd "$ABS" && ./fuzz_tern -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=16384 $PAR \
    -print_final_stats=1 -artifact_prefix="$ABS/artifacts/" corpus seeds) 2>&1 | tee "$OUT/fuzz.log" |
    grep -E "^#[0-9]+ +(DONE|pulse)|ERROR|SUMMARY|stat::|Done" | tail -n 25
rc=${PIPESTATUS[0]}
set -e
found=$(ls "$OUT/artifacts" | wc -l)
echo "== corpus $(ls "$OUT/corpus" | wc -l) files; findings: $found; libFuzzer exit $rc (log: $OUT/fuzz.log)"
if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    echo "fuzz.sh: FAILED (inputs in $OUT/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: OK"
