#!/usr/bin/env bash
# Installs the Debian packages tern needs, only those missing. Usage: scripts/deps.sh [build|test|bench]...
#   build: compiler, protobuf-c (ONNX parsing, code generated from Debian's onnx.proto), stb, OpenBLAS
#   test:  + python3-torch/torchvision/onnx (golden references, malformed models), clang (fuzzing)
#   bench: + nodejs/npm (ONNX Runtime peer), python3-torch (PyTorch peers)
set -eu
want="gcc make binutils pkg-config protobuf-c-compiler libprotobuf-c-dev libonnx-dev libstb-dev libopenblas-dev"
for what in "${@:-build}"; do
    case $what in
    build) ;;
    test) want="$want python3 python3-numpy python3-onnx python3-torch python3-torchvision clang libclang-rt-14-dev" ;;
    bench) want="$want python3 python3-numpy python3-onnx python3-torch"
           command -v node >/dev/null && command -v npm >/dev/null || want="$want nodejs npm" ;;
    *) echo "deps.sh: unknown set '$what' (build, test, bench)" >&2; exit 2 ;;
    esac
done
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
