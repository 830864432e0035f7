#!/usr/bin/env bash
# tern quantize + the integer engine on the real models:
#  - the same inputs give byte-identical .tern files;
#  - ResNet-56 ternary N=4 (default policy) is at most 1/12 of the FP32 ONNX file;
#  - the % of multiplications replaced equals an independent count from the ONNX layer shapes;
#  - 8-bit weights stay within 0.3 point of FP32 on the CIFAR-10 test set (integer engine's own top-1);
#  - logits are identical under every ISA level and thread count;
#  - a --write-layers policy file replays to the same bytes with --layers; bad policy lines and
#    unknown layer names fail cleanly; --sensitivity reports every low-precision layer;
#  - a --max-drop search gives the bytes of a fresh run with the policy it wrote.
# These check the engine and the format, so they use the plain quantizer (--plain: fast); the
# default post-training path is checked in t_accuracy.sh.
. "$(dirname "$0")/lib.sh"
CAL="--calib $D/cifar10/data_batch_1.bin --calib-count 256 --preset cifar --quiet --plain"
R20=$D/models/cifar10/resnet20.onnx; R56=$D/models/cifar10/resnet56.onnx

# determinism
$TERN quantize "$R20" -o "$T/a.tern" $CAL --json > "$T/a.json" && $TERN quantize "$R20" -o "$T/b.tern" $CAL --json > /dev/null \
    && cmp -s "$T/a.tern" "$T/b.tern" && ok "quantizing twice gives byte-identical files" || bad "quantizing twice differs"

# size
if $TERN quantize "$R56" -o "$T/r56.tern" $CAL > /dev/null; then
    ts=$(stat -c %s "$T/r56.tern"); os=$(stat -c %s "$R56")
    [ $((ts * 12)) -le "$os" ] && ok "resnet56 ternary N=4: $ts bytes <= 1/12 of $os" || bad "resnet56 .tern $ts bytes > 1/12 of $os"
else bad "quantize resnet56"; fi

# multiplications replaced vs an independent count (onnx shape inference in Python)
if /usr/bin/python3 -c "import onnx" 2>/dev/null; then
    for N in 1 4 64; do
        $TERN quantize "$R20" -o "$T/n.tern" $CAL --cluster $N --json > "$T/n.json" || { bad "quantize N=$N"; continue; }
        got=$(field "$T/n.json" mult_replaced)
        want=$(/usr/bin/python3 - "$R20" $N <<'PY'
import onnx, sys, math
from onnx import shape_inference, numpy_helper
m = shape_inference.infer_shapes(onnx.load(sys.argv[1])); N = int(sys.argv[2])
shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(m.graph.value_info) + list(m.graph.output)}
inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
layers = []
for n in m.graph.node:
    if n.op_type == "Conv":
        w = inits[n.input[1]]; o = shapes[n.output[0]]
        layers.append((o[1] * o[2] * o[3] * w.shape[1] * w.shape[2] * w.shape[3], w.shape[1], w.shape[2] * w.shape[3]))
    elif n.op_type == "Gemm":
        w = inits[n.input[1]]; layers.append((w.shape[0] * w.shape[1], w.shape[1], 1))
total = sum(l[0] for l in layers)
# default policy: first conv and last layer stay 8-bit; the others ternary with clusters of N channels
rep = sum(macs * (1 - math.ceil(cin / N) / (cin * khw)) for macs, cin, khw in layers[1:-1])
print("%.6f" % (rep / total))
PY
)
        awk -v g="$got" -v w="$want" 'BEGIN { exit !(g - w < 1e-5 && w - g < 1e-5) }' && ok "N=$N: $got of multiplications replaced (independent count $want)" || bad "N=$N: tern says '$got', independent count $want"
    done
else echo "skip: no python3-onnx, multiplication count not cross-checked"; fi

