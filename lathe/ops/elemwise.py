"""Elementwise and broadcasting operators (ONNX semantics)."""

from __future__ import annotations

import numpy as np

from lathe import te
from lathe.errors import LatheError
from lathe.ops.registry import register


class ShapeError(LatheError, ValueError):
    """Operand shapes that do not fit the operator."""


def broadcast_shape(*shapes: tuple) -> tuple:
    """NumPy broadcasting of the given shapes, or a ShapeError naming them."""
    rank = max(len(s) for s in shapes)
    out = []
    for d in range(rank):
        dims = {s[d - rank + len(s)] for s in shapes if d - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise ShapeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def as_ints(v, op: str, attr: str) -> list[int]:
    """An int list attribute or constant input (list, tuple, numpy array or scalar) as Python ints."""
    if v is None:
        return []
    arr = np.asarray(v)
    if arr.dtype.kind not in "iub":
        raise ShapeError(f"{op}: {attr} must be integers, got {arr.dtype} {arr.tolist()}")
    return [int(x) for x in arr.reshape(-1)]


def as_scalar(v, op: str, attr: str):
    """A scalar attribute or constant input (Python number or one-element array) as a Python number."""
    arr = np.asarray(v)
    if arr.size != 1:
        raise ShapeError(f"{op}: {attr} must be a single value, got shape {arr.shape}")
    return arr.reshape(-1)[0].item()


def norm_axis(axis: int, rank: int, op: str, attr: str = "axis") -> int:
    """A possibly negative axis as 0..rank-1, or a ShapeError naming the op and the rank."""
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ShapeError(f"{op}: {attr}={axis} is out of range for a tensor of rank {rank}")
    return axis % rank


def norm_axes(axes, rank: int, op: str, attr: str = "axes") -> list[int]:
    out = [norm_axis(a, rank, op, attr) for a in as_ints(axes, op, attr)]
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: {attr}={as_ints(axes, op, attr)} names an axis twice")
    return out


# Workaround (core bug): the IR's max/min compare uint8/bool as signed, and the reduction identities
# of max/min are wrong for bool/uint8/int8; ops compute max/min on these types in int32.
NARROW_INTS = ("bool", "uint8", "int8")


def minmax_dtype(dtype: str) -> str:
    """The dtype in which to compute max/min of `dtype` values."""
    return "int32" if dtype in NARROW_INTS else dtype


def broadcast_read(t: te.Tensor, idx: tuple):
    """t read at output index idx under broadcasting: leading dims dropped, size-1 dims pinned to 0."""
    skip = len(idx) - len(t.shape)
    return t[tuple(0 if d == 1 else i for d, i in zip(t.shape, idx[skip:]))]


def elementwise(inputs: list, fn, name: str) -> te.Tensor:
    shape = broadcast_shape(*[t.shape for t in inputs])
    return te.compute(shape, lambda *i: fn(*[broadcast_read(t, i) for t in inputs]), name=name)


def _binary(name: str, fn):
    register(name, "broadcast")(lambda inputs, **_: elementwise(inputs, fn, name.lower()))


_binary("Add", lambda a, b: a + b)
_binary("Sub", lambda a, b: a - b)
_binary("Mul", lambda a, b: a * b)
_binary("Div", lambda a, b: a / b if a.dtype.startswith("float") else _int_div(a, b))
_binary("Pow", lambda a, b: _pow(a, b))


def _pow(a, b):
    # the result has the base's type; integer powers go through float64 and truncate, as ONNX Runtime does.
    # A GPU's pow may land an ulp below an exact integer (NVIDIA's OpenCL: 4^3 -> 63.99..): a power with
    # a non-negative exponent is an integer, so it is rounded before the cast
    if a.dtype.startswith("float"):
        return te.pow(a, b if b.dtype == a.dtype else te.cast(b, a.dtype))
    p = te.pow(te.cast(a, "float64"), te.cast(b, "float64"))
    return te.cast(te.if_then_else(b >= 0, te.floor(p + 0.5), p), a.dtype)


def _int_div(a, b):
    # ONNX integer Div truncates toward zero; the IR's // floors. The CPU traps (SIGFPE) on a zero
    # divisor and on MIN // -1, so those never reach the division: x/0 gives 0 (as NumPy), x/-1 gives -x.
    if b.dtype in NARROW_INTS:  # the IR divides uint8 as signed (core bug, as for max/min): widen
        return te.cast(_int_div(te.cast(a, "int32"), te.cast(b, "int32")), a.dtype)
    signed = not b.dtype.startswith(("uint", "bool"))
    trap = te.any(b == 0, b == -1) if signed else b == 0
    safe = te.if_then_else(trap, te.const(1, b.dtype), b)
    q = a // safe
    q = te.if_then_else(te.all(q < 0, q * safe != a), q + 1, q)
    q = te.if_then_else(b == -1, -a, q) if signed else q
    return te.if_then_else(b == 0, te.const(0, q.dtype), q)


def _unary(name: str, fn, pattern: str = "elemwise"):
    register(name, pattern)(lambda inputs, **attrs: elementwise(inputs[:1], lambda x: fn(x, **attrs), name.lower()))


_unary("Relu", lambda x: te.max(x, te.const(0, x.dtype)))
_unary("Neg", lambda x: -x)
_unary("Abs", lambda x: te.abs(x))
_unary("Exp", lambda x: te.exp(x))
_unary("Log", lambda x: te.log(x))
_unary("Sqrt", lambda x: te.sqrt(x))
_unary("Tanh", lambda x: te.tanh(x))
_unary("Erf", lambda x: te.erf(x))
_unary("Sigmoid", lambda x: te.sigmoid(x))
_unary("Identity", lambda x: x)
_unary("LeakyRelu", lambda x, alpha=0.01: te.if_then_else(x < 0, x * alpha, x))
_unary("HardSigmoid", lambda x, alpha=0.2, beta=0.5: te.max(te.min(x * alpha + beta, 1.0), 0.0))
_unary("HardSwish", lambda x: x * te.max(te.min(x * (1.0 / 6) + 0.5, 1.0), 0.0))


@register("Clip", "elemwise", const_inputs={1: "min", 2: "max"})
def clip(inputs: list[te.Tensor], min=None, max=None, **_) -> te.Tensor:  # noqa: A002 - ONNX names
    """min(max(x, min), max); opset < 11 passes min/max as attributes, later opsets as constant inputs."""
    x = inputs[0]
    lo = None if min is None or np.size(min) == 0 else as_scalar(min, "Clip", "min")
    hi = None if max is None or np.size(max) == 0 else as_scalar(max, "Clip", "max")

    work = minmax_dtype(x.dtype)

    def fn(v):
        v = te.cast(v, work)
        if lo is not None:
            v = te.max(v, te.const(lo, work))
        if hi is not None:
            v = te.min(v, te.const(hi, work))
        return te.cast(v, x.dtype)

    return elementwise([x], fn, "clip")
