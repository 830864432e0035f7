#!/usr/bin/python3
"""PyTorch peer baselines: FP32 and int8 (static PTQ, oneDNN engine) for the shared models.

Usage:
  /usr/bin/python3 bench/peers/torch_bench.py MODEL.onnx [options]
    --modes fp32,int8        what to run (default fp32,int8; int8 = peer torch-int8-onednn)
    --batch 64[,B...]        batch sizes           --threads 1[,T...]   torch.set_num_threads
    --seconds 3              time box per case     --warmup 3           untimed runs per case
    --rounds 3               the time box is split into rounds; the best round's median is reported
    --check-images N         images for the accuracy check (CIFAR default 1000, ImageNet 50)
    --calib-images N         int8 calibration images (CIFAR default 512, ImageNet 100)
    --layout channels_last   FP32 weight memory format: channels_last (default) or nchw
    --engine onednn          quantized engine for int8: onednn (default) or qnnpack
    --qconfig auto           int8 observers: onednn (8-bit activations), x86 (7-bit activations,
                             reduce_range=True) or auto = onednn on CPUs with VNNI, x86 without
    --name NAME              model name printed (default: file name without .onnx)
    --data DIR               data dir (default $TERN_DATA, else ../shared/data beside the repo)

Models (recognised from the ONNX input shape):
  * CIFAR ResNets (resnet{20,32,44,56}.onnx, BN folded): rebuilt as PyTorch code (option-A
    shortcut: x[:, :, ::2, ::2] then zero channel padding) with the Conv/Gemm weights and biases
    read from the ONNX initializers, so the network is exactly the ONNX graph, not a re-export.
    Data: cifar10/test_batch.bin, records strided across the class-grouped file; calibration on
    the first records of cifar10/data_batch_1.bin (already shuffled).
  * Tiny Darknet (tiny_darknet.onnx): a plain chain Conv/LeakyRelu/MaxPool/GAP, rebuilt from the
    ONNX nodes in order. Data: imagenet_sample/ with the README's darknet preprocessing.
  * SqueezeNet v1.1 (squeezenet1_1.onnx, input 227x227): the ONNX graph (Fire modules: Concat)
    rebuilt node by node. Data: imagenet_val/ with Caffe preprocessing (README section 5).
FP32 and int8 models are both TorchScript-traced and frozen (torch.jit.trace + torch.jit.freeze).
FP32 weights are in channels_last (NHWC) memory format, PyTorch's recommended CPU inference layout
(oneDNN convolutions; Tiny Darknet 1 thread: 12.6 ms vs 21.9 ms NCHW, whose max_pool2d is slow);
the input stays NCHW and is converted inside the timed call (--layout nchw to turn this off).
int8: eager-mode static post-training quantization, torch.backends.quantized.engine='onednn',
per-channel symmetric int8 weights, histogram-calibrated uint8 activations, Conv+ReLU fused,
residual add+ReLU as one quantized add_relu. Which activation range: oneDNN's int8 convolution on
a CPU without VNNI (AVX2 only, like this project's machines) multiplies u8 x s8 pairs with
vpmaddubsw, whose int16 sums saturate when activations use all 8 bits; get_default_qconfig('onednn')
assumes VNNI and does use 8 bits (Tiny Darknet: 12 % relative error after the first conv alone).
PyTorch's own 'x86' qconfig (7-bit activations, reduce_range=True) is made for exactly this, so
--qconfig auto picks it on non-VNNI CPUs. The qconfig used is printed in each int8 line.

Output, one line per case (stdout; progress goes to stderr):
  peer=torch-fp32 model=resnet20 batch=64 threads=1 images_per_s=.. ms_per_batch=.. acc=.. n=..
ms_per_batch is the median of the timed runs in the best of --rounds rounds (the machines are shared:
a job that takes a core for a second spoils a round, not the number), images_per_s = batch /
ms_per_batch; ms_worst_round (median of the slowest round), ms_mean (all runs) and iters follow.
other_cpu = cores used by *other* processes while this case was timed (from /proc/stat minus this
process's CPU time): above ~0.2 the case shared the machine and its number is not trustworthy
(with 2 threads on 2 cores, one busy neighbour can slow OpenMP down tenfold). The accuracy (top-1 on the n check images, top5 too for
ImageNet) is measured before timing, in the same mode, with the same batch size.
"""
import os
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def ensure_packages():
    try:
        import numpy, onnx, torch  # noqa: F401
        return True
    except ImportError:
        pass
    subprocess.call(["bash", os.path.join(HERE, "install.sh"), "apt"])
    try:
        import numpy, onnx, torch  # noqa: F401,F811
        return True
    except ImportError as e:
        print("skip: torch_bench.py needs python3-torch python3-onnx python3-numpy (%s)" % e)
        return False


