#!/usr/bin/python3
"""Export torchvision CNNs with random weights to ONNX, plus a fixed input and PyTorch's output.

Usage: /usr/bin/python3 scripts/export_torchvision.py OUTDIR [name ...] [--threads T] [--check-ort]
       /usr/bin/python3 scripts/export_torchvision.py --zoo OUTDIR [name ...] [--threads T] [--stats DIR]

--zoo exports the model zoo of tests/t_zoo.sh instead (table ZOO below): small inputs (the
architectures end in an adaptive pool, so any size that survives their strides works), opsets 11
and 17, the same randomisation, and the same NAME.onnx / .input.bin / .output.bin / .json files
(input [2,3,S,S], output [2,1000]). These are inputs for the quantizer and the integer engine.
--stats DIR measures the BatchNorm statistics on 16 images of DIR (every 1/16th of its sorted
images, resized and cropped to S, ImageNet mean/std) instead of on Gaussian noise, so that they fit
the images the model is run on as a trained model's do; t_zoo.sh passes imagenet_sample/ (images
0, 62, 124, ...: none of its 4 evaluation images, 8..11).
--zoo nets are conditioned like trained ones, so that their 8-bit logits measure the quantizer and
not the random net's sensitivity (docs/RESULTS.md, issue 11): BN statistics measured one BN at a
time in eval mode (calibrate_bn_eval), BN beta in [0.75, 1.25] instead of [-0.25, 0.25], and the
last BN of every residual branch (inverted residual, MBConv, RegNet block) scaled by 0.3 as the
ResNets' already were.

Names (default: all): resnet18 resnet50 resnet101 googlenet alexnet vgg11 vgg16 mobilenet_v2

For each model NAME, OUTDIR gets
    NAME.onnx          input "input" [N,3,224,224] (N dynamic), output "logits" [N,1000]
    NAME.input.bin     float32 little-endian, [2,3,224,224], fixed random (seeded) input
    NAME.output.bin    float32 little-endian, [2,1000], PyTorch FP32 eval-mode output on that input
    NAME.json          shapes, files, opset, export options, op counts, output statistics

What is exported (fixed; the test depends on it):
    model         opset  const.folding  flatten  notable ONNX ops besides Conv/Relu/Gemm/pooling
    resnet18      13     off            view     BatchNormalization, Add, Shape/Gather/Unsqueeze/Concat/Reshape
    resnet50      11     on             flatten  BatchNormalization, Add, Flatten
    resnet101     17     off            flatten  BatchNormalization (opset-15 form), Add, Flatten
    googlenet     10     off            view     BatchNormalization (eps 1e-3), Concat, MaxPool ceil_mode=1, shape chain
    alexnet        9     on             view     AveragePool 1x1 (adaptive pool), shape chain (opset-9 Unsqueeze attrs)
    vgg11         12     off            flatten  AveragePool, Flatten, 3 Gemm (~530 MB file)
    vgg16         14     on             flatten  AveragePool, Flatten, 3 Gemm (~550 MB file)
    mobilenet_v2  15     off            view     depthwise Conv (group=C), Clip (ReLU6, min/max from Constant nodes), Add
The whole set takes about 1 minute on 2 cores and writes 1.7 GB.

Why the exports look the way they do (these are test inputs for tern's importer + FP32 executor):
  * Random weights with a fixed seed per model: no download, reproducible on any machine.
  * BatchNorm layers get random gamma/beta and running statistics measured on random inputs and then
    perturbed, so folding BN with the wrong mean/var/eps gives a visibly wrong answer (torchvision's
    default init has mean 0 / var 1 / gamma 1 / beta 0, which hides such bugs). Statistics come from
    a real forward pass so activations stay O(1) through 100+ layers. The last BN of each ResNet
    residual branch gets a smaller gamma, as trained ResNets have: otherwise a random ResNet-101 is
    so ill-conditioned that PyTorch's own FP32 result is 6e-5 (relative) away from FP64.
    Each JSON records that distance (torch_fp32_vs_fp64_rel, 3e-7 .. 6e-6 here).
  * Exported with TrainingMode.PRESERVE from a model in eval mode: torch 1.13's default (EVAL)
    export folds BN into the Conv weights itself, which would leave nothing for tern to fold;
    PRESERVE keeps the BatchNormalization nodes, as older exporters and the shared
    resnet20_torch_export.onnx have them.
  * Some models use the classic `x.view(x.size(0), -1)` flatten (older torchvision and much user
    code did this): with a dynamic batch axis that exports as Shape -> Gather -> Unsqueeze ->
    Concat -> Reshape, which depends on the runtime N and so cannot be folded away at import.
  * do_constant_folding=False for some models leaves Constant nodes feeding Clip/Unsqueeze etc.
  * A spread of opsets (9..17) exercises the attribute-vs-input forms of Unsqueeze, Clip, etc.
  * All biases are randomised too (identical zero biases are deduplicated by the exporter into
    Identity nodes, which trained models do not have).
  * The tolerance in the JSON: max|tern - torch| <= 1e-4 * max|torch| over the output; ONNX Runtime
    meets it with a margin of 14x (GoogLeNet) to 300x (bench/peers/ort_check.js, run by --check-ort).
"""
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

