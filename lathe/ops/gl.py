"""GL schedules (opengl, webgl targets): one fragment computes one RGBA texel, four consecutive elements.

Every target family shares the hook signature `(s, op_out, group_out, target)` (see cpu.py). A
fragment shader cannot choose where it writes, so the group output's axes are fused into one flat
texel index and bound to "fragment": the renderer derives that index from gl_FragCoord. When the
innermost axis splits into fours (channel-blocked NCHW4c tensors, see graph/layout.py), the four lanes
are one vec4: loads of whole texels, vector arithmetic, one store. Otherwise the four elements are
computed one after another. Pointwise stages are inlined; every reduction (the conv, a softmax's max
and sum) is computed inside the fragment, looping over its reduction axes, into a local accumulator.
"""

from __future__ import annotations

import math

from lathe import te
from lathe.te.tensor import ComputeOp
from lathe.tune import knobs

LANES = 4  # elements per RGBA32F texel (codegen/glsl.py)


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
    axes = list(out_stage.op.axis)
    if not axes or any(a.extent.value == 0 for a in axes):
        return  # a 0-d output is one fragment's work, an empty one none: nothing to bind
    last = axes[-1].extent.value
    vector = last % LANES == 0
    if vector:  # whole texels: the innermost four are one vector
        if last > LANES:
            axes[-1], lane = out_stage.split(axes[-1], LANES)
        else:
            lane = axes.pop()
        texel = out_stage.fuse(*axes) if len(axes) > 1 else axes[0] if axes else None
        out_stage.vectorize(lane)
        at = texel
    else:  # four elements of the flat order, one after another, each computing only its own reductions
        fused = out_stage.fuse(*axes) if len(axes) > 1 else axes[0]
        texel, lane = out_stage.split(fused, LANES)
        out_stage.unroll(lane)
        at = lane
    if texel is not None:
        out_stage.bind(texel, "fragment")
    for st in s.stages:
        if st is out_stage or not isinstance(st.op, ComputeOp) or st.attach != "root" or at is None:
            continue
        st.compute_at(out_stage, at)
        red, axes = st.op.reduce_axis, st.op.axis
        if red and vector and axes:  # the texel's four lanes innermost: vec4 accumulators over a channel
            st.reorder(*red, *axes)  # block; else unrolled (Mesa miscompiles a local indexed by a counter)
            if axes[-1].extent.value == LANES:
                st.vectorize(axes[-1])
            else:
                for a in axes:
                    st.unroll(a)
    for st in s.stages:
        if isinstance(st.op, ComputeOp) and st.op.reduce_axis and st.attach != "inline":
            _unroll_reduction(st)


def _unroll_reduction(acc) -> None:
    """Unroll small window axes (kernel taps, a channel block), and 4 steps of the outer reduction axis when
    they are fewer than 4, so each loop iteration issues several independent texture fetches instead of
    waiting on one. More is slower: ResNet-18's 3x3 convolutions (36 fetches of taps x channel block per
    step) ran 1.14x faster in SwiftShader and 1.08x on llvmpipe unrolled by 1 than by 4."""
    first, *window = acc.op.reduce_axis
    n = first.extent.value
    taps = math.prod(r.extent.value for r in window if r.extent.value <= 7)
    step = knobs.current().choice("unroll_k", [f for f in (1, 2, 4, 8) if n % f == 0 and n > f],
                                  4 if n % 4 == 0 and n > 4 and taps < 4 else 1)
    if step > 1:
        _, inner = acc.split(first, step)
        acc.unroll(inner)
    for r in window:
        if r.extent.value <= 7:
            acc.unroll(r)


def schedule_injective(s: te.Schedule, out: te.Tensor, target=None) -> None:
    schedule_fragment(s, None, out, target)


SCHEDULES = {"conv": schedule_fragment, "pool": schedule_fragment, "matmul": schedule_fragment,
             "reduce": schedule_fragment, "injective": schedule_injective, "conv_blocked": schedule_fragment,
             "pool_blocked": schedule_fragment, "conv_winograd": schedule_fragment}
