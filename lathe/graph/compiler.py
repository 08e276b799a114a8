"""Graph -> kernels: each fused group becomes one tensor-expression program, scheduled for the target."""

from __future__ import annotations

import math
import re
import time

from lathe import te
from lathe.errors import LatheError, ModelError
from lathe.graph.ir import Graph
from lathe.graph.passes import Group, fold_batchnorm, fuse, plan_memory, remove_dead
from lathe.ops.registry import OPS, call, family_schedules
from lathe.target import Target
from lathe.tir import PrimFunc, lower_schedule, run_pipeline


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name) or "v"


def group_program(g: Graph, gr: Group) -> tuple:
    """Placeholders for the group's inputs, its output tensors, and every node's output tensors."""
    tensors: dict = {}
    for name in gr.inputs():
        v = g.values[name]
        tensors[name] = te.placeholder(v.shape, v.dtype, name=_ident(name))
    for n in gr.nodes:
        try:
            outs = call(n.op, [tensors[i] for i in n.inputs], n.attrs, len(n.outputs), g.opset)
        except LatheError as err:
            raise ModelError(f"node {n.name} ({n.op}): {err}") from None
        for name, t in zip(n.outputs, outs):
            tensors[name] = t
    return [tensors[i] for i in gr.inputs()], [tensors[o] for o in gr.outputs], tensors


def workload_key(g: Graph, gr: Group, target: Target) -> str:
    """What a tuning record applies to: the group's ops and attributes, argument shapes and dtypes (as
    stored, halos included) and the target with the CPU it runs on."""
    def arg(name: str) -> str:
        v = g.values[name]
        return f"{v.dtype}{list(getattr(v, 'stored_shape', None) or v.shape)}"
    master = gr.master or gr.nodes[-1]
    attrs = ",".join(f"{k}={v!r}" for k, v in sorted(master.attrs.items()))
    where = str(target)
    if target.family == "cpu" and "mcpu" not in target.attrs:
        from lathe.codegen.llvm import host_cpu

        where += f" -mcpu={host_cpu()[0]} -threads={target.threads}"
    return (f"{'+'.join(n.op for n in gr.nodes)}({attrs}) {','.join(arg(i) for i in gr.inputs())} -> "
            f"{','.join(arg(o) for o in gr.outputs)} @ {where}")


def schedule_group(g: Graph, gr: Group, target: Target, config=None):
    """Inline the group's elementwise/injective intermediates, then apply the heavy op's schedule
    (with `config`'s knob values; see lathe/tune/knobs.py)."""
    from lathe.tune import knobs

    with knobs.using(config if config is not None else knobs.Config()):
        return _schedule_group(g, gr, target)


def _schedule_group(g: Graph, gr: Group, target: Target):
    schedules = family_schedules(target)
    ins, outs, tensors = group_program(g, gr)
    s = te.create_schedule(outs)
    last = gr.nodes[-1]
    for n in gr.nodes:
        if n is gr.master or n is last:
            continue
        for o in n.outputs:
            st = s[tensors[o]]
            if not st.op.reduce_axis:
                st.compute_inline()
    out = outs[0]
    hook = OPS[gr.master.op].schedule if gr.master is not None else None
    if hook is not None:
        schedules[hook](s, tensors[gr.master.outputs[0]], out, target)
    elif gr.master is None and len(outs) == 1:
        schedules["injective"](s, out, target)
    return s, ins + outs


def lower_group(g: Graph, gr: Group, target: Target, name: str, config=None) -> PrimFunc:
    s, args = schedule_group(g, gr, target, config)
    strides = [stored_strides(g.values[v]) for v in gr.inputs() + gr.outputs]
    f = run_pipeline(lower_schedule(s, args, name, strides))
    f.attrs["flops"] = sum(2 * math.prod(st.op.shape) * math.prod(iv.extent.value for iv in st.op.reduce_axis)
                           for st in s.stages if getattr(st.op, "reduce_axis", None))  # multiply-adds x 2
    if gr.master is not None and gr.master.op == "lathe.ConvWinogradNCHWc":  # count the convolution's own work
        x, out = g.values[gr.master.inputs[0]].shape, g.values[gr.master.outputs[0]].shape
        f.attrs["flops"] = 2 * math.prod(out) * x[1] * x[4] * 9  # (effective: Winograd does 2.25-4x fewer)
    return f


