#!/usr/bin/env bash
# Reproducible quantization: the same `tern quantize` command must give byte-identical .tern
# files whatever OpenBLAS kernel the CPU selects (OPENBLAS_CORETYPE=Haswell is what an AVX2
# machine gets; this one has AVX-512), at 1 and 2 threads, and whatever kernel level tern uses
# (TERN_ISA=avx2, ref and the native one). The checksums are computed here, on each setting,
# and all must agree; the first is printed, to compare by hand with another machine.
. "$(dirname "$0")/lib.sh"
M=$D/models/cifar10/resnet20.onnx
CAL=$D/cifar10/data_batch_1.bin
SETTINGS=("native" "OPENBLAS_CORETYPE=Haswell" "TERN_ISA=avx2" "TERN_ISA=ref")

# repro LABEL OPTIONS...: quantize under every setting at 1 and 2 threads (QUICK=1: setting i at
# 1 + i % 2 threads only); all sums equal
repro() {
    local label=$1; shift
    local ref="" refname="" n=0 ok_all=1 i=-1
    for s in "${SETTINGS[@]}"; do
        i=$((i + 1))
        for th in 1 2; do
            [ -n "${QUICK:-}" ] && [ $th -ne $((1 + i % 2)) ] && continue
            local envs=(); [ "$s" != native ] && envs=("$s")
            local out=$T/r_${n}.tern
            if ! env "${envs[@]}" "$TERN" quantize "$M" -o "$out" --calib "$CAL" --preset cifar --threads $th --quiet "$@" >/dev/null 2>"$T/err"; then
                bad "$label: quantize failed under $s, $th threads: $(head -c 300 "$T/err")"; ok_all=0; continue
            fi
            local sum; sum=$(sha256sum "$out" | cut -c1-16)
            if [ -z "$ref" ]; then ref=$sum; refname="$s, $th thread(s)"
            elif [ "$sum" != "$ref" ]; then bad "$label: $s, $th threads gives $sum, $refname gave $ref"; ok_all=0; fi
            n=$((n + 1))
        done
    done
    [ $ok_all -eq 1 ] && ok "$label: $n settings, one .tern (sha256 $ref...)"
}

# The FP32 executor feeds calibration and the post-training statistics: its logits must be the
# same bits on every setting (the quantizer's exponents are robust enough that ResNet-20's plain
# .tern rarely shows a difference; the logits always would).
fp32_sums() { # prints one hash per setting
    for s in "${SETTINGS[@]}"; do
        for th in 1 2; do
            local envs=(); [ "$s" != native ] && envs=("$s")
            echo "$(env "${envs[@]}" "$BUILD/tests/test_onnx" --fp32-hash $th "$@" 2>&1)"
        done
    done
}
sums=$(fp32_sums)
if [ "$(echo "$sums" | sort -u | wc -l)" -eq 1 ] && echo "$sums" | grep -qE '^[0-9a-f]{16}$'; then
    ok "FP32 logits (ResNet-20, 16 images): one result on 8 settings ($(echo "$sums" | head -1))"
else
    bad "FP32 logits differ across settings:"; echo "$sums" | sed 's/^/     /'
fi
# for comparison (not a check: it depends on this machine's OpenBLAS): what OpenBLAS gives
echo "info: the same logits through OpenBLAS: $(fp32_sums --openblas | sort -u | wc -l) different results on the 8 settings"
repro "ResNet-20 t:4, 64 calibration images" --calib-count 64
if grep -q cblas src/quant/optimize.c 2>/dev/null; then
    echo "skip: --ptq: its statistics in src/quant/optimize.c still use OpenBLAS (issue 12 replaces them); not checked"
    skipped=1
else
    QUICK=1 repro "ResNet-20 t:4 --ptq" --calib-count 16 --ptq --opt-images 8
fi
# the SGEMM's baseline kernel (TERN_ISA=ref) is bit-exact too, not only the AVX2 one
if TERN_ISA=ref "$BUILD/tests/test_onnx" >"$T/u" 2>&1 && grep -q "^ok   test_sgemm_det" "$T/u"; then
    ok "deterministic SGEMM, baseline kernel (TERN_ISA=ref): the sequential sum, bit for bit"
else
    bad "deterministic SGEMM under TERN_ISA=ref:"; grep -A3 FAIL "$T/u" | head -10
fi
echo "$pass passed, $fail failed${skipped:+, 1 skipped}"
[ "$fail" -eq 0 ]
