#!/usr/bin/env bash
# The main job: build tern, quantize a real pretrained model (CIFAR-10 ResNet, default
# ResNet-56) to ternary/4-bit/8-bit weights with 8-bit activations, and compare the integer
# engine's accuracy and speed with FP32 on the 10,000 CIFAR-10 test images.
#   scripts/demo.sh [resnet20|resnet32|resnet44|resnet56]
set -eu
cd "$(dirname "$0")/.."
MODEL=${1:-resnet56}
D=${TERN_DATA:-$(cd ../shared/data && pwd)}
bash scripts/deps.sh build
make -j2 >/dev/null
OUT=build/demo; mkdir -p $OUT
ONNX=$D/models/cifar10/$MODEL.onnx
TEST="--data $D/cifar10/test_batch.bin"
CAL="--calib $D/cifar10/data_batch_1.bin --calib-count 500 --preset cifar"
echo "== FP32 reference ($MODEL, 10,000 CIFAR-10 test images)"
./tern eval "$ONNX" $TEST --preset cifar --threads 2 --json --quiet > $OUT/fp32.json
# the default post-training path (bias correction, least-squares cluster scales and code choice
# against each layer's output error on calibration images; no retraining), and the plain quantizer
for spec in "t:4 --plain" "t:4" "4:4" "8"; do
    name=$(echo "$spec" | tr -d ' -' | tr ':' '_')
    echo "== quantize weights $spec (calibration: 500 training images)"
    ./tern quantize "$ONNX" -o $OUT/$MODEL.$name.tern $CAL --weights $spec | tail -2
    ./tern eval $OUT/$MODEL.$name.tern $TEST --threads 2 --json --quiet > $OUT/$name.json
done
echo "== speed, 1 thread, batch 64 (median of runs)"
./tern bench "$ONNX" --threads-list 1 --no-layers --seconds 2 | tee $OUT/bench_fp32.txt | grep '^bench'
./tern bench $OUT/$MODEL.t_4.tern --threads-list 1 --no-layers --seconds 2 | tee $OUT/bench_t4.txt | grep '^bench'
get() { sed -n "s/.*\"$2\": \([-0-9.e]*\).*/\1/p" "$1" | tail -1; }
fi=$(sed -n 's/.*batch64_images_per_s=\([0-9.]*\).*/\1/p' $OUT/bench_fp32.txt)
ti=$(sed -n 's/.*batch64_images_per_s=\([0-9.]*\).*/\1/p' $OUT/bench_t4.txt)
echo
printf "%-28s %8s %8s %10s\n" "$MODEL on CIFAR-10 test" "top-1" "drop" "size"
fs=$(stat -c %s "$ONNX")
printf "%-28s %7.2f%% %8s %9dK\n" "FP32 (ONNX)" "$(get $OUT/fp32.json top1)" "" $((fs / 1024))
for name in t_4plain t_4 4_4 8; do
    t=$(get $OUT/$name.json top1); s=$(stat -c %s $OUT/$MODEL.$name.tern)
    printf "%-28s %7.2f%% %8.2f %9dK\n" "8-bit act, weights $name" "$t" "$(awk -v a="$(get $OUT/fp32.json top1)" -v b="$t" 'BEGIN{print a-b}')" $((s / 1024))
done
echo
awk -v f="$fi" -v t="$ti" 'BEGIN { printf "speed, 1 thread, batch 64: FP32 %.0f images/s, ternary integer engine %.0f images/s (%.2fx)\n", f, t, t / f }'
