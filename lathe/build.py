"""The driver: `lathe.lower`, `lathe.build` (one kernel) and `lathe.compile` (a whole model)."""

from __future__ import annotations

import importlib

from lathe.errors import TargetError
from lathe.te.schedule import Schedule
from lathe.target import BUILDABLE, Target
from lathe.tir import PrimFunc, lower_schedule, run_pipeline


def lower(s: Schedule, args: list, name: str = "main") -> PrimFunc:
    """The loop IR of schedule `s` as a function of `args` (inputs and outputs), after all passes."""
    return run_pipeline(lower_schedule(s, list(args), name))


# target kind -> (module, function) that turns one lowered function into a callable Kernel
KERNEL_BUILDERS = {"llvm": ("lathe.codegen.llvm", "build_llvm"), "c": ("lathe.codegen.c", "build_c"),
                   "opencl": ("lathe.runtime.opencl", "build_opencl"), "cuda": ("lathe.runtime.cuda", "build_cuda"),
                   "opengl": ("lathe.runtime.opengl", "build_opengl"),
                   "webgpu": ("lathe.runtime.webgpu", "build_webgpu")}


def build(s: Schedule | PrimFunc, args: list | None = None, target: str | Target = "llvm", name: str = "main"):
    """Compile a schedule (or lowered function) for `target`; returns a callable `Kernel`."""
    t = Target.parse(target)
    func = s if isinstance(s, PrimFunc) else lower(s, args or [], name)
    if t.kind in KERNEL_BUILDERS:
        module, fn = KERNEL_BUILDERS[t.kind]
        return getattr(importlib.import_module(module), fn)(func, t)
    if t.kind in BUILDABLE:
        raise TargetError(f"target {t.kind!r} runs whole models only (lathe.compile); single kernels build for "
                          f"{', '.join(KERNEL_BUILDERS)}")
    raise TargetError(f"target {t.kind!r} has no code generator in this version of lathe "
                      f"(available: {', '.join(BUILDABLE)})")


def compile(model, target: str | Target = "llvm", shapes: dict | None = None, constants: dict | None = None,
            verbose: bool = False, limits=None, example_inputs: tuple | None = None,
            records: str | dict | None = None):
    """Compile a model for `target`; returns a callable GraphModule.

    `model` is an ONNX model (path, bytes or ModelProto), a PyTorch nn.Module or ExportedProgram (with
    `example_inputs`, a tuple of tensors of the shapes it will be called with), or a lathe graph.

    `shapes` fixes input shapes ({name: shape}); symbolic dimensions default to 1.
    `constants` ({name: array}) freezes graph inputs whose values are known at compile time.
    `limits` (a `lathe.Limits`) caps file size, nodes, tensor sizes and rank, checked before allocating.
    `records` (a `lathe tune` log, or workload -> knob values) applies the best tuned schedule per kernel.
    """
    from lathe.frontend.onnx import load_onnx
    from lathe.graph.compiler import compile_graph

    t = Target.parse(target)
    if t.kind not in BUILDABLE:
        raise TargetError(f"target {t.kind!r} has no code generator in this version of lathe "
                          f"(available: {', '.join(BUILDABLE)})")
    from lathe.graph.ir import Graph

    if isinstance(records, str):
        from lathe.tune import best_configs

        records = best_configs(records)
    if isinstance(model, Graph):
        graph = model
    elif type(model).__module__.startswith("torch") or _is_torch_module(model):
        from lathe.frontend.torch import load_torch

        graph = load_torch(model, example_inputs)
    else:
        graph = load_onnx(model, shapes, constants, limits)
    return compile_graph(graph, t, verbose=verbose, records=records)


def _is_torch_module(model) -> bool:
    """An nn.Module subclass defined in the user's code (its own module is not torch's)."""
    return any(c.__module__ == "torch.nn.modules.module" for c in type(model).__mro__)


def load(path: str):
    """Load a compiled model saved with `module.save(path)`."""
    from lathe.runtime.graph_module import GraphModule

    return GraphModule.load(path)
