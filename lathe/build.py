"""`lathe.lower` and `lathe.build`: schedule -> loop IR -> compiled kernel."""

from __future__ import annotations

from lathe.errors import TargetError
from lathe.te.schedule import Schedule
from lathe.target import BUILDABLE, Target
from lathe.tir import PrimFunc, lower_schedule, run_pipeline


def lower(s: Schedule, args: list, name: str = "main") -> PrimFunc:
    """The loop IR of schedule `s` as a function of `args` (inputs and outputs), after all passes."""
    return run_pipeline(lower_schedule(s, list(args), name))


def build(s: Schedule | PrimFunc, args: list | None = None, target: str | Target = "llvm", name: str = "main"):
    """Compile a schedule (or lowered function) for `target`; returns a callable `Kernel`."""
    t = Target.parse(target)
    func = s if isinstance(s, PrimFunc) else lower(s, args or [], name)
    if t.kind == "llvm":
        from lathe.codegen.llvm import build_llvm

        return build_llvm(func, t)
    if t.kind == "c":
        from lathe.codegen.c import build_c

        return build_c(func, t)
    raise TargetError(f"target {t.kind!r} has no code generator in this version of lathe "
                      f"(available: {', '.join(BUILDABLE)})")
