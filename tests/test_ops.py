"""Every operator in lathe.ops against ONNX Runtime.

Each case is a single-node ONNX model (small random inputs, one attribute variant). ONNX Runtime
runs the model; lathe builds the op's compute the way the ONNX front end does (tensor inputs as
placeholders, constant inputs as keyword attributes, ONNX attributes as keywords) and runs it
under the default schedule and under the op's CPU schedule (its hook, or the injective schedule),
with parallel loops forced on so the small shapes still take the parallel paths. Ops with a hook
also run with a fused ReLU epilogue, as the graph layer fuses them.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import lathe
from lathe import te
from lathe.ops import OPS, cpu
from lathe.ops.elemwise import ShapeError
from lathe.ops.registry import call, family_schedules
from lathe.target import Target

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

RTOL = ATOL = 1e-5


def _c_target_works() -> bool:
    """The C backend is optional: test it when it exists and builds a kernel on this machine."""
    if importlib.util.find_spec("lathe.codegen.c") is None:
        return False
    try:
        a = te.placeholder((4,), name="a")
        b = te.compute((4,), lambda i: a[i] + 1.0, name="b")
        k = lathe.build(te.create_schedule(b), [a, b], target="c")
        out = np.zeros(4, np.float32)
        k(np.ones(4, np.float32), out)
        return bool(np.all(out == 2))
    except Exception:  # any failure means: not available here
        return False


HAS_C = _c_target_works()


# ---------------------------------------------------------------------------- cases

class Case:
    def __init__(self, op: str, inputs: list, attrs: dict | None = None, opset: int = 17, outputs: int = 1,
                 id: str = "", c: bool = False, scheduled: bool = True, numpy=None):
        self.op, self.inputs, self.attrs = op, inputs, dict(attrs or {})
        self.numpy = numpy  # a NumPy reference, used instead of ONNX Runtime (whose versions differ)
        self.opset, self.outputs, self.c, self.scheduled = opset, outputs, c, scheduled
        self.id = f"{op}-{id}" if id else op


def R(*shape, seed: int = 0, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Uniform float32 in [lo, hi): small values keep float32 sums within the 1e-5 tolerances."""
    rng = np.random.default_rng(abs(hash((shape, seed))) % 2**32)
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def I(*values, dtype=np.int64) -> np.ndarray:  # noqa: E743
    return np.array(values, dtype=dtype)


def ints(*shape, lo=-5, hi=6, dtype=np.int32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi, size=shape).astype(dtype)


CASES: list[Case] = []


def add(*args, **kwargs) -> None:
    CASES.append(Case(*args, **kwargs))


# elementwise and broadcasting (elemwise.py)
add("Add", [R(2, 3, 4), R(4, seed=1)], id="bcast-last", c=True)
add("Add", [R(3, 1), R(1, 4, seed=1)], id="bcast-both")
add("Add", [ints(2, 5), ints(2, 5, seed=1)], id="int32")
add("Sub", [R(2, 3, 4), R(3, 1, seed=1)], id="bcast-mid")
add("Mul", [R(4, 16), R(16, seed=1)], id="vector", c=True)
add("Div", [R(2, 3), R(2, 3, seed=1, lo=0.5, hi=2.0)], id="float")
add("Div", [ints(3, 7, lo=-20, hi=20), ints(3, 7, lo=1, hi=6, seed=1) * np.array([1, -1] * 3 + [1], np.int32)],
    id="int-truncates", c=True)
add("Pow", [R(2, 3, lo=0.1, hi=2.0), R(2, 3, seed=1)], id="float")
add("Pow", [R(2, 3), I(2, 3, 1, dtype=np.int64)], id="int-exponent")
add("Pow", [ints(2, 3, lo=-4, hi=5), ints(2, 3, lo=0, hi=4, seed=1)], id="int-base")
for name, lo in (("Relu", -1), ("Neg", -1), ("Abs", -1), ("Exp", -1), ("Log", 0.1), ("Sqrt", 0.0), ("Tanh", -3),
                 ("Erf", -2), ("Sigmoid", -5), ("Identity", -1), ("HardSwish", -4)):
    add(name, [R(2, 3, 16, lo=lo, hi=abs(lo) + 1)], c=name in ("Relu", "Erf"))
add("Relu", [ints(4, 8)], id="int32")
add("LeakyRelu", [R(3, 5)], id="default")
add("LeakyRelu", [R(3, 5)], {"alpha": 0.3}, id="alpha")
add("HardSigmoid", [R(3, 5, lo=-6, hi=6)], id="default")
add("HardSigmoid", [R(3, 5, lo=-6, hi=6)], {"alpha": 0.5, "beta": 0.3}, id="alpha-beta")
add("Clip", [R(3, 8, lo=-2, hi=2), np.float32(-0.5), np.float32(0.7)], opset=13, id="min-max-inputs", c=True)
add("Clip", [R(3, 8, lo=-2, hi=2), None, np.float32(0.7)], opset=13, id="max-only")
add("Clip", [R(3, 8, lo=-2, hi=2), np.float32(-0.2)], opset=13, id="min-only")
add("Clip", [R(3, 8, lo=-2, hi=2)], opset=13, id="none")
add("Clip", [R(3, 8, lo=-2, hi=2)], {"min": -0.3, "max": 0.4}, opset=6, id="opset6-attrs")
add("Clip", [ints(3, 8), np.int32(-2), np.int32(3)], opset=13, id="int32")
add("Clip", [ints(3, 8, lo=0, hi=255, dtype=np.uint8), np.uint8(20), np.uint8(200)], opset=13, id="uint8")

