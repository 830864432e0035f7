#!/usr/bin/python3
"""An independent 8-bit reference for tests/t_zoo.sh (docs/RESULTS.md, issue 11): what 8-bit can
give on the zoo's random nets, without tern. PyTorch eager fake quantization: the same model as
scripts/export_torchvision.py --zoo builds (same seed), the first 8 images of imagenet_sample/ to
calibrate and the next 4 to evaluate (as t_zoo.sh; torchvision's resize, not tern's), 8-bit
per-output-channel max-abs weights, and every BN / activation / pool / block output quantized to
8 bits per tensor with a scale chosen on the calibration images: "pow2mse" as tern (power of two,
the MSE-best of the max-abs exponent and 5 finer ones), "maxabs" and "mse" (any float scale; MSE
over 120 scales). Prints the logits SQNR vs the FP32 model for each mode, and with 8-bit weights
only ("none": activations in float).

usage: /usr/bin/python3 tests/zoo_fakequant.py NAME [--old]
  --old: the randomisation t_zoo.sh used before 2026-12-02 (one train-mode BN pass on noise)
"""
import sys, os, math, warnings
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import torch, torchvision
import export_torchvision as ex
import torchvision.transforms.functional as TF
from torchvision.io import read_image
torch.set_num_threads(1)
name = sys.argv[1]; seq = "--old" not in sys.argv[2:]
D = os.path.join(os.environ.get("TERN_DATA", "../shared/data"), "imagenet_sample")
opset, size, kw = ex.ZOO[name]
seed = ex.BASE_SEED + 100 + sorted(ex.ZOO).index(name)
torch.manual_seed(seed)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = getattr(torchvision.models, name)(weights=None, **kw)
stats = ex.stats_batch(torch, D, size) if seq else None
ex.randomise(model, torch, seed, size, stats, sequential=seq)
files = sorted(f for f in os.listdir(D) if f.endswith(".JPEG"))
def load(fs):
    xs = []
    for f in fs:
        x = read_image(os.path.join(D, f))[:3].float() / 255
        if x.shape[0] == 1: x = x.expand(3, -1, -1)
        x = TF.center_crop(TF.resize(x, 73, antialias=True), [64, 64])
        xs.append(TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    return torch.stack(xs)
cal, ev = load(files[:8]), load(files[8:12])
mods = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU, torch.nn.Sigmoid,
        torch.nn.Hardswish, torch.nn.Hardsigmoid, torch.nn.Linear, torch.nn.MaxPool2d, torch.nn.AdaptiveAvgPool2d))
        or type(m).__name__ in ("SqueezeExcitation", "MBConv", "InvertedResidual", "BasicBlock", "Bottleneck", "ResBottleneckBlock")]
def qsse(x, scale, signed):
    lo, hi = (-128, 127) if signed else (0, 255)
    return ((x - (x / scale).round().clamp(lo, hi) * scale) ** 2).sum().item()
def fq(x, scale, signed):
    lo, hi = (-128, 127) if signed else (0, 255)
    return (x / scale).round().clamp(lo, hi) * scale
def run(mode, wq):
    outs = {}
    hs = []
    def rec(m, i, o): outs.setdefault(id(m), []).append(o.detach())
    for m in mods: hs.append(m.register_forward_hook(rec))
    with torch.no_grad(): model(cal)
    for h in hs: h.remove()
    sc = {}
    for m in mods:
        y = torch.cat(outs[id(m)]); signed = bool((y < 0).any()); mx = y.abs().max().item() or 1
        bits = 7 if signed else 8
        if mode == "pow2mse":
            f0 = bits - math.ceil(math.log2(mx)); cands = [2.0 ** -(f0 + c) for c in range(6)]
        elif mode == "maxabs": cands = [mx / (2 ** bits - (1 if not signed else 1))]
        else: cands = [mx / (2 ** bits) * (0.98 ** k) for k in range(120)]
        sc[id(m)] = (min(cands, key=lambda s: qsse(y, s, signed)), signed)
    saved = {}
    if wq:
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                w = m.weight.data; saved[m] = w.clone()
                s = w.abs().flatten(1).max(1)[0].clamp_min(1e-12) / 127
                m.weight.data = (w / s.view(-1, *[1] * (w.dim() - 1))).round().clamp(-127, 127) * s.view(-1, *[1] * (w.dim() - 1))
    hs = [m.register_forward_hook(lambda m, i, o: fq(o, *sc[id(m)])) for m in mods] if mode != "none" else []
    with torch.no_grad(): y = model(ev)
    for h in hs: h.remove()
    for m, w in saved.items(): m.weight.data = w
    return y
with torch.no_grad(): ref = model(ev)
for mode, wq in (("none", True), ("pow2mse", False), ("pow2mse", True), ("maxabs", True), ("mse", True)):
    y = run(mode, wq)
    print("%s %s act=%-8s w8=%d  logits SQNR %.2f dB" % (name, "new" if seq else "old", mode, wq, 10 * math.log10((ref ** 2).sum() / ((ref - y) ** 2).sum())))
