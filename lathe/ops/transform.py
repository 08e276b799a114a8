"""Layout operators (ONNX semantics): each output element reads a few input elements.

Every op here is one `te.compute` (pattern "injective"), so the graph layer can inline it into
its consumer. Index arithmetic is int32: tensors are limited to 2**31 - 1 elements.
"""

from __future__ import annotations

import math

import numpy as np

from lathe import te
from lathe.expr import Expr
from lathe.ops.elemwise import (
    ShapeError, as_ints, as_scalar, broadcast_read, broadcast_shape, norm_axes, norm_axis,
)
from lathe.ops.registry import register

INT32_MAX = 2**31 - 1


def _check_size(shape: tuple, op: str) -> tuple:
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ShapeError(f"{op}: negative dimension in output shape {shape}")
    if math.prod(shape) > INT32_MAX:
        raise ShapeError(f"{op}: output shape {shape} has more than 2**31-1 elements (int32 index limit)")
    return shape


def ravel(idx: list, shape: list) -> Expr:
    """Row-major flat index of `idx` in `shape`."""
    flat = te.const(0)
    for i, d in zip(idx, shape):
        flat = flat * d + i
    return flat


def unravel(flat, shape: list) -> list:
    """The multi-index of row-major `flat` in `shape` (floor div/mod; the simplifier folds trivial ones)."""
    out = []
    for k, d in enumerate(shape):
        inner = math.prod(shape[k + 1:])
        v = flat // inner if inner != 1 else flat
        out.append(v % d if k > 0 else v)
    return out


def _groups(src: tuple, dst: tuple) -> list[tuple[list[int], list[int]]]:
    """Pair runs of non-1 dims of two shapes of equal size whose products agree.

    A reshape then needs div/mod only inside each run: (N, C, H, W) -> (N, C*H*W) keeps N direct.
    Size-1 dims belong to no run (their index is 0).
    """
    si = [k for k, d in enumerate(src) if d != 1]
    dj = [k for k, d in enumerate(dst) if d != 1]
    groups, a, b = [], 0, 0
    while a < len(si):
        gi, gj = [si[a]], [dj[b]]
        pi, pj = src[si[a]], dst[dj[b]]
        a, b = a + 1, b + 1
        while pi != pj:  # grow the side with the smaller product
            if pi < pj:
                gi.append(si[a])
                pi *= src[si[a]]
                a += 1
            else:
                gj.append(dj[b])
                pj *= dst[dj[b]]
                b += 1
        groups.append((gi, gj))
    return groups


def reshape_to(x: te.Tensor, shape: tuple, op: str) -> te.Tensor:
    """x viewed with a new shape of the same size (row-major), as one injective compute."""
    shape = tuple(int(d) for d in shape)
    name = op.lower()
    if math.prod(shape) != math.prod(x.shape):
        raise ShapeError(f"{op}: cannot reshape {x.shape} ({math.prod(x.shape)} elements) to {shape}")
    if 0 in shape:
        return te.compute(shape, lambda *i: te.const(0, x.dtype), name=name)
    groups = _groups(x.shape, shape)

    def f(*o):
        idx = [0] * x.ndim
        for gi, gj in groups:
            if len(gi) == 1 and len(gj) == 1:
                idx[gi[0]] = o[gj[0]]
                continue
            flat = ravel([o[j] for j in gj], [shape[j] for j in gj])
            for k, v in zip(gi, unravel(flat, [x.shape[k] for k in gi])):
                idx[k] = v
        return x[tuple(idx)]

    return te.compute(shape, f, name=name)


# ---------------------------------------------------------------------------- reshapes

@register("Reshape", "injective", const_inputs={1: "shape"})
def reshape(inputs: list[te.Tensor], shape=None, allowzero: int = 0, **_) -> te.Tensor:
    """`shape`: 0 copies the input's dim (unless allowzero=1), one -1 is inferred."""
    x = inputs[0]
    if shape is None:
        raise ShapeError("Reshape: the shape input is missing")
    req = as_ints(shape, "Reshape", "shape")
    out = []
    for k, d in enumerate(req):
        if d == 0 and not allowzero:
            if k >= x.ndim:
                raise ShapeError(f"Reshape: shape {req} copies dim {k} (0) but the input {x.shape} has rank {x.ndim}")
            out.append(x.shape[k])
        else:
            out.append(d)
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise ShapeError(f"Reshape: shape {req} may hold one -1 and no other negative value")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(x.shape)
        if known == 0 or total % known:
            raise ShapeError(f"Reshape: cannot infer the -1 in shape {req} for input {x.shape}")
        out[out.index(-1)] = total // known
    return reshape_to(x, _check_size(out, "Reshape"), "Reshape")


