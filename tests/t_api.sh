#!/usr/bin/env bash
# The library as a user gets it: make install into a scratch prefix, the example built from the
# installed copy with pkg-config, the Python module over the installed libtern.so; their results
# against the CLI's (tern run, tern eval --dump, tern quantize). Also: preprocessing read from
# ONNX metadata_props, and what the CLI says when no preprocessing is given.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
R20=$D/models/cifar10/resnet20.onnx
TINY=$D/models/imagenet/tiny_darknet.onnx
CAL=$D/cifar10/data_batch_1.bin
TEST=$D/cifar10/test_batch.bin
IMG=$D/imagenet_sample
[ -f "$R20" ] && [ -f "$TINY" ] || { echo "no models in $D"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
MODE=${BUILD#build/}

# ---- install, exported symbols ----
P=$T/prefix
if make -s install PREFIX="$P" MODE="$MODE" > "$T/install.log" 2>&1 && [ -f "$P/include/tern.h" ] && [ -f "$P/lib/libtern.a" ] &&
    [ -f "$P/lib/libtern.so" ] && [ -f "$P/lib/pkgconfig/tern.pc" ]; then ok "make install PREFIX=..."; else bad "make install"; cat "$T/install.log"; fi
syms=$(nm -D --defined-only "$P/lib/libtern.so" | awk '{print $3}')
declared=$(sed -n 's/^TERN_API [^(]*[ *]\(tern_[a-z0-9_]*\)(.*/\1/p' "$P/include/tern.h" | sort -u)
if [ "$(echo "$syms" | sort -u)" = "$declared" ]; then ok "libtern.so exports exactly the $(echo "$declared" | wc -l) TERN_API functions of tern.h"
else bad "exported symbols differ from tern.h: $(diff <(echo "$syms" | sort -u) <(echo "$declared") | tr '\n' ' ')"; fi
ldd "$TERN" | grep -q libtern && bad "the CLI links libtern.so (should be static)" || ok "the CLI links the static library"

# ---- the example, from the installed copy only ----
export PKG_CONFIG_PATH=$P/lib/pkgconfig
flags=$(pkg-config --cflags --libs tern)
case "$flags" in *"$PWD"*|*-Isrc*) bad "pkg-config flags point into the source tree: $flags" ;; *) ok "pkg-config: $flags" ;; esac
cc -std=c11 -Wall -Wextra -Werror examples/classify.c $flags -o "$T/classify" 2> "$T/cc.log" && ok "examples/classify.c builds with pkg-config" ||
    { bad "classify does not build"; cat "$T/cc.log"; }
[ "$(wc -l < examples/classify.c)" -le 40 ] && ok "classify.c is $(wc -l < examples/classify.c) lines" || bad "classify.c is longer than 40 lines"

# a quantized ImageNet model (resize 224, crop 224): the example's top-5 = tern run's (--plain: the post-training
# pass would take 10x longer and is not what this checks)
$TERN quantize "$TINY" -o "$T/tiny.tern" --calib "$IMG" --preset darknet --calib-count 4 --weights 8 --plain --quiet > /dev/null 2> "$T/q.err" ||
    { bad "quantize tiny darknet"; cat "$T/q.err"; }
$TERN quantize "$R20" -o "$T/r20.tern" --calib "$CAL" --preset cifar --calib-count 64 --weights t --cluster 4 --quiet > /dev/null 2> "$T/q.err" ||
    { bad "quantize resnet20"; cat "$T/q.err"; }
names=$D/models/imagenet/names.txt
for m in tiny r20; do
    for img in "$IMG/n01440764_tench.JPEG" "$IMG/n01443537_goldfish.JPEG" "$(ls "$IMG"/*.JPEG | sed -n 500p)"; do
        "$T/classify" "$T/$m.tern" "$img" "$names" > "$T/ex.txt" 2>&1 || bad "classify $m $img: $(cat "$T/ex.txt")"
        $TERN run "$T/$m.tern" "$img" --names "$names" > "$T/run.txt" 2>&1 || bad "tern run $m $img"
        a=$(awk '{print $2, $NF}' "$T/ex.txt"); b=$(tail -n +2 "$T/run.txt" | awk '{print $2, $(NF-1)}')
        if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "$m $(basename "$img"): example top-5 = tern run top-5 ($(echo $a | cut -c1-40)...)"
        else bad "$m $(basename "$img"): example '$a' vs tern run '$b'"; fi
    done
