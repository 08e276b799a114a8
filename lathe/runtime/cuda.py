"""CUDA runtime through CuPy: kernels compiled by NVRTC (cupy.RawModule), tensors in cupy arrays.

Mirrors lathe/runtime/opencl.py: single kernels take NumPy arrays (copied in, written ones copied
back); whole models keep every tensor on the GPU, parameters uploaded once, kernels launched
back to back on one stream, only inputs and outputs copied. Artifacts store the PTX.
"""

from __future__ import annotations

import os
from dataclasses import replace

from functools import lru_cache

import numpy as np

from lathe.errors import BuildError, TargetError
from lathe.runtime.graph_module import GraphModule
from lathe.runtime.module import Kernel, param_specs
from lathe.runtime.opencl import _written
from lathe.tir.stmt import PrimFunc

STATIC_SHARED_BYTES = 48 * 1024  # the most static __shared__ memory one block may declare


@lru_cache(maxsize=1)
def cupy():
    """The cupy module, once a GPU answers; TargetError saying why not otherwise."""
    try:
        import cupy as cp

        cp.cuda.runtime.getDeviceCount()
    except Exception as err:  # noqa: BLE001 - ImportError, no driver, no device: all mean "no cuda here"
        raise TargetError(f"target cuda needs CuPy and an NVIDIA GPU ({type(err).__name__}: {err})") from None
    return cp


def status() -> tuple[bool, str]:
    try:
        cp = cupy()
    except TargetError as err:
        return False, str(err)
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"].decode()
    return True, f"CuPy {cp.__version__} and NVRTC, {name}"


def check_limits(launch: dict) -> None:
    """BuildError naming the kernel and the limit for a block or shared memory the GPU does not allow."""
    cp = cupy()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    for name, ln in launch.items():
        size = int(np.prod(ln["local"]))
        if size > props["maxThreadsPerBlock"]:
            raise BuildError(f"kernel {name}: a block of {size} threads {tuple(ln['local'])} exceeds the GPU's "
                             f"maxThreadsPerBlock {props['maxThreadsPerBlock']}")
        if ln["shared_bytes"] > STATIC_SHARED_BYTES:
            raise BuildError(f"kernel {name}: {ln['shared_bytes']} bytes of __shared__ memory exceed the "
                             f"{STATIC_SHARED_BYTES} bytes of static shared memory a block may declare")


def load_module(source: str | None = None, ptx_path: str | None = None, launch: dict | None = None):
    """A cupy.RawModule from CUDA source (compiled by NVRTC) or from a saved PTX file."""
    cp = cupy()
    check_limits(launch or {})
    try:
        if ptx_path is not None:
            return cp.RawModule(path=ptx_path)
        mod = cp.RawModule(code=source, options=("--std=c++14",))
        mod.compile()
        return mod
    except cp.cuda.compiler.CompileException as err:
        log = "\n".join(str(err).splitlines()[:40])
        raise BuildError(f"kernels {', '.join(launch or {})}: NVRTC failed:\n{log}") from None


