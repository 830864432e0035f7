#!/usr/bin/env bash
# make bench: everything measured side by side in one run on this machine.
#  1. kernel benchmarks (results checked against the reference first), with the measured int8 peak;
#  2. models: tern integer engine (ternary N=4, default policy) vs tern FP32 vs ONNX Runtime FP32
#     vs PyTorch FP32 and PyTorch int8 (oneDNN): ResNet-20 and ResNet-56 at batch 64, Tiny Darknet
#     and SqueezeNet v1.1 at batch 1, 1 and 2 threads; then a table of ratios. A model tern cannot
#     quantize yet prints "skipped: <reason>" instead of its tern-int lines.
# Environment: TERN_DATA, BENCH_SECONDS (time box per case, default 3), BENCH_THREADS ("1,2").
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/release}
D=${TERN_DATA:-$(cd ../shared/data && pwd)}
SECS=${BENCH_SECONDS:-3}
TH=${BENCH_THREADS:-1,2}
OUT=build/bench; mkdir -p $OUT
log=$OUT/bench.log; : > $log
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== kernels"
"$BUILD/bench/bench_kernels" | tee -a $log
echo "== models"
CAL="--calib $D/cifar10/data_batch_1.bin --calib-count 256 --preset cifar --quiet"
for m in resnet20 resnet56; do
    ./tern quantize "$D/models/cifar10/$m.onnx" -o $OUT/$m.tern $CAL > /dev/null
    ./tern bench "$D/models/cifar10/$m.onnx" --threads-list $TH --seconds $SECS --no-layers | grep '^bench' | sed "s/^bench /bench name=$m /" | tee -a $log
    ./tern bench $OUT/$m.tern --threads-list $TH --seconds $SECS | sed "s/^bench /bench name=$m /" | tee -a $log
done
TD="$D/models/imagenet/tiny_darknet.onnx"
./tern quantize "$TD" -o $OUT/tiny_darknet.tern --calib "$D/imagenet_sample" --labels "$D/models/imagenet/labels_darknet_order.txt" \
    --preset darknet --calib-count 100 --threads 2 --quiet > /dev/null
./tern bench "$TD" --threads-list $TH --seconds $SECS --big-batch 16 --no-layers | grep '^bench' | sed "s/^bench /bench name=tiny_darknet /" | tee -a $log
./tern bench $OUT/tiny_darknet.tern --threads-list $TH --seconds $SECS --big-batch 16 | sed "s/^bench /bench name=tiny_darknet /" | tee -a $log
SQ="$D/models/imagenet/squeezenet1_1.onnx"   # Caffe preprocessing (data README section 5)
./tern bench "$SQ" --threads-list $TH --seconds $SECS --big-batch 16 --no-layers | grep '^bench' | sed "s/^bench /bench name=squeezenet /" | tee -a $log
if err=$(./tern quantize "$SQ" -o $OUT/squeezenet.tern --calib "$D/imagenet_sample" --labels "$D/models/imagenet/labels_caffe_order.txt" \
        --bgr --mean 0.407843,0.458824,0.482353 --std 0.00392157,0.00392157,0.00392157 --calib-count 100 --threads 2 --quiet 2>&1 >/dev/null); then
    ./tern bench $OUT/squeezenet.tern --threads-list $TH --seconds $SECS --big-batch 16 | sed "s/^bench /bench name=squeezenet /" | tee -a $log
else
    echo "skipped: squeezenet tern-int: $(echo "$err" | tail -1)" | tee -a $log
fi
echo "== peers"
PEER_SECONDS=$SECS PEER_THREADS=$TH TERN_DATA=$D bash bench/peers/run_peers.sh 2>>$OUT/peers.err | tee -a $log
echo "== summary (images/s; batch 64 for the ResNets, batch-1 latency as images/s for Tiny Darknet and SqueezeNet)"
/usr/bin/python3 - $log <<'PY'
import re, sys
rows = {}
BATCH1 = ('tiny_darknet', 'squeezenet')   # batch-1 latency (as images/s); the others batch 64
for line in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', line))
    if line.startswith('bench '):
        name, t = kv['name'], kv['threads']
        eng = 'tern-int' if kv['engine'] == 'int8' else 'tern-fp32'
        if name in BATCH1:
            rows.setdefault((name, t), {})[eng] = 1000.0 / float(kv['batch1_ms'])
        else:
            rows.setdefault((name, t), {})[eng] = float(kv['batch64_images_per_s'])
    elif line.startswith('peer='):
        name, t = kv['model'], kv['threads']
        if name in BATCH1 and kv['batch'] != '1': continue
        if name not in BATCH1 and kv['batch'] != '64': continue
        rows.setdefault((name, t), {})[kv['peer']] = float(kv['images_per_s'])
cols = ['tern-int', 'tern-fp32', 'ort-fp32', 'torch-fp32', 'torch-int8-onednn']
print('%-13s %3s ' % ('model', 'thr') + ' '.join('%18s' % c for c in cols) + '   tern-int vs: ' + ' '.join('%10s' % c for c in cols[1:]))
for (name, t), r in sorted(rows.items()):
    vals = ' '.join('%18s' % ('%.1f' % r[c] if c in r else '-') for c in cols)
    ratios = ' '.join('%10s' % ('%.2fx' % (r['tern-int'] / r[c]) if 'tern-int' in r and c in r else '-') for c in cols[1:])
    print('%-13s %3s %s                %s' % (name, t, vals, ratios))
PY