done
# scores are logit values: a softmax that is not 1.0000 for every image
p1=$($TERN run "$T/r20.tern" "$IMG/n01440764_tench.JPEG" | sed -n 's/.*p=\([0-9.]*\)/\1/p' | head -1)
[ -n "$p1" ] && [ "$p1" != "1.0000" ] && ok "tern run shows p=$p1 (scaled logits), not 1.0000" || bad "tern run top p=$p1"
$TERN info "$T/tiny.tern" | grep -q "^preprocessing.*resize 224, crop 224x224, fed R,G,B" && ok "tern info shows the recorded preprocessing" ||
    bad "tern info: no preprocessing line"

# ---- Python over the installed libtern.so ----
export PYTHONPATH=$P/lib/python3/dist-packages
$TERN eval "$T/r20.tern" --data "$TEST" --count 100 --quiet --json --dump "$T/dump.txt" > "$T/ev.json" || bad "eval --dump"
out=$($PY - "$T/r20.tern" "$TEST" "$T/dump.txt" "$P/lib/libtern.so" "$(field "$T/ev.json" top1_correct)" <<'EOF' 2>&1
import sys, numpy as np, tern
path, test, dump, lib, correct = sys.argv[1:]
assert tern._lib._name.startswith(lib.rsplit("/", 1)[0]), "loaded " + tern._lib._name
raw = np.fromfile(test, dtype=np.uint8).reshape(-1, 3073)
idx = [i * len(raw) // 100 for i in range(100)]          # tern eval --count 100: spread evenly
x = raw[idx, 1:].reshape(-1, 3, 32, 32)
m = tern.Model(path)
y = m.run(x)
assert y.dtype == np.int32 and y.shape == (100, 10), y.shape
want = np.loadtxt(dump)
assert np.array_equal(m.values(y), want), "python logits differ from tern eval --dump: max %g" % abs(m.values(y) - want).max()
ran = []
for k in ("ref", "avx2", "avx512vnni"):
    try:
        assert np.array_equal(tern.Model(path, kernels=k, threads=2, max_batch=7).run(x), y), k
        ran.append(k)
    except tern.TernError as e:
        assert e.status == 3 and "CPU" in str(e), e     # TERN_STATUS_UNSUPPORTED: not on this CPU
top = m.top_k(y, 5)
assert (top[:, 0] == y.argmax(1)).all() and np.array_equal(m.top_k(x, 5), top)
acc = (top[:, 0] == raw[idx, 0]).mean()
assert round(acc * 100) == int(correct), (acc, correct)
try:
    tern.Model("/nonexistent.tern"); raise SystemExit("no error")
except tern.TernError as e:
    assert "nonexistent" in str(e), e
print("python: 100 logits equal tern eval --dump, top-1 %.2f as eval; %s at 2 threads identical" % (acc, "/".join(ran)))
EOF
) && ok "$out" || bad "python Model: $out"

# tern.quantize writes the same bytes as tern quantize with the same options
$TERN quantize "$R20" -o "$T/cli_q.tern" --calib "$CAL" --preset cifar --calib-count 48 --weights 4 --cluster 8 --layer 2=t:2 --bias-corr --quiet > /dev/null 2>&1 ||
    bad "cli quantize"
out=$($PY - "$R20" "$T/py_q.tern" "$CAL" <<'EOF' 2>&1
import sys, tern
onnx, out, cal = sys.argv[1:]
tern.quantize(onnx, out, calib=cal, preset="cifar", calib_count=48, weights="4", cluster=8, layers=["2=t:2"], bias_corr=1)
try:
    tern.quantize(onnx, out + ".bad", calib=cal, weights="x"); raise SystemExit("no error")
except tern.TernError as e:
    assert "weights" in str(e), e
print("ok")
EOF
) || bad "python quantize: $out"
cmp -s "$T/cli_q.tern" "$T/py_q.tern" && ok "tern.quantize(...) = tern quantize, byte for byte" || bad "python and CLI .tern files differ"
[ ! -e "$T/py_q.tern.bad" ] && ok "a failed tern.quantize leaves no file" || bad "partial file left"

# ---- preprocessing from ONNX metadata_props ----
$PY - "$R20" "$T" <<'EOF' || bad "writing models with metadata"
import sys, onnx
src, T = sys.argv[1:]
for name, props in (("meta", {"tern.mean": "0.485,0.456,0.406", "tern.std": "0.229,0.224,0.225"}), ("badmeta", {"tern.std": "0.2,zero,1"})):
    m = onnx.load(src)
    for k, v in props.items():
        e = m.metadata_props.add(); e.key, e.value = k, v
    onnx.save(m, "%s/r20_%s.onnx" % (T, name))
EOF
$TERN eval "$R20" --data "$TEST" --count 200 --quiet --json --preset cifar > "$T/e_preset.json" 2> /dev/null
$TERN eval "$T/r20_meta.onnx" --data "$TEST" --count 200 --quiet --json > "$T/e_meta.json" 2> "$T/e_meta.err"
$TERN eval "$R20" --data "$TEST" --count 200 --quiet --json > "$T/e_none.json" 2> "$T/e_none.err"
a=$(field "$T/e_preset.json" top1); b=$(field "$T/e_meta.json" top1); c=$(field "$T/e_none.json" top1)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "FP32 eval with metadata_props = with --preset cifar ($b %)" || bad "metadata eval $b vs preset $a"
grep -q "metadata.*mean 0.485" "$T/e_meta.err" && ok "says it uses the metadata: $(head -c 120 "$T/e_meta.err")" || bad "no word of the metadata: $(cat "$T/e_meta.err")"
grep -q "no --preset" "$T/e_none.err" && ok "FP32 eval without preprocessing says so ($c %): $(head -c 100 "$T/e_none.err")..." || bad "silent without preprocessing"
$TERN quantize "$T/r20_meta.onnx" -o "$T/q_meta.tern" --calib "$CAL" --calib-count 48 --weights 8 --quiet > /dev/null 2>&1 &&
    $TERN quantize "$R20" -o "$T/q_preset.tern" --calib "$CAL" --calib-count 48 --weights 8 --preset cifar --quiet > /dev/null 2>&1 || bad "quantize meta/preset"
$TERN eval "$T/q_meta.tern" --data "$TEST" --count 64 --quiet --dump "$T/dm" > /dev/null; $TERN eval "$T/q_preset.tern" --data "$TEST" --count 64 --quiet --dump "$T/dp" > /dev/null
[ -s "$T/dm" ] && cmp -s "$T/dm" "$T/dp" && ok "quantize takes the normalisation from metadata_props (same logits as --preset cifar)" || bad "metadata quantize differs"
if $TERN eval "$T/r20_badmeta.onnx" --data "$TEST" --count 8 --quiet > /dev/null 2> "$T/bad.err"; then bad "bad metadata accepted"
elif grep -q "tern.std.*0.2,zero,1" "$T/bad.err"; then ok "bad metadata: $(cat "$T/bad.err")"; else bad "bad metadata message: $(cat "$T/bad.err")"; fi
$TERN info "$T/r20_meta.onnx" | grep -q "^preprocessing (metadata_props): mean 0.485,0.456,0.406, std 0.229" && ok "tern info X.onnx shows metadata_props" ||
    bad "tern info X.onnx: no metadata line"
$TERN eval --help | grep -q -- "--mean A,B,C .*order the channels are fed" && ok "help: --mean in the order the channels are fed" || bad "help of --mean"
finish
