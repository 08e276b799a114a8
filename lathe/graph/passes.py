"""Graph passes: dead-node removal, BatchNorm folding, operator fusion, memory planning."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lathe.graph.ir import Graph, Node, Value
from lathe.ops.registry import OPS


def remove_dead(g: Graph) -> Graph:
    """Drop nodes whose outputs nothing reads, and constants no node reads."""
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(n.inputs)
    kept.reverse()
    produced = {o for n in kept for o in n.outputs}
    values = {k: v for k, v in g.values.items() if k in live or k in g.inputs or k in produced}
    return Graph(g.inputs, g.outputs, kept, values, g.opset)


def fold_batchnorm(g: Graph) -> Graph:
    """Conv -> BatchNormalization (inference) becomes one Conv with scaled weights and a bias."""
    consumers = g.consumers()
    producer = g.producer()
    drop: set = set()
    for bn in g.nodes:
        if (bn.op != "BatchNormalization" or len(bn.inputs) != 5 or len(bn.outputs) != 1
                or bn.attrs.get("training_mode", 0)):
            continue
        conv = producer.get(bn.inputs[0])
        params = [g.values[i] for i in bn.inputs[1:]]
        if (conv is None or conv.op != "Conv" or len(consumers[bn.inputs[0]]) != 1 or bn.inputs[0] in g.outputs
                or not all(p.is_const for p in params) or not g.values[conv.inputs[1]].is_const
                or (len(conv.inputs) > 2 and not g.values[conv.inputs[2]].is_const)):
            continue
        gamma, beta, mean, var = (p.data.astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        w = g.values[conv.inputs[1]].data
        b = g.values[conv.inputs[2]].data if len(conv.inputs) > 2 else np.zeros(w.shape[0])
        new_w = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = ((b - mean) * scale + beta).astype(w.dtype)
        wname, bname = f"{conv.name}.w_bn", f"{conv.name}.b_bn"
        g.values[wname] = Value(wname, new_w.shape, str(new_w.dtype), new_w)
        g.values[bname] = Value(bname, new_b.shape, str(new_b.dtype), new_b)
        conv.inputs = [conv.inputs[0], wname, bname]
        out = bn.outputs[0]
        g.values[out] = Value(out, g.values[conv.outputs[0]].shape, g.values[conv.outputs[0]].dtype)
        conv.outputs = [out]
        drop.add(id(bn))
    g = Graph(g.inputs, g.outputs, [n for n in g.nodes if id(n) not in drop], g.values, g.opset)
    return remove_dead(g)


# ---------------------------------------------------------------------------- fusion

EPILOGUE = ("elemwise", "broadcast")
ABSORBABLE = ("elemwise", "broadcast", "injective")


@dataclass
class Group:
    """Nodes compiled into one kernel. `master` is the heavy op (conv, gemm, pool, ...) if any."""

    nodes: list = field(default_factory=list)
    master: Node | None = None

    @property
    def outputs(self) -> list:
        return self.nodes[-1].outputs

    @property
    def name(self) -> str:
        head = self.master or self.nodes[0]
        return head.op + ("" if len(self.nodes) == 1 else f"+{len(self.nodes) - 1}")

    def inputs(self) -> list:
        made = {o for n in self.nodes for o in n.outputs}
        seen: list = []
        for n in self.nodes:
            for i in n.inputs:
                if i not in made and i not in seen:
                    seen.append(i)
        return seen


MAX_FUSED_NODES = 32  # a group's expression nests one level per node, and the lowering walks it recursively


def fuse(g: Graph, own_kernel: tuple = ()) -> list[Group]:
    """Greedy fusion along single-consumer edges:
    a heavy op takes its elementwise consumers (bias, activation, residual add) as an epilogue;
    elementwise/injective chains become one kernel; a chain of injective ops with a single
    consumer is absorbed into that consumer (padding or a transpose read in place), unless it holds an
    op of `own_kernel` (on GL targets a heavy op would redo ToBlocked's gather of channels per tap).
    """
    consumers = g.consumers()
    group_of: dict = {}  # value name -> the group whose last node produces it
    groups: list[Group] = []
    for n in g.nodes:
        pattern = OPS[n.op].pattern
        joined = None
        for v in n.inputs:
            gr = group_of.get(v)
            single = len({id(c) for c in consumers[v]}) == 1
            if (gr is None or not single or v in g.outputs or len(gr.outputs) != 1 or len(n.outputs) != 1
                    or len(gr.nodes) >= MAX_FUSED_NODES):
                continue
            if _can_join(pattern, gr) and not (pattern in ("complex", "reduce")
                                               and any(m.op in own_kernel for m in gr.nodes)):
                joined = gr
                break
        if joined is None:
            joined = Group()
        else:
            groups.remove(joined)  # it now runs where its last node runs
        groups.append(joined)
        joined.nodes.append(n)
        if pattern in ("complex", "reduce"):
            joined.master = n
        for o in n.outputs:
            group_of[o] = joined
    return groups


def _can_join(pattern: str, gr: Group) -> bool:
    kinds = {OPS[m.op].pattern for m in gr.nodes}
    if pattern in EPILOGUE:  # onto a heavy op, or an elementwise/injective chain
        return gr.master is not None or kinds <= set(ABSORBABLE)
    if pattern == "injective":
        return gr.master is None and kinds <= set(ABSORBABLE)
    if pattern in ("complex", "reduce"):  # read a pad/transpose in place; never recompute arithmetic per use
        return gr.master is None and kinds <= {"injective"}
    return False


# ---------------------------------------------------------------------------- memory

@dataclass
class MemoryPlan:
    slot_of: dict  # value name -> slot index
    slot_bytes: list  # size of each slot

    @property
    def peak_bytes(self) -> int:
        return sum(self.slot_bytes)


def plan_memory(g: Graph, groups: list[Group]) -> MemoryPlan:
    """Intermediate values share slots when their lifetimes (in kernel steps) do not overlap."""
    last_use: dict = {}
    for step, gr in enumerate(groups):
        for i in gr.inputs():
            last_use[i] = step
    slot_of: dict = {}
    slot_bytes: list = []
    free_after: list = []  # per slot: the step after which it is free
    kind: list = []  # per slot: None, or the stored shape of the haloed values it holds (their zero
    # borders are written once, so such a slot is shared only with values of the same layout)
    for step, gr in enumerate(groups):
        for o in gr.outputs:
            if o in g.outputs or o not in g.values:
                continue
            v = g.values[o]
            need, key = max(v.nbytes, 1), (v.stored_shape if v.halo else None)
            end = last_use.get(o, step)
            best = None
            for k, free in enumerate(free_after):
                if free < step and kind[k] == key and (best is None
                                                       or abs(slot_bytes[k] - need) < abs(slot_bytes[best] - need)):
                    best = k
            if best is None:
                slot_bytes.append(need)
                free_after.append(end)
                kind.append(key)
                best = len(slot_bytes) - 1
            else:
                slot_bytes[best] = max(slot_bytes[best], need)
                free_after[best] = end
            slot_of[o] = best
    return MemoryPlan(slot_of, slot_bytes)
