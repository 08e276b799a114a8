"""Targets are strings a user types: `llvm`, `llvm -mcpu=znver5 -threads=2`, `c`, `cuda`, ..."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lathe.errors import TargetError

KINDS = ("llvm", "c", "cuda", "opencl", "opengl", "webgl", "webgpu", "wasm")
# kinds whose code generator exists in this version
BUILDABLE = ("llvm", "c", "opencl", "cuda", "opengl", "webgl", "webgpu", "wasm")
# which schedule module (lathe/ops/<family>.py) serves each kind
FAMILY = {"llvm": "cpu", "c": "cpu", "wasm": "cpu", "cuda": "gpu", "opencl": "gpu", "webgpu": "gpu",
          "opengl": "gl", "webgl": "gl"}


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Target:
    kind: str
    attrs: dict = field(default_factory=dict)

    @staticmethod
    def parse(text: str | Target) -> Target:
        if isinstance(text, Target):
            return text
        parts = str(text).split()
        if not parts or parts[0] not in KINDS:
            raise TargetError(f"unknown target {text!r}; targets are: {', '.join(KINDS)} "
                              "(options like `llvm -mcpu=znver5 -threads=2`)")
        attrs: dict = {}
        for p in parts[1:]:
            if not p.startswith("-") or "=" not in p:
                raise TargetError(f"target {text!r}: option {p!r} should look like -name=value")
            key, value = p.lstrip("-").split("=", 1)
            attrs[key] = value
        if "threads" in attrs:
            try:
                attrs["threads"] = int(attrs["threads"])
                assert attrs["threads"] >= 1
            except (ValueError, AssertionError):
                raise TargetError(f"target {text!r}: -threads must be a positive integer") from None
        return Target(parts[0], attrs)

    @property
    def family(self) -> str:
        return FAMILY[self.kind]

    @property
    def threads(self) -> int:
        return int(self.attrs.get("threads", 0)) or default_threads()

    def __str__(self) -> str:
        return " ".join([self.kind] + [f"-{k}={v}" for k, v in self.attrs.items()])