def parse_args(argv):
    o = {"modes": "fp32,int8", "batch": "64", "threads": "1", "seconds": 3.0, "warmup": 3,
         "check_images": None, "calib_images": None, "name": None, "data": None, "model": None,
         "min_iters": 5, "rounds": 3, "engine": "onednn", "qconfig": "auto", "layout": "channels_last"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__); sys.exit(0)
        if a.startswith("--"):
            key = a[2:].replace("-", "_")
            if key not in o or i + 1 >= len(argv):
                sys.exit("torch_bench.py: bad option %s (see --help)" % a)
            o[key] = argv[i + 1]; i += 2
        else:
            o["model"] = a; i += 1
    if not o["model"]:
        sys.exit("usage: torch_bench.py MODEL.onnx [options] (see --help)")
    o["batch"] = [int(b) for b in str(o["batch"]).split(",")]
    o["threads"] = [int(t) for t in str(o["threads"]).split(",")]
    o["modes"] = [m for m in o["modes"].split(",") if m]
    o["seconds"] = float(o["seconds"]); o["warmup"] = int(o["warmup"]); o["min_iters"] = int(o["min_iters"])
    o["rounds"] = max(1, int(o["rounds"]))
    if o["name"] is None:
        o["name"] = os.path.basename(o["model"]).rsplit(".onnx", 1)[0]
    if o["data"] is None:
        o["data"] = os.environ.get("TERN_DATA") or os.path.join(HERE, "..", "..", "..", "shared", "data")
    return o


# ----------------------------------------------------------------------------------------- models
def onnx_weights(path):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return m, inits


