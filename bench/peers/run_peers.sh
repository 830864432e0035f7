#!/usr/bin/env bash
# Peer baselines for `make bench`: ONNX Runtime FP32, PyTorch FP32 and PyTorch int8 (oneDNN) on
# ResNet-20 / ResNet-56 (batch 64), Tiny Darknet and SqueezeNet v1.1 (batch 1), 1 and 2 threads.
# Installs what is missing first (bench/peers/install.sh), prints one line per case:
#   peer=<ort-fp32|torch-fp32|torch-int8-onednn> model=.. batch=.. threads=.. images_per_s=.. ms_per_batch=.. acc=..
# and "skip: ..." for a peer that cannot run here. Progress goes to stderr.
# Environment: TERN_DATA (default ../shared/data beside the repo), PEER_SECONDS (time box per case,
# default 3), PEER_THREADS (default "1,2"), PEERS (default "ort torch").
set -u
if [ $# -gt 0 ]; then  # no arguments: everything is set through the environment
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    [ "$1" = -h ] || [ "$1" = --help ]; exit $?
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=${TERN_DATA:-$root/../shared/data}
secs=${PEER_SECONDS:-3}
threads=${PEER_THREADS:-1,2}
peers=${PEERS:-ort torch}
cifar=$data/models/cifar10
tiny=$data/models/imagenet/tiny_darknet.onnx
squeeze=$data/models/imagenet/squeezenet1_1.onnx

if [ ! -f "$cifar/resnet20.onnx" ] || [ ! -f "$data/cifar10/test_batch.bin" ]; then
    echo "skip: peers: data not found in $data (set TERN_DATA)"
    exit 0
fi
data=$(cd "$data" && pwd)
echo "peers: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ${secs}s per case" >&2

rc=0
run() {  # run CMD...: a failed check (exit 1) fails the whole run, but the other peers still run
    "$@" || { echo "peers: FAILED: $*" >&2; rc=1; }
}

for p in $peers; do
    case $p in
    ort)
        if ! bash "$here/install.sh" npm; then
            echo "skip: peer=ort-fp32: node/onnxruntime-node not available (see bench/peers/install.sh)"
            continue
        fi
        echo "peers: onnxruntime-node $(node -p 'require(process.argv[1]).version' "$here/node_modules/onnxruntime-node/package.json"), node $(node --version)" >&2
        for m in resnet20 resnet56; do
            run node "$here/ort_bench.js" "$cifar/$m.onnx" --data "$data" --batch 64 --threads "$threads" --seconds "$secs"
        done
        run node "$here/ort_bench.js" "$tiny" --data "$data" --batch 1 --threads "$threads" --seconds "$secs"
        run node "$here/ort_bench.js" "$squeeze" --name squeezenet --data "$data" --batch 1 --threads "$threads" --seconds "$secs"
        ;;
    torch)
        if ! bash "$here/install.sh" apt; then
            echo "skip: peer=torch-fp32/torch-int8-onednn: python3-torch/python3-onnx not available"
            continue
        fi
        echo "peers: $(/usr/bin/python3 -c 'import torch; print("torch", torch.__version__, "engines", torch.backends.quantized.supported_engines)')" >&2
        for m in resnet20 resnet56; do
            run /usr/bin/python3 "$here/torch_bench.py" "$cifar/$m.onnx" --data "$data" --modes fp32,int8 \
                --batch 64 --threads "$threads" --seconds "$secs"
        done
        run /usr/bin/python3 "$here/torch_bench.py" "$tiny" --data "$data" --modes fp32,int8 \
            --batch 1 --threads "$threads" --seconds "$secs"
        run /usr/bin/python3 "$here/torch_bench.py" "$squeeze" --name squeezenet --data "$data" --modes fp32,int8 \
            --batch 1 --threads "$threads" --seconds "$secs"
        ;;
    *) echo "run_peers.sh: unknown peer $p (ort, torch)" >&2; rc=2 ;;
    esac
done
exit $rc
