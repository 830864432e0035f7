"""Seeds for tests/fuzz_onnx.c, written at run time (no model file is committed):
the real CIFAR ResNet-20 models from $TERN_DATA, truncated copies of them, and small
hand-built graphs that between them use every op and attribute form the importer reads
(opset 9 attribute forms and opset 13 input forms), so that mutations start from inputs that
reach shape inference and folding rather than failing in the protobuf parser.
    /usr/bin/python3 tests/fuzz_onnx_seeds.py OUT_DIR"""
import os, sys
import numpy as np
import onnx
from onnx import helper as h, numpy_helper as nh, TensorProto as T

out = sys.argv[1]
data = os.environ.get("TERN_DATA", "../shared/data")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1)

def save(name, model_bytes):
    with open(os.path.join(out, name), "wb") as f:
        f.write(model_bytes)

for m in ("resnet20.onnx", "resnet20_torch_export.onnx"):
    p = os.path.join(data, "models/cifar10", m)
    if not os.path.exists(p):
        print(f"fuzz_onnx_seeds: {p} missing; real-model seeds skipped", file=sys.stderr)
        continue
    b = open(p, "rb").read()
    save("real_" + m, b)
    for cut in (64, 1000, 20000, len(b) // 2, len(b) - 7):
        save(f"trunc{cut}_{m}", b[:cut])

def W(name, *shape):
    return nh.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
def I64(name, vals):
    return nh.from_array(np.array(vals, dtype=np.int64), name)

def model(nodes, inits, opset, in_shape=(1, 3, 8, 8), out_name="y"):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, list(in_shape))],
                     [h.make_tensor_value_info(out_name, T.FLOAT, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 7
    return m.SerializeToString()

# 1. conv / bn / relu / pools / gemm: a small classifier (opset 13)
save("cnn13.onnx", model([
    h.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    h.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], name="bn1", epsilon=1e-5),
    h.make_node("Relu", ["bn"], ["r1"]),
    h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    h.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", group=2),
    h.make_node("LeakyRelu", ["c2"], ["l2"], alpha=0.1),
    h.make_node("AveragePool", ["l2"], ["a2"], kernel_shape=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1),
    h.make_node("GlobalAveragePool", ["a2"], ["gp"]),
    h.make_node("Flatten", ["gp"], ["f"], axis=1),
    h.make_node("Gemm", ["f", "wf", "bf"], ["gm"], transB=1, alpha=0.5, beta=2.0),
    h.make_node("Softmax", ["gm"], ["y"], axis=1),
], [W("w1", 4, 3, 3, 3), W("b1", 4), W("g", 4), W("be", 4), W("mu", 4),
    nh.from_array(np.abs(rng.standard_normal(4)).astype(np.float32) + 0.1, "var"),
    W("w2", 6, 2, 3, 3), W("wf", 5, 6), W("bf", 5)], 13))

# 2. the shape subgraph torch exports before a Reshape (Shape, Gather, Unsqueeze, Concat, Cast), opset 13
save("shape13.onnx", model([
    h.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[1, 1]),
    h.make_node("Shape", ["c1"], ["s"]),
    h.make_node("Constant", [], ["zero"], value=nh.from_array(np.array(0, dtype=np.int64))),
    h.make_node("Gather", ["s", "zero"], ["n"], axis=0),
    h.make_node("Unsqueeze", ["n", "ax0"], ["nu"]),
    h.make_node("Constant", [], ["m1"], value_ints=[-1]),
    h.make_node("Concat", ["nu", "m1"], ["shp"], axis=0),
    h.make_node("Cast", ["shp"], ["shp2"], to=7),
    h.make_node("Reshape", ["c1", "shp2"], ["fl"]),
    h.make_node("MatMul", ["fl", "wm"], ["mm"]),
    h.make_node("Add", ["mm", "bm"], ["ad"]),
    h.make_node("Mul", ["ad", "sc"], ["mu"]),
    h.make_node("Sub", ["mu", "sc"], ["su"]),
    h.make_node("Div", ["su", "sc"], ["y"]),
], [W("w1", 2, 3, 1, 1), I64("ax0", [0]), W("wm", 128, 4), W("bm", 4),
    nh.from_array(np.array([2.0], dtype=np.float32), "sc")], 13))

