"""The operator library: one tensor-expression compute per ONNX operator, schedules per target family."""

from lathe.ops import elemwise, layout, nn, reduce, transform  # noqa: F401 - registers the operators
from lathe.ops.registry import OPS, PATTERNS, OpDef, get, register

__all__ = ["OPS", "PATTERNS", "OpDef", "get", "register"]
