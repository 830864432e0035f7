#!/usr/bin/env bash
# CLI behaviour on the real models: info counts parameters as the data README lists them, run
# prints the top-5 with class names, eval --json is well-formed, --help works everywhere.
. "$(dirname "$0")/lib.sh"
for mp in cifar10/resnet20:269034 cifar10/resnet32:463018 cifar10/resnet44:657002 cifar10/resnet56:850986 imagenet/tiny_darknet:1039912; do
    m=${mp%%:*}; want=${mp##*:}
    got=$($TERN info "$D/models/$m.onnx" --json | sed -n 's/.*"params": \([0-9]*\), "macs".*/\1/p' | tail -1)
    [ "$got" = "$want" ] && ok "info $m: $got parameters (README: $want)" || bad "info $m: '$got' parameters, README says $want"
done
# run: the tench image through Tiny Darknet, FP32 and 8-bit integer
IMG=$D/imagenet_sample/n01440764_tench.JPEG
want=$(grep -n '^n01440764$' "$D/models/imagenet/labels_darknet_order.txt" | cut -d: -f1); want=$((want - 1))
$TERN run "$D/models/imagenet/tiny_darknet.onnx" "$IMG" --preset darknet --names "$D/models/imagenet/names.txt" > "$T/run.txt" 2>&1
if grep -q "tench" "$T/run.txt" && [ "$(grep -c '^ *[1-5]\. ' "$T/run.txt")" = 5 ]; then ok "run prints 5 classes with names, tench among them"; else bad "run output:"; cat "$T/run.txt"; fi
$TERN run "$D/models/imagenet/tiny_darknet.onnx" "$IMG" --preset darknet --json > "$T/run.json"
first=$(sed -n 's/.*"top": \[{"class": \([0-9]*\).*/\1/p' "$T/run.json")
[ "$first" = "$want" ] && ok "run --json: top-1 class $first is the image's label" || bad "run --json: top-1 '$first', label $want"
# eval --json fields
$TERN eval "$D/models/cifar10/resnet20.onnx" --data "$D/cifar10/test_batch.bin" --preset cifar --count 64 --json --quiet > "$T/e.json"
for f in top1 top5 images_per_s images; do grep -q "\"$f\": " "$T/e.json" || { bad "eval --json lacks $f"; continue; }; done
grep -q '"images": 64' "$T/e.json" && ok "eval --json on 64 images" || bad "eval --json: $(cat $T/e.json)"
for c in info run eval quantize bench; do $TERN $c --help > /dev/null 2>&1 && ok "$c --help" || bad "$c --help"; done
$TERN frobnicate > /dev/null 2>&1; [ $? -eq 2 ] && ok "unknown command exits 2" || bad "unknown command exit code"
finish
