"""Channel-blocked (NCHW[x]c) operators that the layout pass (graph/layout.py) puts in place of NCHW ones.

A blocked tensor (N, C/b, H, W, b) keeps b consecutive channels of one pixel side by side, so a
convolution can hold one SIMD register of output channels per output pixel and read each input value
once per b output channels. These ops are internal (their names start with `lathe.`); a model never
names them. Weights arrive pre-packed by the pass:
  dense conv      W (M/ob, C/ib, KH, KW, ib, ob), bias (M/ob, ob)
  depthwise conv  W (C/b, KH, KW, b), bias (C/b, b)
"""

from __future__ import annotations

from lathe import te
from lathe.ops.elemwise import ShapeError
from lathe.ops.nn import _spatial, window_pads
from lathe.ops.registry import register


@register("lathe.ToBlocked", "injective")
def to_blocked(inputs: list[te.Tensor], block: int) -> te.Tensor:
    """(N, C, H, W) -> (N, C/block, H, W, block)."""
    x = inputs[0]
    n, c, h, w = x.shape
    if c % block:
        raise ShapeError(f"lathe.ToBlocked: {c} channels do not split into blocks of {block}")
    return te.compute((n, c // block, h, w, block), lambda i, co, y, xx, v: x[i, co * block + v, y, xx],
                      name="to_blocked")


@register("lathe.FromBlocked", "injective")
def from_blocked(inputs: list[te.Tensor]) -> te.Tensor:
    """(N, C/b, H, W, b) -> (N, C, H, W)."""
    x = inputs[0]
    n, cb, h, w, b = x.shape
    return te.compute((n, cb * b, h, w), lambda i, c, y, xx: x[i, c // b, y, xx, c % b], name="from_blocked")


class _Shifted:
    """Indexable like a tensor: xp[i, c, y, x, v] reads X at (y - pad, x - pad) through a function."""

    def __init__(self, read):
        self.read = read

    def __getitem__(self, idx):
        return self.read(*idx)


@register("lathe.ConvNCHWc", "complex", schedule="conv_blocked")
def conv_nchwc(inputs: list[te.Tensor], kernel: list, depthwise: int = 0, auto_pad: str = "NOTSET",
               dilations=None, pads=None, strides=None, input_halo: int = 0, **_) -> te.Tensor:
    """2-D convolution on blocked tensors (dense, or depthwise with `depthwise=1`); optional bias.

    `input_halo`: X is stored inside a zero border at least as wide as the padding (graph/layout.py
    arranges it), so the window reads the border itself instead of a padded copy."""
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    n, cb, h, wd, ib = x.shape
    kh, kw = kernel
    st = _spatial("Conv", "strides", strides, 2, 1)
    dl = _spatial("Conv", "dilations", dilations, 2, 1)
    pb, pe, (oh, ow) = window_pads("Conv", [h, wd], [(kh - 1) * dl[0] + 1, (kw - 1) * dl[1] + 1], st, pads,
                                   auto_pad)
    if input_halo and max(pb + pe) <= input_halo:
        def xp_read(i, c, y, xx, v):  # X[y - pb] may read the zero border: negative indices are in the halo
            return x[i, c, y - pb[0], xx - pb[1], v]

        xp = _Shifted(xp_read)
    elif any(pb) or any(pe):
        def pad(i, c, y, xx, v):
            sy, sx = y - pb[0], xx - pb[1]
            ok = te.all(sy >= 0, sy < h, sx >= 0, sx < wd)
            return te.if_then_else(ok, x[i, c, sy, sx, v], te.const(0, x.dtype))

        xp = te.compute((n, cb, h + pb[0] + pe[0], wd + pb[1] + pe[1], ib), pad, name="conv_pad", tag="conv_pad")
    else:
        xp = x
    ry, rx = te.reduce_axis(kh, name="ry"), te.reduce_axis(kw, name="rx")
    if depthwise:
        def f(i, c, y, xx, v):
            return te.sum(xp[i, c, y * st[0] + ry * dl[0], xx * st[1] + rx * dl[1], v] * w[c, ry, rx, v],
                          axis=[ry, rx])
        mb, ob = cb, ib
    else:
        mb, ob = w.shape[0], w.shape[-1]
        if w.shape[1:5] != (cb, kh, kw, ib):
            raise ShapeError(f"lathe.ConvNCHWc: packed weights {w.shape} do not match input {x.shape}")
        rco, rci = te.reduce_axis(cb, name="rco"), te.reduce_axis(ib, name="rci")

        def f(i, m, y, xx, v):
            return te.sum(xp[i, rco, y * st[0] + ry * dl[0], xx * st[1] + rx * dl[1], rci] * w[m, rco, ry, rx, rci, v],
                          axis=[rco, ry, rx, rci])
    out = te.compute((n, mb, oh, ow, ob), f, name="conv", tag="conv_blocked")
    if b is None:
        return out
    return te.compute(out.shape, lambda i, m, y, xx, v: out[i, m, y, xx, v] + b[m, v], name="conv_bias",
                      tag="conv_bias")


def _blocked_window(attrs: dict) -> dict:
    """A 2-D pool's attributes extended by a trailing window axis of extent 1 over the channel block."""
    out = dict(attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if attrs.get(key) is not None:
            out[key] = [*attrs[key], 1]
    if attrs.get("pads") is not None:
        p = list(attrs["pads"])
        out["pads"] = [*p[:2], 0, *p[2:], 0]
    return out


@register("lathe.MaxPoolNCHWc", "reduce", schedule="pool_blocked")
def max_pool_nchwc(inputs: list[te.Tensor], **attrs) -> te.Tensor:
    from lathe.ops.nn import max_pool

    return max_pool(inputs, **_blocked_window(attrs))


@register("lathe.AveragePoolNCHWc", "reduce", schedule="pool_blocked")
def average_pool_nchwc(inputs: list[te.Tensor], **attrs) -> te.Tensor:
    from lathe.ops.nn import average_pool

    return average_pool(inputs, **_blocked_window(attrs))
