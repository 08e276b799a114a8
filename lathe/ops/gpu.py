"""GPU schedules (opencl and cuda targets) for the operator library.

The hooks have the signature of lathe/ops/cpu.py's. A GPU kernel has no global memory of its own
and no barrier across work-groups, so every kernel is one loop nest over its output: the output's
axes are fused, split into work-groups of THREADS work-items and bound to blockIdx.x/threadIdx.x;
pointwise stages are inlined and every reduction (conv, matmul, pool, softmax's max and sum) is
computed per work-item inside that thread loop, its accumulator in private memory ("local").
"""

from __future__ import annotations

from lathe import te
from lathe.ops.cpu import _find
from lathe.te.tensor import ComputeOp
from lathe.tune import knobs

THREADS = 64  # work-items per work-group: a multiple of every GPU's warp/wavefront


def bind_flat(st, threads: int = THREADS):
    """Fuse the stage's data axes, split by `threads`, bind to blockIdx.x/threadIdx.x; returns the thread axis."""
    axes = [iv for iv in st.leaf_iter_vars if iv.kind == "data"]
    if not axes or any(iv.extent.value == 0 for iv in axes):
        return None  # nothing to spread over work-items (a 0-d or empty output)
    fused = st.fuse(*axes) if len(axes) > 1 else axes[0]
    bx, tx = st.split(fused, min(threads, fused.extent.value))
    st.bind(bx, "blockIdx.x")
    st.bind(tx, "threadIdx.x")
    return tx


def _outputs_reading(s, st) -> set:
    """The schedule's outputs that read `st`, directly or through other non-output stages."""
    outputs = {s[op] for op in s.outputs}  # by stage: cache_write gives an output stage a new op
    found, todo, seen = set(), list(s.readers(st)), set()
    while todo:
        r = todo.pop()
        if id(r) in seen:
            continue
        seen.add(id(r))
        if r in outputs:
            found.add(r)
        else:
            todo.extend(s.readers(r))
    return found


def schedule_per_output(s: te.Schedule, op_out: te.Tensor, group_out: te.Tensor, target=None) -> None:
    """One work-item per output element; reductions computed by that work-item in private memory."""
    outputs = [s[op] for op in s.outputs]
    if s[op_out].op.reduce_axis and outputs == [s[op_out]]:
        s.cache_write(op_out, "local")  # accumulate in a register, store the output once
    for st in s.stages:
        op = st.op
        if isinstance(op, ComputeOp) and not op.reduce_axis and st.attach == "root" and st not in outputs:
            st.compute_inline()
    inner = [st for st in s.stages if isinstance(st.op, ComputeOp) and st.attach == "root" and st not in outputs]
    readers = {st: _outputs_reading(s, st) for st in inner}
    for st in inner:
        st.set_scope("local")
    if any(len(r) > 1 for r in readers.values()):
        return  # a value several outputs read (BatchNorm's training statistics): one work-item does it all
    threads = knobs.current().choice("threads", (32, 64, 128, 256), THREADS)  # work-group size
    thread_axis = {st: bind_flat(st, threads) for st in outputs}
    for st in reversed(inner):  # consumers first: an attached stage may read another one
        (out,) = readers[st]
        if thread_axis[out] is not None:  # else a 0-d output: one work-item computes everything
            st.compute_at(out, thread_axis[out])


def _divisor(n: int, choices: tuple) -> int:
    return next((c for c in choices if n % c == 0), 1)


def schedule_conv(s: te.Schedule, op_out: te.Tensor, group_out: te.Tensor, target=None) -> None:
    """2-D convolutions: each work-item computes a tile of `mt` output channels x `wt` output pixels of a row,
    its accumulators in registers, so an input value is loaded once for mt channels and a weight once for wt
    pixels (one output per work-item loads 2 values per multiply-add). The default tiles 4 x 4 where the
    shape allows on webgpu (browsers' shader JITs, SwiftShader on the CPU, gain most) and stays 1 x 1 on
    cuda and opencl, where the H100 ran fewer, bigger work-items slower at batch 1."""
    from lathe.target import Target

    conv = _find(op_out, ("conv",))
    if conv is None or len(conv.shape) != 4 or tuple(group_out.shape) != conv.shape or len(s.outputs) != 1:
        return schedule_per_output(s, op_out, group_out, target)
    _, m, _, w = conv.shape
    tile = Target.parse(target).kind == "webgpu" if target is not None else False
    cfg = knobs.current()
    depthwise = conv.attrs.get("group", 1) > 1  # channels share no inputs: tile pixels only
    mt = cfg.choice("mt", [d for d in (1, 2, 4, 8) if m % d == 0], _divisor(m, (4, 2)) if tile and not depthwise else 1)
    wt = cfg.choice("wt", [d for d in (1, 2, 4, 7, 8) if w % d == 0], _divisor(w, (4, 2)) if tile else 1)
    if mt * wt == 1:
        return schedule_per_output(s, op_out, group_out, target)
    acc = s.cache_write(conv.output(), "local") if s[conv] is s[group_out] else conv.output()
    a = s[acc]
    # per step of the reduction, the tile's inputs (wt pixels, padded) and weights (mt channels) are loaded
    # once into registers and each used mt (wt) times
    pad = _find(acc, ("conv_pad",))
    reads = a.op.input_tensors()
    w = next(t for t in reads if t.shape[0] == m and list(t.shape[2:]) == list(conv.attrs["kernel"]))
    x = pad.output() if pad is not None else next(t for t in reads if t is not w)
    wl = s.cache_read(w, "local", [acc])
    xl = s[pad] if pad is not None else s[s.cache_read(x, "local", [acc])]
    outputs = [s[op] for op in s.outputs]  # stages: cache_write gave the output stage a new op
    for st in s.stages:  # the epilogue is computed where it is stored
        if (isinstance(st.op, ComputeOp) and not st.op.reduce_axis and st.attach == "root" and st not in outputs
                and st is not xl and st is not s[wl]):
            st.compute_inline()
    o = s[group_out]
    on, om, oh, ow = o.op.axis
    mo, mi = o.split(om, mt)
    wo, wi = o.split(ow, wt)
    o.reorder(on, mo, oh, wo, mi, wi)
    fused = o.fuse(on, mo, oh, wo)
    threads = cfg.choice("threads", (32, 64, 128, 256), THREADS)
    bx, tx = o.split(fused, min(threads, fused.extent.value))
    o.bind(bx, "blockIdx.x")
    o.bind(tx, "threadIdx.x")
    o.unroll(mi)
    o.unroll(wi)
    a.set_scope("local")
    a.compute_at(o, tx)
    an, am, ah, aw = a.op.axis
    a.reorder(an, ah, *a.op.reduce_axis, am, aw)
    a.unroll(am)
    a.unroll(aw)
    for cache in (xl, s[wl]):
        cache.set_scope("local")
        cache.compute_at(a, a.op.reduce_axis[-1])
        for ax in cache.op.axis:
            cache.unroll(ax)


def schedule_injective(s: te.Schedule, out: te.Tensor, target=None) -> None:
    schedule_per_output(s, out, out, target)


# hook name (OpDef.schedule) -> schedule; see lathe/ops/cpu.py
SCHEDULES = {"conv": schedule_conv, "pool": schedule_per_output, "matmul": schedule_per_output,
             "reduce": schedule_per_output, "injective": schedule_injective}
