"""GPU schedules (opencl and cuda targets) for the operator library.

The hooks have the signature of lathe/ops/cpu.py's. A GPU kernel has no global memory of its own
and no barrier across work-groups, so every kernel is one loop nest over its output: the output's
axes are fused, split into work-groups of THREADS work-items and bound to blockIdx.x/threadIdx.x;
pointwise stages are inlined and every reduction (conv, matmul, pool, softmax's max and sum) is
computed per work-item inside that thread loop, its accumulator in private memory ("local").
"""

from __future__ import annotations

from lathe import te
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


def schedule_injective(s: te.Schedule, out: te.Tensor, target=None) -> None:
    schedule_per_output(s, out, out, target)


# hook name (OpDef.schedule) -> schedule; see lathe/ops/cpu.py
SCHEDULES = {"conv": schedule_per_output, "pool": schedule_per_output, "matmul": schedule_per_output,
             "reduce": schedule_per_output, "injective": schedule_injective}