# convolutions (nn.py)
add("Conv", [R(1, 3, 8, 8), R(4, 3, 3, 3, seed=1)], id="basic", c=True)
add("Conv", [R(2, 3, 7, 9), R(5, 3, 3, 3, seed=1), R(5, seed=2)], {"pads": [1, 1, 1, 1]}, id="pads-bias", c=True)
add("Conv", [R(1, 3, 9, 8), R(4, 3, 3, 2, seed=1)], {"pads": [1, 0, 2, 1], "strides": [2, 2]}, id="asym-pads-stride2")
add("Conv", [R(1, 2, 10, 10), R(3, 2, 3, 3, seed=1)], {"dilations": [2, 2], "pads": [2, 1, 2, 1]}, id="dilation2")
add("Conv", [R(1, 4, 7, 7), R(6, 2, 3, 3, seed=1), R(6, seed=2)], {"group": 2, "pads": [1, 1, 1, 1]}, id="group2")
add("Conv", [R(2, 4, 9, 9), R(4, 1, 3, 3, seed=1)], {"group": 4, "pads": [1, 1, 1, 1]}, id="depthwise", c=True)
add("Conv", [R(1, 4, 9, 9), R(8, 1, 3, 3, seed=1)], {"group": 4, "strides": [2, 2]}, id="depthwise-mult2")
add("Conv", [R(1, 3, 7, 7), R(4, 3, 3, 3, seed=1)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, id="same-upper")
add("Conv", [R(1, 3, 8, 8), R(4, 3, 4, 4, seed=1)], {"auto_pad": "SAME_LOWER"}, id="same-lower")
add("Conv", [R(1, 3, 8, 8), R(4, 3, 4, 4, seed=1)], {"auto_pad": "SAME_UPPER"}, id="same-upper-even-kernel")
add("Conv", [R(1, 3, 8, 7), R(4, 3, 3, 3, seed=1)], {"auto_pad": "VALID", "strides": [2, 1]}, id="valid")
add("Conv", [R(1, 2, 7, 9), R(3, 2, 3, 3, seed=1)], {"strides": [2, 2]}, id="stride2-odd-width-nopad")
add("Conv", [R(1, 3, 8, 8), R(4, 3, 3, 3, seed=1)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, id="kernel-shape")
add("Conv", [R(1, 8, 6, 6), R(16, 8, 1, 1, seed=1), R(16, seed=2)], id="1x1")
add("Conv", [R(1, 16, 20, 20), R(32, 16, 3, 3, seed=1, lo=-0.3, hi=0.3), R(32, seed=2)], {"pads": [1, 1, 1, 1]},
    id="larger", c=True)
add("Conv", [R(1, 3, 5, 19), R(5, 3, 3, 1, seed=1)], {"pads": [1, 0, 1, 0]}, id="width19-tail")
add("Conv", [R(1, 3, 10), R(2, 3, 3, seed=1), R(2, seed=2)], {"pads": [1, 1], "strides": [2]}, id="1d")
add("Conv", [R(1, 4, 12), R(4, 1, 3, seed=1)], {"group": 4, "dilations": [2]}, id="1d-depthwise")
add("Conv", [R(1, 2, 5, 5, 5), R(3, 2, 3, 3, 3, seed=1)], {"pads": [1, 0, 1, 1, 0, 1]}, id="3d")
add("Conv", [R(1, 2, 5, 6, 7), R(3, 2, 2, 3, 3, seed=1)], {"strides": [1, 2, 2], "dilations": [2, 1, 1]},
    id="3d-strided")
add("ConvTranspose", [R(1, 2, 3, 3), R(2, 3, 3, 3, seed=1)], id="basic", c=True)
add("ConvTranspose", [R(1, 2, 4, 4), R(2, 3, 3, 3, seed=1), R(3, seed=2)],
    {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, id="stride2-outpad-bias")
add("ConvTranspose", [R(1, 4, 3, 3), R(4, 2, 3, 3, seed=1)], {"group": 2, "strides": [2, 1]}, id="group2")
add("ConvTranspose", [R(1, 2, 4, 5), R(2, 2, 2, 3, seed=1)], {"dilations": [2, 2], "pads": [0, 1, 1, 0]},
    id="dilation2-asym-pads")
add("ConvTranspose", [R(1, 2, 3, 3), R(2, 3, 3, 3, seed=1)], {"strides": [3, 2], "output_shape": [10, 8]},
    id="output-shape")
add("ConvTranspose", [R(1, 2, 3, 3), R(2, 3, 3, 3, seed=1)], {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    id="same-upper")
add("ConvTranspose", [R(1, 2, 3, 3), R(2, 3, 4, 4, seed=1)], {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    id="same-lower")
add("ConvTranspose", [R(1, 2, 3, 3), R(2, 3, 3, 3, seed=1)], {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    id="same-lower-odd")
add("ConvTranspose", [R(1, 2, 3, 3), R(2, 3, 3, 3, seed=1)], {"strides": [2, 2], "output_shape": [6, 5]},
    id="output-shape-odd-total")
add("ConvTranspose", [R(1, 2, 3, 3), R(2, 3, 3, 3, seed=1)],
    {"strides": [2, 2], "output_shape": [6, 6], "auto_pad": "SAME_UPPER"}, id="output-shape-same-upper")
add("ConvTranspose", [R(1, 3, 6), R(3, 2, 4, seed=1)], {"strides": [2], "pads": [1, 2]}, id="1d")

# normalisation, softmax
add("BatchNormalization", [R(2, 3, 4, 5), R(3, seed=1), R(3, seed=2), R(3, seed=3), R(3, seed=4, lo=0.5, hi=2)],
    id="nchw", c=True)
add("BatchNormalization", [R(4, 3), R(3, seed=1), R(3, seed=2), R(3, seed=3), R(3, seed=4, lo=0.5, hi=2)],
    {"epsilon": 1e-2}, id="2d-epsilon")
for opset in (14, 15):  # training_mode: batch statistics; the extra outputs are the running mean and var
    add("BatchNormalization", [R(2, 3, 4, 5), R(3, seed=1), R(3, seed=2), R(3, seed=3), R(3, seed=4, lo=0.5, hi=2)],
        {"training_mode": 1, "momentum": 0.8, "epsilon": 1e-3}, opset=opset, outputs=3,
        id=f"training-running-stats-opset{opset}")
add("BatchNormalization", [R(4, 3), R(3, seed=1), R(3, seed=2), R(3, seed=3), R(3, seed=4, lo=0.5, hi=2)],
    {"training_mode": 1}, opset=15, outputs=3, id="training-2d")
add("BatchNormalization", [R(2, 2, 3, 2, 3), R(2, seed=1), R(2, seed=2), R(2, seed=3), R(2, seed=4, lo=0.5, hi=2)],
    {"training_mode": 1}, opset=15, outputs=3, id="training-3d-default-momentum")
for op in ("Softmax", "LogSoftmax"):
    add(op, [R(2, 3, 4, lo=-3, hi=3)], id="default", c=op == "Softmax")
    add(op, [R(2, 3, 4, lo=-3, hi=3)], {"axis": 1}, id="axis1")
    add(op, [R(2, 3, 4, lo=-3, hi=3)], {"axis": 0}, id="axis0")
    add(op, [R(3, 32, lo=-3, hi=3)], {"axis": -1}, id="vector-rows")
    add(op, [R(2, 3, 4, lo=-3, hi=3)], {"axis": 1}, opset=11, id="opset11-coerced")

# pooling
add("MaxPool", [R(1, 2, 8, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, id="k3s2p1",
    c=True)
add("MaxPool", [R(1, 2, 7, 7)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, id="ceil")
add("MaxPool", [R(1, 2, 8, 8)], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 1, 1, 1]},
    id="ceil-pads")
add("MaxPool", [R(1, 2, 9, 9)], {"kernel_shape": [2, 2], "dilations": [2, 2]}, id="dilation2")
add("MaxPool", [R(1, 2, 7, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    id="same-upper")
add("MaxPool", [R(1, 2, 7, 8)], {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}, id="same-lower")
add("MaxPool", [R(1, 2, 7, 8)], {"kernel_shape": [3, 2], "strides": [2, 3], "auto_pad": "VALID"}, id="valid")
add("MaxPool", [R(2, 3, 10)], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}, id="1d")
add("MaxPool", [R(1, 2, 4, 5, 6)], {"kernel_shape": [2, 2, 2]}, id="3d")
add("MaxPool", [R(1, 2, 5, 5, 7)], {"kernel_shape": [2, 2, 3], "strides": [2, 2, 2], "pads": [0, 1, 1, 1, 0, 1]},
    id="3d-strided")
add("MaxPool", [R(1, 8, 32, 32)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, id="larger")
add("MaxPool", [R(1, 2, 7, 7)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, outputs=2,
    id="indices")
add("MaxPool", [R(2, 3, 5, 6)], {"kernel_shape": [2, 3], "storage_order": 1, "pads": [0, 1, 1, 1]}, outputs=2,
    id="indices-column-major")
add("MaxPool", [ints(1, 2, 6, 6, lo=0, hi=255, dtype=np.uint8)], {"kernel_shape": [2, 2], "strides": [2, 2]},
    opset=12, id="uint8")
add("MaxPool", [ints(1, 2, 6, 6, lo=-128, hi=127, dtype=np.int8)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
    opset=12, id="int8-pads")
add("AveragePool", [R(1, 2, 8, 8)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, id="exclude-pad", c=True)
add("AveragePool", [R(1, 2, 8, 8)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    id="include-pad")
add("AveragePool", [R(1, 2, 7, 7)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, id="ceil")
add("AveragePool", [R(1, 2, 8, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1,
                                     "pads": [1, 1, 1, 1], "count_include_pad": 1}, id="ceil-include-pad")
add("AveragePool", [R(1, 2, 7, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    id="same-upper")
add("AveragePool", [R(1, 2, 7, 8)], {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}, id="same-lower")
add("AveragePool", [R(2, 3, 9)], {"kernel_shape": [4], "strides": [3], "pads": [2, 1]}, id="1d")
add("AveragePool", [R(1, 2, 9, 9)], {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]},
    opset=19, id="dilation2")
add("AveragePool", [R(1, 8, 30, 30)], {"kernel_shape": [2, 2], "strides": [2, 2]}, id="larger")
for op in ("GlobalAveragePool", "GlobalMaxPool"):
    add(op, [R(2, 3, 5, 6)], id="2d", c=True)
    add(op, [R(1, 4, 7)], id="1d")
    add(op, [R(1, 2, 3, 4, 5)], id="3d")
    add(op, [R(1, 64, 16, 16)], id="larger")

# matrix products
add("Gemm", [R(4, 5), R(5, 6, seed=1), R(6, seed=2)], id="bias-row", c=True)
add("Gemm", [R(5, 4), R(6, 5, seed=1), R(4, 1, seed=2)], {"transA": 1, "transB": 1}, id="transA-transB-col")
add("Gemm", [R(4, 5), R(6, 5, seed=1)], {"transB": 1, "alpha": 0.5}, id="transB-noC")
add("Gemm", [R(4, 5), R(5, 6, seed=1), R(4, 6, seed=2)], {"alpha": 2.0, "beta": -0.5}, id="alpha-beta")
add("Gemm", [R(4, 5), R(5, 6, seed=1), np.array(0.5, np.float32)], id="scalar-C")
add("Gemm", [R(4, 5), R(5, 6, seed=1), R(1, seed=2)], {"beta": 0.0}, id="beta0")
add("Gemm", [R(4, 5), R(5, 6, seed=1), R(4, 6, seed=2)], {"beta": 0.0, "alpha": 3.0}, id="beta0-alpha")
add("Gemm", [R(1, 64), R(48, 64, seed=1, lo=-0.2, hi=0.2), R(48, seed=2)], {"transB": 1}, id="fc-transB")
add("Gemm", [R(24, 40), R(40, 64, seed=1, lo=-0.3, hi=0.3), R(64, seed=2)], id="larger", c=True)
add("Gemm", [R(6, 64), R(40, 64, seed=1, lo=-0.3, hi=0.3), R(6, 1, seed=2)], {"transB": 1, "alpha": 0.7},
    id="transB-interleaved", c=True)
add("MatMul", [R(4, 5), R(5, 6, seed=1)], id="2d", c=True)
add("MatMul", [R(2, 3, 4, 5), R(5, 6, seed=1)], id="batched-A")
add("MatMul", [R(2, 1, 4, 5), R(3, 5, 6, seed=1)], id="broadcast-batch")
add("MatMul", [R(5), R(2, 5, 6, seed=1)], id="1d-A")
add("MatMul", [R(3, 4, 5), R(5, seed=1)], id="1d-B")
add("MatMul", [R(3, 5, 48, lo=-0.5, hi=0.5), R(48, seed=1)], id="1d-B-interleaved")
add("MatMul", [R(5), R(5, seed=1)], id="1d-1d")
add("MatMul", [ints(3, 4), ints(4, 5, seed=1)], id="int32")
add("MatMul", [R(2, 24, 40, lo=-0.3, hi=0.3), R(40, 48, seed=1)], id="larger")

# layout (transform.py)
add("Flatten", [R(2, 3, 4, 5)], id="default", c=True)
for axis in (0, 2, -1, 4):
    add("Flatten", [R(2, 3, 4, 5)], {"axis": axis}, id=f"axis{axis}")
add("Reshape", [R(2, 3, 4), I(4, -1)], id="infer", c=True)
add("Reshape", [R(2, 3, 4), I(0, 12)], id="copy-zero")
add("Reshape", [R(2, 3, 4), I(2, 3, 2, 2)], id="split-dim")
add("Reshape", [R(2, 3, 4), I(24)], id="flat")
add("Reshape", [R(2, 4, 3), I(3, 0, -1)], id="regroup")
add("Reshape", [R(2, 3, 4), I(2, 1, 3, 1, 4)], {"allowzero": 1}, opset=14, id="allowzero-ones")
add("Reshape", [R(6, 4), I(4, 3, 2)], id="regroup2")
add("Transpose", [R(2, 3, 4)], id="default", c=True)
add("Transpose", [R(2, 3, 4, 5)], {"perm": [0, 2, 3, 1]}, id="nchw-nhwc")
add("Transpose", [R(2, 3, 4, 16)], {"perm": [2, 0, 1, 3]}, id="keep-last")
add("Concat", [R(2, 3, 4), R(2, 1, 4, seed=1), R(2, 2, 4, seed=2)], {"axis": 1}, id="axis1", c=True)
add("Concat", [R(2, 3), R(2, 5, seed=1)], {"axis": -1}, id="neg-axis")
add("Concat", [R(2, 3)], {"axis": 0}, id="single")
add("Concat", [ints(2, 3, dtype=np.int64), ints(1, 3, dtype=np.int64, seed=1)], {"axis": 0}, id="int64")
add("Split", [R(2, 6, 3)], {"axis": 1, "split": [1, 2, 3]}, opset=11, outputs=3, id="split-attr")
add("Split", [R(2, 6, 3), I(4, 2)], {"axis": 1}, opset=13, outputs=2, id="split-input", c=True)
add("Split", [R(6, 3)], opset=13, outputs=3, id="equal")
add("Split", [R(2, 7)], {"axis": -1, "num_outputs": 3}, opset=18, outputs=3, id="num-outputs-uneven")
add("Slice", [R(5, 6, 7), I(1, 0), I(4, 100), I(0, 2), I(1, 2)], id="steps-clamp", c=True)
add("Slice", [R(5, 6), I(-1), I(-100), I(1), I(-2)], id="negative-step")
add("Slice", [R(5, 6), I(-3, 1), I(-1, 5)], id="negative-starts")
add("Slice", [R(5, 6), I(2), I(2**62), I(-1)], id="neg-axis-huge-end")
add("Slice", [R(5, 6), I(0), I(0), I(0)], id="empty")
add("Slice", [R(5, 6)], {"starts": [1, 1], "ends": [3, -1], "axes": [0, 1]}, opset=9, id="opset9-attrs")
add("Squeeze", [R(1, 3, 1, 2), I(0, -2)], opset=13, id="axes-input", c=True)
add("Squeeze", [R(1, 3, 1, 2)], {"axes": [2]}, opset=11, id="axes-attr")
add("Squeeze", [R(1, 3, 1, 2)], opset=13, id="all")
add("Unsqueeze", [R(3, 2), I(0, 3)], opset=13, id="axes-input", c=True)
add("Unsqueeze", [R(3, 2)], {"axes": [1]}, opset=11, id="axes-attr")
add("Unsqueeze", [R(3, 2), I(-1, 0)], opset=13, id="negative")
add("Pad", [R(2, 3, 4), I(0, 1, 2, 0, 2, 1), np.float32(1.5)], id="constant-value", c=True)
add("Pad", [R(2, 3, 4), I(0, 2, 3, 0, 1, 2)], {"mode": "reflect"}, id="reflect", c=True)
add("Pad", [R(2, 3, 4), I(0, 2, 5, 0, 4, 1)], {"mode": "edge"}, id="edge")
add("Pad", [R(2, 3, 4), I(0, 2, 5, 0, 4, 1)], {"mode": "wrap"}, opset=19, id="wrap",  # ORT 1.30 pads wrong
    numpy=lambda x, pads: [np.pad(x, list(zip(pads[:3], pads[3:])), mode="wrap")])
add("Pad", [R(2, 5, 6), I(0, -1, 2, 0, 1, -2)], id="negative-crop")
add("Pad", [R(2, 3, 4), I(1, 2), None, I(-1)], opset=18, id="axes-input")
add("Pad", [R(2, 3, 4)], {"pads": [0, 1, 0, 0, 1, 2], "value": -2.0}, opset=2, id="opset2-attrs")
add("Pad", [ints(3, 4), I(1, 1, 1, 2)], {"mode": "reflect"}, opset=11, id="int-reflect")
add("Gather", [R(5, 4), I(0, 4, -1, 2)], id="axis0-negative", c=True)
add("Gather", [R(3, 5, 2), I(1, 0, 1, 3, 1, 4).reshape(2, 3)], {"axis": 1}, id="axis1-2d-indices")
add("Gather", [R(3, 5), np.array(-2, np.int64)], {"axis": -1}, id="scalar-index")
add("Gather", [ints(4, 3, dtype=np.int64), np.array([3, 1], np.int32)], id="int64-data-int32-indices")
add("Expand", [R(3, 1), I(2, 3, 4)], id="bcast", c=True)
add("Expand", [R(1), I(5)], id="1d")
add("Expand", [R(2, 3, 1), I(3, 1)], id="smaller-shape")
add("Cast", [R(3, 4, lo=-5, hi=5)], {"to": onnx.TensorProto.INT32}, id="float-int32", c=True)
add("Cast", [R(3, 4, lo=-5, hi=5)], {"to": onnx.TensorProto.INT64}, id="float-int64")
add("Cast", [ints(3, 4, dtype=np.int64)], {"to": onnx.TensorProto.FLOAT}, id="int64-float")
add("Cast", [np.array([[0.0, 1.5], [-2.0, 0.0]], np.float32)], {"to": onnx.TensorProto.BOOL}, id="float-bool")
add("Cast", [np.array([True, False, True])], {"to": onnx.TensorProto.FLOAT}, id="bool-float")
add("Cast", [ints(3, 4)], {"to": onnx.TensorProto.INT64}, id="int32-int64")
add("Dropout", [R(3, 4)], id="one-output")
add("Dropout", [R(3, 4)], outputs=2, id="mask")
add("Dropout", [R(3, 4)], {"ratio": 0.3}, opset=10, id="opset10")
add("Dropout", [R(3, 4), np.array(0.4, np.float32)], opset=13, outputs=2, id="ratio-input")
add("ConstantOfShape", [I(2, 3)], id="default", c=True)
add("ConstantOfShape", [I(4)], {"value": numpy_helper.from_array(np.array([7], np.int64))}, id="int64")
add("ConstantOfShape", [I(2, 1, 3)], {"value": numpy_helper.from_array(np.array([1.25], np.float32))}, id="float")

# resize
for coord in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn",
              "half_pixel_symmetric"):
    for nearest in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        if coord != "half_pixel" and nearest != "round_prefer_floor" and coord != "asymmetric":
            continue
        add("Resize", [R(1, 2, 3, 4), None, np.array([1, 1, 2.0, 1.5], np.float32)],
            {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest},
            opset=19, id=f"nearest-up-{coord}-{nearest}", c=coord == "half_pixel" and nearest == "floor")
    add("Resize", [R(1, 2, 3, 4), None, np.array([1, 1, 2.0, 1.5], np.float32)],
        {"mode": "linear", "coordinate_transformation_mode": coord}, opset=19, id=f"linear-up-{coord}",
        c=coord == "half_pixel")
    add("Resize", [R(1, 2, 6, 8), None, np.array([1, 1, 0.5, 0.6], np.float32)],
        {"mode": "linear", "coordinate_transformation_mode": coord}, opset=19, id=f"linear-down-{coord}")
    if coord != "tf_half_pixel_for_nn":
        add("Resize", [R(1, 2, 6, 8), None, None, I(1, 2, 4, 3)],
            {"mode": "nearest", "coordinate_transformation_mode": coord}, opset=19, id=f"nearest-sizes-{coord}")
        add("Resize", [R(1, 2, 4, 5), None, None, I(1, 2, 7, 3)],
            {"mode": "linear", "coordinate_transformation_mode": coord}, opset=19, id=f"linear-sizes-{coord}")
add("Resize", [R(1, 2, 6, 8), None, np.array([1, 1, 0.5, 0.6], np.float32)],
    {"mode": "nearest", "nearest_mode": "ceil"}, opset=19, id="nearest-down-ceil")
add("Resize", [R(1, 2, 4, 5), None, np.array([1, 1, 1.5, 2.0], np.float32)], {"mode": "cubic"}, opset=19,
    id="cubic")
add("Resize", [R(1, 2, 4, 5), None, np.array([1, 1, 1.5, 0.8], np.float32)],
    {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1, "coordinate_transformation_mode": "asymmetric"},
    opset=19, id="cubic-exclude-outside")
add("Resize", [R(1, 2, 4, 5), np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 0.8], np.float32),
               np.array([1, 1, 2.0, 1.5], np.float32)],
    {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": -1.0},
    opset=19, id="crop-and-resize")
add("Resize", [R(1, 2, 4, 5), np.array([0, 0, -0.2, 0.1, 1, 1, 1.3, 0.8], np.float32), None, I(1, 2, 5, 4)],
    {"mode": "nearest", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 9.0},
    opset=19, id="crop-and-resize-extrapolate")
add("Resize", [R(1, 2, 4, 5), None, np.array([2.0, 1.5], np.float32)], {"axes": [2, 3], "mode": "linear"},
    opset=19, id="axes")
add("Resize", [R(1, 2, 4, 6), None, None, I(6, 6)],
    {"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, opset=19, id="not-larger")
add("Resize", [R(1, 2, 4, 6), None, None, I(6, 6)],
    {"axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller", "mode": "linear"}, opset=19, id="not-smaller")
# antialias: downscaling stretches the kernel by 1/scale (wider window, weights renormalised)
for mode in ("linear", "cubic"):
    add("Resize", [R(1, 2, 8, 9), None, np.array([1, 1, 0.6, 0.35], np.float32)],
        {"mode": mode, "antialias": 1}, opset=18, id=f"{mode}-antialias-scales")
    add("Resize", [R(1, 2, 9, 10), None, None, I(1, 2, 4, 3)],
        {"mode": mode, "antialias": 1}, opset=18, id=f"{mode}-antialias-sizes")
    add("Resize", [R(1, 2, 6, 10), None, np.array([1, 1, 1.5, 0.45], np.float32)],
        {"mode": mode, "antialias": 1, "coordinate_transformation_mode": "asymmetric"}, opset=18,
        id=f"{mode}-antialias-up-and-down")
    add("Resize", [R(1, 2, 10, 11), None, None, I(3, 5)],
        {"mode": mode, "antialias": 1, "axes": [3, 2], "coordinate_transformation_mode": "align_corners"},
        opset=18, id=f"{mode}-antialias-axes-align-corners")
add("Resize", [R(1, 2, 9, 10), None, np.array([1, 1, 0.5, 0.3], np.float32)],
    {"mode": "cubic", "antialias": 1, "exclude_outside": 1, "cubic_coeff_a": -0.5}, opset=18,
    id="cubic-antialias-exclude-outside-coeff")
for mode in ("linear", "cubic"):
    add("Resize", [R(1, 2, 9, 10), None, np.array([1, 1, 0.5, 0.3], np.float32)],
        {"mode": mode, "antialias": 1, "exclude_outside": 1}, opset=18, id=f"{mode}-antialias-exclude-outside")
add("Resize", [R(1, 2, 9, 10), None, np.array([1, 1, 0.6, 0.3], np.float32)],
    {"mode": "cubic", "antialias": 1, "cubic_coeff_a": -0.5}, opset=18, id="cubic-antialias-coeff")
add("Resize", [R(1, 2, 3, 4), np.array([1, 1, 2, 2], np.float32)], {"mode": "nearest"}, opset=10,
    id="opset10-nearest")
add("Resize", [R(1, 3, 16, 16), None, np.array([1, 1, 2, 2], np.float32)],
    {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, opset=13, id="larger-2x")
add("Resize", [ints(1, 1, 3, 4, dtype=np.int32), None, np.array([1, 1, 2, 2], np.float32)],
    {"mode": "nearest"}, opset=13, id="int32-nearest")

# reductions (reduce.py)
for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"):
    axes_as_input = op == "ReduceSum"  # opset 13: ReduceSum takes axes as an input, the others as attributes
    for axes, keep in (([1], 1), ([0, 2], 0), ([-1], 1), (None, 1), (None, 0)):
        attrs = {"keepdims": keep}
        inputs = [R(2, 3, 4)]
        if axes is not None and axes_as_input:
            inputs.append(I(*axes))
        elif axes is not None:
            attrs["axes"] = axes
        add(op, inputs, attrs, opset=13, id=f"axes{axes}-keep{keep}".replace(" ", ""),
            c=axes == [1] and op in ("ReduceSum", "ReduceMax"))
    add(op, [R(2, 3, 4), I(1, 2)], {"keepdims": 0}, opset=18, id="opset18-axes-input")
    add(op, [R(2, 3, 4), I()], {"noop_with_empty_axes": 1}, opset=18, id="noop-empty-axes")
    add(op, [R(4, 64, 64)], {"keepdims": 1}, opset=18, id="larger-all")
    add(op, [R(4, 64, 64), I(-1)], opset=18, id="larger-last")
add("ReduceSum", [ints(3, 4), I(1)], opset=13, id="int32")
add("ReduceMax", [ints(3, 4, lo=0, hi=255, dtype=np.uint8), I(1)], opset=18, id="uint8")
add("ReduceMin", [ints(3, 4, lo=-100, hi=100, dtype=np.int8)], opset=18, id="int8")
add("ReduceMax", [np.array([[True, False], [False, False]]), I(1)], opset=20, id="bool")
add("ReduceMax", [R(2, 0, 3), I(1)], opset=18, id="empty-axis")


# ---------------------------------------------------------------------------- running a case

def onnx_attrs(node) -> dict:
    """ONNX attributes as the front end passes them: strings as str, tensors as arrays, dtypes as names."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = list(v)
        if (node.op_type, a.name) == ("Cast", "to"):
            v = str(np.dtype(helper.tensor_dtype_to_np_dtype(v)))
        out[a.name] = v
    return out


def build_model(case: Case):
    """The single-node model: constant inputs (the op's const_inputs) are initializers, others graph inputs."""
    const = OPS[case.op].const_inputs
    names, graph_inputs, inits = [], [], []
    for pos, arr in enumerate(case.inputs):
        if arr is None:
            names.append("")
            continue
        name = f"in{pos}"
        names.append(name)
        arr = np.asarray(arr)
        if pos in const:
            inits.append(numpy_helper.from_array(arr, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, list(arr.shape)))
    while names and not names[-1]:
        names.pop()
    outs = [f"out{k}" for k in range(case.outputs)]
    node = helper.make_node(case.op, names, outs, **case.attrs)
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=o) for o in outs],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = min(model.ir_version, 9)  # ONNX Runtime reads IR versions up to its own
    return model, node


_expected: dict = {}


def expected(case: Case) -> list:
    if case.id not in _expected and case.numpy is not None:
        _expected[case.id] = case.numpy(*case.inputs)
    if case.id not in _expected:
        model, _ = build_model(case)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        const = OPS[case.op].const_inputs
        feed = {f"in{p}": np.asarray(a) for p, a in enumerate(case.inputs) if a is not None and p not in const}
        _expected[case.id] = sess.run(None, feed)
    return _expected[case.id]


def lathe_program(case: Case) -> tuple:
    """Placeholders, feeds and output tensors, with inputs split the way the front end splits them."""
    _, node = build_model(case)
    attrs = onnx_attrs(node)
    if case.op in ("Softmax", "LogSoftmax") and case.opset < 13:
        attrs["opset"] = case.opset
    const = OPS[case.op].const_inputs
    phs, feeds = [], []
    for pos, arr in enumerate(case.inputs):
        if arr is None:
            continue
        arr = np.asarray(arr)
        if pos in const:
            attrs[const[pos]] = arr
        else:
            phs.append(te.placeholder(arr.shape, str(arr.dtype), name=f"in{pos}"))
            feeds.append(arr.copy(order="C"))  # ascontiguousarray would make 0-d arrays 1-d
    outs = call(case.op, phs, attrs, case.outputs)[:case.outputs]
    return phs, feeds, outs


def run(s, phs: list, feeds: list, outs: list, target) -> list:
    kernel = lathe.build(s, phs + outs, target=target)
    results = [np.empty(t.shape, t.dtype) for t in outs]
    kernel(*feeds, *results)
    return results


def compare(got: list, want: list, what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{what}: output {k} has shape {g.shape}, expected {w.shape}"
        assert g.dtype == w.dtype, f"{what}: output {k} has dtype {g.dtype}, expected {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"{what}: output {k}")


def schedule_variants(case: Case, target: Target, outs: list) -> list:
    """(name, schedule, outputs, expected-transform) for the default and the CPU schedule(s)."""
    opdef = OPS[case.op]
    variants = [("default", te.create_schedule(outs), outs, None)]
    if not case.scheduled or len(outs) != 1:
        return variants
    out = outs[0]
    schedules = family_schedules(target)
    if opdef.schedule is not None:
        s = te.create_schedule(out)
        schedules[opdef.schedule](s, out, out, target)
        variants.append(("hook", s, outs, None))
        if out.dtype == "float32":  # the graph layer fuses a ReLU and inlines it before calling the hook
            relu = te.compute(out.shape, lambda *i: te.max(out[i], te.const(0.0, "float32")), name="relu")
            s = te.create_schedule(relu)
            schedules[opdef.schedule](s, out, relu, target)
            variants.append(("hook+relu", s, [relu], lambda w: np.maximum(w, 0)))
    elif opdef.pattern in ("elemwise", "broadcast", "injective") and out.op.input_tensors():
        s = te.create_schedule(out)
        schedules["injective"](s, out, target)
        variants.append(("injective", s, outs, None))
    return variants


def targets_for(case: Case) -> list:
    return ["llvm"] + (["c"] if HAS_C and case.c else [])


PARAMS = [pytest.param(case, t, id=f"{case.id}-{t}") for case in CASES for t in targets_for(case)]


@pytest.mark.parametrize("case,target", PARAMS)
def test_op(case: Case, target: str, monkeypatch) -> None:
    want = expected(case)
    phs, feeds, outs = lathe_program(case)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_WORK", 0)  # small shapes still take the parallel paths
    tgt = Target.parse(f"{target} -threads=2")
    for name, s, touts, post in schedule_variants(case, tgt, outs):
        got = run(s, phs, feeds, touts, tgt)
        compare(got, [post(w) for w in want] if post else want, f"{case.id} on {target}, {name} schedule")


def test_every_operator_has_a_case() -> None:
    required = set("""Conv ConvTranspose BatchNormalization Clip Softmax LogSoftmax MaxPool AveragePool
    GlobalAveragePool GlobalMaxPool Gemm MatMul Flatten Reshape Transpose Concat Split Slice Squeeze Unsqueeze Pad
    Resize ReduceMean ReduceSum ReduceMax Cast Dropout Gather ConstantOfShape Expand Add Sub Mul Div Pow Relu Neg Abs
    Exp Log Sqrt Tanh Erf Sigmoid Identity LeakyRelu HardSigmoid HardSwish""".split())
    assert required <= set(OPS), f"not registered: {sorted(required - set(OPS))}"
    onnx_ops = {op for op in OPS if not op.startswith("lathe.")}  # internal blocked ops: tests/test_layout.py
    assert onnx_ops <= {c.op for c in CASES}, f"no test case: {sorted(onnx_ops - {c.op for c in CASES})}"


# ---------------------------------------------------------------------------- fused groups

def _model(nodes: list, inputs: dict, inits: dict, opset: int = 17):
    ins = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(a.shape)) for n, a in inputs.items()]
    graph = helper.make_graph(nodes, "g", ins, [onnx.ValueInfoProto(name=nodes[-1].output[0])],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)
    return model


def _se_block():
    """Conv+Relu, a global pool whose epilogue broadcasts, 1x1 convs, ReduceMean: hooks under fusion."""
    N = helper.make_node
    nodes = [N("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]), N("Relu", ["c0"], ["r0"]),
             N("GlobalAveragePool", ["r0"], ["g"]), N("Conv", ["g", "w1"], ["c1"]), N("Relu", ["c1"], ["r1"]),
             N("Conv", ["r1", "w2"], ["c2"]), N("Sigmoid", ["c2"], ["s"]), N("Mul", ["r0", "s"], ["y"]),
             N("ReduceMean", ["y"], ["z"], axes=[2, 3], keepdims=1), N("Mul", ["z", "y"], ["out"])]
    inits = {"w0": R(16, 8, 3, 3, seed=1, lo=-0.2, hi=0.2), "b0": R(16, seed=2), "w1": R(4, 16, 1, 1, seed=3),
             "w2": R(16, 4, 1, 1, seed=4)}
    return _model(nodes, {"x": R(1, 8, 12, 12)}, inits)


def _attention():
    """Transposes read in place by MatMuls, a scaled Softmax, Gemm with transB, LogSoftmax."""
    N = helper.make_node
    nodes = [N("MatMul", ["x", "wq"], ["q0"]), N("Add", ["q0", "bq"], ["q"]), N("Reshape", ["q", "shp"], ["q4"]),
             N("Transpose", ["q4"], ["qt"], perm=[0, 2, 1, 3]), N("Transpose", ["q4"], ["kt"], perm=[0, 2, 3, 1]),
             N("MatMul", ["qt", "kt"], ["sc"]), N("Mul", ["sc", "scale"], ["sc2"]), N("Softmax", ["sc2"], ["p"]),
             N("MatMul", ["p", "qt"], ["o"]), N("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
             N("Reshape", ["ot", "shp2"], ["o2"]), N("Gemm", ["o2", "wo", "bo"], ["y"], transB=1),
             N("LogSoftmax", ["y"], ["out"], axis=1)]
    inits = {"wq": R(64, 64, seed=1, lo=-0.2, hi=0.2), "bq": R(64, seed=2), "shp": I(1, 16, 4, 16),
             "scale": np.array(0.25, np.float32), "shp2": I(16, 64), "wo": R(32, 64, seed=3, lo=-0.2, hi=0.2),
             "bo": R(32, seed=4)}
    return _model(nodes, {"x": R(16, 64)}, inits)


@pytest.mark.parametrize("make", [_se_block, _attention], ids=["se-block", "attention"])
def test_fused_groups_through_the_compiler(make) -> None:
    model = make()
    feed = {i.name: R(*[d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    mod = lathe.compile(model, "llvm -threads=2")
    compare([np.asarray(g) for g in mod.run(feed)], want, f"{make.__name__} through lathe.compile")


# ---------------------------------------------------------------------------- errors

BAD = [
    ("Conv", [(1, 3, 8, 8), (4, 2, 3, 3)], {}, "C == W.shape\\[1\\] \\* group"),
    ("Conv", [(1, 4, 8, 8), (4, 2, 3, 3)], {"group": 2, "strides": [1]}, "strides=\\[1\\] needs 2 values"),
    ("Conv", [(1, 3, 2, 2), (4, 3, 3, 3)], {}, "window .* larger than the padded input"),
    ("Conv", [(1, 3, 8, 8), (4, 3, 3, 3)], {"auto_pad": "SAME"}, "auto_pad='SAME'"),
    ("MaxPool", [(1, 3, 8, 8)], {}, "kernel_shape is required"),
    ("MatMul", [(3, 4), (5, 6)], {}, "inner dimensions 4 and 5"),
    ("Gemm", [(3, 4), (3, 4)], {}, "disagree on K"),
    ("Reshape", [(2, 3)], {"shape": np.array([4, -1, -1])}, "one -1"),
    ("Reshape", [(2, 3)], {"shape": np.array([4, 2])}, "cannot reshape"),
    ("Transpose", [(2, 3)], {"perm": [0, 0]}, "not a permutation"),
    ("Concat", [(2, 3), (3, 3)], {"axis": 1}, "differ outside axis 1"),
    ("Split", [(2, 6)], {"axis": 1, "split": np.array([2, 2])}, "do not add up"),
    ("Squeeze", [(2, 1)], {"axes": np.array([0])}, "not of size 1"),
    ("Softmax", [(2, 3)], {"axis": 2}, "axis=2 is out of range for a tensor of rank 2"),
    ("ReduceSum", [(2, 3)], {"axes": np.array([0, -2])}, "names an axis twice"),
    ("Pad", [(2, 3)], {"pads": np.array([1, 1])}, "2 values per padded axis"),
    ("Resize", [(1, 1, 2, 2)], {"scales": np.array([1, 1, 2], np.float32)}, "one value per resized axis"),
    ("Expand", [(2, 3)], {"shape": np.array([4, 3])}, "does not broadcast"),
    ("Slice", [(4,)], {"starts": np.array([0]), "ends": np.array([2]), "steps": np.array([0])}, "step 0"),
]


@pytest.mark.parametrize("op,shapes,attrs,match", BAD, ids=[f"{b[0]}-{k}" for k, b in enumerate(BAD)])
def test_bad_attributes_name_the_op(op: str, shapes: list, attrs: dict, match: str) -> None:
    phs = [te.placeholder(s, name=f"in{k}") for k, s in enumerate(shapes)]
    with pytest.raises(ShapeError, match=f"{op}: .*{match}"):
        call(op, phs, attrs)


def test_vector_lanes_follow_the_target() -> None:
    assert cpu.vector_lanes("llvm -mcpu=haswell") == 8
    assert cpu.vector_lanes("llvm -mcpu=skylake-avx512 -mattr=+avx512f") == 16
    assert cpu.vector_lanes("llvm -vector-bits=256", "int64") == 4
    assert cpu.vector_lanes("llvm") in (8, 16)
