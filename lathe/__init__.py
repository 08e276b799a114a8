"""lathe: an end-to-end deep-learning compiler.

    from lathe import te
    C = te.compute(...); s = te.create_schedule(C)
    kernel = lathe.build(s, [A, B, C], target="llvm")
"""

from lathe import nd, te, tir
from lathe.build import build, compile, load, lower
from lathe.frontend.onnx import Limits
from lathe.errors import ArgumentError, BuildError, LatheError, ModelError, ScheduleError, TargetError
from lathe.target import Target

__version__ = "0.1.0"
__all__ = ["te", "tir", "nd", "build", "lower", "compile", "load", "Target", "Limits", "LatheError", "ModelError",
           "ScheduleError", "TargetError", "BuildError", "ArgumentError"]
