"""Neural-network operators (ONNX semantics): convolutions, pooling, normalisation, matrix products.

Computes are target-free; `schedule="conv"` names a hook that each target family's module (cpu.py, ...)
provides in its SCHEDULES table. Hooks find the stages by `tag`:
  conv_pad / pool_pad   the zero- (or -inf-) padded input, when there is padding
  conv / pool / matmul  the reduction
  conv_bias, pool_avg, gemm_epilogue   a pointwise stage after the reduction
"""

from __future__ import annotations

import math

import numpy as np

from lathe import te
from lathe.expr import Expr
from lathe.ops.elemwise import (
    ShapeError, as_ints, broadcast_read, broadcast_shape, minmax_dtype,
)
from lathe.ops.registry import register

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
INDEX_MAX = 2**31 - 1


# ---------------------------------------------------------------------------- shared shape rules

def _spatial(op: str, attr: str, v, n: int, default: int) -> list[int]:
    """A per-spatial-axis int attribute (strides, dilations, kernel_shape) with its default."""
    if v is None:
        return [default] * n
    out = as_ints(v, op, attr)
    if len(out) != n:
        raise ShapeError(f"{op}: {attr}={out} needs {n} values (one per spatial axis)")
    if any(x < 1 or x > INDEX_MAX for x in out):
        raise ShapeError(f"{op}: {attr}={out} must lie in 1..{INDEX_MAX} (kernels index in int32)")
    return out


def _check_index_range(op: str, what: str, values: list) -> None:
    """Index arithmetic in the kernels is int32: a stride of 2**62 wrapped a bounds check and read far outside."""
    if any(v > INDEX_MAX for v in values):
        raise ShapeError(f"{op}: {what} {values} exceed {INDEX_MAX} (kernels index in int32)")