def attr(node, name, default=None):
    import onnx
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def build_cifar_resnet(path):
    """The README's CIFAR ResNet with folded-BN conv biases, weights from the ONNX file."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.ao.nn.quantized import FloatFunctional

    m, inits = onnx_weights(path)
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"]
    if (len(convs) - 1) % 6 or len(gemm) != 1 or any(len(c.input) != 3 for c in convs):
        raise SystemExit("%s: not a BN-folded CIFAR ResNet (need 6n+1 Conv with bias, 1 Gemm)" % path)
    nblk = (len(convs) - 1) // 6

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.down = stride != 1 or cin != cout
            self.padc = (cout - cin) // 2
            self.add = FloatFunctional()  # becomes a quantized add_relu after convert

        def forward(self, x):
            y = self.conv2(self.relu1(self.conv1(x)))
            s = x
            if self.down:  # option A: rows/cols 0,2,4..., zero channels before and after
                s = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.padc, self.padc))
            return self.add.add_relu(y, s)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1)
            self.relu1 = nn.ReLU()
            blocks, cin = [], 16
            for stage, cout in enumerate((16, 32, 64)):
                for b in range(nblk):
                    stride = 2 if stage > 0 and b == 0 else 1
                    blocks.append(Block(cin, cout, stride))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, 10)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            x = self.relu1(self.conv1(self.quant(x)))
            x = self.pool(self.blocks(x)).flatten(1)
            return self.dequant(self.fc(x))

        def fuse(self):
            torch.ao.quantization.fuse_modules(self, [["conv1", "relu1"]], inplace=True)
            for b in self.blocks:
                torch.ao.quantization.fuse_modules(b, [["conv1", "relu1"]], inplace=True)

    net = ResNet()
    mods = [net.conv1] + [c for b in net.blocks for c in (b.conv1, b.conv2)]
    with torch.no_grad():
        for mod, node in zip(mods, convs):
            w, bias = inits[node.input[1]], inits[node.input[2]]
            if tuple(w.shape) != tuple(mod.weight.shape) or list(attr(node, "strides")) != list(mod.stride):
                raise SystemExit("%s: conv %s does not match the CIFAR ResNet layout" % (path, node.name))
            mod.weight.copy_(torch.from_numpy(w.copy()))
            mod.bias.copy_(torch.from_numpy(bias.copy()))
        g = gemm[0]
        w = inits[g.input[1]]
        if not attr(g, "transB", 0):
            w = w.T
        net.fc.weight.copy_(torch.from_numpy(w.copy()))
        net.fc.bias.copy_(torch.from_numpy(inits[g.input[2]].copy()))
    return net.eval()


def build_chain(path):
    """A straight chain of Conv/LeakyRelu/Relu/MaxPool/GlobalAveragePool/Flatten (Tiny Darknet)."""
    import torch
    import torch.nn as nn
    m, inits = onnx_weights(path)
    layers, prev = [], m.graph.input[0].name
    for n in m.graph.node:
        if n.input[0] != prev:
            raise SystemExit("%s: not a plain chain at node %s" % (path, n.name))
        prev = n.output[0]
        if n.op_type == "Conv":
            w = torch.from_numpy(inits[n.input[1]].copy())
            pads = list(attr(n, "pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:] or attr(n, "group", 1) != 1:
                raise SystemExit("%s: unsupported Conv %s" % (path, n.name))
            c = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), tuple(attr(n, "strides", [1, 1])),
                          tuple(pads[:2]), bias=len(n.input) > 2)
            with torch.no_grad():
                c.weight.copy_(w)
                if len(n.input) > 2:
                    c.bias.copy_(torch.from_numpy(inits[n.input[2]].copy()))
            layers.append(c)
        elif n.op_type == "LeakyRelu":
            layers.append(nn.LeakyReLU(attr(n, "alpha", 0.01)))
        elif n.op_type == "Relu":
            layers.append(nn.ReLU())
        elif n.op_type == "MaxPool":
            if any(attr(n, "pads", [0]) or [0]) or attr(n, "ceil_mode", 0):
                raise SystemExit("%s: unsupported MaxPool %s" % (path, n.name))
            layers.append(nn.MaxPool2d(tuple(attr(n, "kernel_shape")), tuple(attr(n, "strides"))))
        elif n.op_type == "GlobalAveragePool":
            layers.append(nn.AdaptiveAvgPool2d(1))
        elif n.op_type == "Flatten":
            layers.append(nn.Flatten(attr(n, "axis", 1)))
        else:
            raise SystemExit("%s: op %s not supported by the chain builder" % (path, n.op_type))

    class Chain(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.body = nn.Sequential(*layers)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.body(self.quant(x)))

        def fuse(self):
            pass  # Conv+LeakyReLU has no eager-mode fusion in torch 1.13

    return Chain().eval()


def build_graph(path):
    """A DAG of Conv(+Relu)/Relu/MaxPool (ceil_mode too)/Concat/GlobalAveragePool/Flatten, run node
    by node in the ONNX order (SqueezeNet v1.1: Fire modules concatenate two expand convs). A Conv
    whose only reader is a Relu becomes one Conv+ReLU pair (fused for int8); Concat is a
    FloatFunctional (a quantized cat after convert)."""
    import torch
    import torch.nn as nn
    from torch.ao.nn.quantized import FloatFunctional
    m, inits = onnx_weights(path)
    nodes = list(m.graph.node)
    readers = {}
    for n in nodes:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    mods, prog, skip = [], [], set()
    for k, n in enumerate(nodes):
        if k in skip:
            continue
        out = n.output[0]
        if n.op_type == "Conv":
            w = torch.from_numpy(inits[n.input[1]].copy())
            pads = list(attr(n, "pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:] or attr(n, "group", 1) != 1 or list(attr(n, "dilations", [1, 1])) != [1, 1]:
                raise SystemExit("%s: unsupported Conv %s" % (path, n.name))
            c = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), tuple(attr(n, "strides", [1, 1])),
                          tuple(pads[:2]), bias=len(n.input) > 2)
            with torch.no_grad():
                c.weight.copy_(w)
                if len(n.input) > 2:
                    c.bias.copy_(torch.from_numpy(inits[n.input[2]].copy()))
            nxt = nodes[k + 1] if k + 1 < len(nodes) else None
            if nxt is not None and nxt.op_type == "Relu" and nxt.input[0] == out and readers.get(out) == 1:
                mods.append(nn.Sequential(c, nn.ReLU()))
                out = nxt.output[0]
                skip.add(k + 1)
            else:
                mods.append(c)
        elif n.op_type == "Relu":
            mods.append(nn.ReLU())
        elif n.op_type == "MaxPool":
            pads = list(attr(n, "pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                raise SystemExit("%s: unsupported MaxPool %s" % (path, n.name))
            mods.append(nn.MaxPool2d(tuple(attr(n, "kernel_shape")), tuple(attr(n, "strides")), tuple(pads[:2]),
                                     ceil_mode=bool(attr(n, "ceil_mode", 0))))
        elif n.op_type == "Concat":
            mods.append(FloatFunctional())
        elif n.op_type == "GlobalAveragePool":
            mods.append(nn.AdaptiveAvgPool2d(1))
        elif n.op_type == "Flatten":
            mods.append(nn.Flatten(attr(n, "axis", 1)))
        else:
            raise SystemExit("%s: op %s not supported by the graph builder" % (path, n.op_type))
        prog.append((n.op_type, list(n.input[:1]) if n.op_type != "Concat" else list(n.input), out,
                     attr(n, "axis", 1)))
    inp, outp = m.graph.input[0].name, m.graph.output[0].name

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.body = nn.ModuleList(mods)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            env = {inp: self.quant(x)}
            for mod, (op, ins, out, axis) in zip(self.body, prog):
                env[out] = mod.cat([env[i] for i in ins], dim=axis) if op == "Concat" else mod(env[ins[0]])
            return self.dequant(env[outp])

        def fuse(self):
            for mod in self.body:
                if isinstance(mod, nn.Sequential):
                    torch.ao.quantization.fuse_modules(mod, [["0", "1"]], inplace=True)

    return Graph().eval()


# ------------------------------------------------------------------------------------------- data
def cifar_records(path, idx, np):
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)[idx]
    labels = raw[:, 0].astype(np.int64)
    x = raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    mean = np.array(CIFAR_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(CIFAR_STD, np.float32).reshape(1, 3, 1, 1)
    return (x - mean) / std, labels


def darknet_resize(im, w2, h2, np):
    """darknet's resize_image() on a float32 CHW image (README section 3, step 3)."""
    c, ih, iw = im.shape
    part = np.empty((c, ih, w2), np.float32)
    wsc = np.float32(iw - 1) / np.float32(w2 - 1)
    sx = np.arange(w2, dtype=np.float32) * wsc
    ix = sx.astype(np.int64)
    dx = (sx - ix.astype(np.float32)).astype(np.float32)
    last = (np.arange(w2) == w2 - 1) | (iw == 1)
    ix1 = np.minimum(ix + 1, iw - 1)
    part[:] = (np.float32(1) - dx) * im[:, :, np.minimum(ix, iw - 1)] + dx * im[:, :, ix1]
    part[:, :, last] = im[:, :, iw - 1:iw]
    hsc = np.float32(ih - 1) / np.float32(h2 - 1)
    sy = np.arange(h2, dtype=np.float32) * hsc
    iy = sy.astype(np.int64)
    dy = (sy - iy.astype(np.float32)).astype(np.float32)
    out = (np.float32(1) - dy)[None, :, None] * part[:, iy, :]
    addy = (np.arange(h2) != h2 - 1) & (ih != 1)
    iy1 = np.minimum(iy + 1, ih - 1)
    out += np.where(addy, dy, np.float32(0))[None, :, None] * part[:, iy1, :]
    return out.astype(np.float32)