@register("Flatten", "injective")
def flatten(inputs: list[te.Tensor], axis: int = 1, **_) -> te.Tensor:
    x = inputs[0]
    axis = int(axis)
    if not -x.ndim <= axis <= x.ndim:  # axis == rank is allowed: (prod(all), 1)
        raise ShapeError(f"Flatten: axis={axis} is out of range for a tensor of rank {x.ndim}")
    axis = axis + x.ndim if axis < 0 else axis
    return reshape_to(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])), "Flatten")


@register("Squeeze", "injective", const_inputs={1: "axes"})
def squeeze(inputs: list[te.Tensor], axes=None, **_) -> te.Tensor:
    x = inputs[0]
    if axes is None or np.size(axes) == 0:
        drop = [k for k, d in enumerate(x.shape) if d == 1]
    else:
        drop = norm_axes(axes, x.ndim, "Squeeze")
        bad = [a for a in drop if x.shape[a] != 1]
        if bad:
            raise ShapeError(f"Squeeze: axes {bad} of input {x.shape} are not of size 1")
    keep = [k for k in range(x.ndim) if k not in drop]

    def f(*o):
        idx = [0] * x.ndim
        for k, v in zip(keep, o):
            idx[k] = v
        return x[tuple(idx)]

    return te.compute(tuple(x.shape[k] for k in keep), f, name="squeeze")


@register("Unsqueeze", "injective", const_inputs={1: "axes"})
def unsqueeze(inputs: list[te.Tensor], axes=None, **_) -> te.Tensor:
    x = inputs[0]
    if axes is None:
        raise ShapeError("Unsqueeze: axes are missing")
    rank = x.ndim + len(as_ints(axes, "Unsqueeze", "axes"))
    new = norm_axes(axes, rank, "Unsqueeze")
    shape, src = [], iter(range(x.ndim))
    from_dim = []
    for k in range(rank):
        if k in new:
            shape.append(1)
        else:
            d = next(src)
            shape.append(x.shape[d])
            from_dim.append(k)
    return te.compute(tuple(shape), lambda *o: x[tuple(o[k] for k in from_dim)], name="unsqueeze")


@register("Transpose", "injective")
def transpose(inputs: list[te.Tensor], perm=None, **_) -> te.Tensor:
    x = inputs[0]
    perm = list(range(x.ndim))[::-1] if perm is None else as_ints(perm, "Transpose", "perm")
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"Transpose: perm {perm} is not a permutation of the {x.ndim} axes of input {x.shape}")

    def f(*o):
        idx = [None] * x.ndim
        for k, p in enumerate(perm):
            idx[p] = o[k]
        return x[tuple(idx)]

    return te.compute(tuple(x.shape[p] for p in perm), f, name="transpose")


@register("Expand", "injective", const_inputs={1: "shape"})
def expand(inputs: list[te.Tensor], shape=None, **_) -> te.Tensor:
    x = inputs[0]
    if shape is None:
        raise ShapeError("Expand: the shape input is missing")
    want = tuple(as_ints(shape, "Expand", "shape"))
    try:
        out = broadcast_shape(x.shape, want)
    except ShapeError:
        raise ShapeError(f"Expand: input {x.shape} does not broadcast to shape {want}") from None
    return te.compute(_check_size(out, "Expand"), lambda *o: broadcast_read(x, o), name="expand")


# ---------------------------------------------------------------------------- joins and cuts

