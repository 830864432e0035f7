"""tern: ternary-weight, 8-bit integer CNN inference, from Python.

A thin ctypes layer over libtern.so (include/tern.h): numpy arrays in and out, no compiler.

    import numpy as np, tern
    m = tern.Model("r56.tern")              # a quantized model
    x = m.preprocess(rgb)                   # HxWx3 uint8 image -> CxHxW model input
    logits = m.run(x)                       # [1, classes] int32; m.values(logits) as floats
    m.top_k(logits, 5)                      # [1, 5] class indices, best first
    tern.quantize("resnet56.onnx", "r56.tern", calib="data_batch_1.bin", preset="cifar",
                  weights="t", cluster=4)

The library is found through $TERN_LIB, else next to an installed package (PREFIX/lib), else in
the source tree's build/release, else on the system's library path.
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["Model", "quantize", "TernError", "version"]


def _find_lib():
    here = os.path.dirname(os.path.abspath(__file__))
    cands = [os.environ.get("TERN_LIB"),
             os.path.join(here, "..", "..", "..", "libtern.so"),          # PREFIX/lib/python3/dist-packages/tern
             os.path.join(here, "..", "..", "build", "release", "libtern.so"),  # the source tree
             ctypes.util.find_library("tern")]
    for c in cands:
        if c and (os.path.exists(c) or not os.path.sep in c):
            return ctypes.CDLL(c)
    raise OSError("tern: libtern.so not found (set TERN_LIB, or build it with make)")


_lib = _find_lib()
_u8p = ctypes.POINTER(ctypes.c_uint8)
_i32p = ctypes.POINTER(ctypes.c_int32)


class TernError(RuntimeError):
    """A tern call failed: .status is the enum tern_status, the message says what and where."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _sig(name, res, *args):
    f = getattr(_lib, name)
    f.restype, f.argtypes = res, list(args)
    return f


_status_string = _sig("tern_status_string", ctypes.c_char_p, ctypes.c_int)
_last_error = _sig("tern_last_error", ctypes.c_char_p)
_version = _sig("tern_version", ctypes.c_char_p)


def _check(st):
    if st != 0:
        raise TernError(st, "%s: %s" % (_status_string(st).decode(), _last_error().decode(errors="replace")))


def version():
    return _version().decode()


class _ModelOptions(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("threads", ctypes.c_int), ("max_batch", ctypes.c_int), ("kernels", ctypes.c_int)]


class _ModelInfo(ctypes.Structure):
    _fields_ = [("channels", ctypes.c_int), ("height", ctypes.c_int), ("width", ctypes.c_int), ("classes", ctypes.c_int),
                ("layers", ctypes.c_int), ("output_exp", ctypes.c_int), ("bgr", ctypes.c_int), ("resize_short", ctypes.c_int),
                ("crop", ctypes.c_int), ("mean", ctypes.c_float * 3), ("std", ctypes.c_float * 3), ("source", ctypes.c_char_p),
                ("kernels", ctypes.c_char_p), ("threads", ctypes.c_int), ("max_batch", ctypes.c_int)]


class _LayerInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("op", ctypes.c_char_p), ("out_c", ctypes.c_int), ("out_h", ctypes.c_int),
                ("out_w", ctypes.c_int), ("out_exp", ctypes.c_int), ("out_signed", ctypes.c_int), ("out_wide", ctypes.c_int),
                ("weights", ctypes.c_char), ("cluster", ctypes.c_int), ("cluster_all", ctypes.c_int), ("clusters", ctypes.c_int),
                ("zero_frac", ctypes.c_float), ("sqnr_db", ctypes.c_float), ("mult_replaced", ctypes.c_double),
                ("macs", ctypes.c_int64), ("kernel", ctypes.c_char_p), ("time_ns", ctypes.c_int64)]