def imagenet_images(data, idx, np):
    from PIL import Image
    folder = os.path.join(data, "imagenet_sample")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".JPEG"))
    order = [l.strip() for l in open(os.path.join(data, "models", "imagenet", "labels_darknet_order.txt"))]
    lab = {w: i for i, w in enumerate(order)}
    xs, ys = [], []
    for i in idx:
        f = files[i % len(files)]
        im = np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"), dtype=np.float32) / 255.0
        im = im.transpose(2, 0, 1)
        h, w = im.shape[1:]
        if w < h:
            w2, h2 = 224, (h * 224) // w
        else:
            w2, h2 = (w * 224) // h, 224
        if (w2, h2) != (w, h):
            im = darknet_resize(im, w2, h2, np)
        y0, x0 = (h2 - 224) // 2, (w2 - 224) // 2
        xs.append(im[:, y0:y0 + 224, x0:x0 + 224])
        ys.append(lab[f[:9]])
    return np.stack(xs), np.array(ys, np.int64)


def caffe_images(data, idx, np, role="imagenet_val"):
    """SqueezeNet v1.1 (README section 5): imagenet_val/ for the check, imagenet_sample/ for int8
    calibration (227x227; others: shorter side resized to 227, centre crop), channels B,G,R,
    mean (104, 117, 123) subtracted on the 0..255 scale."""
    from PIL import Image
    folder = os.path.join(data, role)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".JPEG"))
    order = [l.strip() for l in open(os.path.join(data, "models", "imagenet", "labels_caffe_order.txt"))]
    lab = {w: i for i, w in enumerate(order)}
    mean = np.array([104, 117, 123], np.float32).reshape(3, 1, 1)
    xs, ys = [], []
    for i in idx:
        f = files[i % len(files)]
        im = Image.open(os.path.join(folder, f)).convert("RGB")
        w, h = im.size
        if (w, h) != (227, 227):
            s = 227 / min(w, h)
            im = im.resize((max(227, round(w * s)), max(227, round(h * s))), Image.BILINEAR)
            w, h = im.size
            im = im.crop(((w - 227) // 2, (h - 227) // 2, (w - 227) // 2 + 227, (h - 227) // 2 + 227))
        a = np.asarray(im, dtype=np.float32).transpose(2, 0, 1)[::-1]   # B, G, R
        xs.append(a - mean)
        ys.append(lab[f[:9]])
    return np.stack(xs), np.array(ys, np.int64)


# ------------------------------------------------------------------------------------- benchmark
def batches_of(x, y, b):
    """Cut (x, y) into batches of b (last one partial) - for the accuracy check."""
    return [(x[i:i + b], y[i:i + b]) for i in range(0, len(x), b)]


def timing_batches(x, b, torch):
    """Full batches for timing; the pool is tiled if it is smaller than one batch."""
    if len(x) < b:
        x = torch.cat([x] * ((b + len(x) - 1) // len(x)))[:b]
    return [x[i:i + b] for i in range(0, len(x) - b + 1, b)]


def accuracy(model, x, y, b, torch, top5):
    c1 = c5 = 0
    with torch.no_grad():
        for xb, yb in batches_of(x, y, b):
            out = model(xb)
            c1 += int((out.argmax(1) == yb).sum())
            if top5:
                c5 += int((out.topk(5, 1).indices == yb[:, None]).any(1).sum())
    return c1 / len(x), c5 / len(x)


def cpu_snapshot():
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process, wall time)."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:9]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        busy = float("nan")
    t = os.times()
    return busy, t.user + t.system, time.perf_counter()


def other_cpu(a, b):
    """Cores used by other processes between two snapshots: >0.2 means the timing was disturbed."""
    wall = b[2] - a[2]
    return max(0.0, ((b[0] - a[0]) - (b[1] - a[1])) / wall) if wall > 0 else float("nan")


def time_model(model, xs, warmup, seconds, min_iters, rounds, torch):
    """Median of each of `rounds` time boxes of seconds/rounds; the best round is reported.

    The machines are shared: another job taking a core for a second slows a whole round, and the
    best round's median is the most repeatable estimate of the uncontended speed."""
    with torch.no_grad():
        for i in range(warmup):
            model(xs[i % len(xs)])
        meds, alltimes, i = [], [], 0
        for r in range(rounds):
            times, t_end = [], time.perf_counter() + seconds / rounds
            while time.perf_counter() < t_end or len(times) < max(1, min_iters // rounds):
                t0 = time.perf_counter()
                model(xs[i % len(xs)])
                times.append(time.perf_counter() - t0)
                i += 1
            times.sort()
            meds.append(times[len(times) // 2])
            alltimes += times
    return min(meds) * 1e3, sum(alltimes) / len(alltimes) * 1e3, len(alltimes), max(meds) * 1e3


def cpu_has_vnni():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


def trace_freeze(model, example, torch):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = torch.jit.freeze(torch.jit.trace(model, example).eval())
        tm(example); tm(example)  # profiling runs of the TorchScript executor
    return tm


def main(argv):
    o = parse_args(argv)
    if not ensure_packages():
        return 0
    import numpy as np
    import onnx
    import torch

    data = o["data"]
    if not os.path.isfile(o["model"]):
        print("skip: model %s not found" % o["model"]); return 0
    shape = [d.dim_value for d in onnx.load(o["model"], load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    imagenet = shape[-1] in (224, 227)
    torch.set_num_threads(max(o["threads"]))
    t0 = time.time()
    if shape[-1] == 227:   # SqueezeNet v1.1: checked on imagenet_val/, calibrated on imagenet_sample/
        net = build_graph(o["model"])
        n_check = int(o["check_images"] or 50)
        n_calib = int(o["calib_images"] or 100)
        cidx = [(i * 650) // n_check for i in range(n_check)]
        kidx = [((i * 1000) // n_calib + 7) % 1000 for i in range(n_calib)]
        x, y = caffe_images(data, cidx, np)
        calib = lambda: caffe_images(data, kidx, np, "imagenet_sample")[0]  # noqa: E731
    elif imagenet:
        net = build_chain(o["model"])
        n_check = int(o["check_images"] or 50)
        n_calib = int(o["calib_images"] or 100)
        # check: evenly spread over the 1000 classes; calibration: a disjoint spread.
        cidx = [(i * 1000) // n_check for i in range(n_check)]
        kidx = [((i * 1000) // n_calib + 7) % 1000 for i in range(n_calib)]
        kidx = [k if k not in set(cidx) else (k + 1) % 1000 for k in kidx]
        x, y = imagenet_images(data, cidx, np)
        calib = lambda: imagenet_images(data, kidx, np)[0]  # noqa: E731
    else:
        net = build_cifar_resnet(o["model"])
        n_check = int(o["check_images"] or 1000)
        n_calib = int(o["calib_images"] or 512)
        stride = max(1, 10000 // n_check)  # test_batch.bin is grouped by class: stride it
        x, y = cifar_records(os.path.join(data, "cifar10", "test_batch.bin"),
                             np.arange(n_check) * stride % 10000, np)
        calib = lambda: cifar_records(os.path.join(data, "cifar10", "data_batch_1.bin"),  # noqa: E731
                                      np.arange(n_calib), np)[0]
    x, y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
    log("torch_bench: %s: %s, %d check images, data %.1fs" % (o["name"], "imagenet" if imagenet else "cifar",
                                                              len(x), time.time() - t0))

    # Golden logits check (README: resnet20_reference.bin = records 0..15 of test_batch.bin).
    ref = os.path.join(os.path.dirname(os.path.abspath(o["model"])), "resnet20_reference.bin")
    if o["name"] == "resnet20" and os.path.isfile(ref):
        g = torch.from_numpy(np.fromfile(ref, dtype="<f4").reshape(16, 10))
        x16, _ = cifar_records(os.path.join(data, "cifar10", "test_batch.bin"), np.arange(16), np)
        with torch.no_grad():
            d = float((net(torch.from_numpy(x16)) - g).abs().max())
        log("torch_bench: resnet20 fp32 vs resnet20_reference.bin: max|dlogit| = %.2e" % d)
        if d > 1e-4:
            print("FAIL: torch fp32 resnet20 differs from the golden logits by %.2e" % d)
            return 1

    models = {}
    for mode in o["modes"]:
        t1 = time.time()
        if mode == "fp32":
            import copy
            f = copy.deepcopy(net)
            if o["layout"] == "channels_last":
                f = f.to(memory_format=torch.channels_last)
            elif o["layout"] != "nchw":
                sys.exit("torch_bench.py: --layout is channels_last or nchw")
            models["torch-fp32"] = trace_freeze(f, x[:o["batch"][0]], torch)
        elif mode == "int8":
            import copy
            if o["engine"] not in torch.backends.quantized.supported_engines:
                print("skip: quantized engine %s not in this torch (%s)" % (
                    o["engine"], torch.backends.quantized.supported_engines))
                continue
            torch.backends.quantized.engine = o["engine"]
            qc = o["qconfig"]
            if qc == "auto":
                qc = "onednn" if o["engine"] != "onednn" or cpu_has_vnni() else "x86"
            q = copy.deepcopy(net)
            q.fuse()
            q.qconfig = torch.ao.quantization.get_default_qconfig(qc)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.ao.quantization.prepare(q, inplace=True)
                cx = torch.from_numpy(np.ascontiguousarray(calib()))
                with torch.no_grad():
                    for i in range(0, len(cx), 64):
                        q(cx[i:i + 64])
                torch.ao.quantization.convert(q, inplace=True)
            models["torch-int8-" + o["engine"]] = trace_freeze(q, x[:o["batch"][0]], torch)
            qconfig_name = qc
            log("torch_bench: int8 (%s engine, %s qconfig) calibrated on %d images" % (o["engine"], qc, len(cx)))
        else:
            sys.exit("torch_bench.py: unknown mode %s (fp32, int8)" % mode)
        log("torch_bench: %s ready in %.1fs" % (mode, time.time() - t1))

    fails = 0
    for peer, model in models.items():
        for b in o["batch"]:
            torch.set_num_threads(max(o["threads"]))
            a1, a5 = accuracy(model, x, y, b, torch, imagenet)
            # Sanity: FP32 must be near the README accuracy; int8 must still classify.
            floor = (0.55 if imagenet else 0.75) if peer == "torch-fp32" else (0.40 if imagenet else 0.60)
            if len(x) >= 50 and a1 < floor:  # fixed images: deterministic, no flakiness
                print("FAIL: %s %s top-1 %.4f on %d images is below %.2f" % (peer, o["name"], a1, len(x), floor))
                fails += 1
            xs = timing_batches(x, b, torch)
            for t in o["threads"]:
                torch.set_num_threads(t)
                snap = cpu_snapshot()
                med, mean, iters, worst = time_model(model, xs, o["warmup"], o["seconds"], o["min_iters"],
                                                     o["rounds"], torch)
                other = other_cpu(snap, cpu_snapshot())
                extra = " top5=%.4f" % a5 if imagenet else ""
                if peer.startswith("torch-int8"):
                    extra += " qconfig=%s calib=%d" % (qconfig_name, n_calib)
                else:
                    extra += " layout=%s" % o["layout"]
                print("peer=%s model=%s batch=%d threads=%d images_per_s=%.1f ms_per_batch=%.3f acc=%.4f%s n=%d "
                      "ms_worst_round=%.3f ms_mean=%.3f iters=%d other_cpu=%.2f" % (
                          peer, o["name"], b, t, b * 1e3 / med, med, a1, extra, len(x), worst, mean, iters, other),
                      flush=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
