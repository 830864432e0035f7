#!/usr/bin/env bash
# Installs what the peer baselines need, only if missing:  install.sh [apt|npm|all]   (default all)
#   apt: python3-torch python3-onnx python3-numpy python3-pil (PyTorch peers, /usr/bin/python3)
#        python3-torchvision too with "export" (scripts/export_torchvision.py)
#   npm: onnxruntime-node + jpeg-js into bench/peers/node_modules from package-lock.json.
#        ONNXRUNTIME_NODE_INSTALL=skip: its post-install step would try to download GPU binaries and
#        fail here; the CPU backend is bundled in the npm package itself.
# Exit status 0 when everything asked for is usable; messages go to stderr.
set -u
cd "$(dirname "$0")"
what=${1:-all}
rc=0
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive

apt_install() {  # apt_install pkg...
    command -v apt-get >/dev/null || { echo "install.sh: no apt-get, cannot install $*" >&2; return 1; }
    $SUDO apt-get install -y -q "$@" >&2 && return 0
    $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q "$@" >&2
}

if [ "$what" = apt ] || [ "$what" = all ] || [ "$what" = export ]; then
    need=()
    for pair in torch:python3-torch onnx:python3-onnx numpy:python3-numpy PIL:python3-pil; do
        /usr/bin/python3 -c "import ${pair%%:*}" 2>/dev/null || need+=("${pair#*:}")
    done
    if [ "$what" = export ]; then
        /usr/bin/python3 -c "import torchvision" 2>/dev/null || need+=(python3-torchvision)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        echo "install.sh: installing ${need[*]}" >&2
        apt_install "${need[@]}" || { echo "install.sh: could not install ${need[*]}" >&2; rc=1; }
    fi
fi

if [ "$what" = npm ] || [ "$what" = all ]; then
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "install.sh: installing nodejs npm" >&2
        apt_install nodejs npm || { echo "install.sh: could not install node/npm" >&2; rc=1; }
    fi
    if command -v npm >/dev/null; then
        if ! node -e 'require("onnxruntime-node"); require("jpeg-js")' 2>/dev/null; then
            echo "install.sh: npm ci (onnxruntime-node, jpeg-js)" >&2
            ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund >&2 \
                || ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund >&2 \
                || { echo "install.sh: npm install failed" >&2; rc=1; }
        fi
        node -e 'require("onnxruntime-node")' 2>/dev/null || rc=1
    fi
fi
exit $rc
