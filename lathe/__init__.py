"""lathe: an end-to-end deep-learning compiler.

    from lathe import te
    C = te.compute(...); s = te.create_schedule(C)
    kernel = lathe.build(s, [A, B, C], target="llvm")
"""

import os

# CPU kernels run on libgomp's thread pool, whose idle threads spin 300k rounds before sleeping. When
# another process holds a core, a thread spinning at a barrier takes the time its sibling needs:
# ResNet-18 (10.4 ms idle) took ~176 ms with one core busy. 30k rounds kept the idle time (10.35 ms)
# and gave 38 ms busy (ONNX Runtime: 41 ms); 1k rounds gave 25 ms busy but cost 3% idle.
# libgomp reads this once, when it is first loaded; the user's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "30000")

from lathe import nd, te, tir  # noqa: E402
from lathe.build import build, compile, load, lower  # noqa: E402
from lathe.frontend.onnx import Limits  # noqa: E402
from lathe.errors import ArgumentError, BuildError, LatheError, ModelError, ScheduleError, TargetError  # noqa: E402
from lathe.target import Target  # noqa: E402

__version__ = "0.1.0"
__all__ = ["te", "tir", "nd", "build", "lower", "compile", "load", "Target", "Limits", "LatheError", "ModelError",
           "ScheduleError", "TargetError", "BuildError", "ArgumentError"]