MODELS = {
    # name: (opset, constant folding, flatten style, extra constructor kwargs)
    "resnet18":     (13, False, "view", {}),
    "resnet50":     (11, True, "flatten", {}),
    "resnet101":    (17, False, "flatten", {}),
    # MaxPool ceil_mode (GoogLeNet) needs opset >= 10.
    "googlenet":    (10, False, "view", {"aux_logits": False, "init_weights": True, "transform_input": False}),
    "alexnet":      (9, True, "view", {}),
    "vgg11":        (12, False, "flatten", {}),
    "vgg16":        (14, True, "flatten", {}),
    "mobilenet_v2": (15, False, "view", {}),
}
# --zoo: name: (opset, input size, extra constructor kwargs). Opsets alternate 11/17 so both the
# attribute and the input forms of Clip/Slice/Split/ReduceMean/Pad reach the importer.
ZOO = {
    "resnet18":           (17, 64, {}),
    "resnet50":           (11, 64, {}),
    "mobilenet_v2":       (11, 64, {}),
    "mobilenet_v3_small": (17, 64, {}),
    "shufflenet_v2_x1_0": (11, 64, {}),
    "squeezenet1_1":      (17, 64, {}),
    "densenet121":        (11, 64, {}),
    "efficientnet_b0":    (17, 64, {}),
    "resnext50_32x4d":    (17, 64, {}),
    "regnet_x_400mf":     (11, 64, {}),
    "googlenet":          (11, 64, {"aux_logits": False, "init_weights": True, "transform_input": False}),
    "convnext_tiny":      (17, 64, {}),
}
BATCH = 2
# --zoo only (see randomise): BN beta raised by this, the last BN of every residual branch scaled by
# RES_GAMMA, BN statistics measured layer by layer in eval mode.
BETA_SHIFT = 1.0
RES_GAMMA = 0.3
BASE_SEED = 20240611


