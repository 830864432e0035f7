#!/usr/bin/env bash
# FP32 engine accuracy on the real data must reproduce the PyTorch reference figures published
# with the data (../shared/data/README.md): CIFAR-10 ResNets within 0.05 point on all 10,000 test
# images, Tiny Darknet within 1 point (JPEG decoders differ) on the 1000-image sample.
. "$(dirname "$0")/lib.sh"
check() { # name json-file field expected tolerance
    local got
    got=$(field "$2" "$3")
    if [ -n "$got" ] && awk -v g="$got" -v e="$4" -v t="$5" 'BEGIN { d = g - e; if (d < 0) d = -d; exit !(d <= t) }'; then
        ok "$1: $3 $got (reference $4, tolerance $5)"
    else
        bad "$1: $3 '${got}' vs reference $4 (tolerance $5)"; cat "$2"
    fi
}
out=$T/out.json
for m in resnet20:81.03 resnet32:82.56 resnet44:82.67 resnet56:83.20; do
    name=${m%%:*}; ref=${m##*:}
    $TERN eval "$D/models/cifar10/$name.onnx" --data "$D/cifar10/test_batch.bin" --preset cifar --threads 2 --json --quiet > "$out" || { bad "$name: eval failed"; continue; }
    check "$name fp32 top-1" "$out" top1 "$ref" 0.05
done
$TERN eval "$D/models/imagenet/tiny_darknet.onnx" --data "$D/imagenet_sample" --labels "$D/models/imagenet/labels_darknet_order.txt" \
    --preset darknet --threads 2 --batch 16 --json --quiet > "$out" || bad "tiny_darknet: eval failed"
check "tiny darknet fp32 top-1" "$out" top1 65.4 1.0
check "tiny darknet fp32 top-5" "$out" top5 85.7 1.0
finish
