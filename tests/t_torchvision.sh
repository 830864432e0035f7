#!/usr/bin/env bash
# Exports torchvision ResNet-18/50/101, GoogLeNet, AlexNet, VGG-11/16 and MobileNetV2 with random
# weights (Debian's python3-torch, python3-torchvision) and checks tern's FP32 outputs against
# PyTorch's (tests/test_torchvision.c). Skips, saying so, when the packages cannot be had.
set -u
BUILD=${BUILD:-build/release}
if ! /usr/bin/python3 -c "import torch, torchvision, onnx" 2>/dev/null; then
    echo "skip: python3-torch/python3-torchvision/python3-onnx not installed (scripts/deps.sh test installs them)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
dir=$(mktemp -d /tmp/tern_tv.XXXXXX); trap 'rm -rf "$dir"' EXIT
if ! /usr/bin/python3 scripts/export_torchvision.py "$dir" > "$dir/export.log" 2>&1; then
    cat "$dir/export.log"; echo "0 passed, 1 failed"; exit 1
fi
TERN_TV_DIR=$dir "$BUILD/tests/test_torchvision"
