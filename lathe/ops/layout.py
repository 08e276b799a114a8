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
from lathe.expr import Expr
from lathe.ops.elemwise import ShapeError
from lathe.ops.nn import _spatial, window_pads
from lathe.ops.registry import register


@register("lathe.ToBlocked", "injective")
def to_blocked(inputs: list[te.Tensor], block: int, pad: int = 0) -> te.Tensor:
    """(N, C, H, W) -> (N, C/block, H, W, block); with `pad`, C rounds up to whole blocks of zero channels."""
    x = inputs[0]
    n, c, h, w = x.shape
    if c % block and not pad:
        raise ShapeError(f"lathe.ToBlocked: {c} channels do not split into blocks of {block}")

    def f(i, co, y, xx, v):
        if not c % block:
            return x[i, co * block + v, y, xx]
        ch = co * block + v
        return te.if_then_else(ch < c, x[i, ch, y, xx], te.const(0, x.dtype))

    return te.compute((n, -(-c // block), h, w, block), f, name="to_blocked")


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


def _padded(x: te.Tensor, pb: list, pe: list, input_halo: int):
    """X seen with pb/pe zeros around its pixels: read in place when X is stored inside a wide enough zero
    border (graph/layout.py arranges it; negative indices land in the border), else a padded copy."""
    n, cb, h, wd, ib = x.shape
    if input_halo and max(pb + pe) <= input_halo:
        return _Shifted(lambda i, c, y, xx, v: x[i, c, y - pb[0], xx - pb[1], v])
    if not any(pb) and not any(pe):
        return x

    def pad(i, c, y, xx, v):
        sy, sx = y - pb[0], xx - pb[1]
        ok = te.all(sy >= 0, sy < h, sx >= 0, sx < wd)
        return te.if_then_else(ok, x[i, c, sy, sx, v], te.const(0, x.dtype))

    return te.compute((n, cb, h + pb[0] + pe[0], wd + pb[1] + pe[1], ib), pad, name="conv_pad", tag="conv_pad")


@register("lathe.ConvNCHWc", "complex", schedule="conv_blocked")
def conv_nchwc(inputs: list[te.Tensor], kernel: list, depthwise: int = 0, auto_pad: str = "NOTSET",
               dilations=None, pads=None, strides=None, input_halo: int = 0, splits: int = 1, **_) -> te.Tensor:
    """2-D convolution on blocked tensors (dense, or depthwise with `depthwise=1`); optional bias.

    `input_halo`: X is stored inside a zero border at least as wide as the padding (graph/layout.py
    arranges it), so the window reads the border itself instead of a padded copy. `splits` = S > 1 (dense,
    no bias): the input channel blocks are cut into S slices and the output (S, N, M/ob, OH, OW, ob) holds
    each slice's partial sums, for lathe.SumSplits to add up (graph/layout.py split_reductions)."""
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    n, cb, h, wd, ib = x.shape
    kh, kw = kernel
    st = _spatial("Conv", "strides", strides, 2, 1)
    dl = _spatial("Conv", "dilations", dilations, 2, 1)
    pb, pe, (oh, ow) = window_pads("Conv", [h, wd], [(kh - 1) * dl[0] + 1, (kw - 1) * dl[1] + 1], st, pads,
                                   auto_pad)
    xp = _padded(x, pb, pe, input_halo)
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
        if splits > 1 and (cb % splits or b is not None):
            raise ShapeError(f"lathe.ConvNCHWc: {cb} channel blocks do not split into {splits} slices, or a bias "
                             "was given with splits")
        per = cb // splits
        rco, rci = te.reduce_axis(per, name="rco"), te.reduce_axis(ib, name="rci")

        def partial(part, i, m, y, xx, v):
            c = part * per + rco if splits > 1 else rco
            return te.sum(xp[i, c, y * st[0] + ry * dl[0], xx * st[1] + rx * dl[1], rci] * w[m, c, ry, rx, rci, v],
                          axis=[rco, ry, rx, rci])

        def f(i, m, y, xx, v):
            return partial(0, i, m, y, xx, v)
        if splits > 1:
            return te.compute((splits, n, mb, oh, ow, ob), partial, name="conv", tag="conv_blocked")
    out = te.compute((n, mb, oh, ow, ob), f, name="conv", tag="conv_blocked")
    if b is None:
        return out
    return te.compute(out.shape, lambda i, m, y, xx, v: out[i, m, y, xx, v] + b[m, v], name="conv_bias",
                      tag="conv_bias")


@register("lathe.SumSplits", "reduce", schedule="reduce")
def sum_splits(inputs: list[te.Tensor]) -> te.Tensor:
    """(S, N, M/b, H, W, b) partial sums -> their sum (N, M/b, H, W, b), plus an optional bias (M/b, b)."""
    p, b = inputs[0], (inputs[1] if len(inputs) > 1 else None)
    r = te.reduce_axis(p.shape[0], name="part")
    out = te.compute(p.shape[1:], lambda i, m, y, xx, v: te.sum(p[r, i, m, y, xx, v], axis=[r]), name="sum_splits")
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


# Winograd F(m x m, 3 x 3) (Lavin and Gray, 2016): each m x m output tile is A^T [U * (B^T d B)] A, where d is
# the (m+2) x (m+2) input tile and U = G g G^T the transformed 3x3 filter (packed at compile time). The
# products U * V over input channels are (m+2)^2 independent matrix products: 2.25x (m=2) or 4x (m=4)
# fewer multiplies than the direct convolution, paid for by the two transforms.
WINOGRAD = {  # m: (B^T, G, A^T)
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def _by_row(k, matrix: list, term) -> Expr:
    """sum_j matrix[k][j] * term(j) for the row k an unrolled loop will make constant: a select over the
    rows, each row's sum written with its nonzero coefficients only (the selects fold away once k is known)."""
    out = None
    for r in reversed(range(len(matrix))):
        row = None
        for j, c in enumerate(matrix[r]):
            if c:
                t = term(j) if c == 1 else term(j) * te.const(c, "float32")
                row = t if row is None else row + t
        out = row if out is None else te.if_then_else(k == r, row, out)
    return out


@register("lathe.ConvWinogradNCHWc", "complex", schedule="conv_winograd")
def conv_winograd_nchwc(inputs: list[te.Tensor], tile: int, pads=None, input_halo: int = 0, **_) -> te.Tensor:
    """3x3, stride 1 blocked convolution by Winograd F(tile x tile, 3 x 3); optional bias.

    U: the transformed filter (tile+2, tile+2, M/ob, C/ib, ib, ob) from graph/layout.py."""
    x, u = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    n, cb, h, wd, ib = x.shape
    a, m = tile + 2, tile
    bt, _, at = WINOGRAD[m]
    mb, ob = u.shape[2], u.shape[5]
    if u.shape[:2] != (a, a) or u.shape[3:5] != (cb, ib) or h % m or wd % m:
        raise ShapeError(f"lathe.ConvWinogradNCHWc: filter {u.shape} / input {x.shape} do not fit F({m}x{m}, 3x3)")
    pb, pe, (oh, ow) = window_pads("Conv", [h, wd], [3, 3], [1, 1], pads, "NOTSET")
    if (oh, ow) != (h, wd):
        raise ShapeError(f"lathe.ConvWinogradNCHWc: needs 'same' padding, got pads {pads}")
    xp = _padded(x, pb, pe, input_halo)
    th, tw = oh // m, ow // m
    # input transform, one axis at a time: T = d B (rows i, columns k), V = B^T T
    t1 = te.compute((n, cb, th, tw, a, a, ib), lambda i, c, y, xx, r, k, v: _by_row(
        k, bt, lambda j: xp[i, c, y * m + r, xx * m + j, v]), name="wino_rows", tag="wino_rows")
    vt = te.compute((n, a, a, cb, th, tw, ib), lambda i, r, k, c, y, xx, v: _by_row(
        r, bt, lambda j: t1[i, c, y, xx, j, k, v]), name="wino_v", tag="wino_v")
    rc, rci = te.reduce_axis(cb, name="rc"), te.reduce_axis(ib, name="rci")
    prod = te.compute((n, a, a, mb, th, tw, ob), lambda i, r, k, o, y, xx, v: te.sum(
        u[r, k, o, rc, rci, v] * vt[i, r, k, rc, y, xx, rci], axis=[rc, rci]), name="wino_gemm", tag="conv_winograd")
    # output transform: Z = M A (columns), Y = A^T Z (rows)
    z = te.compute((n, mb, th, tw, a, m, ob), lambda i, o, y, xx, r, k, v: _by_row(
        k, at, lambda j: prod[i, r, j, o, y, xx, v]), name="wino_cols", tag="wino_cols")
    out = te.compute((n, mb, oh, ow, ob), lambda i, o, y, xx, v: _by_row(
        y % m, at, lambda j: z[i, o, y // m, xx // m, j, xx % m, v]), name="conv", tag="wino_out")
    if b is None:
        return out
    return te.compute(out.shape, lambda i, o, y, xx, v: out[i, o, y, xx, v] + b[o, v], name="conv_bias",
                      tag="conv_bias")