def _ptx(source: str) -> str:
    """PTX for this GPU's compute capability (PTX, not a cubin: the driver JIT-compiles it for newer GPUs).
    NVRTC is called directly: CuPy's compile helper returns a cubin when it can."""
    from cupy.cuda import nvrtc

    arch = f"--gpu-architecture=compute_{cupy().cuda.Device().compute_capability}"
    prog = nvrtc.createProgram(source, "kernels.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [arch, "--std=c++14"])
        except nvrtc.NVRTCError as err:
            raise BuildError(f"NVRTC failed to make PTX: {err}\n{nvrtc.getProgramLog(prog)[:4000]}") from None
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode().rstrip("\0") if isinstance(ptx, bytes) else ptx.rstrip("\0")


class CUDAKernel(Kernel):
    """A `Kernel` whose code runs on the GPU; NumPy arrays in, written arguments back in place."""

    def __init__(self, func: PrimFunc, source: str, launch: dict, target: str):
        cp = cupy()
        self._module = load_module(source, launch=launch)
        self._fn = self._module.get_function(func.name)
        self.launch = ln = launch[func.name]
        self._grid, self._block = tuple(ln["groups"]), tuple(ln["local"])
        self._written = _written(func)
        specs = param_specs(func)
        self._dev = [cp.empty(p["shape"], p["dtype"]) for p in specs]
        super().__init__(func.name, specs, lambda *_: self._run(), None, source, func, target, self._module)

    def _run(self) -> None:
        self._fn(self._grid, self._block, tuple(self._dev))
        cupy().cuda.get_current_stream().synchronize()

    def _upload(self, args) -> list:
        self._pointers(args)  # checks count, shapes, dtypes and layout
        arrays = [a._data if hasattr(a, "_data") else a for a in args]
        for dev, arr in zip(self._dev, arrays):
            dev.set(arr)
        return arrays

    def __call__(self, *args) -> None:
        arrays = self._upload(args)
        self._run()
        for k in self._written:
            self._dev[k].get(out=arrays[k])

    def time(self, *args, number: int = 1, repeat: int = 10, warmup: int = 2):
        """Seconds per kernel run on data already on the GPU (the copies are not timed)."""
        self._upload(args)
        return super().time(*args, number=number, repeat=repeat, warmup=warmup)

    def export_library(self, path: str) -> None:
        raise BuildError(f"kernel {self.name}: a CUDA kernel has no shared library; save .source instead")


def build_cuda(func: PrimFunc, target) -> CUDAKernel:
    from lathe.codegen.cuda import render_cuda

    if func.name == "main":  # lathe.build's default name; C++ forbids a __global__ main
        func = replace(func, name="main_kernel")
    source, launch = render_cuda([func])
    return CUDAKernel(func, source, launch, str(target))


class CUDAGraphModule(GraphModule):
    """A compiled model whose tensors live in GPU memory between kernels; saves its kernels as PTX."""

    kernel_file = "kernels.ptx"

    def __init__(self, spec: dict, params: dict, source: str = "", ptx_path: str | None = None):
        cp = self._cp = cupy()
        self.spec, self.source, self.target, self.stats = spec, source, spec["target"], {}
        self._ptx_path = ptx_path
        module = load_module(source if ptx_path is None else None, ptx_path, spec["launch"])
        self._params = {name: np.ascontiguousarray(a) for name, a in params.items()}
        dev = {name: cp.asarray(a) for name, a in self._params.items()}
        slots = [cp.empty(max(n, 1), "uint8") for n in spec["slots"]]
        for name, slot in spec["slot_of"].items():
            v = spec["values"][name]
            n = int(np.prod(v["shape"], dtype=np.int64))
            dev[name] = slots[slot][:n * np.dtype(v["dtype"]).itemsize].view(v["dtype"]).reshape(v["shape"])
        for io in spec["inputs"] + spec["outputs"]:
            if io["name"] not in dev:
                dev[io["name"]] = cp.empty(io["shape"], io["dtype"])
        self._bufs = {io["name"]: np.empty(io["shape"], io["dtype"]) for io in spec["inputs"]}
        self._dev = dev
        self._steps = []
        for st in spec["steps"]:
            ln = spec["launch"][st["kernel"]]
            self._steps.append((module.get_function(st["kernel"]), tuple(ln["groups"]), tuple(ln["local"]),
                                tuple(dev[a] for a in st["args"])))
        self._input_names = [i["name"] for i in spec["inputs"]]
        # the whole model replays as one CUDA graph (one launch instead of one per kernel: ~2 us each on an
        # H100, a third of ResNet-18's time); captured on the first run, LATHE_CUDA_GRAPH=0 turns it off
        self._stream, self._graph = cp.cuda.Stream(non_blocking=True), None
        self._use_graph = os.environ.get("LATHE_CUDA_GRAPH", "1") != "0"

    def _feed(self, feed: dict) -> None:
        super()._feed(feed)
        with self._stream:
            for name in self._input_names:
                self._dev[name].set(self._bufs[name])

    def _launch_all(self) -> None:
        for fn, grid, block, args in self._steps:
            fn(grid, block, args)

    def _execute(self) -> None:
        with self._stream:
            if self._use_graph and self._graph is None:
                self._stream.begin_capture()
                try:
                    self._launch_all()
                finally:
                    self._graph = self._stream.end_capture()
            if self._graph is not None:
                self._graph.launch()
            else:
                self._launch_all()
        self._stream.synchronize()

    def _run_step(self, k: int) -> None:
        fn, grid, block, args = self._steps[k]
        with self._stream:
            fn(grid, block, args)
        self._stream.synchronize()

    def _output(self, name: str) -> np.ndarray:
        if name in self._params:
            return np.array(self._params[name])
        return self._dev[name].get(stream=self._stream)

    def _write_library(self, dest: str) -> None:
        if self._ptx_path is not None:
            with open(self._ptx_path) as fh:
                ptx = fh.read()
        else:
            ptx = _ptx(self.source)
        with open(dest, "w") as fh:
            fh.write(ptx)


def graph_from_funcs(spec: dict, params: dict, funcs: list) -> CUDAGraphModule:
    from lathe.codegen.cuda import render_cuda

    source, launch = render_cuda(funcs)
    return CUDAGraphModule({**spec, "launch": launch}, params, source)