def window_pads(op: str, in_sp: list, k_eff: list, strides: list, pads, auto_pad: str,
                ceil_mode: bool = False) -> tuple[list, list, list]:
    """(pads_begin, pads_end, output spatial shape) of a sliding window, ONNX rules.

    k_eff is the dilated kernel extent (k - 1) * d + 1. SAME_UPPER puts the odd padding at the end,
    SAME_LOWER at the beginning; VALID pads nothing.
    """
    n = len(in_sp)
    if auto_pad not in AUTO_PADS:
        raise ShapeError(f"{op}: auto_pad={auto_pad!r} is not one of {AUTO_PADS}")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(in_sp, strides)]
        total = [max(0, (o - 1) * s + k - i) for o, s, k, i in zip(out, strides, k_eff, in_sp)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        pb, pe = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        return pb, pe, out
    if auto_pad == "VALID":
        pb, pe = [0] * n, [0] * n
    else:
        p = [0] * (2 * n) if pads is None else as_ints(pads, op, "pads")
        if len(p) != 2 * n:
            raise ShapeError(f"{op}: pads={p} needs {2 * n} values (begin and end per spatial axis)")
        if any(v < 0 for v in p):
            raise ShapeError(f"{op}: pads={p} must not be negative")
        pb, pe = p[:n], p[n:]
    _check_index_range(op, "padded input extents", [i + b + e for i, b, e in zip(in_sp, pb, pe)])
    out = []
    for i, b, e, k, s in zip(in_sp, pb, pe, k_eff, strides):
        span = i + b + e - k
        if span < 0:
            raise ShapeError(f"{op}: the window (extent {k}) is larger than the padded input ({i + b + e}) "
                             f"for input spatial shape {tuple(in_sp)}")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= i + b:  # the last window must start inside the input or its begin pad
            o -= 1
        out.append(o)
    return pb, pe, out


def window_input(x: te.Tensor, pb: list, pe: list, fill, tag: str, strides: list, dilations: list):
    """The input of a sliding window, padded by `fill`, and how to read it.

    Returns (stage, read) where read(n, c, o, r) is the padded input at spatial position
    o[i] * stride[i] + r[i] * dilation[i] for output index o and window tap r. When the last
    axis has a stride > 1 the padded input is stored phase-split along that axis,
    [n, c, phase, ..., j] = padded[n, c, ..., j * stride + phase], so that reads along the output's
    last axis are contiguous (vector loads instead of gathers). The stage is x itself when there is
    neither padding nor a stride on the last axis.
    """
    sp = list(x.shape[2:])
    padded = [d + b + e for d, b, e in zip(sp, pb, pe)]
    s, d = strides[-1], dilations[-1]

    def value(n, c, pos, past_end: bool = False):
        # the padded input at spatial positions `pos`; past_end: the last position may pass the padded end
        src = [p - b for p, b in zip(pos, pb)]
        if not any(pb) and not any(pe) and not past_end:
            return x[(n, c, *src)]
        ok = te.all(*[te.all(i >= 0, i < size) for i, size in zip(src, sp)])
        return te.if_then_else(ok, x[(n, c, *src)], fill)

    if s == 1:
        if not any(pb) and not any(pe):
            stage = x
        else:
            stage = te.compute((*x.shape[:2], *padded), lambda *i: value(i[0], i[1], i[2:]), name=tag, tag=tag)

        def read(n, c, o, r):
            return stage[(n, c, *[oi * st + ri * di for oi, st, ri, di in zip(o, strides, r, dilations)])]

        return stage, read
    cols = -(-padded[-1] // s)

    def split(*i):
        n, c, phase, pos = i[0], i[1], i[2], list(i[3:])
        pos[-1] = pos[-1] * s + phase
        return value(n, c, pos, past_end=cols * s > padded[-1])  # the last phase row may be one short

    stage = te.compute((*x.shape[:2], s, *padded[:-1], cols), split, name=tag, tag=tag)

    def read(n, c, o, r):
        lead = [oi * st + ri * di for oi, st, ri, di in zip(o[:-1], strides[:-1], r[:-1], dilations[:-1])]
        tap = r[-1] * d  # position o*s + tap = (o + tap // s) * s + tap % s
        return stage[(n, c, tap % s, *lead, o[-1] + tap // s)]

    return stage, read


# ---------------------------------------------------------------------------- convolution

@register("Conv", "complex", schedule="conv")
def conv(inputs: list[te.Tensor], auto_pad: str = "NOTSET", dilations=None, group: int = 1, kernel_shape=None,
         pads=None, strides=None, **_) -> te.Tensor:
    """N-d convolution, NC[D]HW layout: X (N, C, *in), W (M, C/group, *k), optional bias B (M)."""
    if len(inputs) < 2:
        raise ShapeError("Conv: needs inputs X and W")
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    nsp = x.ndim - 2
    if nsp < 1 or w.ndim != x.ndim:
        raise ShapeError(f"Conv: X {x.shape} and W {w.shape} must both be (N, C, spatial...) of the same rank >= 3")
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    group = int(group)
    if group < 1 or c != cg * group or m % group:
        raise ShapeError(f"Conv: X {x.shape} with W {w.shape} and group={group}: need C == W.shape[1] * group "
                         "and M divisible by group")
    if b is not None and tuple(b.shape) != (m,):
        raise ShapeError(f"Conv: bias B {b.shape} must have shape ({m},)")
    ks = list(w.shape[2:])
    if kernel_shape is not None and as_ints(kernel_shape, "Conv", "kernel_shape") != ks:
        raise ShapeError(f"Conv: kernel_shape={as_ints(kernel_shape, 'Conv', 'kernel_shape')} but W is {w.shape}")
    st = _spatial("Conv", "strides", strides, nsp, 1)
    dl = _spatial("Conv", "dilations", dilations, nsp, 1)
    k_eff = [(k - 1) * d + 1 for k, d in zip(ks, dl)]
    pb, pe, out_sp = window_pads("Conv", list(x.shape[2:]), k_eff, st, pads, auto_pad)
    _, read = window_input(x, pb, pe, te.const(0, x.dtype), "conv_pad", st, dl)
    mg = m // group
    rk = [te.reduce_axis(k, name=f"r{a}") for a, k in enumerate(ks)]
    rc = te.reduce_axis(cg, name="rc") if cg > 1 else None

    def f(*i):
        nn, mm, o = i[0], i[1], i[2:]
        g = mm // mg if group > 1 else 0
        ch = (g * cg + rc if rc is not None else g * cg) if group > 1 else (rc if rc is not None else 0)
        wi = (mm, rc if rc is not None else 0, *rk)
        return te.sum(read(nn, ch, o, rk) * w[wi], axis=([rc] if rc is not None else []) + rk)

    out = te.compute((n, m, *out_sp), f, name="conv", tag="conv",
                     attrs={"strides": st, "dilations": dl, "group": group, "kernel": ks})
    if b is None:
        return out
    return te.compute(out.shape, lambda *i: out[i] + b[i[1]], name="conv_bias", tag="conv_bias")


@register("ConvTranspose", "complex", schedule="conv")
def conv_transpose(inputs: list[te.Tensor], auto_pad: str = "NOTSET", dilations=None, group: int = 1,
                   kernel_shape=None, output_padding=None, output_shape=None, pads=None, strides=None,
                   **_) -> te.Tensor:
    """N-d transposed convolution: X (N, C, *in), W (C, M/group, *k), optional bias B (M).

    out[o] = sum over input positions i and taps k with i*s + k*d == o + pad_begin; a tap whose
    input position is not an integer in range contributes nothing (a masked reduction).
    """
    if len(inputs) < 2:
        raise ShapeError("ConvTranspose: needs inputs X and W")
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    nsp = x.ndim - 2
    if nsp < 1 or w.ndim != x.ndim:
        raise ShapeError(f"ConvTranspose: X {x.shape} and W {w.shape} must both be (N, C, spatial...) of one rank")
    n, c = x.shape[:2]
    group = int(group)
    if group < 1 or w.shape[0] != c or c % group:
        raise ShapeError(f"ConvTranspose: X {x.shape} with W {w.shape} and group={group}: need W.shape[0] == C "
                         "and C divisible by group")
    mg = w.shape[1]
    m = mg * group
    cg = c // group
    if b is not None and tuple(b.shape) != (m,):
        raise ShapeError(f"ConvTranspose: bias B {b.shape} must have shape ({m},)")
    ks = list(w.shape[2:])
    if kernel_shape is not None and as_ints(kernel_shape, "ConvTranspose", "kernel_shape") != ks:
        raise ShapeError(f"ConvTranspose: kernel_shape={kernel_shape} but W is {w.shape}")
    st = _spatial("ConvTranspose", "strides", strides, nsp, 1)
    dl = _spatial("ConvTranspose", "dilations", dilations, nsp, 1)
    op_ = [0] * nsp if output_padding is None else as_ints(output_padding, "ConvTranspose", "output_padding")
    if len(op_) != nsp:
        raise ShapeError(f"ConvTranspose: output_padding={op_} needs {nsp} values")
    in_sp = list(x.shape[2:])
    full = [s * (i - 1) + p + (k - 1) * d + 1 for s, i, p, k, d in zip(st, in_sp, op_, ks, dl)]
    if output_shape is not None:
        out_sp = as_ints(output_shape, "ConvTranspose", "output_shape")[-nsp:]
        if len(out_sp) != nsp:
            raise ShapeError(f"ConvTranspose: output_shape={out_sp} needs {nsp} spatial values")
        # a larger output_shape than the full output leaves zeros (bias) at the end, as ONNX Runtime does
        total = [max(0, f_ - o) for f_, o in zip(full, out_sp)]
        upper = auto_pad == "SAME_UPPER"  # SAME_UPPER puts the odd pad at the end; NOTSET/SAME_LOWER at the start
        pb = [t // 2 if upper else t - t // 2 for t in total]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out_sp = [i * s for i, s in zip(in_sp, st)]
        total = [max(0, f_ - o) for f_, o in zip(full, out_sp)]
        pb = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        if auto_pad not in AUTO_PADS:
            raise ShapeError(f"ConvTranspose: auto_pad={auto_pad!r} is not one of {AUTO_PADS}")
        p = [0] * (2 * nsp) if pads is None or auto_pad == "VALID" else as_ints(pads, "ConvTranspose", "pads")
        if len(p) != 2 * nsp or any(v < 0 for v in p):
            raise ShapeError(f"ConvTranspose: pads={p} needs {2 * nsp} non-negative values")
        pb = p[:nsp]
        out_sp = [f_ - b_ - e for f_, b_, e in zip(full, p[:nsp], p[nsp:])]
    if any(o < 1 for o in out_sp):
        raise ShapeError(f"ConvTranspose: output spatial shape {out_sp} is empty")
    _check_index_range("ConvTranspose", "strided input extents, full outputs or padded outputs",
                       [s * i for s, i in zip(st, in_sp)] + full + [o + p for o, p in zip(out_sp, pb)])
    rk = [te.reduce_axis(k, name=f"r{a}") for a, k in enumerate(ks)]
    rc = te.reduce_axis(cg, name="rc")

    def f(*i):
        nn, mm, o = i[0], i[1], i[2:]
        g = mm // mg
        pos = [oi + p - r * d for oi, p, r, d in zip(o, pb, rk, dl)]  # = input index * stride
        src = [v // s if s > 1 else v for v, s in zip(pos, st)]
        ok = [te.all(v >= 0, v < size * s) if s == 1 else te.all(v >= 0, v % s == 0, v < size * s)
              for v, s, size in zip(pos, st, in_sp)]
        return te.sum(x[(nn, g * cg + rc, *src)] * w[(g * cg + rc, mm % mg, *rk)], axis=[rc, *rk],
                      where=te.all(*ok))

    out = te.compute((n, m, *out_sp), f, name="conv_transpose", tag="conv_transpose")
    if b is None:
        return out
    return te.compute(out.shape, lambda *i: out[i] + b[i[1]], name="conv_bias", tag="conv_bias")


@register("BatchNormalization", "broadcast")
def batch_norm(inputs: list[te.Tensor], epsilon: float = 1e-5, training_mode: int = 0, num_outputs: int = 1,
               momentum: float = 0.9, **_) -> te.Tensor | list[te.Tensor]:
    """(x - mean) / sqrt(var + epsilon) * scale + B, per channel (axis 1).

    Inference uses the given mean and var. training_mode=1 normalizes with the batch's own mean
    and (population) variance, and the extra outputs are the updated running statistics.
    """
    if len(inputs) != 5:
        raise ShapeError(f"BatchNormalization: needs 5 inputs (X, scale, B, mean, var), got {len(inputs)}")
    x, scale, bias, mean, var = inputs
    if x.ndim < 2:
        raise ShapeError(f"BatchNormalization: X {x.shape} needs a channel axis")
    c = x.shape[1]
    for t, nm in ((scale, "scale"), (bias, "B"), (mean, "input_mean"), (var, "input_var")):
        if tuple(t.shape) != (c,):
            raise ShapeError(f"BatchNormalization: {nm} {t.shape} must have shape ({c},) for X {x.shape}")
    eps = float(epsilon)
    if training_mode:
        return _batch_norm_training(x, scale, bias, mean, var, eps, float(momentum), num_outputs)

    def f(*i):
        ch = i[1]
        return (x[i] - mean[ch]) * (scale[ch] / te.sqrt(var[ch] + eps)) + bias[ch]

    y = te.compute(x.shape, f, name="batchnorm")
    if num_outputs > 1:  # opset < 14 lists running mean/var outputs; in inference they are the inputs
        return [y, mean, var][:num_outputs]
    return y


def _batch_norm_training(x, scale, bias, mean, var, eps: float, momentum: float, num_outputs: int) -> list:
    c = x.shape[1]
    count = float(math.prod(x.shape) // c)

    def per_channel(fn, name: str) -> te.Tensor:
        """sum over every axis but 1 of fn(x index), per channel."""
        red = [te.reduce_axis(d, f"r{k}") for k, d in enumerate(x.shape) if k != 1]
        return te.compute((c,), lambda ch: te.sum(fn(tuple(red[:1]) + (ch,) + tuple(red[1:])), axis=red), name=name)

    total = per_channel(lambda i: x[i], "bn_sum")
    bmean = te.compute((c,), lambda ch: total[ch] / count, name="bn_mean")
    sq = per_channel(lambda i: (x[i] - bmean[i[1]]) * (x[i] - bmean[i[1]]), "bn_sqsum")
    bvar = te.compute((c,), lambda ch: sq[ch] / count, name="bn_var")
    y = te.compute(x.shape, lambda *i: (x[i] - bmean[i[1]]) * (scale[i[1]] / te.sqrt(bvar[i[1]] + eps)) + bias[i[1]],
                   name="batchnorm")
    run_mean = te.compute((c,), lambda ch: mean[ch] * momentum + bmean[ch] * (1 - momentum), name="running_mean")
    run_var = te.compute((c,), lambda ch: var[ch] * momentum + bvar[ch] * (1 - momentum), name="running_var")
    return [y, run_mean, run_var][:max(1, num_outputs)]


# ---------------------------------------------------------------------------- pooling

def _lowest(dtype: str):
    if dtype.startswith("float"):
        return te.const(-math.inf, dtype)
    return te.const(int(np.iinfo(dtype).min) if dtype != "bool" else 0, dtype)


def _pool(op: str, x: te.Tensor, kind: str, kernel_shape, strides, pads, dilations, ceil_mode: int,
          auto_pad: str, count_include_pad: int, storage_order: int | None = None) -> te.Tensor | list[te.Tensor]:
    """Max or average pooling; with `storage_order` (MaxPool's Indices output) returns [values, indices]."""
    nsp = x.ndim - 2
    if nsp < 1:
        raise ShapeError(f"{op}: input {x.shape} must be (N, C, spatial...)")
    if kernel_shape is None:
        raise ShapeError(f"{op}: kernel_shape is required")
    ks = _spatial(op, "kernel_shape", kernel_shape, nsp, 1)
    st = _spatial(op, "strides", strides, nsp, 1)
    dl = _spatial(op, "dilations", dilations, nsp, 1)
    k_eff = [(k - 1) * d + 1 for k, d in zip(ks, dl)]
    in_sp = list(x.shape[2:])
    pb, pe, out_sp = window_pads(op, in_sp, k_eff, st, pads, auto_pad, bool(ceil_mode))
    # ceil_mode windows may run past the end padding: pad far enough for every window read
    need = [(o - 1) * s + k - i - b for o, s, k, i, b in zip(out_sp, st, k_eff, in_sp, pb)]
    pe_read = [max(e, n_) for e, n_ in zip(pe, need)]
    work = minmax_dtype(x.dtype) if kind == "max" else x.dtype
    if work != x.dtype:  # narrow ints: pool in int32 (core max/min bug), cast back at the end
        wide = _pool(op, te.compute(x.shape, lambda *i: te.cast(x[i], work), name="pool_widen"), kind, kernel_shape,
                     strides, pads, dilations, ceil_mode, auto_pad, count_include_pad, storage_order)
        first = wide[0] if isinstance(wide, list) else wide
        out = te.compute(first.shape, lambda *i: te.cast(first[i], x.dtype), name="pool_cast")
        return [out, wide[1]] if isinstance(wide, list) else out
    fill = _lowest(x.dtype) if kind == "max" else te.const(0, x.dtype)
    _, read = window_input(x, pb, pe_read, fill, "pool_pad", st, dl)
    rk = [te.reduce_axis(k, name=f"r{a}") for a, k in enumerate(ks)]
    red = te.max if kind == "max" else te.sum

    def f(*i):
        n, c, o = i[0], i[1], i[2:]
        return red(read(n, c, o, rk), axis=rk)

    out = te.compute((*x.shape[:2], *out_sp), f, name=f"{kind}pool", tag="pool")
    if kind == "max" and storage_order is not None:
        return [out, _argmax_indices(x, read, out, ks, st, dl, pb, int(storage_order))]
    if kind == "max":
        return out
    if not x.dtype.startswith("float"):
        raise ShapeError(f"{op}: input must be float, got {x.dtype}")

    def taps(o, s, k, d, b, lo, hi) -> Expr:
        # taps t in [0, k) whose position o*s - b + t*d lies in [lo, hi)
        start = o * s - b
        t_lo = te.max(-((start - lo) // d), 0)  # ceil((lo - start) / d)
        t_hi = te.min((hi - 1 - start) // d, k - 1)
        return te.max(t_hi - t_lo + 1, 0)

    def avg(*i):
        n, c, o = i[0], i[1], i[2:]
        count = None
        for oi, s, k, d, b, e, i in zip(o, st, ks, dl, pb, pe, in_sp):
            lo, hi = (-b, i + e) if count_include_pad else (0, i)
            t = taps(oi, s, k, d, b, lo, hi)
            count = t if count is None else count * t
        return out[(n, c, *o)] / te.cast(count, x.dtype)

    return te.compute(out.shape, avg, name="avgpool_div", tag="pool_avg")


def _argmax_indices(x: te.Tensor, read, mx: te.Tensor, ks: list, st: list, dl: list, pb: list,
                    storage_order: int) -> te.Tensor:
    """MaxPool's Indices: the smallest flat input index in the window holding the maximum (int64).

    The flat index is row-major over (N, C) and, over the spatial axes, row-major (storage_order 0)
    or column-major (1). A second reduction (min over matching positions) stands in for an argmax.
    """
    sp = list(x.shape[2:])
    rk = [te.reduce_axis(k, name=f"q{a}") for a, k in enumerate(ks)]
    big = te.const(2**31 - 1, "int32")

    def f(*i):
        n, c, o = i[0], i[1], i[2:]
        pos = [oi * s - b + r * d for oi, s, b, r, d in zip(o, st, pb, rk, dl)]
        inside = te.all(*[te.all(p >= 0, p < size) for p, size in zip(pos, sp)])
        spatial = te.const(0)
        order = list(zip(pos, sp)) if storage_order == 0 else list(zip(pos, sp))[::-1]
        for p, size in order:
            spatial = spatial * size + p
        flat = (n * x.shape[1] + c) * math.prod(sp) + spatial
        v = read(n, c, o, rk)
        return te.min(te.if_then_else(te.all(inside, v == mx[i]), flat, big), axis=rk)

    idx = te.compute(mx.shape, f, name="maxpool_argmax")
    return te.compute(mx.shape, lambda *i: te.cast(idx[i], "int64"), name="maxpool_indices")


@register("MaxPool", "reduce", schedule="pool")
def max_pool(inputs: list[te.Tensor], kernel_shape=None, strides=None, pads=None, dilations=None, ceil_mode: int = 0,
             auto_pad: str = "NOTSET", storage_order: int = 0, num_outputs: int = 1,
             **_) -> te.Tensor | list[te.Tensor]:
    if math.prod(inputs[0].shape) >= 2**31:
        raise ShapeError(f"MaxPool: input {inputs[0].shape} is too large for int32 indices")
    return _pool("MaxPool", inputs[0], "max", kernel_shape, strides, pads, dilations, ceil_mode, auto_pad, 0,
                 storage_order if num_outputs > 1 else None)


@register("AveragePool", "reduce", schedule="pool")
def average_pool(inputs: list[te.Tensor], kernel_shape=None, strides=None, pads=None, dilations=None,
                 ceil_mode: int = 0, auto_pad: str = "NOTSET", count_include_pad: int = 0, **_) -> te.Tensor:
    return _pool("AveragePool", inputs[0], "avg", kernel_shape, strides, pads, dilations, ceil_mode, auto_pad,
                 count_include_pad)


def _global_pool(op: str, x: te.Tensor, kind: str) -> te.Tensor:
    if x.ndim < 3:
        raise ShapeError(f"{op}: input {x.shape} must be (N, C, spatial...)")
    if kind == "max" and minmax_dtype(x.dtype) != x.dtype:  # narrow ints: see _pool
        wide = _global_pool(op, te.compute(x.shape, lambda *i: te.cast(x[i], "int32"), name="pool_widen"), kind)
        return te.compute(wide.shape, lambda *i: te.cast(wide[i], x.dtype), name="pool_cast")
    rk = [te.reduce_axis(d, name=f"r{a}") for a, d in enumerate(x.shape[2:])]
    red = te.max if kind == "max" else te.sum
    shape = (*x.shape[:2], *[1] * len(rk))
    out = te.compute(shape, lambda *i: red(x[(i[0], i[1], *rk)], axis=rk), name=f"global_{kind}pool", tag="pool")
    if kind == "max":
        return out
    n = math.prod(x.shape[2:])
    inv = 1.0 / n if n else float("nan")  # the mean of no elements, as ReduceMean and NumPy give it
    return te.compute(shape, lambda *i: out[i] * inv, name="global_avgpool_div", tag="pool_avg")


@register("GlobalAveragePool", "reduce", schedule="pool")
def global_average_pool(inputs: list[te.Tensor], **_) -> te.Tensor:
    return _global_pool("GlobalAveragePool", inputs[0], "avg")


@register("GlobalMaxPool", "reduce", schedule="pool")
def global_max_pool(inputs: list[te.Tensor], **_) -> te.Tensor:
    return _global_pool("GlobalMaxPool", inputs[0], "max")


# ---------------------------------------------------------------------------- matrix products

KSPLIT = 16  # partial sums of an interleaved contraction (see contraction)


def contraction(shape: tuple, term, k: int, name: str, interleave: bool) -> te.Tensor:
    """out[o] = sum over k of term(o, k), tagged "matmul".

    With `interleave` (both operands contiguous along k: Gemm's transB, a 1-D B) the sum is taken
    in KSPLIT interleaved partial sums, part[o, v] = sum over ko of term(o, ko*KSPLIT + v), then
    out[o] = sum over v of part[o, v]: the same sum in another order, whose inner loop reads both
    operands as contiguous vectors. Only when KSPLIT divides k and the partial sums stay small.
    """
    if not interleave or k % KSPLIT or k < 2 * KSPLIT or math.prod(shape) * KSPLIT > 1 << 24:
        r = te.reduce_axis(k, name="k")
        return te.compute(shape, lambda *o: te.sum(term(o, r), axis=r), name=name, tag="matmul")
    ko = te.reduce_axis(k // KSPLIT, name="ko")
    part = te.compute((*shape, KSPLIT), lambda *i: te.sum(term(i[:-1], ko * KSPLIT + i[-1]), axis=ko),
                      name=name + "_part", tag="matmul_part")
    kv = te.reduce_axis(KSPLIT, name="kv")
    return te.compute(shape, lambda *o: te.sum(part[(*o, kv)], axis=kv), name=name, tag="matmul",
                      attrs={"interleaved": True})


@register("Gemm", "complex", schedule="matmul")
def gemm(inputs: list[te.Tensor], alpha: float = 1.0, beta: float = 1.0, transA: int = 0, transB: int = 0,
         **_) -> te.Tensor:
    """alpha * A' B' + beta * C, A' = A or A^T (transA), B' = B or B^T; C broadcasts to (M, N)."""
    if len(inputs) < 2:
        raise ShapeError("Gemm: needs inputs A and B")
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"Gemm: A {a.shape} and B {b.shape} must be 2-D")
    m, k = a.shape[::-1] if transA else a.shape
    kb, n = b.shape[::-1] if transB else b.shape
    if k != kb:
        raise ShapeError(f"Gemm: A {a.shape} (transA={transA}) and B {b.shape} (transB={transB}) disagree on K")
    if c is not None:
        try:
            if broadcast_shape(c.shape, (m, n)) != (m, n):
                raise ShapeError("")
        except ShapeError:
            raise ShapeError(f"Gemm: C {c.shape} does not broadcast to ({m}, {n})") from None

    def term(o, r):
        i, j = o
        return (a[r, i] if transA else a[i, r]) * (b[j, r] if transB else b[r, j])

    mm = contraction((m, n), term, k, "gemm", bool(transB) and not transA)
    alpha, beta = float(alpha), float(beta)
    use_c = c is not None and beta != 0.0  # beta=0 ignores C, as ONNX Runtime does
    if alpha == 1.0 and not use_c:
        return mm

    def epilogue(i, j):
        v = mm[i, j] if alpha == 1.0 else mm[i, j] * te.const(alpha, mm.dtype)
        if not use_c:
            return v
        cv = broadcast_read(c, (i, j))
        return v + (cv if beta == 1.0 else cv * te.const(beta, mm.dtype))

    out = te.compute((m, n), epilogue, name="gemm_epilogue", tag="gemm_epilogue")
    return out


@register("MatMul", "complex", schedule="matmul")
def matmul(inputs: list[te.Tensor], **_) -> te.Tensor:
    """NumPy matmul: batch dims broadcast; a 1-D A gains a leading 1, a 1-D B a trailing 1 (then dropped)."""
    if len(inputs) != 2:
        raise ShapeError(f"MatMul: needs 2 inputs, got {len(inputs)}")
    a, b = inputs
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"MatMul: operands {a.shape} and {b.shape} must have at least one dimension")
    if a.dtype != b.dtype:
        raise ShapeError(f"MatMul: operand dtypes {a.dtype} and {b.dtype} differ")
    a_shape = (1, *a.shape) if a.ndim == 1 else a.shape
    b_shape = (*b.shape, 1) if b.ndim == 1 else b.shape
    m, k = a_shape[-2:]
    kb, n = b_shape[-2:]
    if k != kb:
        raise ShapeError(f"MatMul: {a.shape} @ {b.shape}: inner dimensions {k} and {kb} differ")
    try:
        batch = broadcast_shape(a_shape[:-2], b_shape[:-2])
    except ShapeError:
        raise ShapeError(f"MatMul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    nb = len(batch)

    def read(t, full_shape, bidx, row, col):
        # index into t (its original rank) from a batch index and a 2-D (row, col) position
        if t.ndim == 1:
            return t[col] if t is a else t[row]
        lead = full_shape[:-2]
        skip = nb - len(lead)
        idx = tuple(0 if d == 1 else i for d, i in zip(lead, bidx[skip:]))
        return t[(*idx, row, col)]

    out_shape = list(batch)
    if a.ndim > 1:
        out_shape.append(m)
    if b.ndim > 1:
        out_shape.append(n)

    def term(o, r):
        bidx = o[:nb]
        i = o[nb] if a.ndim > 1 else 0
        j = o[-1] if b.ndim > 1 else 0
        return read(a, a_shape, bidx, i, r) * read(b, b_shape, bidx, r, j)

    # a 1-D B is read along k, like A: the interleaved sum vectorizes it
    return contraction(tuple(out_shape), term, k, "matmul", b.ndim == 1 and a.ndim > 1)
