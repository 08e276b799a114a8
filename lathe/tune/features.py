"""Features of a candidate for the cost model: its knob values, the task's size, and the shape of its
lowered loop IR (loops by kind, trip counts, stores and local buffers per level)."""

from __future__ import annotations

import math

import numpy as np

from lathe.tir.arith import as_const
from lathe.tir.stmt import Allocate, For, IfThenElse, Seq, Store

KINDS = ("serial", "parallel", "vectorize", "unroll", "thread")


def ir_features(func) -> list[float]:
    """Per loop kind: count and log of the largest extent; log trip counts of stores (total and
    innermost-vectorized), the deepest nest, local buffer bytes, guarded statements."""
    count = dict.fromkeys(KINDS, 0)
    biggest = dict.fromkeys(KINDS, 1)
    acc = {"stores": 0.0, "vec_stores": 0.0, "depth": 0, "local_bytes": 0, "ifs": 0, "parallel_trips": 1}

    def walk(s, trips: int, depth: int, vec: bool) -> None:
        if isinstance(s, For):
            n = as_const(s.extent) or 1
            count[s.kind] = count.get(s.kind, 0) + 1
            biggest[s.kind] = max(biggest.get(s.kind, 1), n)
            if s.kind == "parallel":
                acc["parallel_trips"] = max(acc["parallel_trips"], n)
            walk(s.body, trips * n, depth + 1, vec or s.kind == "vectorize")
        elif isinstance(s, Seq):
            for c in s.stmts:
                walk(c, trips, depth, vec)
        elif isinstance(s, IfThenElse):
            acc["ifs"] += 1
            walk(s.then, trips, depth, vec)
            if s.else_ is not None:
                walk(s.else_, trips, depth, vec)
        elif isinstance(s, Allocate):
            acc["local_bytes"] += math.prod(d if isinstance(d, int) else as_const(d) or 1 for d in s.buffer.shape) * 4
            walk(s.body, trips, depth, vec)
        elif isinstance(s, Store):
            acc["stores"] += trips
            acc["vec_stores"] += trips if vec else 0
            acc["depth"] = max(acc["depth"], depth)
        elif hasattr(s, "body"):
            walk(s.body, trips, depth, vec)

    walk(func.body, 1, 0, False)
    out = [float(count[k]) for k in KINDS] + [math.log2(biggest[k]) for k in KINDS]
    return out + [math.log2(acc["stores"] + 1), math.log2(acc["vec_stores"] + 1), float(acc["depth"]),
                  math.log2(acc["local_bytes"] + 1), float(acc["ifs"]), math.log2(acc["parallel_trips"])]


def knob_features(space: dict, values: dict, width: int = 6) -> list[float]:
    """Numeric knobs as their value, others as their index among the candidates; padded to `width`."""
    out = []
    for name in sorted(space)[:width]:
        v = values.get(name, space[name][0])
        out.append(float(v) if isinstance(v, (int, float)) else float(space[name].index(v)))
    return out + [0.0] * (width - len(out))


def task_features(task) -> list[float]:
    shape = list(task.graph.values[task.group.outputs[0]].shape)[:5]
    return [math.log2(task.flops + 1)] + [float(d) for d in shape] + [0.0] * (5 - len(shape))


def features(task, values: dict, func) -> np.ndarray:
    return np.array(task_features(task) + knob_features(task.space, values) + ir_features(func), dtype=np.float64)