@register("Concat", "injective")
def concat(inputs: list[te.Tensor], axis: int | None = None, **_) -> te.Tensor:
    if not inputs:
        raise ShapeError("Concat: no inputs")
    if axis is None:
        raise ShapeError("Concat: the axis attribute is required")
    first = inputs[0]
    axis = norm_axis(axis, first.ndim, "Concat")
    for t in inputs[1:]:
        if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != axis):
            raise ShapeError(f"Concat: shapes {', '.join(str(i.shape) for i in inputs)} differ outside axis {axis}")
        if t.dtype != first.dtype:
            raise ShapeError(f"Concat: inputs have dtypes {first.dtype} and {t.dtype}")
    parts = [t for t in inputs if t.shape[axis] > 0]  # empty inputs contribute nothing
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in inputs)
    if not parts:
        return te.compute(tuple(shape), lambda *o: te.const(0, first.dtype), name="concat")
    offsets = np.cumsum([0] + [t.shape[axis] for t in parts]).tolist()

    def f(*o):
        def read(k):
            idx = list(o)
            idx[axis] = o[axis] - offsets[k]
            return parts[k][tuple(idx)]

        # a chain of selects: the first part whose end lies beyond the index
        expr = read(len(parts) - 1)
        for k in range(len(parts) - 2, -1, -1):
            expr = te.if_then_else(o[axis] < offsets[k + 1], read(k), expr)
        return expr

    return te.compute(_check_size(shape, "Concat"), f, name="concat")


