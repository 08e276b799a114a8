"""The operator library's table: ONNX op name -> tensor-expression compute + fusion pattern + schedule.

Operators follow ONNX semantics. Inputs that ONNX passes as tensors but that must be known at
compile time (Reshape's shape, Slice's starts, Clip's min, ...) are listed in `const_inputs`:
the front end moves them into keyword attributes, so every compute sees Python values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import inspect
from collections.abc import Callable

# Fusion patterns, from most to least fusible (as in TVM's op patterns):
#   elemwise   out[i] = f(in[i]) with equal shapes
#   broadcast  elemwise with NumPy broadcasting
#   injective  each output element reads a few input elements (reshape, transpose, pad, slice, ...)
#   reduce     reduces over axes (softmax, reduce_*, pooling, global pooling)
#   complex    a heavy op whose elementwise consumers fuse into its output (conv, gemm, matmul)
#   opaque     never fused
PATTERNS = ("elemwise", "broadcast", "injective", "reduce", "complex", "opaque")


@dataclass
class OpDef:
    name: str
    compute: Callable  # (inputs: list[te.Tensor], **attrs) -> te.Tensor | list[te.Tensor]
    pattern: str
    const_inputs: dict = field(default_factory=dict)  # input position -> attribute name
    schedule: str | None = None  # a key of each target family's SCHEDULES table ("conv", ...); None: generic
    num_outputs: Callable | None = None  # (attrs, num_onnx_outputs) -> int, for multi-output ops


OPS: dict[str, OpDef] = {}


def register(name: str, pattern: str, const_inputs: dict | None = None, schedule: str | None = None):
    """Decorator: `@register("Relu", "elemwise")` above `def relu(inputs, **attrs) -> te.Tensor`."""
    if pattern not in PATTERNS:
        raise ValueError(f"op {name}: unknown pattern {pattern!r}")

    def wrap(fn: Callable) -> Callable:
        OPS[name] = OpDef(name, fn, pattern, dict(const_inputs or {}), schedule)
        return fn

    return wrap


def get(name: str) -> OpDef:
    return OPS[name]


def family_schedules(target) -> dict:
    """The SCHEDULES table (hook name -> schedule) of the target's family module, lathe/ops/<family>.py."""
    import importlib

    from lathe.target import Target

    return importlib.import_module(f"lathe.ops.{Target.parse(target).family}").SCHEDULES


def call(name: str, inputs: list, attrs: dict, num_outputs: int = 1, opset: int | None = None) -> list:
    """Run an op's compute; returns its output tensors as a list.

    `num_outputs` (how many outputs the model's node lists) and `opset` (the model's ONNX opset)
    are passed only to computes that name those parameters, e.g. Split, Dropout, Softmax.
    """
    fn = OPS[name].compute
    kwargs = dict(attrs)
    params = _params(fn)
    if "num_outputs" in params:
        kwargs.setdefault("num_outputs", num_outputs)
    if "opset" in params and opset is not None:
        kwargs.setdefault("opset", opset)
    out = fn(inputs, **kwargs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [_copy(t) if t.op in {i.op for i in inputs} else t for t in outs]


def _copy(t):
    """An op that returns its input (Identity, Dropout) still needs a kernel that writes the output."""
    from lathe import te

    return te.compute(t.shape, lambda *i: t[i], name=t.name + "_copy")


def _params(fn: Callable) -> set:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()
