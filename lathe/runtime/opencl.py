"""OpenCL runtime through pyopencl: one context and queue per process, kernels built from OpenCL C.

Single kernels (`lathe.build(..., target="opencl")`) take NumPy arrays: every argument is copied
to the device, the kernel runs, and the arguments it writes are copied back in place. Whole
models keep every tensor in a device buffer: parameters are uploaded once, kernels are enqueued
back to back (one in-order queue, no wait in between), only the inputs and outputs travel.
Set LATHE_OPENCL_DEVICE=<platform index>:<device index> to pick a device (default 0:0).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from lathe.errors import BuildError, TargetError
from lathe.runtime.graph_module import GraphModule
from lathe.runtime.module import Kernel, param_specs
from lathe.tir.stmt import PrimFunc, Store, walk


@lru_cache(maxsize=1)
def device():
    """(context, queue, device) of the chosen OpenCL device; TargetError if there is none."""
    try:
        import pyopencl as cl
    except ImportError as err:
        raise TargetError(f"target opencl needs the Python package pyopencl ({err}); pip install pyopencl") from None
    choice = os.environ.get("LATHE_OPENCL_DEVICE", "")
    try:
        if choice:  # "platform:device", as clinfo numbers them
            p, d = (int(x) for x in choice.split(":"))
            dev = cl.get_platforms()[p].get_devices()[d]
        else:  # the first GPU, else the first device (PoCL's CPU device on machines without one)
            devs = [dv for pl in cl.get_platforms() for dv in pl.get_devices()]
            dev = next((dv for dv in devs if dv.type & cl.device_type.GPU), None) or devs[0]
    except (cl.Error, IndexError, ValueError) as err:
        raise TargetError(f"target opencl: no OpenCL device {choice!r} ({err or 'no platform'}); on Debian "
                          "apt-get install pocl-opencl-icd ocl-icd-libopencl1") from None
    ctx = cl.Context([dev])
    return ctx, cl.CommandQueue(ctx), dev


def status() -> tuple[bool, str]:
    """(usable, why) for `lathe targets`."""
    try:
        _, _, dev = device()
    except TargetError as err:
        return False, str(err)
    return True, f"pyopencl, {dev.platform.name.strip()}: {dev.name.strip()}"


def check_limits(launch: dict, dev) -> None:
    """BuildError naming the kernel and the limit for a work-group or __local memory the device lacks."""
    for name, ln in launch.items():
        size = int(np.prod(ln["local"]))
        if size > dev.max_work_group_size:
            raise BuildError(f"kernel {name}: work-group of {size} work-items {tuple(ln['local'])} exceeds the "
                             f"device's CL_DEVICE_MAX_WORK_GROUP_SIZE {dev.max_work_group_size}")
        for d, (n, cap) in enumerate(zip(ln["local"], dev.max_work_item_sizes)):
            if n > cap:
                raise BuildError(f"kernel {name}: {n} work-items in dimension {d} exceed the device's "
                                 f"CL_DEVICE_MAX_WORK_ITEM_SIZES[{d}] {cap}")
        if ln["shared_bytes"] > dev.local_mem_size:
            raise BuildError(f"kernel {name}: {ln['shared_bytes']} bytes of __local memory exceed the device's "
                             f"CL_DEVICE_LOCAL_MEM_SIZE {dev.local_mem_size}")


def build_program(source: str, launch: dict):
    """Check the launches against the device, then compile `source`; returns the cl.Program."""
    import pyopencl as cl

    ctx, _, dev = device()
    check_limits(launch, dev)
    try:
        return cl.Program(ctx, source).build()
    except cl.RuntimeError as err:
        log = "\n".join(str(err).splitlines()[:40])
        raise BuildError(f"kernels {', '.join(launch)}: the OpenCL compiler failed:\n{log}") from None


def _sizes(ln: dict) -> tuple[tuple, tuple]:
    return tuple(g * n for g, n in zip(ln["groups"], ln["local"])), tuple(ln["local"])


def _written(func: PrimFunc) -> list[int]:
    """Positions of the parameters the kernel stores to (copied back after a call)."""
    stored: set = set()
    walk(func.body, lambda s: stored.add(id(s.buffer)) if isinstance(s, Store) else None)
    return [k for k, b in enumerate(func.params) if id(b) in stored]


class CLKernel(Kernel):
    """A `Kernel` whose code runs on the OpenCL device; NumPy arrays in, written arguments back in place."""

    def __init__(self, func: PrimFunc, source: str, launch: dict, target: str, program=None):
        import pyopencl as cl

        ctx, self._queue, _ = device()
        program = program or build_program(source, launch)
        self._kernel = getattr(program, func.name)
        self._global, self._local = _sizes(launch[func.name])
        self.launch = launch[func.name]
        self._written = _written(func)
        specs = param_specs(func)
        self._device_bufs = [cl.Buffer(ctx, cl.mem_flags.READ_WRITE, max(1, int(np.prod(p["shape"])) *
                                                                          np.dtype(p["dtype"]).itemsize))
                             for p in specs]
        self._kernel.set_args(*self._device_bufs)
        super().__init__(func.name, specs, lambda *_: self._run(), None, source, func, target, program)

    def _run(self) -> None:
        import pyopencl as cl

        cl.enqueue_nd_range_kernel(self._queue, self._kernel, self._global, self._local)
        self._queue.finish()

    def _upload(self, args) -> list:
        import pyopencl as cl

        self._pointers(args)  # checks count, shapes, dtypes and layout
        arrays = [a._data if hasattr(a, "_data") else a for a in args]
        for buf, arr in zip(self._device_bufs, arrays):
            if arr.size:
                cl.enqueue_copy(self._queue, buf, arr, is_blocking=False)
        return arrays

    def __call__(self, *args) -> None:
        import pyopencl as cl

        arrays = self._upload(args)
        self._run()
        for k in self._written:
            if arrays[k].size:
                cl.enqueue_copy(self._queue, arrays[k], self._device_bufs[k])
        self._queue.finish()

    def time(self, *args, number: int = 1, repeat: int = 10, warmup: int = 2):
        """Seconds per kernel run on data already on the device (the copies are not timed)."""
        self._upload(args)
        return super().time(*args, number=number, repeat=repeat, warmup=warmup)

    def export_library(self, path: str) -> None:
        raise BuildError(f"kernel {self.name}: an OpenCL kernel has no shared library; save .source instead")


def build_opencl_many(funcs: list[PrimFunc], target) -> list[CLKernel]:
    """Several kernels from one OpenCL program: one compiler run (PoCL spends about a second per
    program, so building many small kernels one by one is slow)."""
    from lathe.codegen.opencl import render_opencl

    source, launch = render_opencl(funcs)
    program = build_program(source, launch)
    return [CLKernel(f, source, launch, str(target), program) for f in funcs]


def build_opencl(func: PrimFunc, target) -> CLKernel:
    from dataclasses import replace

    from lathe.codegen.opencl import render_opencl

    if func.name == "main":  # OpenCL C forbids a kernel named main; lathe.build's default name
        func = replace(func, name="main_kernel")
    source, launch = render_opencl([func])
    return CLKernel(func, source, launch, str(target))


class CLGraphModule(GraphModule):
    """A compiled model whose tensors live in OpenCL buffers between kernels."""

    kernel_file = "kernels.cl"

    def __init__(self, spec: dict, params: dict, source: str):
        import pyopencl as cl

        ctx, self._queue, _ = device()
        self.spec, self.source, self.target, self.stats = spec, source, spec["target"], {}
        program = build_program(source, spec["launch"])
        flags = cl.mem_flags
        self._params = {name: np.ascontiguousarray(a) for name, a in params.items()}
        dev = {name: cl.Buffer(ctx, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=a) if a.size else
               cl.Buffer(ctx, flags.READ_ONLY, 1) for name, a in self._params.items()}
        slots = [cl.Buffer(ctx, flags.READ_WRITE, max(n, 1)) for n in spec["slots"]]
        for name, slot in spec["slot_of"].items():
            dev[name] = slots[slot]  # every value of a slot starts at its offset 0
        self._bufs = {}  # host copies of the inputs (GraphModule._feed writes them)
        for io in spec["inputs"] + spec["outputs"]:
            if io["name"] not in dev:
                nbytes = int(np.prod(io["shape"], dtype=np.int64)) * np.dtype(io["dtype"]).itemsize
                dev[io["name"]] = cl.Buffer(ctx, flags.READ_WRITE, max(nbytes, 1))
        for io in spec["inputs"]:
            self._bufs[io["name"]] = np.empty(io["shape"], io["dtype"])
        self._dev = dev
        self._steps = []
        for st in spec["steps"]:
            kernel = getattr(program, st["kernel"])  # each attribute access is a new cl.Kernel
            kernel.set_args(*[dev[a] for a in st["args"]])
            self._steps.append((kernel, *_sizes(spec["launch"][st["kernel"]])))
        self._input_names = [i["name"] for i in spec["inputs"]]

    def _feed(self, feed: dict) -> None:
        import pyopencl as cl

        super()._feed(feed)
        for name in self._input_names:
            if self._bufs[name].size:
                cl.enqueue_copy(self._queue, self._dev[name], self._bufs[name], is_blocking=False)

    def _execute(self) -> None:
        import pyopencl as cl

        for kernel, gsize, lsize in self._steps:
            cl.enqueue_nd_range_kernel(self._queue, kernel, gsize, lsize)
        self._queue.finish()

    def _output(self, name: str) -> np.ndarray:
        import pyopencl as cl

        if name in self._params:
            return np.array(self._params[name])
        v = self.spec["values"][name]
        out = np.empty(v["shape"], v["dtype"])
        if out.size:
            cl.enqueue_copy(self._queue, out, self._dev[name])
        return out

    def _run_step(self, k: int) -> None:
        import pyopencl as cl

        kernel, gsize, lsize = self._steps[k]
        cl.enqueue_nd_range_kernel(self._queue, kernel, gsize, lsize)
        self._queue.finish()

    def _write_library(self, dest: str) -> None:
        with open(dest, "w") as fh:
            fh.write(self.source)


def graph_from_funcs(spec: dict, params: dict, funcs: list) -> CLGraphModule:
    from lathe.codegen.opencl import render_opencl

    source, launch = render_opencl(funcs)
    return CLGraphModule({**spec, "launch": launch}, params, source)
