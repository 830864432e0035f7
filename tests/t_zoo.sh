#!/usr/bin/env bash
# The torchvision zoo end to end (issue 11): each model exported at test time with random weights
# (scripts/export_torchvision.py --zoo: 64x64 inputs, opsets 11 and 17), quantized with ternary
# N=4 and with 8-bit weights on a few calibration images, run on the integer engine with identical
# logits under every ISA level this CPU has and at 1 and 2 threads (the slow scalar ref
# kernels at 2 threads only: row partitioning over threads is the engine's, not the ISA's, and
# AVX2/VNNI check it at 1 and 2); the 8-bit model's logits must
# agree with tern's FP32 ones (SQNR >= 15 dB; printed per model). Models tern cannot run yet must
# fail before calibration (< 2 s) naming the node, its op and what is missing.
# ZOO="name ..." picks a subset.
source "$(dirname "$0")/lib.sh"
if ! /usr/bin/python3 -c "import torch, torchvision, onnx" 2>/dev/null; then
    echo "skip: python3-torch/python3-torchvision/python3-onnx not installed (scripts/deps.sh test installs them)"
    echo "0 passed, 0 failed, 1 skipped"; exit 0
fi
RUN="resnet18 resnet50 mobilenet_v2 mobilenet_v3_small shufflenet_v2_x1_0 squeezenet1_1 densenet121 efficientnet_b0 resnext50_32x4d regnet_x_400mf googlenet"
UNSUPPORTED="convnext_tiny"   # listed in README.md
# 8-bit SQNR below 15 dB: none since the zoo nets are conditioned like trained ones (export_
# torchvision.py --zoo; docs/RESULTS.md issue 11: before that mobilenet_v2 7.7, mobilenet_v3_small
# 6.1, shufflenet_v2_x1_0 14.5, efficientnet_b0 -25.8, regnet_x_400mf 7.3 dB, and an independent
# 8-bit fake-quant in PyTorch gave as little on those nets). A model listed here has its SQNR
# printed and counted as SKIPPED, not passed; the identical-logits checks still apply to it.
SQNR_KNOWN_LOW=""
sel=${ZOO:-$RUN $UNSUPPORTED}
skip=0
mkdir -p "$T/zoo" "$T/cal" "$T/ev"
# two exporters in parallel (2 cores)
set -- $sel; half=$(( ($# + 1) / 2 )); a=("$@"); h1=("${a[@]:0:half}"); h2=("${a[@]:half}")
/usr/bin/python3 scripts/export_torchvision.py --zoo "$T/zoo" "${h1[@]}" --threads 1 --stats "$D/imagenet_sample" > "$T/export1.log" 2>&1 & p1=$!
pid2=""
if [ ${#h2[@]} -gt 0 ]; then /usr/bin/python3 scripts/export_torchvision.py --zoo "$T/zoo" "${h2[@]}" --threads 1 --stats "$D/imagenet_sample" > "$T/export2.log" 2>&1 & pid2=$!; fi
wait $p1 && { [ -z "$pid2" ] || wait $pid2; } && ok "export ${sel// /,}" || { cat "$T"/export*.log; bad "export"; finish; }
# calibration: 8 training images; evaluation: 4 others (ImageNet preprocessing, 73 -> 64 crop)
i=0; for f in "$D"/imagenet_sample/*.JPEG; do
    if [ $i -lt 8 ]; then ln -s "$f" "$T/cal/"; elif [ $i -lt 12 ]; then ln -s "$f" "$T/ev/"; else break; fi; i=$((i+1)); done
PP="--resize 73 --crop 64 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225"
isas="ref avx2"; grep -q avx512_vnni /proc/cpuinfo && isas="$isas avx512vnni"
is_unsupported() { case " $UNSUPPORTED " in *" $1 "*) return 0;; esac; return 1; }
for m in $sel; do
    onnx=$T/zoo/$m.onnx
    if is_unsupported "$m"; then
        s=$(date +%s%N)
        "$TERN" quantize "$onnx" -o "$T/$m.tern" --plain --calib "$T/cal" --calib-count 8 $PP --quiet > "$T/$m.err" 2>&1; rc=$?
        ms=$(( ($(date +%s%N) - s) / 1000000 ))
        if [ $rc -ne 0 ] && [ ! -e "$T/$m.tern" ] && [ $ms -lt 2000 ] && grep -q "node '.*' (.*)" "$T/$m.err"; then
            ok "$m: refused in $ms ms: $(sed 's/^tern: quantize: [^:]*: //' "$T/$m.err" | head -1)"
        else bad "$m: expected a quick refusal naming the node (rc $rc, $ms ms): $(head -2 "$T/$m.err")"; fi
        continue
    fi
    "$TERN" eval "$onnx" --data "$T/ev" $PP --dump "$T/$m.fp32" --quiet > /dev/null 2>"$T/$m.err" || { bad "$m: FP32 eval: $(cat "$T/$m.err")"; continue; }
    for w in t8 8; do
        case $w in t8) wopt="--weights t --cluster 4";; 8) wopt="--weights 8";; esac
        tm=$T/$m.$w.tern
        if ! "$TERN" quantize "$onnx" -o "$tm" --plain --calib "$T/cal" --calib-count 8 $PP $wopt --threads 2 --quiet > /dev/null 2>"$T/$m.err"; then
            bad "$m $wopt: quantize: $(cat "$T/$m.err")"; continue
        fi
        same=1; first=""
        for isa in $isas; do for th in 1 2; do
            [ $isa = ref ] && [ $th = 1 ] && continue   # ref (slow scalar kernels): once, at 2 threads
            out=$T/$m.$w.$isa.$th
            if ! TERN_ISA=$isa "$TERN" eval "$tm" --data "$T/ev" --threads $th --batch 2 --dump "$out" --quiet > /dev/null 2>"$T/$m.err"; then
                bad "$m $wopt: eval $isa x$th: $(cat "$T/$m.err")"; same=0; continue
            fi
            if [ -z "$first" ]; then first=$out; elif ! cmp -s "$first" "$out"; then same=0; bad "$m $wopt: $isa x$th logits differ from $(basename "$first")"; fi
        done; done
        [ $same -eq 1 ] && ok "$m $wopt: identical logits under $isas at 1 and 2 threads (ref at 2)"
        if [ $w = 8 ] && [ -n "$first" ]; then
            "$TERN" info "$tm" --json > "$T/$m.info.json"
            db=$(/usr/bin/python3 tests/zoo_sqnr.py "$T/$m.fp32" "$first" "$T/$m.info.json")
            if case " $SQNR_KNOWN_LOW " in *" $m "*) true;; *) false;; esac; then
                skip=$((skip+1)); echo "skip $m 8-bit: logits SQNR $db dB vs FP32 (known below 15 dB)"
            elif awk -v d="$db" 'BEGIN { exit !(d >= 15) }'; then ok "$m 8-bit: logits SQNR $db dB vs FP32"
            else bad "$m 8-bit: logits SQNR $db dB vs FP32 (< 15)"; fi
        fi
    done
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