def ensure_packages():
    """Install the Debian packages we need if they are missing (root + apt only)."""
    missing = []
    for mod, pkg in (("torch", "python3-torch"), ("torchvision", "python3-torchvision"),
                     ("onnx", "python3-onnx"), ("numpy", "python3-numpy")):
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if not missing:
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("skip: export_torchvision.py needs %s (apt-get install -y %s) and cannot install it here"
              % (" ".join(missing), " ".join(missing)))
        return False
    print("installing %s ..." % " ".join(missing), file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    rc = subprocess.call(["apt-get", "install", "-y", "-q"] + missing, env=env,
                         stdout=sys.stderr, stderr=sys.stderr)
    if rc != 0:
        subprocess.call(["apt-get", "update", "-q"], env=env, stdout=sys.stderr, stderr=sys.stderr)
        rc = subprocess.call(["apt-get", "install", "-y", "-q"] + missing, env=env,
                             stdout=sys.stderr, stderr=sys.stderr)
    if rc != 0:
        print("skip: could not install %s" % " ".join(missing))
        return False
    return True


def stats_batch(torch, folder, size, count=16):
    """count images of folder (every k-th of the sorted JPEGs), resized (shorter side size*8/7) and
    centre-cropped to size x size, normalised with the ImageNet mean/std: what t_zoo.sh feeds."""
    import torchvision.transforms.functional as TF
    from torchvision.io import read_image
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpeg", ".jpg", ".png")))
    if not files:
        raise SystemExit("no images in %s" % folder)
    step = max(1, len(files) // count)
    xs = []
    for f in files[::step][:count]:
        x = read_image(os.path.join(folder, f))[:3].float() / 255
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        x = TF.center_crop(TF.resize(x, size * 8 // 7, antialias=True), [size, size])
        xs.append(TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    return torch.stack(xs)


def calibrate_bn_eval(model, torch, bns, x, g):
    """BN statistics measured in eval mode, each BN's from its own input in the network as
    exported: in one eval-mode forward pass each BN, just before it runs, takes the mean and
    variance of its input (every BN in front of it already final and perturbed), so the
    normalisation holds all the way down. (One train-mode pass instead measures each BN behind
    batch-normalised inputs, not behind the perturbed eval-mode BNs in front of it, and with
    EfficientNet's stochastic depth and dropout active: the mismatch compounds, and a random
    EfficientNet-B0 reached activations ~100x apart between images.) The same perturbation as the
    one-pass path follows each measurement, in the order the forward pass reaches the BNs."""
    done = set()

    def measure(mod, inp):
        if id(mod) in done:
            return
        done.add(id(mod))
        t = inp[0].double()
        var = t.var(dim=(0, 2, 3), unbiased=False).float().clamp_min(1e-6)
        mod.running_mean.copy_(t.mean(dim=(0, 2, 3)).float() + 0.1 * var.sqrt() * torch.randn(var.shape, generator=g))
        mod.running_var.copy_(var * (0.7 + 0.7 * torch.rand(var.shape, generator=g)))
    hooks = [m.register_forward_pre_hook(measure) for m in bns]
    model.eval()
    model(x)
    for h in hooks:
        h.remove()


def randomise(model, torch, seed, size=224, stats=None, sequential=False):
    """Random biases and BN parameters/statistics; see the module docstring for why."""
    g = torch.Generator().manual_seed(seed + 1)
    bns = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.2)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.5)
                if sequential:
                    # beta in [0.75, 1.25]: most units of every channel active. With beta centred
                    # on 0 many channels are mostly off, and a random net then amplifies any small
                    # perturbation layer after layer (an ideal 8-bit fake-quant of the old
                    # MobileNetV2 export, float scales, gave 7.6 dB at the logits; 8-bit weights
                    # alone 11 dB): its logits measured the random net's chaos, not the quantizer.
                    m.bias.add_(BETA_SHIFT)
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration pass
                bns.append(m)
        # Residual branches of a trained ResNet end in a BN with small gamma; with gamma ~ 1 there
        # a random deep ResNet is badly conditioned (ResNet-101 amplified a 1e-7 input change 100x
        # and FP32 vs FP64 differed by 6e-5 of max|logit|, too close to the 1e-4 test tolerance).
        for m in model.modules():
            last = {"Bottleneck": "bn3", "BasicBlock": "bn2"}.get(type(m).__name__)
            if last:
                getattr(m, last).weight.mul_(0.3)
                getattr(m, last).bias.mul_(0.3)
            elif sequential and (getattr(m, "use_res_connect", False) or type(m).__name__ == "ResBottleneckBlock"):
                # the same for the inverted-residual / MBConv / RegNet blocks of the zoo
                bn = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)][-1]
                bn.weight.mul_(RES_GAMMA)
                bn.bias.mul_(RES_GAMMA)
        if bns and sequential:
            calibrate_bn_eval(model, torch, bns, stats if stats is not None else torch.randn(8, 3, size, size, generator=g), g)
        elif bns:
            # Measure running statistics on a random batch (train mode), then perturb them so the
            # eval-mode normalisation is not an exact whitening (mean/var really matter).
            model.train()
            model(stats if stats is not None else torch.randn(4, 3, size, size, generator=g))
            for m in bns:
                std = m.running_var.sqrt()
                m.running_mean.add_(0.1 * std * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.mul_(0.7 + 0.7 * torch.rand(m.running_var.shape, generator=g))
                m.momentum = 0.1
    model.eval()
    return len(bns)


def export_one(name, outdir, torch, torchvision, onnx, np, zoo=False, stats_dir=None):
    if zoo:
        opset, size, kwargs = ZOO[name]
        fold, flatten_style = True, "flatten"
        seed = BASE_SEED + 100 + sorted(ZOO).index(name)
    else:
        opset, fold, flatten_style, kwargs = MODELS[name]
        size = 224
        seed = BASE_SEED + sorted(MODELS).index(name)
    t0 = time.time()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
    stats = stats_batch(torch, stats_dir, size) if stats_dir else None
    nbn = randomise(model, torch, seed, size, stats, sequential=zoo)
    t_init = time.time() - t0

    x = torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed + 2))
    orig_flatten = torch.flatten

    def view_flatten(t, start_dim=0, end_dim=-1):
        if start_dim != 1 or end_dim != -1:
            return orig_flatten(t, start_dim, end_dim)
        return t.view(t.size(0), -1)

    onnx_path = os.path.join(outdir, name + ".onnx")
    t1 = time.time()
    with torch.no_grad():
        y = model(x)
        t_fwd = time.time() - t1
        t1 = time.time()
        if flatten_style == "view":
            torch.flatten = view_flatten  # torchvision calls torch.flatten(x, 1) at run time
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model, torch.randn(1, 3, size, size), onnx_path,
                    opset_version=opset, do_constant_folding=fold,
                    training=torch.onnx.TrainingMode.PRESERVE,
                    input_names=["input"], output_names=["logits"],
                    dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        finally:
            torch.flatten = orig_flatten
        t_exp = time.time() - t1
        if flatten_style == "view":  # the view path must compute the same thing
            torch.flatten = view_flatten
            try:
                y2 = model(x)
            finally:
                torch.flatten = orig_flatten
            assert torch.equal(y, y2), name

    # How far PyTorch's own FP32 result is from FP64: the conditioning of this export. The C test's
    # tolerance must be well above it (it is ~1e-6 here, the tolerance 1e-4).
    t1 = time.time()
    with torch.no_grad():
        y64 = model.double()(x.double())
    fp64_rel = float((y.double() - y64).abs().max() / y64.abs().max())
    t_fp64 = time.time() - t1
    y = y.numpy().astype("<f4")
    xin = x.numpy().astype("<f4")
    assert np.isfinite(y).all(), name
    xin.tofile(os.path.join(outdir, name + ".input.bin"))
    y.tofile(os.path.join(outdir, name + ".output.bin"))

    m = onnx.load(onnx_path)
    onnx.checker.check_model(m)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    nparams = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
    side = {
        "model": name + ".onnx",
        "source": "torchvision %s %s(weights=None%s), random weights, eval mode" % (
            torchvision.__version__, name, "".join(", %s=%r" % kv for kv in kwargs.items())),
        "seed": seed,
        "opset": opset,
        "ir_version": m.ir_version,
        "do_constant_folding": fold,
        "flatten": flatten_style,
        "batchnorm_layers": nbn,
        "input": {"name": "input", "file": name + ".input.bin", "dtype": "float32",
                  "shape": list(xin.shape), "onnx_shape": ["N", 3, size, size]},
        "output": {"name": "logits", "file": name + ".output.bin", "dtype": "float32",
                   "shape": list(y.shape), "onnx_shape": ["N", 1000]},
        "output_absmax": float(np.abs(y).max()),
        "output_std": float(y.std()),
        "torch_fp32_vs_fp64_rel": fp64_rel,
        "argmax": [int(i) for i in y.argmax(axis=1)],
        "tolerance": {"rel_to_absmax": 1e-4,
                      "meaning": "max|tern - torch| <= 1e-4 * max|torch| over the whole output"},
        "ops": dict(sorted(ops.items())),
        "float_initializer_values": nparams,
        "onnx_bytes": os.path.getsize(onnx_path),
        "torch_version": torch.__version__,
    }
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(side, f, indent=1)
        f.write("\n")
    print("%-13s opset=%-2d fold=%-5s flatten=%-7s bn=%-3d init=%.1fs fwd=%.1fs export=%.1fs "
          "fp64=%.1fs onnx=%.1fMB |y|max=%.3g fp32_vs_fp64=%.1e ops=%s" % (
              name, opset, fold, flatten_style, nbn, t_init, t_fwd, t_exp, t_fp64,
              side["onnx_bytes"] / 1e6, side["output_absmax"], fp64_rel,
              ",".join("%s:%d" % kv for kv in side["ops"].items())), flush=True)


