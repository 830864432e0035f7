#!/usr/bin/env bash
# Bad input through the CLI: each case must fail with exit code 1 (not a crash or a sanitizer
# report), print a message naming the offending file, and leave no partial output file.
. "$(dirname "$0")/lib.sh"
expect_fail() { # name needle cmd...
    local name=$1 needle=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; local rc=$?
    if [ $rc -eq 1 ] && grep -qF -- "$needle" "$T/err" && ! grep -q Sanitizer "$T/err"; then
        ok "$name: $(head -c 200 "$T/err" | head -1)"
    else
        bad "$name (exit $rc, want 1 and '$needle'):"; sed 's/^/     /' "$T/err" | head -20
    fi
}
R20=$D/models/cifar10/resnet20.onnx

# Malformed ONNX files, made with the onnx package from the real model.
if /usr/bin/python3 -c "import onnx" 2>/dev/null; then
    /usr/bin/python3 - "$R20" "$T" <<'PY'
import onnx, sys, copy
src, out = sys.argv[1], sys.argv[2]
m = onnx.load(src)
a = copy.deepcopy(m); t = a.graph.initializer[0]; t.raw_data = t.raw_data[:-4]; onnx.save(a, out + "/badlen.onnx")
b = copy.deepcopy(m); b.graph.node[3].op_type = "FancyConv"; onnx.save(b, out + "/unknown_op.onnx")
c = copy.deepcopy(m); c.graph.node[0].attribute.append(onnx.helper.make_attribute("mystery", 3)); onnx.save(c, out + "/bad_attr.onnx")
d = copy.deepcopy(m); d.graph.node[5].input[0] = "nowhere"; onnx.save(d, out + "/dangling.onnx")
e = copy.deepcopy(m); e.opset_import[0].version = 5; onnx.save(e, out + "/old_opset.onnx")
PY
    expect_fail "wrong tensor data length" "badlen.onnx" $TERN info "$T/badlen.onnx"
    expect_fail "unknown op" "FancyConv" $TERN info "$T/unknown_op.onnx"
    expect_fail "unknown op names the node" "$(/usr/bin/python3 -c "import onnx; print(onnx.load('$R20').graph.node[3].name)")" $TERN info "$T/unknown_op.onnx"
    expect_fail "unsupported attribute" "mystery" $TERN info "$T/bad_attr.onnx"
    expect_fail "undefined input" "nowhere" $TERN eval "$T/dangling.onnx" --data "$D/cifar10/test_batch.bin"
    expect_fail "opset out of range" "opset 5" $TERN info "$T/old_opset.onnx"
else
    echo "skip: /usr/bin/python3 has no onnx module (apt-get install python3-onnx): malformed-ONNX cases not run"
fi
head -c 50000 "$R20" > "$T/trunc.onnx"
expect_fail "truncated onnx" "trunc.onnx" $TERN eval "$T/trunc.onnx" --data "$D/cifar10/test_batch.bin"
expect_fail "missing model" "nope.onnx" $TERN run "$T/nope.onnx" "$D/imagenet_sample/n01440764_tench.JPEG"
expect_fail "missing dataset" "no_such.bin" $TERN eval "$R20" --data "$T/no_such.bin"
head -c 10000 "$D/cifar10/test_batch.bin" > "$T/short.bin"
expect_fail "odd-sized CIFAR file" "short.bin" $TERN eval "$R20" --data "$T/short.bin"
head -c 9000 "$D/imagenet_sample/n01440764_tench.JPEG" > "$T/broken.jpg"
expect_fail "corrupt image" "broken.jpg" $TERN run "$D/models/imagenet/tiny_darknet.onnx" "$T/broken.jpg"
expect_fail "image of the wrong size" "takes 224x224" $TERN run "$D/models/imagenet/tiny_darknet.onnx" "$D/imagenet_sample/n01440764_tench.JPEG" --resize 100 --crop 100
# corrupt .tern files and wrong-sized images through run, eval and bench of the integer engine
if $TERN quantize "$R20" -o "$T/good.tern" --calib "$D/cifar10/data_batch_1.bin" --calib-count 32 --preset cifar --quiet > /dev/null 2>&1; then
    sz=$(stat -c %s "$T/good.tern")
    head -c $((sz / 2)) "$T/good.tern" > "$T/half.tern"
    cp "$T/good.tern" "$T/flip.tern"; printf '\x5a' | dd of="$T/flip.tern" bs=1 seek=$((sz / 3)) conv=notrunc 2>/dev/null
    IMG=$D/imagenet_sample/n01440764_tench.JPEG
    for f in half flip; do
        expect_fail "run: corrupt .tern ($f)" "$f.tern" $TERN run "$T/$f.tern" "$IMG"
        expect_fail "eval: corrupt .tern ($f)" "$f.tern" $TERN eval "$T/$f.tern" --data "$D/cifar10/test_batch.bin"
        expect_fail "bench: corrupt .tern ($f)" "$f.tern" $TERN bench "$T/$f.tern"
    done
    expect_fail "run: wrong image size for a .tern" "takes 32x32" $TERN run "$T/good.tern" "$IMG" --resize 40 --crop 40
    expect_fail "eval: wrong image size for a .tern" "the model takes" $TERN eval "$T/good.tern" --data "$D/imagenet_sample" --resize 40 --crop 40
    expect_fail "bench: wrong image size for a .tern" "the model takes" $TERN bench "$T/good.tern" --data "$D/imagenet_sample" --resize 40 --crop 40
    $TERN quantize "$R20" -o "$T/sub/none.tern" --calib "$D/cifar10/data_batch_1.bin" --calib-count 8 --preset cifar --quiet > /dev/null 2>&1
    [ $? -eq 1 ] && [ ! -e "$T/sub/none.tern" ] && ok "quantize into a missing folder fails, no file left" || bad "quantize into a missing folder"
else
    bad "could not quantize resnet20 for the .tern cases"
fi
finish
