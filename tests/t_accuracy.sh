#!/usr/bin/env bash
# Post-training accuracy targets (issue 5) on ResNet-20, integer engine, full CIFAR-10 test set,
# calibration on training images (data_batch_1.bin), default policy (first conv, last layer 8-bit):
#  - the default command (`tern quantize resnet20.onnx -o x.tern --calib data_batch_1.bin --preset
#    cifar`, nothing else: ternary N=4 with the post-training path) within 3 points of FP32 (81.03 %);
#  - 4-bit N=4 (default path) within 0.5 point; 8-bit within 0.2 point;
#  - the default path is deterministic (byte-identical .tern) and each option alone changes the
#    plain model (--plain).
# About a minute. The slower checks (ResNet-56, Tiny Darknet, --max-drop) are in
# tests/bench_accuracy.sh (see docs/RESULTS.md).
. "$(dirname "$0")/lib.sh"
CAL="--calib $D/cifar10/data_batch_1.bin --calib-count 256 --preset cifar --quiet"
R20=$D/models/cifar10/resnet20.onnx
FP32=81.03   # README of the data folder: 8103/10000, checked by two FP32 executors (t_fp32_accuracy.sh)

check() { # name spec flags max_drop
    local name=$1 w=$2 flags=$3 lim=$4
    $TERN quantize "$R20" -o "$T/$name.tern" $CAL --weights $w $flags > /dev/null || { bad "quantize $name"; return; }
    $TERN eval "$T/$name.tern" --data "$D/cifar10/test_batch.bin" --json --quiet > "$T/$name.json" || { bad "eval $name"; return; }
    local q=$(field "$T/$name.json" top1)
    awk -v f=$FP32 -v q="$q" -v l=$lim 'BEGIN { exit !(f - q <= l) }' && ok "resnet20 $name: top-1 $q vs FP32 $FP32 (limit $lim)" || bad "resnet20 $name: top-1 $q vs FP32 $FP32 (more than $lim below)"
}
# the issue-11 check, literally: no option beyond -o, --calib and the preset
$TERN quantize "$R20" -o "$T/default.tern" --calib $D/cifar10/data_batch_1.bin --preset cifar --quiet > /dev/null 2> "$T/default.err" || bad "default quantize"
# a few dead ReLU channels (1-3 of 16-64 in 11 layers) are normal: no warning by default, --verbose lists them
! grep -q "never active" "$T/default.err" && ok "default quantize: no degenerate-statistics warning for a few dead channels" \
    || bad "warned about a few dead channels: $(head -c 300 "$T/default.err")"
$TERN quantize "$R20" -o "$T/verbose.tern" --calib $D/cifar10/data_batch_1.bin --preset cifar --verbose --quiet > /dev/null 2> "$T/verbose.err"
[ "$(grep -c "input channels (first: [0-9]*) never active on the 64 optimisation images" "$T/verbose.err")" -eq 11 ] && cmp -s "$T/default.tern" "$T/verbose.tern" \
    && ok "--verbose lists the 11 layers with dead input channels, same bytes" || bad "--verbose dead-channel lines: $(grep -c "never active" "$T/verbose.err")"
$TERN eval "$T/default.tern" --data "$D/cifar10/test_batch.bin" --json --quiet > "$T/default.json" || bad "eval default"
q=$(field "$T/default.json" top1)
awk -v f=$FP32 -v q="$q" 'BEGIN { exit !(f - q <= 3) }' && ok "resnet20 default command (t:4, post-training path): top-1 $q vs FP32 $FP32 (limit 3)" || bad "resnet20 default: top-1 $q vs FP32 $FP32"
check 4bit-n4 4:4 "" 0.5
check 8bit 8 "" 0.2

$TERN quantize "$R20" -o "$T/again.tern" --calib $D/cifar10/data_batch_1.bin --preset cifar --quiet --threads 2 > /dev/null && cmp -s "$T/again.tern" "$T/default.tern" \
    && ok "default path: quantizing twice (1 and 2 threads) gives byte-identical files" || bad "default path: quantizing twice differs"
$TERN quantize "$R20" -o "$T/plain.tern" $CAL --plain > /dev/null
for f in --bias-corr --opt-scales --opt-round; do
    $TERN quantize "$R20" -o "$T/one.tern" $CAL $f > /dev/null && ! cmp -s "$T/one.tern" "$T/plain.tern" \
        && ok "$f alone changes the model" || bad "$f alone has no effect"
done
finish
