"""Elementwise and broadcasting operators (ONNX semantics)."""

from __future__ import annotations

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
_binary("Pow", lambda a, b: te.pow(a, b) if b.dtype == a.dtype else te.pow(a, te.cast(b, a.dtype)))


def _int_div(a, b):
    # ONNX integer Div truncates toward zero; the IR's // floors
    q = a // b
    return te.if_then_else(te.all(q < 0, q * b != a), q + 1, q)


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