def lower_groups(g: Graph, groups: list, target: Target, records: dict | None = None) -> list[PrimFunc]:
    """One function per group; `records` (workload key -> knob values) overrides the heuristics."""
    from lathe.tune.knobs import Config

    funcs = []
    for k, gr in enumerate(groups):
        config = Config(records[key]) if records and (key := workload_key(g, gr, target)) in records else None
        funcs.append(lower_group(g, gr, target, f"k{k}_{_ident(gr.name)}", config))
    return funcs


def stored_strides(v) -> tuple | None:
    """Element strides of a value stored inside a zero halo (None: plain row-major)."""
    if not v.halo:
        return None
    out, step = [], 1
    for d in reversed(v.stored_shape):
        out.append(step)
        step *= d
    return tuple(reversed(out))


def optimize(g: Graph) -> Graph:
    return fold_batchnorm(remove_dead(g))


def prepare_graph(g: Graph, target: Target) -> tuple[Graph, list, object]:
    """Optimise, change layout, fuse and plan memory: (graph, groups, memory plan)."""
    g = optimize(g)
    gl = target.family == "gl"
    blocked = target.family in ("cpu", "gl") and target.attrs.get("layout", "nchwc") != "nchw"
    if blocked:
        from lathe.graph.layout import block_layout
        from lathe.ops.cpu import vector_lanes
        from lathe.ops.gl import LANES

        if gl:  # four channels per RGBA texel: one fragment computes a vec4 of them
            g = block_layout(g, LANES, winograd=False, pad_input=True)
            if target.kind == "opengl":
                from lathe.graph.layout import split_reductions
                from lathe.runtime.opengl import splits_reductions

                if splits_reductions(target):  # compute shaders on a GPU: invocations to fill it with
                    g = split_reductions(g)
        else:
            g = block_layout(g, vector_lanes(target), winograd=target.attrs.get("winograd", "1") != "0")
    groups = fuse(g, ("lathe.ToBlocked",) if gl else ())
    if blocked and not gl:  # halos are CPU addressing: GL kernels read whole textures
        from lathe.graph.layout import add_halos

        add_halos(g, groups)
    return g, groups, plan_memory(g, groups)


def compile_graph(g: Graph, target: Target, verbose: bool = False, records: dict | None = None):
    """Optimise, fuse, plan memory, lower and compile every group; returns a GraphModule.
    `records` (workload key -> knob values, see lathe.tune.best_configs) applies tuning results."""
    from lathe.runtime.graph_module import GraphModule

    t0 = time.perf_counter()
    g, groups, plan = prepare_graph(g, target)
    funcs = lower_groups(g, groups, target, records)
    t_lower = time.perf_counter() - t0
    steps = [{"kernel": f.name, "args": gr.inputs() + gr.outputs, "ops": [n.op for n in gr.nodes],
              "nodes": [n.name for n in gr.nodes], "flops": f.attrs["flops"]} for f, gr in zip(funcs, groups)]
    spec = {
        "target": str(target),
        "inputs": [{"name": i, "shape": list(g.values[i].shape), "dtype": g.values[i].dtype} for i in g.inputs],
        "outputs": [{"name": o, "shape": list(g.values[o].shape), "dtype": g.values[o].dtype} for o in g.outputs],
        "values": {name: {"shape": list(v.shape), "dtype": v.dtype, **({"halo": v.halo} if v.halo else {})}
                   for name, v in g.values.items()},
        "slots": plan.slot_bytes,
        "slot_of": plan.slot_of,
        "steps": steps,
    }
    params = {name: v.data for name, v in g.values.items() if v.is_const}
    mod = GraphModule.from_funcs(spec, params, funcs, target)
    mod.stats = {"lower_s": t_lower, "compile_s": time.perf_counter() - t0, "kernels": len(funcs),
                 "nodes": len(g.nodes), "planned_peak_bytes": plan.peak_bytes, "param_bytes": g.param_bytes()}
    if verbose:
        print(f"compiled {len(g.nodes)} nodes into {len(funcs)} kernels in {mod.stats['compile_s']:.1f} s; "
              f"planned intermediate memory {plan.peak_bytes / 2**20:.1f} MiB")
    return mod
