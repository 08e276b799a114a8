"""Tuning tasks: the distinct kernels of a model (one per workload key), each with its knob space."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from lathe.target import Target


@dataclass
class Task:
    """One kernel to tune: a fused group of a prepared graph. `weight` counts the model's kernels with
    this workload; `space` is knob name -> candidates (the heuristic default first)."""

    key: str
    graph: object
    group: object
    target: Target
    flops: int
    weight: int = 1
    space: dict = field(default_factory=dict)
    default: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "+".join(n.op for n in self.group.nodes) + str(list(self.graph.values[self.group.outputs[0]].shape))

    def size(self) -> int:
        return math.prod(len(c) for c in self.space.values())

    def all_configs(self) -> list[dict]:
        names = list(self.space)
        return [dict(zip(names, vals)) for vals in itertools.product(*(self.space[n] for n in names))]

    def lower(self, values: dict | None = None):
        from lathe.graph.compiler import lower_group
        from lathe.tune.knobs import Config

        return lower_group(self.graph, self.group, self.target, "tune_kernel", Config(values))


def tasks_from_graph(g, target: Target) -> list[Task]:
    """The tunable kernels of a graph (those whose schedule declares knobs), heaviest first."""
    from lathe.graph.compiler import prepare_graph, schedule_group, workload_key
    from lathe.tune.knobs import Config

    g, groups, _ = prepare_graph(g, target)
    tasks: dict[str, Task] = {}
    for gr in groups:
        key = workload_key(g, gr, target)
        if key in tasks:
            tasks[key].weight += 1
            continue
        cfg = Config()
        s, _ = schedule_group(g, gr, target, cfg)
        if not cfg.space or all(len(c) < 2 for c, _ in cfg.space.values()):
            continue
        flops = sum(2 * math.prod(st.op.shape) * math.prod(iv.extent.value for iv in st.op.reduce_axis)
                    for st in s.stages if getattr(st.op, "reduce_axis", None))
        tasks[key] = Task(key, g, gr, target, flops, space={n: c for n, (c, _) in cfg.space.items()},
                          default={n: d for n, (_, d) in cfg.space.items()})
    return sorted(tasks.values(), key=lambda t: -t.flops * t.weight)


def tasks_from_model(model, target: str | Target, shapes: dict | None = None) -> list[Task]:
    from lathe.frontend.onnx import load_onnx

    return tasks_from_graph(load_onnx(model, shapes), Target.parse(target))
