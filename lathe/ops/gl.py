"""GL schedules (opengl, webgl targets): one fragment computes one output element.

Every target family shares the hook signature `(s, op_out, group_out, target)` (see cpu.py). A
fragment shader cannot choose where it writes, so the group output's axes are fused into one flat
index and bound to "fragment": the renderer derives that index from gl_FragCoord. Pointwise
stages are inlined; every reduction (the conv, a softmax's max and sum) is computed inside the
fragment, looping over its reduction axes, into a local accumulator.
"""

from __future__ import annotations

from lathe import te
from lathe.te.tensor import ComputeOp
from lathe.tune import knobs


def schedule_fragment(s: te.Schedule, op_out: te.Tensor | None, group_out: te.Tensor, target=None) -> None:
    out_stage = s[group_out]
    for st in list(s.stages):
        if st is out_stage or not isinstance(st.op, ComputeOp) or st.attach != "root":
            continue
        if not st.op.reduce_axis:
            st.compute_inline()
    if group_out.op.reduce_axis:  # the fragment's output cannot be read back: accumulate in a local
        s.cache_write(group_out, "local")
        out_stage = s[group_out]
    if not out_stage.op.axis or any(a.extent.value == 0 for a in out_stage.op.axis):
        return  # a 0-d output is one fragment's work, an empty one none: nothing to bind
    fused = out_stage.fuse(*out_stage.op.axis) if len(out_stage.op.axis) > 1 else out_stage.op.axis[0]
    out_stage.bind(fused, "fragment")
    for st in s.stages:
        if st is not out_stage and isinstance(st.op, ComputeOp) and st.attach == "root":
            st.compute_at(out_stage, fused)
        if isinstance(st.op, ComputeOp) and st.op.reduce_axis:
            _unroll_reduction(st)


def _unroll_reduction(acc) -> None:
    """Unroll small window axes (kernel taps) and 4 steps of the outer reduction axis, so each loop
    iteration issues many independent texture fetches instead of waiting on one."""
    first, *window = acc.op.reduce_axis
    n = first.extent.value
    step = knobs.current().choice("unroll_k", [f for f in (1, 2, 4, 8) if n % f == 0 and n > f],
                                  4 if n % 4 == 0 and n > 4 else 1)
    if step > 1:
        _, inner = acc.split(first, step)
        acc.unroll(inner)
    for r in window:
        if r.extent.value <= 7:
            acc.unroll(r)


def schedule_injective(s: te.Schedule, out: te.Tensor, target=None) -> None:
    schedule_fragment(s, None, out, target)


SCHEDULES = {"conv": schedule_fragment, "pool": schedule_fragment, "matmul": schedule_fragment,
             "reduce": schedule_fragment, "injective": schedule_injective}
