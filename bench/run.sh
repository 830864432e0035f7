#!/usr/bin/env bash
# make bench: everything measured side by side in one run on this machine.
#  1. kernel benchmarks (results checked against the reference first), with the measured int8 peak,
#     and (bench_mix) which instructions share the vpdpbusd issue slot on this CPU;
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
# "macs name=M mmac=X": the model's multiply-accumulates per image (tern info's total), for the summary's share of the peak
macs_line() { echo "macs name=$1 mmac=$(./tern info "$2" | sed -n 's/^total: \([0-9.]*\) MMAC.*/\1/p')" | tee -a $log; }
echo "== kernels"
"$BUILD/bench/bench_kernels" | tee -a $log
echo "== models"
CAL="--calib $D/cifar10/data_batch_1.bin --calib-count 256 --preset cifar --quiet"
for m in resnet20 resnet56; do
    ./tern quantize "$D/models/cifar10/$m.onnx" -o $OUT/$m.tern $CAL > /dev/null
    macs_line $m $OUT/$m.tern
    ./tern bench "$D/models/cifar10/$m.onnx" --threads-list $TH --seconds $SECS --no-layers | grep '^bench' | sed "s/^bench /bench name=$m /" | tee -a $log
    ./tern bench $OUT/$m.tern --threads-list $TH --seconds $SECS | sed "s/^bench /bench name=$m /" | tee -a $log
done
TD="$D/models/imagenet/tiny_darknet.onnx"
./tern quantize "$TD" -o $OUT/tiny_darknet.tern --calib "$D/imagenet_sample" --labels "$D/models/imagenet/labels_darknet_order.txt" \
    --preset darknet --calib-count 100 --threads 2 --quiet > /dev/null
macs_line tiny_darknet $OUT/tiny_darknet.tern
./tern bench "$TD" --threads-list $TH --seconds $SECS --big-batch 16 --no-layers | grep '^bench' | sed "s/^bench /bench name=tiny_darknet /" | tee -a $log
./tern bench $OUT/tiny_darknet.tern --threads-list $TH --seconds $SECS --big-batch 16 | sed "s/^bench /bench name=tiny_darknet /" | tee -a $log
SQ="$D/models/imagenet/squeezenet1_1.onnx"   # Caffe preprocessing (data README section 5)
./tern bench "$SQ" --threads-list $TH --seconds $SECS --big-batch 16 --no-layers | grep '^bench' | sed "s/^bench /bench name=squeezenet /" | tee -a $log
if err=$(./tern quantize "$SQ" -o $OUT/squeezenet.tern --calib "$D/imagenet_sample" --labels "$D/models/imagenet/labels_caffe_order.txt" \
        --bgr --mean 0.407843,0.458824,0.482353 --std 0.00392157,0.00392157,0.00392157 --calib-count 100 --threads 2 --quiet 2>&1 >/dev/null); then
    macs_line squeezenet $OUT/squeezenet.tern
    ./tern bench $OUT/squeezenet.tern --threads-list $TH --seconds $SECS --big-batch 16 | sed "s/^bench /bench name=squeezenet /" | tee -a $log
else
    echo "skipped: squeezenet tern-int: $(echo "$err" | tail -1)" | tee -a $log
fi
echo "== what bounds the VNNI kernels: instruction mixes; zero-code groups a skipping kernel could use"
"$BUILD/bench/bench_mix" $OUT/tiny_darknet.tern | tee -a $log
echo "== peers"
PEER_SECONDS=$SECS PEER_THREADS=$TH TERN_DATA=$D bash bench/peers/run_peers.sh 2>>$OUT/peers.err | tee -a $log
echo "== summary (images/s; batch 64 for the ResNets, batch-1 latency as images/s for Tiny Darknet and SqueezeNet)"
/usr/bin/python3 - $log <<'PY'
import re, sys
rows, macs, peak = {}, {}, None
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
    elif line.startswith('macs '):
        macs[kv['name']] = float(kv['mmac']) * 1e6
    elif line.startswith('peak: vpdpbusd') or line.startswith('peak: vpmaddubsw'):
        m = re.search(r'vpdpbusd zmm ([0-9.]+) GMAC/s', line) or re.search(r'vpmaddubsw [0-9.]+ G/s = ([0-9.]+) GMAC/s', line)
        if m: peak = (float(m.group(1)), 'vpdpbusd zmm' if 'vpdpbusd' in m.group(0) else 'vpmaddubsw ymm')
cols = ['tern-int', 'tern-fp32', 'ort-fp32', 'torch-fp32', 'torch-int8-onednn']
print('%-13s %3s ' % ('model', 'thr') + ' '.join('%18s' % c for c in cols) + '   tern-int vs: ' + ' '.join('%10s' % c for c in cols[1:]))
for (name, t), r in sorted(rows.items()):
    vals = ' '.join('%18s' % ('%.1f' % r[c] if c in r else '-') for c in cols)
    ratios = ' '.join('%10s' % ('%.2fx' % (r['tern-int'] / r[c]) if 'tern-int' in r and c in r else '-') for c in cols[1:])
    print('%-13s %3s %s                %s' % (name, t, vals, ratios))
# the whole network's rate against the instruction peak (1 thread: the peak is per core). A ratio
# target against a peer needs that ratio times the peer's share of the peak.
if peak:
    print('\nnetwork GMAC/s, 1 thread, against the %s peak %.1f GMAC/s per core:' % (peak[1], peak[0]))
    for (name, t), r in sorted(rows.items()):
        if t != '1' or name not in macs: continue
        line = '%-13s' % name
        for c in ('tern-int', 'torch-int8-onednn'):
            if c in r:
                g = r[c] * macs[name] / 1e9
                line += '   %s %6.1f GMAC/s = %4.1f %%' % (c, g, 100 * g / peak[0])
        if 'tern-int' in r and 'torch-int8-onednn' in r:
            g = r['torch-int8-onednn'] * macs[name] / 1e9
            line += '   (1.4x that peer = %.0f %% of the peak, 2.5x = %.0f %%)' % (140 * g / peak[0], 250 * g / peak[0])
        print(line)
PY
