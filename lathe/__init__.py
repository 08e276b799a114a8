"""lathe: an end-to-end deep-learning compiler.

    from lathe import te
    C = te.compute(...); s = te.create_schedule(C)
    kernel = lathe.build(s, [A, B, C], target="llvm")
"""

import os

# CPU kernels run on libgomp's thread pool, whose idle threads spin ~300k rounds before sleeping. When
# another process holds a core, a thread spinning at a barrier takes the time its sibling needs
# (ResNet-18 ran 5-10x slower). A short spin (a PAUSE is ~100 cycles: 1000 rounds are tens of
# microseconds) keeps threads hot between the kernels of one run and yields on a busy machine.
# libgomp reads this once, when it is first loaded; the user's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from lathe import nd, te, tir  # noqa: E402
from lathe.build import build, compile, load, lower  # noqa: E402
from lathe.frontend.onnx import Limits  # noqa: E402
from lathe.errors import ArgumentError, BuildError, LatheError, ModelError, ScheduleError, TargetError  # noqa: E402
from lathe.target import Target  # noqa: E402

__version__ = "0.1.0"
__all__ = ["te", "tir", "nd", "build", "lower", "compile", "load", "Target", "Limits", "LatheError", "ModelError",
           "ScheduleError", "TargetError", "BuildError", "ArgumentError"]
