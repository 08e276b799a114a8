"""Tensor expressions: describe what an operator computes, once, for every target."""

from lathe.expr import IterVar, Var, cast, const
from lathe.te.schedule import Schedule, Stage, create_schedule
from lathe.te.tensor import (
    ComputeOp, PlaceholderOp, Tensor, abs, all, any, ceil, compute, erf, exp, floor, if_then_else, log,
    max, min, placeholder, pow, reduce_axis, rsqrt, sigmoid, sqrt, sum, tanh,
)

__all__ = [
    "IterVar", "Var", "cast", "const", "Schedule", "Stage", "create_schedule", "ComputeOp", "PlaceholderOp",
    "Tensor", "abs", "all", "any", "ceil", "compute", "erf", "exp", "floor", "if_then_else", "log", "max", "min",
    "placeholder", "pow", "reduce_axis", "rsqrt", "sigmoid", "sqrt", "sum", "tanh",
]
