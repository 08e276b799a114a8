"""Tensors and the operations that produce them: placeholders and computes."""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable

from lathe.expr import (
    Call, Const, Expr, IterVar, Reduce, Select, TensorRead, binary, cast, check_dtype, const,
    convert, is_float, post_order, unify,
)


class Operation:
    name: str
    shape: tuple
    dtype: str

    def output(self) -> Tensor:
        return self._out

    def input_tensors(self) -> list[Tensor]:
        return []


class PlaceholderOp(Operation):
    def __init__(self, name: str, shape: tuple, dtype: str):
        self.name, self.shape, self.dtype = name, shape, dtype
        self._out = Tensor(self)


class ComputeOp(Operation):
    """out[axis...] = body, where body may be one Reduce over `reduce_axis`."""

    def __init__(self, name: str, axis: list[IterVar], body: Expr, tag: str = "", attrs: dict | None = None):
        self.name, self.axis, self.body, self.tag = name, list(axis), body, tag
        self.attrs = dict(attrs or {})
        self.shape = tuple(iv.extent.value for iv in axis)
        self.dtype = body.dtype
        self.reduce_axis = list(body.axes) if isinstance(body, Reduce) else []
        self._out = Tensor(self)

    def input_tensors(self) -> list[Tensor]:
        found: list[Tensor] = []

        def visit(n):
            if isinstance(n, TensorRead) and builtins.all(n.tensor is not t for t in found):
                found.append(n.tensor)

        post_order(self.body, visit)
        return found


class Tensor:
    """The output of an operation. `T[i, j]` inside a compute reads it."""

    def __init__(self, op: Operation):
        self.op = op

    @property
    def shape(self) -> tuple:
        return self.op.shape

    @property
    def dtype(self) -> str:
        return self.op.dtype

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, indices) -> TensorRead:
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) != len(self.shape):
            raise IndexError(f"tensor {self.name} has {len(self.shape)} dimensions, indexed with {len(indices)}")
        idx = tuple(cast(i, "int32") if i.dtype == "int64" else i for i in map(convert, indices))
        for i in idx:
            if i.dtype != "int32":
                raise TypeError(f"index {i} of tensor {self.name} is {i.dtype}; indices must be int32")
        return TensorRead(self, idx)

    def __repr__(self) -> str:
        return f"Tensor({self.name}, shape={list(self.shape)}, {self.dtype})"


def _shape(shape) -> tuple:
    shape = (shape,) if isinstance(shape, (int, Expr)) else tuple(shape)
    out = []
    for d in shape:
        d = convert(d)
        if not isinstance(d, Const) or d.dtype != "int32" or d.value < 0:
            raise ValueError(f"shape {shape}: every dimension must be a non-negative int, got {d}")
        out.append(d.value)
    return tuple(out)


def placeholder(shape, dtype: str = "float32", name: str = "placeholder") -> Tensor:
    return PlaceholderOp(name, _shape(shape), check_dtype(dtype)).output()


def compute(shape, fcompute: Callable[..., Expr], name: str = "compute", tag: str = "",
            attrs: dict | None = None) -> Tensor:
    """Describe out[i0, i1, ...] = fcompute(i0, i1, ...) over `shape`."""
    shape = _shape(shape)
    params = list(inspect.signature(fcompute).parameters.values())
    if params and params[0].kind == inspect.Parameter.VAR_POSITIONAL:
        names = [f"i{k}" for k in range(len(shape))]
    else:
        names = [p.name for p in params]
        if len(names) != len(shape):
            raise ValueError(f"compute {name}: shape has {len(shape)} dims but fcompute takes {len(names)} args")
    axis = [IterVar(n, d) for n, d in zip(names, shape)]
    body = convert(fcompute(*axis))
    _check_reduce_top_level(body, name)
    return ComputeOp(name, axis, body, tag, attrs).output()