def check_ort(outdir, names):
    """Cross-check every export with ONNX Runtime (bench/peers/ort_check.js), if it is available."""
    here = os.path.dirname(os.path.abspath(__file__))
    peers = os.path.join(here, "..", "bench", "peers")
    if not shutil.which("node"):
        print("ort check skipped: node not found")
        return 0
    if not os.path.isdir(os.path.join(peers, "node_modules", "onnxruntime-node")):
        rc = subprocess.call(["bash", os.path.join(peers, "install.sh"), "npm"], stdout=sys.stderr)
        if rc != 0:
            print("ort check skipped: onnxruntime-node could not be installed")
            return 0
    return subprocess.call(["node", os.path.join(peers, "ort_check.js"), outdir] + names)


def main(argv):
    args, names, threads, ort, zoo, stats_dir = [], [], 2, False, False, None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--zoo":
            zoo = True
        elif a == "--stats":
            stats_dir = argv[i + 1]; i += 1
        elif a == "--threads":
            threads = int(argv[i + 1]); i += 1
        elif a == "--check-ort":
            ort = True
        elif a in ("-h", "--help"):
            print(__doc__); return 0
        else:
            args.append(a)
        i += 1
    if not args:
        print(__doc__); return 2
    table = ZOO if zoo else MODELS
    outdir, names = args[0], args[1:] or list(table)
    bad = [n for n in names if n not in table]
    if bad:
        print("unknown model(s): %s (known: %s)" % (" ".join(bad), " ".join(table)))
        return 2
    if not ensure_packages():
        return 0
    import numpy as np
    import onnx
    import torch
    import torchvision
    torch.set_num_threads(threads)
    os.makedirs(outdir, exist_ok=True)
    t0 = time.time()
    for n in names:
        export_one(n, outdir, torch, torchvision, onnx, np, zoo, stats_dir)
    print("exported %d model(s) to %s in %.1fs (torch %s, torchvision %s, onnx %s, %d threads)" % (
        len(names), outdir, time.time() - t0, torch.__version__, torchvision.__version__,
        onnx.__version__, threads))
    if ort:
        return check_ort(outdir, names)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