# 8-bit accuracy of the integer engine vs FP32, full test set. FP32 reference: the PyTorch
# figures of ../shared/data/README.md, which t_fp32_accuracy.sh shows tern's FP32 engine matches.
for nf in resnet20:81.03 resnet56:83.20; do
    name=${nf%%:*}; f=${nf##*:}
    M=$D/models/cifar10/$name.onnx
    $TERN quantize "$M" -o "$T/$name.8.tern" $CAL --weights 8 > /dev/null || { bad "quantize $name 8-bit"; continue; }
    $TERN eval "$T/$name.8.tern" --data "$D/cifar10/test_batch.bin" --threads 2 --json --quiet > "$T/q.json"
    q=$(field "$T/q.json" top1)
    awk -v f="$f" -v q="$q" 'BEGIN { d = f - q; if (d < 0) d = -d; exit !(d <= 0.3) }' && ok "$name 8-bit integer engine top-1 $q vs FP32 $f" || bad "$name 8-bit top-1 $q vs FP32 $f (> 0.3 apart)"
done

# Tiny Darknet (signed activations, max pools, wide global-pool logits), 8-bit weights:
# calibrate on the even-numbered sample images, evaluate on 200 of the odd ones
TD=$D/models/imagenet/tiny_darknet.onnx; IMN="--data $D/imagenet_sample --labels $D/models/imagenet/labels_darknet_order.txt"
if $TERN quantize "$TD" -o "$T/td8.tern" --calib $D/imagenet_sample --labels $D/models/imagenet/labels_darknet_order.txt \
        --preset darknet --calib-count 100 --weights 8 --threads 2 --quiet --plain > /dev/null 2> "$T/td8.err"; then
    ! grep -q "warning: calibration source" "$T/td8.err" && ok "100 calibration images of 100 classes: no class-coverage warning" \
        || bad "class-coverage warning on imagenet_sample: $(cat "$T/td8.err")"

    $TERN eval "$TD" $IMN --preset darknet --count 200 --offset 1 --batch 20 --threads 2 --json --quiet > "$T/f.json"
    $TERN eval "$T/td8.tern" $IMN --count 200 --offset 1 --batch 20 --threads 2 --json --quiet > "$T/q.json"
    f=$(field "$T/f.json" top1); q=$(field "$T/q.json" top1)
    awk -v f="$f" -v q="$q" 'BEGIN { exit !(f - q <= 3) }' && ok "tiny darknet 8-bit top-1 $q vs FP32 $f on 200 held-out images" || bad "tiny darknet 8-bit top-1 $q vs FP32 $f"
else bad "quantize tiny darknet"; fi

# calibration images of few classes (imagenette: 10 of the model's 1000) are named in a warning
$TERN quantize "$TD" -o "$T/tdn.tern" --calib $D/imagenet_sample --calib $D/imagenette --labels $D/models/imagenet/labels_darknet_order.txt \
    --preset darknet --calib-count 200 --weights 8 --threads 2 --quiet --plain > /dev/null 2> "$T/tdn.err" \
    && grep -q "warning: calibration source $D/imagenette: its 100 images cover 10 of the model's 1000 classes" "$T/tdn.err" \
    && [ "$(grep -c warning "$T/tdn.err")" -eq 1 ] && ok "a calibration source of 10 classes is warned about, the other not" \
    || bad "class-coverage warning: $(cat "$T/tdn.err")"

# per-layer policy file: written, replayed to the same bytes; bad files fail with file:line
$TERN quantize "$R20" -o "$T/p1.tern" $CAL --layer 3=4:2 --layer /layer3/layer3.0/conv1/Conv=t:all --write-layers "$T/p.txt" > /dev/null \
    && $TERN quantize "$R20" -o "$T/p2.tern" $CAL --layers "$T/p.txt" > /dev/null && cmp -s "$T/p1.tern" "$T/p2.tern" \
    && grep -q '^/layer1/layer1.1/conv1/Conv=4:2 ' "$T/p.txt" && grep -q '^/layer3/layer3.0/conv1/Conv=t:all ' "$T/p.txt" \
    && [ "$(grep -c '^[^#]' "$T/p.txt")" -eq 20 ] \
    && ok "--write-layers lists all 20 weight layers and --layers replays it to identical bytes" || bad "--layers round trip"
printf '# comment\n\n  2 = 8   # trailing comment\n' > "$T/c.txt"
$TERN quantize "$R20" -o "$T/c1.tern" $CAL --layers "$T/c.txt" > /dev/null && $TERN quantize "$R20" -o "$T/c2.tern" $CAL --layer 2=8 > /dev/null \
    && cmp -s "$T/c1.tern" "$T/c2.tern" && ok "--layers: comments, blank lines and spaces as --layer" || bad "--layers with comments"
for bl in "foo" "3=t:x" "nosuchlayer=8"; do
    printf '%s\n' "$bl" > "$T/bad.txt"
    $TERN quantize "$R20" -o "$T/bad.tern" $CAL --layers "$T/bad.txt" > /dev/null 2> "$T/err"; rc=$?
    [ $rc -ne 0 ] && [ ! -e "$T/bad.tern" ] && grep -q "tern quantize:" "$T/err" && ok "--layers '$bl': exit $rc, no output ($(head -c 90 "$T/err"))" || bad "--layers '$bl' rc $rc"
done

# --max-drop reuses the calibration and the pass's unchanged layers from step to step (src/quant/cache.c):
# its result must be the bytes of a fresh quantization with the policy it chose
MD="--calib $D/cifar10/data_batch_1.bin --preset cifar --calib-count 64 --opt-images 16 --threads 2 --quiet"
if $TERN quantize "$R20" -o "$T/md.tern" $MD --drop-count 200 --max-drop 0 --min-replaced 0.93 --write-layers "$T/md.txt" > /dev/null 2> "$T/md.err"; then
    steps=$(grep -c "max-drop: layer" "$T/md.err")
    $TERN quantize "$R20" -o "$T/md2.tern" $MD --layers "$T/md.txt" > /dev/null && cmp -s "$T/md.tern" "$T/md2.tern" && [ "$steps" -ge 3 ] \
        && ok "--max-drop after $steps steps: the same bytes as quantizing afresh with its --write-layers policy" || bad "--max-drop ($steps steps) differs from its replay"
else bad "quantize --max-drop: $(head -c 300 "$T/md.err")"; fi

# --sensitivity: one row per low-precision layer (the 18 body layers; first and last are 8-bit)
if $TERN quantize "$R20" $CAL --calib-count 64 --drop-count 300 --sensitivity --json > "$T/s.json" 2> "$T/s.err"; then
    /usr/bin/python3 - "$T/s.json" <<'PY' && ok "--sensitivity: 18 layers with top-1, drop, KL >= 0, SQNR; not all alike" || bad "--sensitivity JSON ($(cat "$T/s.err" | head -c 200))"
import json, sys
j = json.load(open(sys.argv[1])); L = j["layers"]
assert j["images"] == 300 and len(L) == 18, (j["images"], len(L))
assert [l["index"] for l in L] == list(range(1, 19))
assert all(l["kl"] >= 0 and abs(j["fp32_top1"] - l["top1"] - l["drop"]) < 1e-3 and l["weights"] == "t:4" for l in L)
assert len(set(round(l["kl"], 6) for l in L)) > 1 and len(set(round(l["sqnr_db"], 3) for l in L)) > 1
PY
else bad "--sensitivity failed: $(head -c 200 "$T/s.err")"; fi

# post-training knobs: --opt-mix 0 and --opt-rows 65536 are the defaults (same bytes); --opt-mix
# changes the result; out-of-range values fail cleanly with no output
PT="--calib $D/cifar10/data_batch_1.bin --calib-count 16 --opt-images 8 --preset cifar --quiet"
$TERN quantize "$R20" -o "$T/p0.tern" $PT > /dev/null 2>&1 && $TERN quantize "$R20" -o "$T/p1.tern" $PT --opt-mix 0 --opt-rows 65536 > /dev/null 2>&1 \
    && $TERN quantize "$R20" -o "$T/p2.tern" $PT --opt-mix 0.25 > /dev/null 2>&1 \
    && cmp -s "$T/p0.tern" "$T/p1.tern" && ! cmp -s "$T/p0.tern" "$T/p2.tern" \
    && ok "--opt-mix 0 --opt-rows 65536 give the default's bytes; --opt-mix 0.25 differs" || bad "--opt-mix / --opt-rows defaults"
# --opt-actq: 0 is the default's bytes; 1 (activations rounded to their grid in the pass's
# simulation) differs, and gives the same bytes twice
$TERN quantize "$R20" -o "$T/q0.tern" $PT --opt-actq 0 > /dev/null 2>&1 && $TERN quantize "$R20" -o "$T/q1.tern" $PT --opt-actq 1 > /dev/null 2>&1 \
    && $TERN quantize "$R20" -o "$T/q2.tern" $PT --opt-actq 1 > /dev/null 2>&1 \
    && cmp -s "$T/p0.tern" "$T/q0.tern" && ! cmp -s "$T/p0.tern" "$T/q1.tern" && cmp -s "$T/q1.tern" "$T/q2.tern" \
    && ok "--opt-actq 0 gives the default's bytes; --opt-actq 1 differs, the same bytes twice" || bad "--opt-actq"
for badopt in "--opt-mix 1.5" "--opt-mix -0.1" "--opt-mix x" "--opt-rows 0" "--opt-actq 2" "--opt-actq x"; do
    $TERN quantize "$R20" -o "$T/bo.tern" $PT $badopt > /dev/null 2> "$T/err"; rc=$?
    [ $rc -eq 2 ] && [ ! -e "$T/bo.tern" ] && grep -q "bad --opt-" "$T/err" && ok "'$badopt' refused: $(head -c 80 "$T/err")" || bad "'$badopt': rc $rc"
done

# identical logits under every ISA and thread count (ternary and 4-bit models)
$TERN quantize "$R20" -o "$T/t4.tern" $CAL --weights 4 --cluster 4 > /dev/null
for model in "$T/a.tern" "$T/t4.tern" "$T/resnet20.8.tern"; do
    isas="ref"; grep -q avx2 /proc/cpuinfo && isas="$isas avx2"; grep -q avx512_vnni /proc/cpuinfo && isas="$isas avx512vnni"
    first=""; before=$fail
    for isa in $isas; do
        for th in 1 2; do
            TERN_ISA=$isa $TERN eval "$model" --data "$D/cifar10/test_batch.bin" --count 48 --batch 16 --threads $th --quiet --dump "$T/d.$isa.$th" > /dev/null || bad "eval $isa $th"
            [ -z "$first" ] && first="$T/d.$isa.$th"
            cmp -s "$first" "$T/d.$isa.$th" || bad "$(basename $model): logits under $isa/$th threads differ from $(basename $first)"
        done
    done
    [ $fail -eq $before ] && ok "$(basename $model): identical logits under {$isas} x {1,2} threads on 48 images"
done
finish
