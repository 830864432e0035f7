#!/usr/bin/env bash
# tern finetune end to end on ResNet-20, ternary N=64 (small runs; the 3-epoch figures are in
# docs/RESULTS.md): it writes an ordinary .tern the integer engine runs, the same seed gives the
# same file, --init ptq starts far above plain post-training quantization, and bad input fails
# cleanly with no output file. About a minute.
. "$(dirname "$0")/lib.sh"
R20=$D/models/cifar10/resnet20.onnx
TR=$D/cifar10/data_batch_1.bin
EV="--data $D/cifar10/test_batch.bin --count 1000 --json --quiet"
FT="finetune $R20 --train $TR --train-count 128 --calib-count 64 --weights t --cluster 64 --batch 32 --preset cifar --threads 1 --quiet"

top1() { $TERN eval "$1" $EV > "$1.json" && field "$1.json" top1; }

$TERN eval "$R20" --preset cifar $EV > "$T/fp32.json"; fp=$(field "$T/fp32.json" top1)
$TERN quantize "$R20" -o "$T/plain.tern" --plain --calib $TR --calib-count 64 --preset cifar --weights t --cluster 64 --quiet > /dev/null
plain=$(top1 "$T/plain.tern")

# --init ptq with no SGD: the quantizer's optimised weights, re-quantized through the plain path
$TERN $FT --epochs 0 --init ptq --opt-images 32 --no-correct -o "$T/init.tern" 2> "$T/init.log" || bad "finetune --epochs 0 --init ptq: $(tail -1 "$T/init.log")"
init=$(top1 "$T/init.tern")
awk -v a="$init" -v b="$plain" -v f="$fp" 'BEGIN { exit !(a > b + 20 && a > f - 15) }' \
    && ok "--init ptq: top-1 $init vs plain post-training $plain (FP32 $fp, 1000 test images)" \
    || bad "--init ptq: top-1 $init, plain $plain, FP32 $fp"

# one short epoch twice with the same seed: identical files, and the engine runs them
$TERN $FT --epochs 1 --seed 3 --init ptq --opt-images 32 -o "$T/a.tern" 2> "$T/a.log" || bad "finetune 1 epoch: $(tail -1 "$T/a.log")"
$TERN $FT --epochs 1 --seed 3 --init ptq --opt-images 32 -o "$T/b.tern" 2> /dev/null
cmp -s "$T/a.tern" "$T/b.tern" && ok "same seed, same .tern byte for byte" || bad "same seed gave different files"
a=$(top1 "$T/a.tern")
awk -v a="$a" -v f="$fp" 'BEGIN { exit !(a > f - 15) }' && ok "1 epoch on 128 images: top-1 $a (FP32 $fp)" || bad "1 epoch: top-1 $a vs FP32 $fp"
$TERN info "$T/a.tern" > /dev/null && ok "tern info reads the fine-tuned file" || bad "tern info on the fine-tuned file"

# --layer overrides reach the trainer's policy (the quantizer's plan): weight layer 3 is 8-bit, 4 ternary
$TERN $FT --epochs 0 --init ptq --opt-images 16 --layer 3=8 -o "$T/l3.tern" 2> "$T/l3.log" || bad "finetune --layer 3=8: $(tail -1 "$T/l3.log")"
$TERN info "$T/l3.tern" --json > "$T/l3.json"
grep -q '"weight_layer": 3, "weights": "8"' "$T/l3.json" && grep -q '"weight_layer": 4, "weights": "t"' "$T/l3.json" \
    && ok "finetune --layer 3=8: weight layer 3 is 8-bit, layer 4 ternary" || bad "finetune --layer 3=8: $(grep -o '"weight_layer": [34], "weights": "[^"]*"' "$T/l3.json")"

# bad input: no partial output
$TERN finetune "$R20" --train "$T/none.bin" --preset cifar -o "$T/bad.tern" 2> "$T/bad.log"
[ $? -ne 0 ] && [ ! -e "$T/bad.tern" ] && grep -q "none.bin" "$T/bad.log" && ok "missing training file: error names it, no output" || bad "missing training file: $(cat "$T/bad.log")"
head -c 5000 "$TR" > "$T/short.bin"
$TERN finetune "$R20" --train "$T/short.bin" --preset cifar -o "$T/bad.tern" 2> "$T/bad.log"
[ $? -ne 0 ] && [ ! -e "$T/bad.tern" ] && ok "truncated training file: non-zero exit, no output ($(head -1 "$T/bad.log"))" || bad "truncated training file accepted"
$TERN finetune "$R20" --train "$TR" --init bogus -o "$T/bad.tern" 2> "$T/bad.log"
[ $? -eq 2 ] && grep -q -- "--init" "$T/bad.log" && ok "bad --init value rejected" || bad "bad --init value: $(cat "$T/bad.log")"
finish