def _check_reduce_top_level(body: Expr, name: str) -> None:
    inner = []
    post_order(body, lambda n: inner.append(n) if isinstance(n, Reduce) else None)
    if inner and not (isinstance(body, Reduce) and len(inner) == 1):
        raise ValueError(f"compute {name}: a reduction must be the whole body (te.sum(...)), "
                         "not part of a larger expression; split it into two computes")


def reduce_axis(dom, name: str = "k") -> IterVar:
    lo, hi = (0, dom) if isinstance(dom, (int, Expr)) else tuple(dom)
    lo, hi = convert(lo), convert(hi)
    if not (isinstance(lo, Const) and isinstance(hi, Const)):
        raise ValueError(f"reduce_axis {name}: bounds must be constants, got ({lo}, {hi})")
    return IterVar(name, hi.value - lo.value, "reduce", lo.value)


def _reducer(combiner: str):
    def reduce(expr, axis=None, where=None):
        if axis is None or isinstance(axis, (int, float)) or (isinstance(axis, Expr) and not isinstance(axis, IterVar)):
            if combiner == "sum":
                raise TypeError("te.sum(expr, axis=k) needs reduce axes")
            return binary(combiner, expr, axis)  # te.max(a, b): elementwise
        axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        for a in axes:
            if not isinstance(a, IterVar) or a.kind != "reduce":
                raise ValueError(f"te.{combiner}: axis {a} is not a te.reduce_axis")
        return Reduce(combiner, convert(expr), axes, None if where is None else convert(where))

    reduce.__name__ = combiner
    reduce.__doc__ = (f"te.{combiner}(expr, axis=k[, where=cond]) reduces over k"
                      + ("" if combiner == "sum" else f"; te.{combiner}(a, b) is elementwise"))
    return reduce


sum = _reducer("sum")  # noqa: A001 - the name users expect, as in TVM
max = _reducer("max")  # noqa: A001
min = _reducer("min")  # noqa: A001


def if_then_else(cond, t, f) -> Expr:
    cond, t, f = convert(cond), convert(t), convert(f)
    if cond.dtype != "bool":
        raise TypeError(f"if_then_else condition {cond} must be bool, got {cond.dtype}")
    t, f = unify(t, f)
    if isinstance(cond, Const):
        return t if cond.value else f
    return Select(cond, t, f)


def all(*conds) -> Expr:  # noqa: A001
    out = const(True)
    for c in conds:
        out = binary("and", out, c)
    return out


def any(*conds) -> Expr:  # noqa: A001
    out = const(False)
    for c in conds:
        out = binary("or", out, c)
    return out


def _float_intrinsic(name: str, nargs: int = 1):
    def f(*args) -> Expr:
        if len(args) != nargs:
            raise TypeError(f"te.{name} takes {nargs} argument(s)")
        xs = [convert(a) for a in args]
        if nargs == 2:
            xs = list(unify(xs[0], xs[1]))
        if not is_float(xs[0].dtype):
            raise TypeError(f"te.{name} needs a float argument, got {xs[0].dtype}")
        return Call(name, tuple(xs), xs[0].dtype)

    f.__name__ = name
    return f


exp, log, sqrt, tanh, erf, floor, ceil = (
    _float_intrinsic(n) for n in ("exp", "log", "sqrt", "tanh", "erf", "floor", "ceil"))
pow = _float_intrinsic("pow", 2)  # noqa: A001


def abs(x) -> Expr:  # noqa: A001
    x = convert(x)
    return Call("fabs", (x,), x.dtype) if is_float(x.dtype) else if_then_else(x < 0, -x, x)


def rsqrt(x) -> Expr:
    return 1.0 / sqrt(x)


def sigmoid(x) -> Expr:
    x = convert(x)
    return Const(1, x.dtype) / (Const(1, x.dtype) + exp(-x))


__all__ = [
    "Tensor", "Operation", "PlaceholderOp", "ComputeOp", "placeholder", "compute", "reduce_axis",
    "sum", "max", "min", "if_then_else", "all", "any", "exp", "log", "sqrt", "tanh", "erf", "floor",
    "ceil", "pow", "abs", "rsqrt", "sigmoid", "cast", "const",
]