class _QuantizeOptions(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("calib", ctypes.c_char_p), ("labels", ctypes.c_char_p),
                ("calib_count", ctypes.c_int), ("calib_offset", ctypes.c_int), ("weights", ctypes.c_char),
                ("cluster", ctypes.c_int), ("twn_rule", ctypes.c_int), ("all_layers", ctypes.c_int),
                ("layer_rules", ctypes.POINTER(ctypes.c_char_p)), ("nlayer_rules", ctypes.c_int),
                ("calib_maxabs", ctypes.c_int), ("bias_corr", ctypes.c_int), ("opt_scales", ctypes.c_int),
                ("opt_round", ctypes.c_int), ("opt_images", ctypes.c_int), ("opt_flip", ctypes.c_int),
                ("opt_damp", ctypes.c_float), ("max_drop", ctypes.c_double), ("drop_margin", ctypes.c_double),
                ("min_replaced", ctypes.c_double), ("drop_count", ctypes.c_int), ("preset", ctypes.c_char_p),
                ("has_norm", ctypes.c_int), ("mean", ctypes.c_float * 3), ("std", ctypes.c_float * 3), ("bgr", ctypes.c_int),
                ("resize_short", ctypes.c_int), ("crop", ctypes.c_int), ("threads", ctypes.c_int), ("verbose", ctypes.c_int)]


