"""A compiled kernel: argument checking, the call, timing, and saving as a shared library."""

from __future__ import annotations

import ctypes
import json
import shutil
import time
from dataclasses import dataclass

import numpy as np

from lathe.errors import ArgumentError
from lathe.nd import NDArray


@dataclass
class TimeResult:
    """Seconds per call over `repeat` measurements (each the mean of `number` calls)."""

    times: list

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def mean(self) -> float:
        return float(np.mean(self.times))

    @property
    def p10(self) -> float:
        return float(np.percentile(self.times, 10))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.times, 90))

    def __repr__(self) -> str:
        return (f"TimeResult(median={self.median * 1e3:.4f} ms, p10={self.p10 * 1e3:.4f} ms, "
                f"p90={self.p90 * 1e3:.4f} ms, n={len(self.times)})")


class Kernel:
    """Call with one array per parameter (inputs and outputs, in order); outputs are written in place."""

    def __init__(self, name: str, params: list, cfunc, lib_path: str | None, source: str, ir,
                 target: str, keepalive=None):
        self.name, self.params, self._cfunc = name, params, cfunc
        self.lib_path, self.source, self._ir, self.target = lib_path, source, ir, target
        self._keepalive = keepalive  # the JIT engine or CDLL that owns the code
        self._cfunc.argtypes = [ctypes.c_void_p] * len(params)
        self._cfunc.restype = None

    @property
    def ir(self) -> str:
        """The lowered loop IR as text (printed on first use: a tree print of a shared DAG can be large)."""
        if not isinstance(self._ir, str):
            self._ir = str(self._ir)
        return self._ir

    def _pointers(self, args) -> list:
        if len(args) != len(self.params):
            names = ", ".join(p["name"] for p in self.params)
            raise ArgumentError(f"kernel {self.name} takes {len(self.params)} arrays ({names}), got {len(args)}")
        ptrs = []
        for p, a in zip(self.params, args):
            arr = a._data if isinstance(a, NDArray) else a
            if not isinstance(arr, np.ndarray):
                raise ArgumentError(f"kernel {self.name}: argument {p['name']} must be a numpy or lathe.nd "
                                    f"array, got {type(a).__name__}")
            if tuple(arr.shape) != tuple(p["shape"]):
                raise ArgumentError(f"kernel {self.name}: argument {p['name']} has shape {tuple(arr.shape)}, "
                                    f"expected {tuple(p['shape'])}")
            if str(arr.dtype) != p["dtype"]:
                raise ArgumentError(f"kernel {self.name}: argument {p['name']} has dtype {arr.dtype}, "
                                    f"expected {p['dtype']}")
            if not arr.flags.c_contiguous:
                raise ArgumentError(f"kernel {self.name}: argument {p['name']} is not C-contiguous; "
                                    "pass np.ascontiguousarray(x)")
            ptrs.append(arr.ctypes.data)
        return ptrs

    def __call__(self, *args) -> None:
        self._cfunc(*self._pointers(args))

    def time(self, *args, number: int = 1, repeat: int = 10, warmup: int = 2) -> TimeResult:
        ptrs = self._pointers(args)
        f = self._cfunc
        for _ in range(warmup):
            f(*ptrs)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                f(*ptrs)
            times.append((time.perf_counter() - t0) / number)
        return TimeResult(times)

    def export_library(self, path: str) -> None:
        """Save as a shared library plus `path.json` describing the parameters; see load_module."""
        if self.lib_path is None:
            from lathe.codegen.llvm import link_shared

            self.lib_path = link_shared(self._keepalive, self.name)
        shutil.copyfile(self.lib_path, path)
        with open(path + ".json", "w") as fh:
            json.dump({"name": self.name, "params": self.params, "target": self.target}, fh, indent=1)

    def __repr__(self) -> str:
        sig = ", ".join(f"{p['name']}: {p['dtype']}{list(p['shape'])}" for p in self.params)
        return f"Kernel {self.name}({sig}) for {self.target}"


def load_module(path: str) -> Kernel:
    """Load a kernel saved with `Kernel.export_library(path)`."""
    with open(path + ".json") as fh:
        meta = json.load(fh)
    lib = ctypes.CDLL(path)
    return Kernel(meta["name"], meta["params"], getattr(lib, meta["name"]), path, "", "", meta["target"], lib)


def param_specs(func) -> list:
    return [{"name": b.name, "shape": list(b.shape), "dtype": b.dtype} for b in func.params]