# 3. Pad, Slice, Transpose, Clip, Sigmoid, Concat of activations, Squeeze, with opset-13 inputs
save("misc13.onnx", model([
    h.make_node("Pad", ["x", "pads", "pv"], ["pd"], mode="constant"),
    h.make_node("Slice", ["pd", "st", "en", "axs", "sp"], ["sl"]),
    h.make_node("Clip", ["sl", "lo", "hi"], ["cl"]),
    h.make_node("Sigmoid", ["cl"], ["sg"]),
    h.make_node("Concat", ["sg", "cl", "sl"], ["cc"], axis=1),
    h.make_node("Transpose", ["cc"], ["tr"], perm=[0, 1, 3, 2]),
    h.make_node("GlobalAveragePool", ["tr"], ["gp"]),
    h.make_node("Squeeze", ["gp", "sqax"], ["y"]),
], [I64("pads", [0, 0, 1, 1, 0, 0, 1, 1]), nh.from_array(np.array(0.5, dtype=np.float32), "pv"),
    I64("st", [1, -9]), I64("en", [9, 100]), I64("axs", [2, 3]), I64("sp", [2, 1]),
    nh.from_array(np.array(0.0, dtype=np.float32), "lo"), nh.from_array(np.array(6.0, dtype=np.float32), "hi"),
    I64("sqax", [2, 3])], 13))

# 4. opset 9 attribute forms: Pad pads/value, Slice starts/ends/axes, Unsqueeze/Squeeze axes, Clip min/max
save("attrs9.onnx", model([
    h.make_node("Pad", ["x"], ["pd"], mode="constant", pads=[0, 0, 2, 0, 0, 0, 0, 2], value=1.0),
    h.make_node("Slice", ["pd"], ["sl"], starts=[0, 1], ends=[2, 9], axes=[1, 2]),
    h.make_node("Clip", ["sl"], ["cl"], min=-1.0, max=1.0),
    h.make_node("Dropout", ["cl"], ["dr"], ratio=0.5),
    h.make_node("Identity", ["dr"], ["id"]),
    h.make_node("GlobalAveragePool", ["id"], ["gp"]),
    h.make_node("Squeeze", ["gp"], ["sq"], axes=[2, 3]),
    h.make_node("Unsqueeze", ["sq"], ["y"], axes=[2]),
], [], 9))

# 5. ConstantOfShape, Range and int folding feeding a Reshape; a Constant float list
save("fold11.onnx", model([
    h.make_node("Constant", [], ["shp"], value=I64("v", [2])),
    h.make_node("ConstantOfShape", ["shp"], ["ones"], value=nh.from_array(np.array([1], dtype=np.int64))),
    h.make_node("Constant", [], ["r0"], value=nh.from_array(np.array(0, dtype=np.int64))),
    h.make_node("Constant", [], ["r1"], value=nh.from_array(np.array(2, dtype=np.int64))),
    h.make_node("Constant", [], ["r2"], value=nh.from_array(np.array(1, dtype=np.int64))),
    h.make_node("Range", ["r0", "r1", "r2"], ["rg"]),
    h.make_node("Mul", ["ones", "rg"], ["t"]),
    h.make_node("Add", ["t", "neg"], ["shape2"]),
    h.make_node("Reshape", ["x", "shape2"], ["y"]),
], [I64("neg", [1, 191])], 11))

# 6. a deep chain (graph depth) and a wide Concat (many inputs)
chain = [h.make_node("Relu", ["x" if i == 0 else f"r{i-1}"], [f"r{i}"]) for i in range(200)]
chain.append(h.make_node("Concat", [f"r{i}" for i in range(0, 200, 4)], ["y"], axis=1))
save("deep_wide13.onnx", model(chain, [], 13))
print(f"fuzz_onnx_seeds: {len(os.listdir(out))} seeds in {out}")
