"""Graph IR: nodes of ONNX-named operators over named values with static shapes.

A value is a graph input, a node output, or a constant (weights, folded results). Nodes are
kept in topological order. Attributes follow ONNX names; constant operands that an operator
needs at compile time (Reshape's shape, ...) have been moved into attributes by the front end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lathe.errors import ModelError


@dataclass
class Value:
    name: str
    shape: tuple
    dtype: str
    data: np.ndarray | None = None  # set for constants
    halo: int = 0  # blocked (N, C/b, H, W, b) values: stored inside a zero border this wide on H and W

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def stored_shape(self) -> tuple:
        if not self.halo:
            return tuple(self.shape)
        n, c, h, w, b = self.shape
        return (n, c, h + 2 * self.halo, w + 2 * self.halo, b)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.stored_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    op: str
    name: str
    inputs: list  # value names (tensor operands only)
    outputs: list
    attrs: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"{self.name} = {self.op}({', '.join(self.inputs)}) -> {', '.join(self.outputs)}"


@dataclass
class Graph:
    inputs: list  # names of runtime inputs
    outputs: list
    nodes: list
    values: dict  # name -> Value
    opset: int | None = None  # the model's ONNX opset (default domain)

    def producer(self) -> dict:
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict:
        out: dict = {name: [] for name in self.values}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def op_counts(self) -> dict:
        counts: dict = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def param_bytes(self) -> int:
        return sum(v.nbytes for v in self.values.values() if v.is_const)

    def __str__(self) -> str:
        lines = [f"graph({', '.join(f'{i}: {self.values[i].dtype}{list(self.values[i].shape)}' for i in self.inputs)})"]
        for n in self.nodes:
            outs = ", ".join(f"{o}: {self.values[o].dtype}{list(self.values[o].shape)}" for o in n.outputs)
            lines.append(f"  {outs} = {n.op}({', '.join(n.inputs)})")
        lines.append(f"  return {', '.join(self.outputs)}")
        return "\n".join(lines)


def topo_sort(nodes: list, available: set) -> list:
    """Nodes ordered so each runs after its producers (Kahn's algorithm, stable).

    A cycle or an input that nothing provides is a ModelError naming the nodes.
    """
    made_by: dict = {}
    for n in nodes:
        for o in n.outputs:
            if o in made_by or o in available:
                raise ModelError(f"value {o!r} is produced twice (node {n.name}, op {n.op})")
            made_by[o] = n
    waiting: dict = {}
    readers: dict = {}
    for n in nodes:
        deps = set()
        for i in n.inputs:
            if not i:  # an omitted optional input
                continue
            if i in made_by:
                deps.add(id(made_by[i]))
                readers.setdefault(id(made_by[i]), []).append(n)
            elif i not in available:
                raise ModelError(f"node {n.name} ({n.op}) reads {i!r}, which no node, input or initializer provides")
        waiting[id(n)] = len(deps)
    ready = [n for n in nodes if waiting[id(n)] == 0]
    order: list = []
    seen: set = set()
    while ready:
        n = ready.pop(0)
        order.append(n)
        for r in readers.get(id(n), []):
            key = (id(n), id(r))
            if key in seen:
                continue
            seen.add(key)
            waiting[id(r)] -= 1
            if waiting[id(r)] == 0:
                ready.append(r)
    if len(order) < len(nodes):
        stuck = [n.name for n in nodes if waiting[id(n)] > 0]
        raise ModelError(f"the graph has a cycle through nodes: {', '.join(stuck[:10])}")
    return order


def count_flops(g: Graph) -> int:
    """Multiply-adds counted as 2 FLOPs, for the heavy ops (Conv, ConvTranspose, Gemm, MatMul)."""
    total = 0
    for n in g.nodes:
        out = g.values[n.outputs[0]].shape
        if n.op in ("Conv", "ConvTranspose"):
            w = g.values[n.inputs[1]].shape
            per_out = int(np.prod(w[1:]))  # C/groups * kernel elements
            if n.op == "ConvTranspose":
                x = g.values[n.inputs[0]].shape
                total += 2 * int(np.prod(x)) * int(np.prod(w[1:]))
                continue
            total += 2 * int(np.prod(out)) * per_out
        elif n.op in ("Gemm", "MatMul"):
            a = g.values[n.inputs[0]].shape
            k = a[0] if n.op == "Gemm" and n.attrs.get("transA", 0) else a[-1]
            total += 2 * int(np.prod(out)) * int(k)
    return total
