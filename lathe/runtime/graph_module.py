"""The graph executor: runs a compiled model's kernels in order over planned buffers.

Every buffer is allocated once; each step's argument pointers are computed once, so a run is
a loop of foreign calls. An artifact directory holds:
  graph.json     inputs, outputs, value shapes, memory slots, steps (kernel + argument names),
                 and where each parameter lies in params.bin
  params.bin     parameters, each 64-byte aligned, raw little-endian in C order
  kernels.so     the compiled kernels (one shared library); kernels.cl (OpenCL C) for opencl, kernels.ptx for cuda,
                 kernels.wgsl for webgpu
  manifest.json  SHA-256 of each file, checked by lathe.load
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import mmap
import os
import shutil
import time

import numpy as np

from lathe.errors import ArgumentError, ModelError
from lathe.graph.ir import Value
from lathe.nd import _aligned_empty
from lathe.target import Target

ALIGN = 64
FILES = ("graph.json", "params.bin", "kernels.so")
KERNEL_FILES = ("kernels.so", "kernels.cl", "kernels.ptx", "kernels.wgsl")  # shared library, OpenCL C, PTX, WGSL


class GraphModule:
    """A compiled model. `mod(x)` or `mod.run({name: array})` returns NumPy outputs."""

    kernel_file = "kernels.so"

    def __init__(self, spec: dict, params: dict, kernels: dict, lib, source: str = ""):
        self.spec, self.source, self._lib = spec, source, lib
        self.target = spec["target"]
        self.stats: dict = {}
        try:
            self._allocate(spec, params, kernels)
        except MemoryError:
            need = sum(spec["slots"]) + sum(np.asarray(a).nbytes for a in params.values())
            raise ModelError(f"the model's buffers need about {need:,} bytes (plus inputs and outputs), "
                             "more memory than this process can allocate") from None
        self._input_names = [i["name"] for i in spec["inputs"]]

    def _allocate(self, spec: dict, params: dict, kernels: dict) -> None:
        # parameters and intermediate slots in one zeroed block on huge pages where the kernel allows
        # (ResNet-18 streams 47 MB of weights: 4 KiB pages cost TLB misses); haloed values rely on the zeros
        sizes = [np.asarray(a).nbytes for a in params.values()] + [max(n, 1) for n in spec["slots"]]
        pieces = _arena(sizes)
        bufs: dict = {}
        for (name, arr), piece in zip(params.items(), pieces):
            arr = np.asarray(arr)
            bufs[name] = piece.view(arr.dtype).reshape(arr.shape)
            bufs[name][...] = arr
        self._params = {name: bufs[name] for name in params}  # the kernels' aligned copies, held once
        arenas = pieces[len(params):]
        for name, slot in spec["slot_of"].items():
            v = spec["values"][name]
            h = v.get("halo", 0)  # (N, C/b, H, W, b) stored inside a zero border h wide
            stored = Value(name, tuple(v["shape"]), v["dtype"], halo=h)
            arr = arenas[slot][:stored.nbytes].view(v["dtype"]).reshape(stored.stored_shape)
            bufs[name] = arr[:, :, h:-h, h:-h, :] if h else arr  # kernels get the interior's address
        for io in spec["inputs"] + spec["outputs"]:
            if io["name"] not in bufs:
                bufs[io["name"]] = _aligned_empty(tuple(io["shape"]), io["dtype"])
        self._bufs = bufs
        self._steps = []
        for st in spec["steps"]:
            fn = kernels[st["kernel"]]
            self._steps.append((fn, tuple(bufs[a].ctypes.data for a in st["args"])))

    # ------------------------------------------------------------------ construction
    @staticmethod
    def from_funcs(spec: dict, params: dict, funcs: list, target: Target) -> GraphModule:
        if target.kind == "llvm":
            from lathe.codegen.llvm import cfunc_at, compile_llvm

            lib, addrs, text = compile_llvm(funcs, target, "model")
            kernels = {f.name: cfunc_at(addrs[f.name], len(f.params)) for f in funcs}
            return GraphModule(spec, params, kernels, lib, text)
        if target.kind == "c":
            from lathe.codegen.c import compile_c, render_c_module

            source = render_c_module(funcs, target.threads)
            path = compile_c(source)
            lib = ctypes.CDLL(path)
            kernels = {f.name: _typed(getattr(lib, f.name), len(f.params)) for f in funcs}
            mod = GraphModule(spec, params, kernels, lib, source)
            mod._lib_path = path
            return mod
        if target.kind in ("opencl", "cuda", "opengl", "webgl", "webgpu", "wasm"):  # runtimes with their own memory
            runtime = importlib.import_module(f"lathe.runtime.{target.kind}")
            return runtime.graph_from_funcs(spec, params, funcs)
        from lathe.errors import TargetError

        raise TargetError(f"target {target.kind!r} cannot run whole models in this version of lathe")

    # ------------------------------------------------------------------ running
    @property
    def input_names(self) -> list:
        return list(self._input_names)

    @property
    def output_names(self) -> list:
        return [o["name"] for o in self.spec["outputs"]]

    def _feed(self, feed: dict) -> None:
        if not isinstance(feed, dict):
            raise ArgumentError(f"run() takes a dict {{input name: array}}; the inputs are {self._input_names}")
        unknown = set(feed) - set(self._input_names)
        missing = [n for n in self._input_names if n not in feed]
        if unknown or missing:
            parts = [f"{sorted(unknown)} are not inputs of this model" if unknown else "",
                     f"missing inputs {missing}" if missing else "", f"the model's inputs are {self._input_names}"]
            raise ArgumentError("; ".join(p for p in parts if p))
        for spec in self.spec["inputs"]:
            arr = feed[spec["name"]]
            arr = arr.numpy() if hasattr(arr, "numpy") and not isinstance(arr, np.ndarray) else np.asarray(arr)
            if list(arr.shape) != spec["shape"]:
                raise ArgumentError(f"input {spec['name']!r} has shape {tuple(arr.shape)}, the model was compiled "
                                    f"for {tuple(spec['shape'])}")
            if str(arr.dtype) != spec["dtype"]:
                raise ArgumentError(f"input {spec['name']!r} has dtype {arr.dtype}, expected {spec['dtype']}")
            np.copyto(self._bufs[spec["name"]], arr)

    def _execute(self) -> None:
        for fn, ptrs in self._steps:
            fn(*ptrs)

    def run(self, feed: dict) -> list:
        self._feed(feed)
        self._execute()
        return [self._output(o["name"]) for o in self.spec["outputs"]]

    def _output(self, name: str) -> np.ndarray:
        src = self._params.get(name)
        src = src if src is not None else self._bufs[name]
        try:
            return np.array(src)
        except MemoryError:
            raise ModelError(f"output {name!r} ({src.nbytes:,} bytes) cannot be copied out: "
                             "more memory than this process can allocate") from None

    def __call__(self, *arrays):
        if len(arrays) != len(self._input_names):
            raise ArgumentError(f"the model takes {len(self._input_names)} inputs {self._input_names}, "
                                f"got {len(arrays)}")
        outs = self.run(dict(zip(self._input_names, arrays)))
        return outs[0] if len(outs) == 1 else outs

    def bind(self, feed: dict):
        """Set the inputs once; returns a function that runs the model on them (outputs stay in place)."""
        self._feed(feed)
        return self._execute

    def benchmark(self, feed: dict, repeat: int = 50, warmup: int = 5) -> list:
        """Seconds per run of the whole model (inputs already set, outputs not copied)."""
        self._feed(feed)
        for _ in range(warmup):
            self._execute()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            self._execute()
            times.append(time.perf_counter() - t0)
        return times

    def profile(self, feed: dict, repeat: int = 20) -> list:
        """Per-kernel times measured inside whole runs (each kernel finds its inputs where the previous
        kernel left them, as in real use): [{kernel, ops, ms, percent, gflops}] in execution order."""
        self._feed(feed)
        self._execute()
        clock = time.perf_counter
        times = np.zeros((repeat, len(self._steps)))
        for r in range(repeat):
            for k in range(len(self._steps)):
                t0 = clock()
                self._run_step(k)
                times[r, k] = clock() - t0
        ms = np.median(times, axis=0) * 1e3
        total = float(ms.sum()) or 1.0
        rows = []
        for st, t in zip(self.spec["steps"], ms):
            flops = st.get("flops", 0)
            rows.append({"kernel": st["kernel"], "ops": "+".join(st["ops"]), "ms": float(t),
                         "percent": 100 * float(t) / total, "flops": flops,
                         "gflops": flops / float(t) / 1e6 if flops and t > 0 else 0.0})
        return rows

    def _run_step(self, k: int) -> None:
        """Run kernel k alone and wait for it (device modules override: launch, then synchronize)."""
        fn, ptrs = self._steps[k]
        fn(*ptrs)

    # ------------------------------------------------------------------ artifacts
    def save(self, path: str) -> None:
        """Write the artifact directory (see the module docstring)."""
        os.makedirs(path, exist_ok=True)
        spec = dict(self.spec)
        index, offset = {}, 0
        with open(os.path.join(path, "params.bin"), "wb") as fh:
            for name, arr in self._params.items():
                pad = (-offset) % ALIGN
                fh.write(b"\0" * pad)
                offset += pad
                data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
                index[name] = {"offset": offset, "shape": list(arr.shape), "dtype": str(arr.dtype)}
                fh.write(data)
                offset += len(data)
        spec["params"] = index
        with open(os.path.join(path, "graph.json"), "w") as fh:
            json.dump(spec, fh, indent=1)
        self._write_library(os.path.join(path, self.kernel_file))
        manifest = {f: _sha256(os.path.join(path, f)) for f in (*FILES[:2], self.kernel_file)}
        with open(os.path.join(path, "manifest.json"), "w") as fh:
            json.dump({"format": "lathe-artifact-1", "sha256": manifest}, fh, indent=1)

    def _write_library(self, dest: str) -> None:
        if getattr(self, "_lib_path", None):
            shutil.copyfile(self._lib_path, dest)
            return
        from lathe.codegen.llvm import link_shared

        self._lib_path = link_shared(self._lib, "model")
        shutil.copyfile(self._lib_path, dest)

    @staticmethod
    def load(path: str) -> GraphModule:
        """Load an artifact written by save(); refuses files whose SHA-256 does not match the manifest."""
        try:
            with open(os.path.join(path, "manifest.json")) as fh:
                meta = json.load(fh)
            if meta["format"] != "lathe-artifact-1":
                raise ValueError(f"unknown format {meta['format']!r}, this lathe reads 'lathe-artifact-1'")
            manifest = meta["sha256"]
            kernel_file = next((f for f in KERNEL_FILES if f in manifest), "kernels.so")
            files = (*FILES[:2], kernel_file)
            if set(manifest) != set(files):
                raise ValueError(f"lists {sorted(manifest)}, expected {sorted(files)}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ModelError(f"{path!r} is not a lathe artifact (manifest.json: {err})") from None
        for f in files:
            got = _sha256(os.path.join(path, f))
            if got != manifest.get(f):
                raise ModelError(f"artifact {path!r}: {f} does not match its SHA-256 in manifest.json "
                                 "(modified or corrupted); refusing to load it")
        with open(os.path.join(path, "graph.json")) as fh:
            spec = json.load(fh)
        raw = np.fromfile(os.path.join(path, "params.bin"), dtype=np.uint8)
        params = {}
        for name, p in spec.pop("params").items():
            dt = np.dtype(p["dtype"]).newbyteorder("<")
            n = int(np.prod(p["shape"], dtype=np.int64)) * dt.itemsize
            params[name] = raw[p["offset"]:p["offset"] + n].view(dt).reshape(p["shape"]).astype(p["dtype"])
        if kernel_file == "kernels.cl":
            from lathe.runtime.opencl import CLGraphModule

            with open(os.path.join(path, kernel_file)) as fh:
                return CLGraphModule(spec, params, fh.read())
        if kernel_file == "kernels.wgsl":
            from lathe.runtime.webgpu import WGPUGraphModule, split_sources

            with open(os.path.join(path, kernel_file)) as fh:
                return WGPUGraphModule(spec, params, split_sources(fh.read()))
        if kernel_file == "kernels.ptx":
            from lathe.runtime.cuda import CUDAGraphModule

            return CUDAGraphModule(spec, params, ptx_path=os.path.abspath(os.path.join(path, kernel_file)))
        lib_path = os.path.join(path, "kernels.so")
        lib = ctypes.CDLL(os.path.abspath(lib_path))
        kernels = {}
        for st in spec["steps"]:
            kernels[st["kernel"]] = _typed(getattr(lib, st["kernel"]), len(st["args"]))
        mod = GraphModule(spec, params, kernels, lib)
        mod._lib_path = lib_path
        return mod


def _typed(fn, nargs: int):
    fn.argtypes = [ctypes.c_void_p] * nargs
    fn.restype = None
    return fn


def _arena(sizes: list) -> list:
    """Zeroed, 64-byte aligned uint8 arrays of the given sizes, carved from one anonymous mapping that
    asks for transparent huge pages."""
    offsets, total = [], 0
    for n in sizes:
        offsets.append(total)
        total += -(-n // ALIGN) * ALIGN
    try:
        block = mmap.mmap(-1, max(total, ALIGN))
    except OSError as err:  # ENOMEM, or the address-space limit
        raise MemoryError(str(err)) from None
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            block.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # no THP on this kernel: plain pages
            pass
    whole = np.frombuffer(block, dtype=np.uint8)
    return [whole[o:o + n] for o, n in zip(offsets, sizes)]


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None