_c_void_pp = ctypes.POINTER(ctypes.c_void_p)
_model_options_init = _sig("tern_model_options_init", None, ctypes.c_void_p)
_model_load = _sig("tern_model_load", ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, _c_void_pp)
_model_load_memory = _sig("tern_model_load_memory", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                          ctypes.c_void_p, _c_void_pp)
_model_free = _sig("tern_model_free", None, ctypes.c_void_p)
_model_describe = _sig("tern_model_describe", ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_ModelInfo))
_model_layer = _sig("tern_model_layer", ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_LayerInfo))
_model_preprocess = _sig("tern_model_preprocess", ctypes.c_int, ctypes.c_void_p, _u8p, ctypes.c_int, ctypes.c_int, ctypes.c_int, _u8p)
_model_run = _sig("tern_model_run", ctypes.c_int, ctypes.c_void_p, _u8p, ctypes.c_int, _i32p)
_quantize_options_init = _sig("tern_quantize_options_init", None, ctypes.c_void_p)
_quantize_file = _sig("tern_quantize_file", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_image_decode_file = _sig("tern_image_decode_file", ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_u8p),
                          ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
_free = _sig("tern_free", None, ctypes.c_void_p)


def _init_struct(cls, init):
    """Fill cls with the library's defaults; refuse a library whose struct has another size."""
    buf = ctypes.create_string_buffer(4096)
    init(buf)
    size = ctypes.c_size_t.from_buffer(buf).value
    if size != ctypes.sizeof(cls):
        raise TernError(4, "python/tern was written for another libtern (%s: %d bytes here, %d in the library %s)"
                        % (cls.__name__, ctypes.sizeof(cls), size, version()))
    return cls.from_buffer_copy(buf.raw[:size])


_KERNELS = {None: 0, "auto": 0, "ref": 1, "avx2": 2, "avx512vnni": 3}


def _b(s):
    return None if s is None else os.fsencode(s)


class Model:
    """A quantized .tern model on the integer engine.

    Model(path_or_bytes, threads=0, max_batch=0, kernels=None): 0/None = automatic.
    Not safe to run() from two threads at once (give each thread its own Model)."""

    def __init__(self, path, threads=0, max_batch=0, kernels=None):
        o = _init_struct(_ModelOptions, _model_options_init)
        o.threads, o.max_batch = threads, max_batch
        if kernels not in _KERNELS:
            raise ValueError("kernels: one of auto, ref, avx2, avx512vnni")
        o.kernels = _KERNELS[kernels]
        h = ctypes.c_void_p()
        if isinstance(path, (bytes, bytearray, memoryview)):
            data = bytes(path)
            _check(_model_load_memory(data, len(data), b"<bytes>", ctypes.byref(o), ctypes.byref(h)))
        else:
            _check(_model_load(_b(path), ctypes.byref(o), ctypes.byref(h)))
        self._h = h
        inf = _ModelInfo()
        _check(_model_describe(self._h, ctypes.byref(inf)))
        self.input_shape = (inf.channels, inf.height, inf.width)
        self.classes = inf.classes
        self.output_exp = inf.output_exp
        self.info = {f: getattr(inf, f) for f, _ in _ModelInfo._fields_}
        for k in ("mean", "std"):
            self.info[k] = list(self.info[k])
        for k in ("source", "kernels"):
            self.info[k] = self.info[k].decode()

    def close(self):
        if getattr(self, "_h", None):
            _model_free(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def preprocess(self, image):
        """HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA) uint8 -> CxHxW model input, with the recorded
        resize/crop and channel order."""
        img = np.ascontiguousarray(image, dtype=np.uint8)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3:
            raise ValueError("image: HxW, HxWx3 or HxWx4 uint8")
        out = np.empty(self.input_shape, dtype=np.uint8)
        _check(_model_preprocess(self._h, img.ctypes.data_as(_u8p), img.shape[0], img.shape[1], img.shape[2], out.ctypes.data_as(_u8p)))
        return out

    def run(self, images):
        """[N, C, H, W] (or [C, H, W]) uint8 model inputs -> [N, classes] int32 logits."""
        x = np.ascontiguousarray(images, dtype=np.uint8)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError("images: [N, %d, %d, %d] uint8, got %s" % (self.input_shape + (x.shape,)))
        y = np.empty((x.shape[0], self.classes), dtype=np.int32)
        _check(_model_run(self._h, x.ctypes.data_as(_u8p), x.shape[0], y.ctypes.data_as(_i32p)))
        return y

    def values(self, logits):
        """Integer logits as float64 values: logit * 2^-output_exp (exact)."""
        return np.ldexp(np.asarray(logits, dtype=np.float64), -self.output_exp)

    def top_k(self, images_or_logits, k=5):
        """[N, k] best classes, best first (ties: lower class first), of logits [N, classes], or of uint8
        images (run first)."""
        a = np.asarray(images_or_logits)
        y = np.atleast_2d(self.run(a) if a.dtype == np.uint8 else a)
        return np.argsort(-y.astype(np.int64), axis=1, kind="stable")[:, :k]

    def layers(self):
        """The layer table (as `tern info` prints it): a list of dicts."""
        out = []
        for i in range(self.info["layers"]):
            L = _LayerInfo()
            _check(_model_layer(self._h, i, ctypes.byref(L)))
            d = {f: getattr(L, f) for f, _ in _LayerInfo._fields_}
            for k in ("name", "op", "kernel"):
                d[k] = d[k].decode() if d[k] is not None else None
            d["weights"] = d["weights"].decode() if d["weights"] != b"\0" else None
            out.append(d)
        return out


def decode_image(path):
    """An image file (JPEG, PNG, ...) -> HxWx3 uint8 RGB array."""
    p, h, w = _u8p(), ctypes.c_int(), ctypes.c_int()
    _check(_image_decode_file(_b(path), ctypes.byref(p), ctypes.byref(h), ctypes.byref(w)))
    try:
        return np.ctypeslib.as_array(p, shape=(h.value, w.value, 3)).copy()
    finally:
        _free(p)


def quantize(onnx, out, calib, weights="t", cluster=4, layers=(), mean=None, std=None, **kw):
    """Quantize an FP32 ONNX model to a .tern file, calibrated on `calib` (CIFAR .bin or image folder).

    weights: "t", "4" or "8"; cluster: N, or 0 / "all"; layers: ["KEY=SPEC", ...] overrides;
    mean/std: three values in the order the channels are fed; any other field of
    tern_quantize_options by name (calib_count=500, preset="cifar", bgr=1, ptq=True for
    bias_corr+opt_scales+opt_round, max_drop=1.0, threads=1, ...)."""
    o = _init_struct(_QuantizeOptions, _quantize_options_init)
    keep = []

    def s(v):
        keep.append(_b(v))
        return keep[-1]

    o.calib = s(calib)
    o.weights = str(weights)[:1].encode()
    o.cluster = 0 if cluster in (0, "all") else int(cluster)
    rules = (ctypes.c_char_p * max(1, len(layers)))(*[s(r) for r in layers])
    o.layer_rules, o.nlayer_rules = rules, len(layers)
    if mean is not None or std is not None:
        o.has_norm = 1
        o.mean[:] = list(mean if mean is not None else (0, 0, 0))
        o.std[:] = list(std if std is not None else (1, 1, 1))
    if kw.pop("ptq", False):
        o.bias_corr = o.opt_scales = o.opt_round = 1
    names = {f for f, _ in _QuantizeOptions._fields_} - {"size", "calib", "weights", "cluster", "layer_rules", "nlayer_rules"}
    for k, v in kw.items():
        if k not in names:
            raise TypeError("quantize: unknown option %r" % k)
        setattr(o, k, s(v) if isinstance(v, str) else v)
    _check(_quantize_file(_b(onnx), _b(out), ctypes.byref(o)))
