"""Reductions (ONNX semantics): Reduce{Sum,Mean,Max,Min}, Softmax, LogSoftmax."""

from __future__ import annotations

import math

import numpy as np

from lathe import te
from lathe.ops.elemwise import ShapeError, minmax_dtype, norm_axes, norm_axis
from lathe.ops.registry import register


def reduce_over(x: te.Tensor, axes: list[int], keepdims: bool, combiner, name: str, pre=None) -> te.Tensor:
    """combiner(pre(x)) over `axes`; kept axes keep their index, reduced ones become reduce axes."""
    axes = sorted(axes)
    if not axes:  # a rank-0 input: nothing to reduce over (a Reduce without reduce axes cannot be lowered)
        return te.compute(x.shape, lambda *i: pre(x[i]) if pre else x[i], name=name)
    work = minmax_dtype(x.dtype) if combiner is not te.sum and pre is None else x.dtype
    if work != x.dtype:  # max/min of narrow ints: reduce in int32, then cast back
        wide = reduce_over(x, axes, keepdims, combiner, name, pre=lambda v: te.cast(v, work))
        return te.compute(wide.shape, lambda *i: te.cast(wide[i], x.dtype), name=name + "_cast")
    raxes = [te.reduce_axis(x.shape[a], name=f"r{a}") for a in axes]
    shape = tuple(1 if a in axes else d for a, d in enumerate(x.shape) if keepdims or a not in axes)

    def f(*o):
        it = iter(o)
        idx = []
        for a in range(x.ndim):
            if a in axes:
                idx.append(raxes[axes.index(a)])
                if keepdims:
                    next(it)
            else:
                idx.append(next(it))
        v = x[tuple(idx)]
        return combiner(pre(v) if pre else v, axis=raxes)

    return te.compute(shape, f, name=name, tag="reduce")


def _reduce_args(op: str, x: te.Tensor, axes, keepdims: int, noop_with_empty_axes: int):
    """The axes to reduce, or None when the op is the identity (empty axes with noop_with_empty_axes)."""
    if axes is None or np.size(axes) == 0:
        return None if noop_with_empty_axes else list(range(x.ndim))
    return norm_axes(axes, x.ndim, op)


def _reduce_op(name: str, combiner, mean: bool = False):
    @register(name, "reduce", const_inputs={1: "axes"}, schedule="reduce")
    def op(inputs: list[te.Tensor], axes=None, keepdims: int = 1, noop_with_empty_axes: int = 0, **_) -> te.Tensor:
        x = inputs[0]
        ax = _reduce_args(name, x, axes, keepdims, noop_with_empty_axes)
        if ax is None:
            return x
        out = reduce_over(x, ax, bool(keepdims), combiner, name.lower())
        if not mean:
            return out
        count = math.prod(x.shape[a] for a in ax)
        if x.dtype.startswith("float"):
            return te.compute(out.shape, lambda *i: out[i] * (1.0 / count) if count else out[i] / 0.0,
                              name="reducemean")
        return te.compute(out.shape, lambda *i: out[i] // count, name="reducemean")

    op.__name__ = name.lower()
    return op


reduce_sum = _reduce_op("ReduceSum", te.sum)
reduce_mean = _reduce_op("ReduceMean", te.sum, mean=True)
reduce_max = _reduce_op("ReduceMax", te.max)
reduce_min = _reduce_op("ReduceMin", te.min)


def _softmax(x: te.Tensor, axis: int, log: bool, name: str, opset: int | None) -> te.Tensor:
    """exp(x - max) / sum(exp(x - max)) along one axis (opset >= 13).

    Opsets < 13 (when the front end passes `opset`) coerce the input to 2-D at `axis` and
    normalise over all trailing axes together; that is the same computation over axes[axis:].
    """
    if not x.dtype.startswith("float"):
        raise ShapeError(f"{name}: input must be float, got {x.dtype}")
    old = opset is not None and opset < 13
    if axis is None:
        axis = 1 if old else -1
    axis = norm_axis(axis, x.ndim, name)
    axes = list(range(axis, x.ndim)) if old else [axis]
    mx = reduce_over(x, axes, True, te.max, f"{name.lower()}_max")

    def at_stat(stat, i):  # the kept (size-1) statistic for output index i
        return stat[tuple(0 if a in axes else v for a, v in enumerate(i))]

    raxes = [te.reduce_axis(x.shape[a], name=f"k{a}") for a in axes]
    # Softmax keeps exp(x - max) as a stage (tag softmax_exp, which schedules keep): one exp per element
    e = None if log else te.compute(x.shape, lambda *i: te.exp(x[i] - at_stat(mx, i)), name="softmax_exp",
                                    tag="softmax_exp")

    def expsum(*i):
        idx = tuple(raxes[axes.index(a)] if a in axes else v for a, v in enumerate(i))
        return te.sum(e[idx] if e is not None else te.exp(x[idx] - mx[tuple(i)]), axis=raxes)

    total = te.compute(mx.shape, expsum, name=f"{name.lower()}_sum", tag="reduce")
    if log:
        return te.compute(x.shape, lambda *i: x[i] - at_stat(mx, i) - te.log(at_stat(total, i)), name=name.lower())
    return te.compute(x.shape, lambda *i: e[i] / at_stat(total, i), name=name.lower())


@register("Softmax", "reduce", schedule="reduce")
def softmax(inputs: list[te.Tensor], axis: int | None = None, opset: int | None = None, **_) -> te.Tensor:
    return _softmax(inputs[0], axis, False, "Softmax", opset)


@register("LogSoftmax", "reduce", schedule="reduce")
def log_softmax(inputs: list[te.Tensor], axis: int | None = None, opset: int | None = None, **_) -> te.Tensor:
    return _softmax(inputs[0], axis, True, "LogSoftmax", opset)
