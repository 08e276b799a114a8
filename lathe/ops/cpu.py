"""CPU schedules (llvm and c targets) for the operator library.

A schedule hook has the signature `(s, op_out, group_out, target)`: `op_out` is the heavy op's
output tensor, `group_out` the last tensor of its fused group (the graph layer has already
inlined the elementwise epilogue between them). Hooks find the op's stages by their compute
`tag` (see nn.py) and never change what is computed; every path has a plain fallback.
"""

from __future__ import annotations

import functools
import math

from lathe import te
from lathe.target import Target
from lathe.tune import knobs
from lathe.te.tensor import ComputeOp

PARALLEL_MIN_WORK = 1 << 15  # multiply-adds (or elements) below which a parallel loop costs more than it saves
KEEP_TAGS = ("conv_pad", "pool_pad", "softmax_exp")  # pointwise stages worth computing once, not inlining


# ---------------------------------------------------------------------------- target facts

def _target(target) -> Target:
    return Target.parse(target if target is not None else "llvm")


def vector_lanes(target: Target | str | None = None, dtype: str = "float32") -> int:
    """Lanes of one SIMD register for `dtype`: 16 floats with AVX-512, else 8 (AVX2-class)."""
    t = _target(target)
    bits = int(t.attrs.get("vector-bits", 0)) or (128 if t.kind == "wasm" else 0)  # SIMD128
    if not bits:
        from lathe.codegen.llvm import host_cpu, vector_bits_for

        if t.kind == "llvm" and "mcpu" in t.attrs:
            bits = vector_bits_for(t.attrs.get("mattr", ""))
        else:
            bits = 512 if "+avx512f" in host_cpu()[1] else 256
    size = 8 if dtype.endswith("64") else 4
    return max(1, bits // (8 * size))


def _threads(target) -> int:
    return _target(target).threads


def _divisor_tile(n: int, lanes: int) -> int:
    """A tile for an axis of extent n to vectorize: a multiple of the lanes when n has one, else the
    largest divisor of n up to the lanes (no tail, so the tile vectorizes), else the lanes with a tail."""
    if n % lanes == 0:
        return lanes
    best = max(d for d in range(1, min(n, lanes) + 1) if n % d == 0)
    return best if best * 2 >= min(n, lanes) else lanes


def _small_divisor(n: int, choices=(8, 4, 2)) -> int:
    return next((c for c in choices if n % c == 0), 1)


# ---------------------------------------------------------------------------- stage helpers

def _find(t: te.Tensor, tags: tuple) -> ComputeOp | None:
    """The op with one of `tags` at or upstream of t (within the fused program)."""
    todo, seen = [t.op], set()
    while todo:
        op = todo.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        if getattr(op, "tag", "") in tags:
            return op
        todo.extend(i.op for i in op.input_tensors())
    return None


def _inline_pointwise(s, keep: list) -> None:
    """Inline every pointwise stage except outputs, KEEP_TAGS stages and `keep`: one loop nest remains."""
    for st in s.stages:
        op = st.op
        if (isinstance(op, ComputeOp) and not op.reduce_axis and st.attach == "root" and op not in s.outputs
                and op.tag not in KEEP_TAGS and all(st is not s[k] for k in keep)):
            st.compute_inline()


def _parallel_data(st, work: int, target) -> None:
    """Fuse the stage's leading data loops into one and run it in parallel if the work is large enough.

    The innermost loop of a pointwise stage (a padded row) stays out of the fused loop: its index
    math stays simple and LLVM can vectorize it.
    """
    data = []
    for iv in st.leaf_iter_vars:
        if iv.kind != "data":
            break
        data.append(iv)
    if len(data) == len(st.leaf_iter_vars) and len(data) > 1 and data[-1].extent.value >= 8:
        data = data[:-1]
    if not data or work < PARALLEL_MIN_WORK or _threads(target) < 2:
        return
    fused = st.fuse(*data) if len(data) > 1 else data[0]
    if fused.extent.value > 1:
        st.parallel(fused)


def _only_feeds(s, st, out_st) -> bool:
    """Is `st` read only by out_st, directly or through inlined stages? Then it may be computed inside
    out_st's loops; a reader at root would need it outside them."""
    todo = list(s.readers(st))
    while todo:
        r = todo.pop()
        if r is out_st:
            continue
        if r.attach != "inline":
            return False
        todo.extend(s.readers(r))
    return True


def _reduce_work(op: ComputeOp) -> int:
    return math.prod(op.shape) * math.prod(iv.extent.value for iv in op.reduce_axis)


def _schedule_roots(s, target) -> None:
    """Generic fallback: every stage computed at root runs its data loops in parallel."""
    for st in s.stages:
        if isinstance(st.op, ComputeOp) and st.attach == "root" and not st.relations:
            _parallel_data(st, _reduce_work(st.op), target)


def _schedule_fallback(s, op_out: te.Tensor, group_out: te.Tensor, target, tags: tuple) -> None:
    """Pointwise stages inlined, the reduction computed per output element inside the output's loops
    when it has the output's shape, otherwise every stage at root in parallel."""
    red = _find(op_out, tags)
    keep = [red] if red is not None else []
    _inline_pointwise(s, keep)
    out_st = s[group_out]
    # other readers (MaxPool's Indices, softmax's exp) need the reduction outside the output's loops
    if (red is not None and s[red] is not out_st and red.shape == tuple(group_out.shape) and len(s.outputs) == 1
            and _only_feeds(s, s[red], out_st)):
        axes = out_st.op.axis
        fused = out_st.fuse(*axes) if len(axes) > 1 else axes[0] if axes else None
        if fused is not None:
            s[red].compute_at(out_st, fused)
            if _reduce_work(red) >= PARALLEL_MIN_WORK and _threads(target) > 1 and fused.extent.value > 1:
                out_st.parallel(fused)
    _schedule_roots(s, target)


# ---------------------------------------------------------------------------- injective

def schedule_injective(s: te.Schedule, out: te.Tensor, target: Target | str) -> None:
    """Elementwise/layout kernels: one loop nest, the innermost axis vectorized when its extent is a
    multiple of the vector width, the outer loops fused and run in parallel when there is enough work."""
    _inline_pointwise(s, [])
    st = s[out]
    if isinstance(st.op, ComputeOp) and st.op.axis and not st.op.reduce_axis:
        _vectorize_pointwise(st, out, target)
    _schedule_roots(s, target)  # op-internal stages left at root (padding) still run in parallel


def _vectorize_pointwise(st, out: te.Tensor, target) -> None:
    axes = list(st.op.axis)
    lanes = vector_lanes(target, out.dtype)
    last = axes[-1].extent.value
    vec = None
    if last % lanes == 0 and out.dtype != "bool":
        if last > lanes:
            outer, vec = st.split(axes[-1], lanes)
            axes[-1] = outer
        else:
            vec = axes.pop()
    if vec is None and len(axes) > 1 and axes[-1].extent.value >= 8:
        axes.pop()  # a plain innermost loop: simple indices, and LLVM may vectorize it
    if axes and math.prod(out.shape) >= PARALLEL_MIN_WORK and _threads(target) > 1:
        fused = st.fuse(*axes) if len(axes) > 1 else axes[0]
        if fused.extent.value > 1:
            st.parallel(fused)
    if vec is not None:
        st.vectorize(vec)


# ---------------------------------------------------------------------------- conv2d (NCHW)

def _tile_nchw(s, red: ComputeOp, group_out: te.Tensor, target, mt: int) -> tuple:
    """Tile the (N, C, H, W) group output as parallel (N, C/mt, H) x W/wt tiles of (mt x wt), W vectorized,
    and compute the reduction's accumulator (a register tile) at each W-tile.
    Returns the accumulator's stage and the W tile."""
    wt = _divisor_tile(red.shape[3], vector_lanes(target, red.dtype))
    red_t = red.output()
    acc = s.cache_write(red_t, "local") if s[red_t] is s[group_out] else red_t
    o = s[group_out]
    on, oc, ooh, oow = o.op.axis
    co, ci = o.split(oc, mt)
    wo, wi = o.split(oow, wt)
    o.reorder(on, co, ooh, wo, ci, wi)
    fused = o.fuse(on, co, ooh)
    if _reduce_work(red) >= PARALLEL_MIN_WORK and _threads(target) > 1 and fused.extent.value > 1:
        o.parallel(fused)
    if wt > 1:
        o.vectorize(wi)
    a = s[acc]
    a.compute_at(o, wo)
    return a, wt


def schedule_conv(s: te.Schedule, conv_out: te.Tensor, group_out: te.Tensor, target: Target | str) -> None:
    """Direct NCHW conv2d: an (8 output channels x W-tile) accumulator in registers per tile of the
    output, vectorized along the output width, tiles run in parallel; padded input computed once."""
    red = _find(conv_out, ("conv",))
    if red is None or len(red.shape) != 4 or tuple(group_out.shape) != red.shape:
        return _schedule_fallback(s, conv_out, group_out, target, ("conv", "conv_transpose"))
    _inline_pointwise(s, [red])
    a, wt = _tile_nchw(s, red, group_out, target, _small_divisor(red.shape[1]))
    an, am, aoh, aow = a.op.axis
    raxes = list(a.op.reduce_axis)
    a.reorder(an, aoh, *raxes, am, aow)
    a.unroll(am)
    if wt > 1:
        a.vectorize(aow)
    if raxes and raxes[-1].extent.value <= 7:  # the kernel's width: a few unrolled taps
        a.unroll(raxes[-1])
    _schedule_roots(s, target)  # the padded input


# ---------------------------------------------------------------------------- conv2d (NCHW[b]c)

@functools.lru_cache(maxsize=1)
def l2_bytes() -> int:
    """The host's L2 cache per core (Linux sysfs, read once; 1 MiB when unknown)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as fh:
            text = fh.read().strip().upper()
        return int(text.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(text[-1], 0)
    except (OSError, ValueError, IndexError):
        return 1 << 20


def vector_registers(target=None) -> int:
    return 32 if vector_lanes(target) * 32 >= 512 else 16


def register_tile(blocks: int, width: int, registers: int) -> tuple[int, int]:
    """(output-channel blocks, output pixels) held in registers per step of a blocked convolution.

    Each step loads `cb` weight vectors and broadcasts `wt` inputs for cb * wt FMAs; the most FMAs per
    load wins, with the accumulators filling at most half the vector registers (measured: more spills
    once LLVM adds its own temporaries). Both must divide their axis, so no tail is ever guarded."""
    best = (0.0, 0, 1, 1)
    for cb in (1, 2, 3, 4):
        for wt in range(1, min(width, 28) + 1):
            if blocks % cb or width % wt or cb * wt > registers // 2:
                continue
            best = max(best, (cb * wt / (cb + wt), wt, cb, wt))
    return best[2], best[3]


def schedule_conv_blocked(s: te.Schedule, conv_out: te.Tensor, group_out: te.Tensor, target: Target | str) -> None:
    """Blocked conv (dense or depthwise): per step a (cb x wt) tile of output-channel vectors x output
    pixels is updated in registers; threads share out rows or channel tiles; the epilogue (bias,
    activation, residual) is applied to the tile in vectors."""
    red = _find(conv_out, ("conv_blocked",))
    if red is None or tuple(group_out.shape) != red.shape:
        return _schedule_fallback(s, conv_out, group_out, target, ("conv_blocked",))
    _inline_pointwise(s, [red])
    depthwise = len(red.reduce_axis) == 2  # one input channel per output channel: nothing to share across cb
    cfg = knobs.current()
    blocks_out, width, registers = 1 if depthwise else red.shape[1], red.shape[3], vector_registers(target)
    cb, wt = register_tile(blocks_out, width, registers)
    cb = cfg.choice("cb", [c for c in (1, 2, 3, 4) if blocks_out % c == 0], cb)
    wt = cfg.choice("wt", [t for t in range(1, min(width, 28) + 1) if width % t == 0 and cb * t <= registers - 4], wt)
    red_t = red.output()
    acc = s.cache_write(red_t, "local") if s[red_t] is s[group_out] else red_t
    o = s[group_out]
    on, om, oh, ow, ov = o.op.axis
    mo, mi = o.split(om, cb)
    wo, wi = o.split(ow, wt)
    # Threads split the rows when activations outweigh the weights (each thread then finds the rows it
    # produced in its own cache), else the output channels (each thread reads half the weights).
    # Accumulators: in registers for the whole reduction when one tile's weights fit in L1 (1x1
    # convolutions with few input channels; depthwise); else for a whole row, or when weights dominate,
    # the whole output plane of cb channel blocks (if it fits in L1 and leaves work for every thread),
    # with the input-channel block loop outside the pixels, so one block's weights stay in L1 while
    # every pixel of the row or plane uses them.
    w = red.input_tensors()[1]
    rows_first = math.prod(red.shape) + math.prod(red.input_tensors()[0].shape) >= math.prod(w.shape)
    blocks = red.reduce_axis[0].extent.value if not depthwise else 1
    plane_bytes = cb * math.prod(red.shape[2:]) * 4
    threads = _threads(target)
    tile_weights = cb * math.prod(w.shape[1:]) * 4  # bytes of weights one register tile reads
    mode = "tile" if blocks == 1 or tile_weights <= 32 * 1024 else "row" if rows_first else "plane"
    if mode == "plane" and (plane_bytes > 32 * 1024 or red.shape[0] * red.shape[1] // cb < 2 * threads):
        mode = "row"
    rows_first = cfg.choice("rows_first", (True, False), rows_first)
    # row and plane modes: the kernel's columns inside the input channels, unrolled, so neighbouring
    # pixels' taps share input loads (asked of every dense kernel so that the space does not hang on `acc`)
    taps_inner = (not depthwise and red.reduce_axis[2].extent.value > 1
                  and cfg.choice("taps_inner", (False, True), False))
    mode = cfg.choice("acc", ("tile",) if depthwise else ("tile", "row", "plane"), mode)
    rows_first = rows_first and mode != "plane"  # a plane of accumulators spans all rows: threads split channels
    outer = (on, oh, mo) if rows_first else (on, mo) if mode == "plane" else (on, mo, oh)
    o.reorder(*outer, *([oh] if mode == "plane" else []), wo, mi, wi, ov)
    fused = o.fuse(*outer)
    if _reduce_work(red) >= PARALLEL_MIN_WORK and threads > 1 and fused.extent.value > 1:
        o.parallel(fused)
    o.vectorize(ov)
    o.unroll(mi)  # constant indices into the accumulator tile, so LLVM keeps it in registers
    o.unroll(wi)
    a = s[acc]
    an, am, ah, aw, av = a.op.axis
    if mode == "tile":
        a.compute_at(o, wo)
        a.reorder(an, ah, *a.op.reduce_axis, am, aw, av)
        if depthwise and a.op.reduce_axis[-1].extent.value <= 7:
            # neighbouring taps of neighbouring pixels read the same input vectors: unrolled, LLVM loads
            # each once (EfficientNet-Lite0's 5x5 depthwise convolutions ran 2x faster)
            a.unroll(a.op.reduce_axis[-1])
    else:
        a.compute_at(o, fused)
        aw, awi = a.split(aw, wt)
        rco, *taps = a.op.reduce_axis
        a.reorder(an, rco, ah, aw, *([taps[0], taps[2], taps[1]] if taps_inner else taps), am, awi, av)
        if taps_inner:
            a.unroll(taps[1])
            taps = [taps[0], taps[2]]
        aw = awi
        # weights beyond the L2 cache stream in at the first row of each block: fetch the next block's
        # while this one is in use (ResNet-18's last stage: 7% faster; below L2 it only costs)
        if cfg.choice("prefetch", (False, True), mode == "plane" and math.prod(w.shape) * 4 > threads * l2_bytes()):
            a.prefetch(w, taps[-1], rco, 1)
    a.unroll(am)
    a.unroll(aw)
    a.vectorize(av)
    pad = _find(red_t, ("conv_pad",))
    if pad is not None and depthwise:  # each input is read ~k*k/stride^2 times: test the border in place,
        s[pad].compute_inline()  # a padded copy costs more memory traffic than the convolution itself
    else:
        _schedule_blocked_pad(s, pad, target)


def _schedule_blocked_pad(s, pad: ComputeOp | None, target) -> None:
    """A padded blocked input: rows in parallel, each pixel's channel block one vector."""
    if pad is not None:
        p = s[pad]
        pn, pc, py, px, pv = p.op.axis
        rows = p.fuse(pn, pc, py)
        if math.prod(pad.shape) >= PARALLEL_MIN_WORK and _threads(target) > 1:
            p.parallel(rows)
        p.vectorize(pv)


def schedule_pool_blocked(s: te.Schedule, pool_out: te.Tensor, group_out: te.Tensor, target: Target | str) -> None:
    """Blocked pools: the window reduction per output pixel on a vector of channels."""
    red = _find(pool_out, ("pool",))
    if red is None or tuple(group_out.shape) != red.shape or len(s.outputs) > 1:
        return _schedule_fallback(s, pool_out, group_out, target, ("pool",))
    _inline_pointwise(s, [red])
    o = s[group_out]
    on, oc, oh, ow, ov = o.op.axis
    fused = o.fuse(on, oc, oh)
    if _reduce_work(red) >= PARALLEL_MIN_WORK and _threads(target) > 1:
        o.parallel(fused)
    o.vectorize(ov)
    if s[red] is not o:
        a = s[red]
        a.compute_at(o, ow)
        a.reorder(*a.op.axis[:4], *a.op.reduce_axis, a.op.axis[4])
        a.vectorize(a.op.axis[4])
        if knobs.current().choice("unroll_window", (False, True), False):
            for r in a.op.reduce_axis:
                if r.extent.value <= 7:
                    a.unroll(r)
    else:
        o.reorder(fused, ow, *o.op.reduce_axis, ov)
    pad = _find(red.output(), ("pool_pad",))
    if pad is not None:  # few reads per input: test the border in place (as for depthwise convolutions)
        s[pad].compute_inline()


# ---------------------------------------------------------------------------- matmul / gemm

def schedule_matmul(s: te.Schedule, mm_out: te.Tensor, group_out: te.Tensor, target: Target | str) -> None:
    """(batched) C = A B: an (MR x NR) register tile of C per parallel tile, B read as contiguous
    vectors along N. When B is read along K (Gemm transB, a 1-D B) the compute sums in interleaved
    partial sums and _schedule_dot vectorizes those instead."""
    red = _find(mm_out, ("matmul",))
    if red is not None and red.attrs.get("interleaved") and tuple(group_out.shape) == red.shape:
        return _schedule_dot(s, red, group_out, target)
    if red is None or len(red.shape) < 2 or tuple(group_out.shape) != red.shape or not red.reduce_axis:
        return _schedule_fallback(s, mm_out, group_out, target, ("matmul",))
    _inline_pointwise(s, [red])
    rows, cols = red.shape[-2:]
    lanes = vector_lanes(target, red.dtype)
    cfg = knobs.current()
    nt = 2 * lanes if cols % (2 * lanes) == 0 else _divisor_tile(cols, lanes)
    nt = cfg.choice("nt", [n for n in (lanes, 2 * lanes, 4 * lanes) if cols % n == 0], nt)
    mt = _small_divisor(rows, (8, 6, 4, 2) if nt <= lanes else (4, 2))
    mt = cfg.choice("mt", [m for m in (1, 2, 4, 6, 8) if rows % m == 0], mt)
    red_t = red.output()
    acc = s.cache_write(red_t, "local") if s[red_t] is s[group_out] else red_t
    o = s[group_out]
    *batch, oi, oj = o.op.axis
    io, ii = o.split(oi, mt)
    jo, ji = o.split(oj, nt)
    o.reorder(*batch, io, jo, ii, ji)
    fused = o.fuse(*batch, io, jo)
    if _reduce_work(red) >= PARALLEL_MIN_WORK and _threads(target) > 1 and fused.extent.value > 1:
        o.parallel(fused)
    if nt > 1:
        o.vectorize(ji)
    a = s[acc]
    a.compute_at(o, fused)
    *abatch, ai, aj = a.op.axis
    (k,) = a.op.reduce_axis
    a.reorder(*abatch, k, ai, aj)
    a.unroll(ai)
    if nt > 1:
        a.vectorize(aj)
    _schedule_roots(s, target)


def _schedule_dot(s, red: ComputeOp, group_out: te.Tensor, target) -> None:
    """Interleaved contraction (B read along K): per parallel tile of (MT x NT) outputs, MT*NT vector
    accumulators of KSPLIT partial sums, each step one vector of A per row and of B per column."""
    part = red.input_tensors()[0].op
    _inline_pointwise(s, [red, part])
    o = s[group_out]
    axes = list(o.op.axis)
    cols = axes[-1].extent.value
    nt = _small_divisor(cols, (8, 4, 2)) if len(axes) < 2 or axes[-2].extent.value < 2 else \
        _small_divisor(cols, (4, 2))
    jo, ji = o.split(axes[-1], nt)
    inner = [ji]
    outer = axes[:-1] + [jo]
    if len(axes) >= 2 and axes[-2].extent.value >= 2:
        mt = _small_divisor(axes[-2].extent.value, (4, 2))
        io, ii = o.split(axes[-2], mt)
        outer = axes[:-2] + [io, jo]
        inner = [ii, ji]
    o.reorder(*outer, *inner)
    fused = o.fuse(*outer) if len(outer) > 1 else outer[0]
    if _reduce_work(part) >= PARALLEL_MIN_WORK and _threads(target) > 1 and fused.extent.value > 1:
        o.parallel(fused)
    p = s[part]
    p.compute_at(o, fused)
    *pdata, pv = p.op.axis
    (ko,) = p.op.reduce_axis
    p.reorder(ko, *pdata, pv)
    for ax in pdata[-len(inner):]:
        p.unroll(ax)
    p.vectorize(pv)
    if s[red] is not o:
        s[red].compute_at(o, fused)
    _schedule_roots(s, target)


# ---------------------------------------------------------------------------- pooling

def schedule_pool(s: te.Schedule, pool_out: te.Tensor, group_out: te.Tensor, target: Target | str) -> None:
    """2-D windows: the window reduction per W-tile of the output, vectorized along W; global pools
    and other ranks: one reduction per output element, in parallel over (N, C)."""
    red = _find(pool_out, ("pool",))
    if red is None or tuple(group_out.shape) != red.shape or len(s.outputs) > 1:
        return _schedule_fallback(s, pool_out, group_out, target, ("pool",))
    spatial = red.shape[2:]
    if len(spatial) != 2 or all(d == 1 for d in spatial):
        return _schedule_fallback(s, pool_out, group_out, target, ("pool",))
    _inline_pointwise(s, [red])
    a, wt = _tile_nchw(s, red, group_out, target, 1)
    an, ac, aoh, aow = a.op.axis
    a.reorder(an, ac, aoh, *a.op.reduce_axis, aow)
    if wt > 1:
        a.vectorize(aow)
    _schedule_roots(s, target)


def _unrolled(st, *axes) -> None:
    """Unroll every axis but the last, vectorize the last: a block of vectors with constant indices."""
    for ax in axes[:-1]:
        st.unroll(ax)
    st.vectorize(axes[-1])


def _unroll_inner_reduction(st, cfg) -> list:
    """The stage's reduce axes, the innermost (input channels of a block) split by the `unroll_k` knob and
    its inner part unrolled: several register-tile updates per loop step for LLVM to interleave."""
    *outer, inner = st.op.reduce_axis
    k = cfg.choice("unroll_k", [f for f in (2, 4, 8) if inner.extent.value % f == 0], 1)
    if k == 1:
        return [*outer, inner]
    ko, ki = st.split(inner, k)
    st.unroll(ki)
    return [*outer, ko, ki]


def schedule_conv_winograd(s: te.Schedule, conv_out: te.Tensor, group_out: te.Tensor, target: Target | str) -> None:
    """Winograd conv (ops/layout.py): input tiles transformed (each tile's 2-D transform in registers), the
    (m+2)^2 products over input channels computed as register tiles of (output-channel vectors x tiles), each
    output tile transformed back with the epilogue applied; output rows of tiles in parallel.

    With few weights (U fits in L2) each row of tiles is done whole, so its intermediates stay in the core's
    cache; with many, each stage runs over the whole image and threads split the (m+2)^2 products, so U is
    read once rather than once per row."""
    gemm = _find(conv_out, ("conv_winograd",))
    rows, v, cols = (_find(conv_out, (t,)) for t in ("wino_rows", "wino_v", "wino_cols"))
    if None in (gemm, rows, v, cols) or tuple(group_out.shape) != tuple(conv_out.shape):
        return _schedule_fallback(s, conv_out, group_out, target, ("conv_winograd",))
    _inline_pointwise(s, [rows, v, cols])
    cfg = knobs.current()
    parallel = _threads(target) > 1
    per_row = cfg.choice("wino_rows", (True, False), math.prod(gemm.input_tensors()[0].shape) * 4 <= l2_bytes() // 2)

    def place(st, outer: list) -> None:  # inside the output's row loop, or over the image with `outer` parallel
        if per_row:
            st.compute_at(o, row)
        elif parallel:
            st.parallel(st.fuse(*outer))

    m = cols.shape[5]
    o = s[group_out]
    on, om, oh, ow, ov = o.op.axis
    tho, ohi = o.split(oh, m)
    two, owi = o.split(ow, m)
    o.reorder(on, tho, om, two, ohi, owi, ov)
    row = o.fuse(on, tho)
    if _reduce_work(gemm) >= PARALLEL_MIN_WORK and parallel:
        o.parallel(row)
    _unrolled(o, ohi, owi, ov)
    z = s[cols]  # M A for one tile, at the tile
    z.compute_at(o, two)
    _unrolled(z, *z.op.axis[4:])
    # the products: a register tile per (output-channel blocks x tiles), accumulated over all input channels
    acc = s.cache_write(gemm.output(), "local")
    p = s[gemm.output()]
    pn, pr, pk, pm, py, px, pv = p.op.axis
    blocks, tiles, registers = gemm.shape[3], gemm.shape[5], vector_registers(target)
    cb, wt = register_tile(blocks, tiles, registers)
    cb = cfg.choice("cb", [c for c in (1, 2, 3, 4) if blocks % c == 0], cb)
    wt = cfg.choice("wt", [t for t in range(1, min(tiles, 28) + 1) if tiles % t == 0 and cb * t <= registers - 4], wt)
    pmo, pmi = p.split(pm, cb)
    pxo, pxi = p.split(px, wt)
    # over the whole image, a channel block's U may stay in cache across the rows of tiles, or a row's V across blocks
    channels_outer = cfg.choice("wino_channels_outer", (False, True), False) and not per_row
    p.reorder(pn, pr, pk, *((pmo, py) if channels_outer else (py, pmo)), pxo, pmi, pxi, pv)
    place(p, [pn, pr, pk])
    _unrolled(p, pmi, pxi, pv)
    a = s[acc]
    a.compute_at(p, pxo)
    an, ar, ak, am, ay, ax, av = a.op.axis
    a.reorder(an, ar, ak, ay, *_unroll_inner_reduction(a, cfg), am, ax, av)
    _unrolled(a, am, ax, av)
    # the input tiles: B^T d B per tile, the first half (d B) in registers
    vs = s[v]
    vn, vr, vk, vc, vy, vx, vv = vs.op.axis
    vs.reorder(vn, vc, vy, vx, vr, vk, vv)
    place(vs, [vn, vc, vy])
    _unrolled(vs, vr, vk, vv)
    r = s[rows]
    r.compute_at(vs, vx)
    _unrolled(r, *r.op.axis[4:])
    _schedule_blocked_pad(s, _find(v.output(), ("conv_pad",)), target)


# ---------------------------------------------------------------------------- reductions, softmax

def schedule_reduce(s: te.Schedule, op_out: te.Tensor, group_out: te.Tensor, target: Target | str) -> None:
    """Reduce*/Softmax: a reduction with the output's shape (ReduceMean's sum, a plain ReduceMax) is
    computed per output element inside the output loop; others (softmax's max and sum) run at root in
    parallel and the pointwise output is vectorized like an injective kernel."""
    red = _find(op_out, ("reduce",))
    st = s[group_out]
    if red is not None and red.shape != tuple(group_out.shape) and not st.op.reduce_axis:
        _inline_pointwise(s, [red])
        _vectorize_pointwise(st, group_out, target)
        return _schedule_roots(s, target)
    _schedule_fallback(s, op_out, group_out, target, ("reduce",))


# hook name (OpDef.schedule) -> schedule; every target family's module has such a table
SCHEDULES = {"conv": schedule_conv, "pool": schedule_pool, "matmul": schedule_matmul, "reduce": schedule_reduce,
             "injective": schedule_injective, "conv_blocked": schedule_conv_blocked,
             "pool_blocked": schedule_pool_blocked, "conv_winograd": schedule_conv_winograd}
