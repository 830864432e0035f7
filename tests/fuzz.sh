#!/usr/bin/env bash
# Fuzzes tern's input readers with libFuzzer + ASan + UBSan, each for FUZZ_SECONDS (default 60):
#   tern   the .tern reader            (tests/fuzz_tern.c;  seeds from `test_format --make-seeds`)
#   onnx   the ONNX importer           (tests/fuzz_onnx.c;  seeds from tests/fuzz_onnx_seeds.py:
#          import, graph passes, shape inference, FP32 run of small graphs, free)
#   image  JPEG/PNG/BMP decoding       (tests/fuzz_image.c; small images made at run time)
#   cifar  the CIFAR-10 reader         (tests/fuzz_cifar.c; records cut from $TERN_DATA)
# Seeds are made at run time from $TERN_DATA (no model or data file is committed); each target's
# corpus grows in build/fuzz/<target>/corpus across runs. Fails on any finding (crash, leak, UB,
# timeout, out-of-memory); the input that caused it is left in build/fuzz/<target>/artifacts/.
# Keep a finding as a regression case rebuilt by the suite from its description (no input file is
# committed): test_onnx.c test_fuzz_cases, test_data.c image_fuzz_cases.
#   FUZZ_SECONDS=600 FUZZ_TARGETS=onnx tests/fuzz.sh     a longer run of one target
#   FUZZ_JOBS=2 tests/fuzz.sh                             parallel workers (2 cores here: default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-build/fuzz}
JOBS=${FUZZ_JOBS:-1}
TARGETS=${FUZZ_TARGETS:-tern onnx image cifar}
export TERN_DATA=${TERN_DATA:-../shared/data}
PY=/usr/bin/python3

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

FLAGS="-std=c11 -D_GNU_SOURCE -g -Iinclude -Isrc -I$OUT/gen -I/usr/include/stb -Wall -Wextra -Wno-unused-parameter"
SAN="-O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
CORE="src/core/core.c src/core/cpu.c src/core/pool.c"
mkdir -p "$OUT/gen"
if [ ! -f "$OUT/gen/onnx.pb-c.c" ]; then
    cp /usr/include/onnx/onnx.proto "$OUT/gen/onnx.proto"
    (cd "$OUT/gen" && protoc-c --c_out=. onnx.proto)
fi

# build_and_seed TARGET: builds $OUT/TARGET/fuzz and fills $OUT/TARGET/seeds; sets MAXLEN
build_and_seed() {
    local t=$1 d=$OUT/$1
    mkdir -p "$d/corpus" "$d/seeds" "$d/artifacts"
    rm -f "$d"/seeds/* "$d"/artifacts/*
    echo "== building $d/fuzz with $CC"
    case $t in
    tern)
        "$CC" $FLAGS $SAN $CORE src/format/qmodel.c src/format/tern_file.c tests/fuzz_tern.c -lm -lpthread -o "$d/fuzz"
        "$CC" $FLAGS -O1 $CORE src/format/qmodel.c src/format/tern_file.c tests/test_format.c -lm -lpthread -o "$d/make_seeds"
        "$d/make_seeds" --make-seeds "$d/seeds"
        rm -f "$d/seeds/seed3.tern"   # the ResNet-56-sized seed is for size checks, too big to mutate usefully
        MAXLEN=16384 ;;
    onnx)
        # protobuf-c's generated code is built without the fuzzer's coverage (it is not ours) but with ASan
        "$CC" -std=c11 -O1 -g -fsanitize=address,undefined -I"$OUT/gen" -c "$OUT/gen/onnx.pb-c.c" -o "$d/onnx.pb-c.o"
        # the AVX2 kernel file gets its ISA flags, as in the Makefile
        "$CC" $FLAGS ${SAN/fuzzer,/fuzzer-no-link,} -mavx2 -mfma -c src/graph/sgemm_det_avx2.c -o "$d/sgemm_det_avx2.o"
        "$CC" $FLAGS $SAN $CORE $(ls src/graph/*.c | grep -v _avx2) src/onnx/import.c \
            tests/fuzz_onnx.c "$d/onnx.pb-c.o" "$d/sgemm_det_avx2.o" -lprotobuf-c -lopenblas -lm -lpthread -o "$d/fuzz"
        $PY tests/fuzz_onnx_seeds.py "$d/seeds" >/dev/null
        MAXLEN=1200000 ;;
    image)
        "$CC" $FLAGS $SAN -DTERN_FUZZ_STB_SOURCE $CORE src/data/image.c tests/fuzz_image.c -lm -lpthread -o "$d/fuzz"
        $PY tests/fuzz_image_seeds.py "$d/seeds" >/dev/null
        MAXLEN=65536 ;;
    cifar)
        "$CC" $FLAGS $SAN $CORE src/data/data.c src/data/image.c tests/fuzz_cifar.c -lstb -lm -lpthread -o "$d/fuzz"
        head -c $((3 * 3073)) "$TERN_DATA/cifar10/test_batch.bin" > "$d/seeds/three_records.bin"
        head -c 3073 "$TERN_DATA/cifar10/data_batch_1.bin" > "$d/seeds/one_record.bin"
        head -c 3000 "$TERN_DATA/cifar10/data_batch_1.bin" > "$d/seeds/short.bin"
        MAXLEN=32768 ;;
    *) echo "fuzz.sh: unknown target $t" >&2; exit 2 ;;
    esac
    echo "   $(ls "$d/seeds" | wc -l) seeds, $(du -sk "$d/seeds" | cut -f1) KB"
}

failed=0
for t in $TARGETS; do
    build_and_seed "$t"
    d=$OUT/$t
    ABS=$(cd "$d" && pwd)
    echo "== fuzzing $t for ${SECONDS_TO_RUN}s"
    PAR=; [ "$JOBS" -gt 1 ] && PAR="-jobs=$JOBS -workers=$JOBS"   # workers log to fuzz-N.log in $d
    set +e
    (cd "$ABS" && ./fuzz -max_total_time="$SECONDS_TO_RUN" -timeout=20 -rss_limit_mb=2560 -max_len=$MAXLEN $PAR \
        -print_final_stats=1 -artifact_prefix="$ABS/artifacts/" corpus seeds) 2>&1 | tee "$d/fuzz.log" |
        grep -E "^#[0-9]+ +(DONE|pulse)|ERROR|SUMMARY|stat::number_of_executed_units|Done" | tail -n 6
    rc=${PIPESTATUS[0]}
    set -e
    found=$(ls "$d/artifacts" | wc -l)
    echo "== $t: corpus $(ls "$d/corpus" | wc -l) files; findings: $found; libFuzzer exit $rc (log: $d/fuzz.log)"
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
        echo "fuzz.sh: $t FAILED (inputs in $d/artifacts/)" >&2
        failed=1
    fi
done
[ $failed -eq 0 ] && echo "fuzz.sh: OK ($TARGETS)" || exit 1