@register("Split", "injective", const_inputs={1: "split"})
def split(inputs: list[te.Tensor], axis: int = 0, split=None, num_outputs: int = 1, **_) -> list[te.Tensor]:
    """Sizes from `split` (attribute or constant input); otherwise `num_outputs` parts, the last smaller
    when the axis does not divide (opset 18)."""
    x = inputs[0]
    axis = norm_axis(axis, x.ndim, "Split")
    dim = x.shape[axis]
    if split is not None and np.size(split) > 0:
        sizes = as_ints(split, "Split", "split")
        if sum(sizes) != dim or any(s < 0 for s in sizes):
            raise ShapeError(f"Split: split sizes {sizes} do not add up to dim {axis} of input {x.shape} ({dim})")
    else:
        n = int(num_outputs)
        if not 1 <= n <= max(dim, 1):  # more parts than elements: empty outputs, and 2**31 of them hung the import
            raise ShapeError(f"Split: num_outputs={n} must be between 1 and dim {axis} of input {x.shape} ({dim})")
        part = -(-dim // n)
        sizes = [min(part, max(0, dim - k * part)) for k in range(n)]
    outs, start = [], 0
    for k, size in enumerate(sizes):
        shape = list(x.shape)
        shape[axis] = size

        def f(*o, start=start):
            idx = list(o)
            idx[axis] = o[axis] + start
            return x[tuple(idx)]

        outs.append(te.compute(tuple(shape), f, name=f"split{k}"))
        start += size
    return outs


@register("Slice", "injective", const_inputs={1: "starts", 2: "ends", 3: "axes", 4: "steps"})
def slice_(inputs: list[te.Tensor], starts=None, ends=None, axes=None, steps=None, **_) -> te.Tensor:
    """NumPy slicing per axis: negative starts/ends count from the end, out-of-range values clamp."""
    x = inputs[0]
    if starts is None or ends is None:
        raise ShapeError("Slice: starts and ends are required")
    st, en = as_ints(starts, "Slice", "starts"), as_ints(ends, "Slice", "ends")
    ax = list(range(len(st))) if axes is None or np.size(axes) == 0 else norm_axes(axes, x.ndim, "Slice")
    sp = [1] * len(st) if steps is None or np.size(steps) == 0 else as_ints(steps, "Slice", "steps")
    if not len(st) == len(en) == len(ax) == len(sp):
        raise ShapeError(f"Slice: starts {st}, ends {en}, axes {ax} and steps {sp} differ in length")
    begin = [0] * x.ndim
    stride = [1] * x.ndim
    shape = list(x.shape)
    for a, s, e, step in zip(ax, st, en, sp):
        if step == 0:
            raise ShapeError(f"Slice: step 0 on axis {a}")
        # Python's slice.indices implements exactly NumPy's clamping, for either sign of step
        lo, hi, step = slice(s, e, step).indices(x.shape[a])
        begin[a], stride[a], shape[a] = lo, step, len(range(lo, hi, step))
    return te.compute(tuple(shape), lambda *o: x[tuple(b + i * k for b, i, k in zip(begin, o, stride))],
                      name="slice")


@register("Pad", "injective", const_inputs={1: "pads", 2: "constant_value", 3: "axes"})
def pad(inputs: list[te.Tensor], pads=None, constant_value=None, axes=None, mode: str = "constant",
        value: float = 0.0, **_) -> te.Tensor:
    """Modes constant, reflect, edge, wrap; negative pads crop. Opset < 11 passes pads/value as attributes."""
    x = inputs[0]
    if pads is None:
        raise ShapeError("Pad: pads are missing")
    p = as_ints(pads, "Pad", "pads")
    ax = list(range(x.ndim)) if axes is None or np.size(axes) == 0 else norm_axes(axes, x.ndim, "Pad")
    if len(p) != 2 * len(ax):
        raise ShapeError(f"Pad: pads {p} must hold 2 values per padded axis ({len(ax)} axes, input {x.shape})")
    before, after = [0] * x.ndim, [0] * x.ndim
    for k, a in enumerate(ax):
        before[a], after[a] = p[k], p[k + len(ax)]
    shape = [d + b + e for d, b, e in zip(x.shape, before, after)]
    if any(d < 0 for d in shape):
        raise ShapeError(f"Pad: pads {p} crop input {x.shape} to a negative size")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ShapeError(f"Pad: mode {mode!r} is not supported (constant, reflect, edge, wrap)")
    if mode != "constant" and any(d == 0 and s > 0 for d, s in zip(x.shape, shape)):
        raise ShapeError(f"Pad: mode {mode} cannot pad an empty axis of input {x.shape}")
    fill = value if constant_value is None or np.size(constant_value) == 0 else as_scalar(
        constant_value, "Pad", "constant_value")
    fill = te.const(fill, x.dtype)

    def source(i, d: int):
        # the input index read for (shifted) output index i along an axis of size d
        if mode == "edge":
            return te.max(te.min(i, d - 1), 0)
        if mode == "wrap":
            return i % d
        if d == 1:
            return i * 0
        period = 2 * (d - 1)
        j = i % period  # floor modulo: reflect about 0 and d-1
        return te.min(j, period - j)

    def f(*o):
        shifted = [i - b for i, b in zip(o, before)]
        if mode != "constant":
            return x[tuple(source(i, d) if b or e else i
                           for i, d, b, e in zip(shifted, x.shape, before, after))]
        conds = [te.all(i >= 0, i < d) for i, d, b, e in zip(shifted, x.shape, before, after) if b > 0 or e > 0]
        if not conds:
            return x[tuple(shifted)]
        return te.if_then_else(te.all(*conds), x[tuple(shifted)], fill)

    return te.compute(_check_size(shape, "Pad"), f, name="pad")


@register("Gather", "injective")
def gather(inputs: list[te.Tensor], axis: int = 0, **_) -> te.Tensor:
    """out = data[..., indices[...], ...] along `axis`; negative indices count from the end.

    Indices out of range are clamped (ONNX leaves them undefined) so a bad index never reads
    outside the tensor.
    """
    data, indices = inputs[0], inputs[1]
    axis = norm_axis(axis, data.ndim, "Gather")
    if indices.dtype not in ("int32", "int64"):
        raise ShapeError(f"Gather: indices must be int32 or int64, got {indices.dtype}")
    dim = data.shape[axis]
    shape = data.shape[:axis] + indices.shape + data.shape[axis + 1:]
    q = indices.ndim

    def f(*o):
        i = te.cast(indices[tuple(o[axis:axis + q])], "int32")
        i = te.if_then_else(i < 0, i + dim, i)
        i = te.max(te.min(i, dim - 1), 0)
        return data[tuple(o[:axis]) + (i,) + tuple(o[axis + q:])]

    return te.compute(_check_size(shape, "Gather"), f, name="gather")


# ---------------------------------------------------------------------------- values

@register("Cast", "injective")
def cast(inputs: list[te.Tensor], to: str | None = None, **_) -> te.Tensor:
    """`to` arrives as a lathe dtype string; float -> int truncates toward zero, as in C."""
    x = inputs[0]
    if to is None:
        raise ShapeError("Cast: the `to` attribute is required")
    to = str(to)
    try:
        te.cast(te.const(0, x.dtype), to)
    except ValueError:
        raise ShapeError(f"Cast: target dtype {to!r} is not supported") from None
    return te.compute(x.shape, lambda *i: te.cast(x[i], to), name="cast")


@register("ConstantOfShape", "injective", const_inputs={0: "shape"})
def constant_of_shape(inputs: list[te.Tensor], shape=None, value=None, **_) -> te.Tensor:
    shape = () if shape is None else tuple(as_ints(shape, "ConstantOfShape", "shape"))
    if value is None:
        v, dtype = 0.0, "float32"
    else:
        arr = np.asarray(value)
        v, dtype = as_scalar(arr, "ConstantOfShape", "value"), str(arr.dtype)
    return te.compute(_check_size(shape, "ConstantOfShape"), lambda *i: te.const(v, dtype), name="constant")


@register("Dropout", "injective")
def dropout(inputs: list[te.Tensor], num_outputs: int = 1, **_) -> list[te.Tensor]:
    """Inference: the output is the input and the optional mask is all true.

    `ratio` and `training_mode` (tensor inputs since opset 12, often graph inputs) are ignored:
    lathe compiles models for inference.
    """
    x = inputs[0]
    outs = [x]
    if num_outputs > 1:
        outs.append(te.compute(x.shape, lambda *i: te.const(True, "bool"), name="dropout_mask"))
    return outs


# ---------------------------------------------------------------------------- resize

RESIZE_COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                 "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _f32(v) -> Expr:
    return te.const(float(np.float32(v)), "float32")


def _source_coord(o, coord: str, scale: float, n_in: int, n_out: int, roi: tuple) -> Expr:
    """The input coordinate (float32, as ONNX Runtime computes it) of output index o along one axis."""
    x = te.cast(o, "float32")
    if coord == "asymmetric":
        return x / _f32(scale)
    if coord == "tf_half_pixel_for_nn":
        return (x + 0.5) / _f32(scale)
    if coord == "align_corners":
        return _f32(0) if n_out == 1 else x * _f32(n_in - 1) / _f32(n_out - 1)
    if coord == "pytorch_half_pixel" and n_out == 1:
        return _f32(0)
    if coord == "half_pixel_symmetric":
        adjust = np.float32(n_out) / (np.float32(scale) * np.float32(n_in))
        offset = np.float32(n_in) / np.float32(2) * (np.float32(1) - adjust)
        return _f32(offset) + (x + 0.5) / _f32(scale) - 0.5
    if coord == "tf_crop_and_resize":
        start, end = roi
        if n_out == 1:
            return _f32(0.5 * (start + end) * (n_in - 1))
        return _f32(start * (n_in - 1)) + x * _f32((end - start) * (n_in - 1) / (n_out - 1))
    return (x + 0.5) / _f32(scale) - 0.5  # half_pixel, pytorch_half_pixel


def _cubic_weights(t: Expr, a: float) -> list[Expr]:
    """Keys' cubic convolution weights of the taps at floor(x)-1 .. floor(x)+2, t = x - floor(x)."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _antialias_taps(x: Expr, mode: str, scale: float, last: int, cubic_a: float, exclude_outside: bool) -> list:
    """Downscaling with antialias: the interpolation kernel stretched by 1/scale, evaluated at
    (tap - x) * scale on the nearest taps, edge-clamped, weights normalised to sum to 1.

    With exclude_outside, taps outside the input get weight 0 before the normalisation."""
    reach = 1.0 if mode == "linear" else 2.0  # the kernel's support at scale 1
    start = int(math.floor(-reach / scale) + 1)  # first tap, relative to the tap just left of x
    frac = x - te.floor(x)
    ratio = te.if_then_else(frac == 0.0, te.const(1.0, "float32"), frac)  # in (0, 1]: prefer the left tap
    left = te.cast(x - ratio, "int32")  # x - ratio is a whole number

    def kernel(d: Expr) -> Expr:
        d = te.abs(d)
        if mode == "linear":
            return te.max(1.0 - d, 0.0)
        near = ((cubic_a + 2) * d - (cubic_a + 3)) * d * d + 1
        far = ((cubic_a * d - 5 * cubic_a) * d + 8 * cubic_a) * d - 4 * cubic_a
        return te.if_then_else(d <= 1.0, near, te.if_then_else(d < 2.0, far, te.const(0.0, "float32")))

    offsets = range(start, 2 - start)  # symmetric about the gap between the two central taps
    if len(offsets) > 4 * (last + 1) + 8:  # more taps than input elements: a scale far below 1/extent
        raise ShapeError(f"Resize: antialias at scale {scale:g} reads {len(offsets)} taps per output from an axis "
                         f"of {last + 1}; the scale must be at least about 1/{last + 1}")
    weights = [kernel((float(k) - ratio) * scale) for k in offsets]
    if exclude_outside:
        weights = [te.if_then_else(te.all(left + k >= 0, left + k <= last), w, te.const(0.0, "float32"))
                   for k, w in zip(offsets, weights)]
    total = weights[0]
    for w in weights[1:]:
        total = total + w
    return [(te.max(te.min(left + k, last), 0), w / total) for k, w in zip(offsets, weights)]


def _axis_taps(o, mode: str, coord: str, nearest: str, scale: float, n_in: int, n_out: int, roi: tuple,
               cubic_a: float, exclude_outside: bool, antialias: bool = False) -> tuple[list, Expr | None]:
    """[(input index, weight or None)] read for output index o along one axis, and an in-range condition
    (for tf_crop_and_resize's extrapolation) or None."""
    x = _source_coord(o, coord, scale, n_in, n_out, roi)
    inside = te.all(x >= 0.0, x <= float(n_in - 1)) if coord == "tf_crop_and_resize" else None
    last = n_in - 1

    def clamp(i):
        return te.max(te.min(i, last), 0)

    if antialias and mode != "nearest" and scale < 1:
        return _antialias_taps(x, mode, scale, last, cubic_a, exclude_outside), inside

    if mode == "nearest":
        r = {"round_prefer_floor": lambda v: te.ceil(v - 0.5), "round_prefer_ceil": lambda v: te.floor(v + 0.5),
             "floor": te.floor, "ceil": te.ceil}[nearest](x)
        return [(clamp(te.cast(r, "int32")), None)], inside
    if mode == "linear":
        xc = te.max(te.min(x, float(last)), 0.0)
        i0 = te.cast(xc, "int32")  # xc >= 0: truncation is floor
        w1 = xc - te.cast(i0, "float32")
        return [(i0, 1.0 - w1), (te.min(i0 + 1, last), w1)], inside
    fl = te.floor(x)
    t = x - fl
    base = te.cast(fl, "int32")
    weights = _cubic_weights(t, cubic_a)
    idx = [base + k for k in (-1, 0, 1, 2)]
    if exclude_outside:  # taps outside the input get weight 0; the rest are renormalised
        weights = [te.if_then_else(te.all(i >= 0, i <= last), w, te.const(0.0, "float32"))
                   for i, w in zip(idx, weights)]
        total = weights[0] + weights[1] + weights[2] + weights[3]
        weights = [w / total for w in weights]
    return [(clamp(i), w) for i, w in zip(idx, weights)], inside


@register("Resize", "injective", const_inputs={1: "roi", 2: "scales", 3: "sizes"})
def resize(inputs: list[te.Tensor], roi=None, scales=None, sizes=None, mode: str = "nearest",
           coordinate_transformation_mode: str | None = None, nearest_mode: str | None = None,
           cubic_coeff_a: float = -0.75, exclude_outside: int = 0, extrapolation_value: float = 0.0,
           antialias: int = 0, axes=None, keep_aspect_ratio_policy: str = "stretch", **_) -> te.Tensor:
    """Nearest, (multi)linear and cubic resizing of any axes, with every coordinate transformation mode.

    Opset 10 has inputs (X, scales): its scales arrive in the `roi` slot, and it resizes with
    asymmetric coordinates and floor rounding.
    """
    x = inputs[0]

    def given(v):
        return v is not None and np.size(v) > 0

    if not given(scales) and not given(sizes) and given(roi):  # opset 10: Resize(X, scales)
        scales, roi = roi, None
        coordinate_transformation_mode = coordinate_transformation_mode or "asymmetric"
        nearest_mode = nearest_mode or "floor"
    coord = coordinate_transformation_mode or "half_pixel"
    nearest = nearest_mode or "round_prefer_floor"
    if mode not in ("nearest", "linear", "cubic"):
        raise ShapeError(f"Resize: mode {mode!r} is not supported (nearest, linear, cubic)")
    if coord not in RESIZE_COORDS:
        raise ShapeError(f"Resize: coordinate_transformation_mode {coord!r} is not supported ({RESIZE_COORDS})")
    if nearest not in NEAREST_MODES:
        raise ShapeError(f"Resize: nearest_mode {nearest!r} is not supported ({NEAREST_MODES})")
    if mode != "nearest" and not x.dtype.startswith("float"):
        raise ShapeError(f"Resize: mode {mode} needs a float input, got {x.dtype}")
    rank = x.ndim
    ax = list(range(rank)) if axes is None or np.size(axes) == 0 else norm_axes(axes, rank, "Resize")
    n_in = [x.shape[a] for a in ax]
    if given(sizes) == given(scales):
        raise ShapeError("Resize: exactly one of scales and sizes must be given")
    rois = [(0.0, 1.0)] * len(ax)
    if coord == "tf_crop_and_resize":
        r = np.asarray(roi if roi is not None else [], dtype=np.float64).reshape(-1)
        if r.size == 2 * rank and len(ax) != rank:
            r = np.concatenate([r[:rank][ax], r[rank:][ax]])
        if r.size != 2 * len(ax):
            raise ShapeError(f"Resize: roi {r.tolist()} needs 2 values per resized axis ({len(ax)} axes)")
        rois = list(zip(r[:len(ax)].tolist(), r[len(ax):].tolist()))
    if given(sizes):
        sz = as_ints(sizes, "Resize", "sizes")
        if len(sz) != len(ax):
            raise ShapeError(f"Resize: sizes {sz} need one value per resized axis ({len(ax)}; input {x.shape})")
        if keep_aspect_ratio_policy == "stretch":
            n_out = sz
            sc = [float(np.float32(o) / np.float32(i)) if i else 1.0 for o, i in zip(n_out, n_in)]
        elif keep_aspect_ratio_policy in ("not_larger", "not_smaller"):
            pick = min if keep_aspect_ratio_policy == "not_larger" else max
            s = pick(float(np.float32(o) / np.float32(i)) for o, i in zip(sz, n_in))
            n_out = [int(math.floor(s * i + 0.5)) for i in n_in]  # round half away from zero
            sc = [s] * len(ax)
        else:
            raise ShapeError(f"Resize: keep_aspect_ratio_policy {keep_aspect_ratio_policy!r} is not supported")
    else:
        sc = [float(v) for v in np.asarray(scales, dtype=np.float32).reshape(-1)]
        if len(sc) != len(ax):
            raise ShapeError(f"Resize: scales {sc} need one value per resized axis ({len(ax)}; input {x.shape})")
        if not all(0 < s < math.inf for s in sc):
            raise ShapeError(f"Resize: scales {sc} must be positive and finite")
        # floor(in * scale), also for tf_crop_and_resize (ONNX Runtime and the reference ignore the roi here)
        n_out = [int(np.floor(np.float32(i) * np.float32(s))) for i, s in zip(n_in, sc)]
    shape = list(x.shape)
    for a, n in zip(ax, n_out):
        shape[a] = n
    # axes whose size and scale are unchanged read the input index directly
    moved = [k for k, a in enumerate(ax)
             if n_out[k] != n_in[k] or sc[k] != 1.0 or coord in ("tf_crop_and_resize", "half_pixel_symmetric")]

    def f(*o):
        taps_per_axis, conds = [], []
        for k in moved:
            taps, inside = _axis_taps(o[ax[k]], mode, coord, nearest, sc[k], n_in[k], n_out[k], rois[k],
                                      float(cubic_coeff_a), bool(exclude_outside), bool(antialias))
            taps_per_axis.append(taps)
            if inside is not None:
                conds.append(inside)
        terms = []
        for combo in _product(taps_per_axis):
            idx = list(o)
            weight = None
            for k, (i, w) in zip(moved, combo):
                idx[ax[k]] = i
                if w is not None:
                    weight = w if weight is None else weight * w
            v = x[tuple(idx)]
            if weight is not None:
                v = te.cast(v, "float32") * weight if x.dtype != "float32" else v * weight
            terms.append(v)
        total = _tree_sum(terms)  # 256 taps (cubic on 4 axes) chained left-deep overflowed the recursion limit
        if mode != "nearest" and x.dtype != "float32":
            total = te.cast(total, x.dtype)
        if conds:
            total = te.if_then_else(te.all(*conds), total, te.const(extrapolation_value, x.dtype))
        return total

    return te.compute(_check_size(shape, "Resize"), f, name="resize")


def _tree_sum(terms: list) -> Expr:
    """a + b + c + ... as a balanced tree: depth log2(n), not n."""
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def _product(lists: list) -> list:
    out = [[]]
    for taps in lists:
        out = [c + [t] for c in out for t in taps]
    return out
