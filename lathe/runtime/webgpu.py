"""The `webgpu` device from Python: WGSL compute shaders through wgpu-native (the `wgpu` package).

On a machine without a GPU wgpu-native runs on Vulkan's lavapipe (Debian mesa-vulkan-drivers), so the
kernels a browser would run are compiled and checked here too. Single kernels take NumPy arrays
(copied in, written ones copied back); whole models keep every tensor in GPU buffers (parameters
uploaded once, the memory plan's slots one buffer each) and record all dispatches of a run in one
compute pass of one command encoder. Artifacts store the WGSL source of every kernel.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from lathe.errors import BuildError, TargetError
from lathe.runtime.graph_module import GraphModule
from lathe.runtime.module import Kernel, param_specs
from lathe.runtime.webgl import InBrowser
from lathe.tir.stmt import PrimFunc

_device = _fence = None
SEPARATOR = "// ---- kernel "  # kernels.wgsl: the modules one after another, each after this line


def device():
    """The shared wgpu device; lathe.TargetError naming what is missing when there is none."""
    global _device
    if _device is None:
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # Mesa's Vulkan loader complains without it
        try:
            import wgpu
        except ImportError as e:
            raise TargetError(f"target webgpu needs the wgpu package (pip install wgpu): {e}") from None
        try:
            adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
        except Exception as e:  # no Vulkan/Metal/D3D12 driver: wgpu raises plain RuntimeErrors
            adapter, why = None, str(e)
        else:
            why = "no adapter"
        if adapter is None:
            raise TargetError(f"target webgpu: no WebGPU adapter ({why}); on Debian install libvulkan1 "
                              "mesa-vulkan-drivers") from None
        _device = adapter.request_device_sync(required_limits={
            k: v for k, v in adapter.limits.items() if k.startswith(("max-storage", "max-compute", "max-buffer"))})
        _device.lathe_adapter = adapter.info
    return _device


def status() -> tuple[bool, str]:
    """(usable, why not) for `lathe targets`."""
    try:
        dev = device()
    except TargetError as e:
        return False, str(e)
    info = dev.lathe_adapter
    return True, f"{info['device']} ({info['backend_type']}, {info['adapter_type']})"


def check_limits(name: str, launch: dict, nbuffers: int, dev) -> None:
    """A kernel beyond the device's limits is a BuildError that names the kernel and the limit."""
    lim = dev.limits
    local = launch["local"]
    if int(np.prod(local)) > lim["max-compute-invocations-per-workgroup"]:
        raise BuildError(f"kernel {name}: {int(np.prod(local))} invocations per workgroup exceed the device's "
                         f"maxComputeInvocationsPerWorkgroup {lim['max-compute-invocations-per-workgroup']}")
    for axis, n in zip("xyz", local):
        if n > lim[f"max-compute-workgroup-size-{axis}"]:
            raise BuildError(f"kernel {name}: workgroup size {n} in {axis} exceeds the device's "
                             f"maxComputeWorkgroupSize{axis.upper()} {lim[f'max-compute-workgroup-size-{axis}']}")
    if launch["shared_bytes"] > lim["max-compute-workgroup-storage-size"]:
        raise BuildError(f"kernel {name}: {launch['shared_bytes']} bytes of workgroup memory exceed the device's "
                         f"maxComputeWorkgroupStorageSize {lim['max-compute-workgroup-storage-size']}")
    if nbuffers > lim["max-storage-buffers-per-shader-stage"]:
        raise BuildError(f"kernel {name}: {nbuffers} storage buffers exceed the device's "
                         f"maxStorageBuffersPerShaderStage {lim['max-storage-buffers-per-shader-stage']}")


class Pipeline:
    """One compiled WGSL module: its compute pipeline, launch and explicit bind group layout."""

    def __init__(self, name: str, source: str, launch: dict):
        import wgpu

        dev = device()
        check_limits(name, launch, launch["bindings"], dev)
        self.name, self.source, self.launch = name, source, launch
        try:
            module = dev.create_shader_module(code=source)
            # every binding declared, read-only or not, whether or not the shader reads it ("auto" drops unused ones)
            entries = [{"binding": k, "visibility": wgpu.ShaderStage.COMPUTE,
                        "buffer": {"type": "storage" if k in launch["written"] else "read-only-storage"}}
                       for k in range(launch["bindings"])]
            self.layout = dev.create_bind_group_layout(entries=entries)
            self.pipeline = dev.create_compute_pipeline(
                layout=dev.create_pipeline_layout(bind_group_layouts=[self.layout]),
                compute={"module": module, "entry_point": name})
        except Exception as e:  # wgpu reports WGSL and validation errors as plain exceptions
            raise BuildError(f"kernel {name}: the WGSL shader does not compile: {e}") from None

    def bind(self, buffers: list):
        """A bind group over (buffer, nbytes) pairs, in parameter order."""
        return device().create_bind_group(layout=self.layout, entries=[
            {"binding": k, "resource": {"buffer": b, "offset": 0, "size": n}} for k, (b, n) in enumerate(buffers)])

    def dispatch(self, compute_pass, group) -> None:
        compute_pass.set_pipeline(self.pipeline)
        compute_pass.set_bind_group(0, group)
        compute_pass.dispatch_workgroups(*self.launch["groups"])


def _buffer(nbytes: int, data: np.ndarray | None = None):
    import wgpu

    usage = wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC | wgpu.BufferUsage.COPY_DST
    size = max(4, -(-nbytes // 4) * 4)
    if data is not None and data.size:
        raw = np.zeros(size, np.uint8)
        raw[:data.nbytes] = data.view(np.uint8).ravel()
        return device().create_buffer_with_data(data=raw, usage=usage)
    return device().create_buffer(size=size, usage=usage)


def _run(steps: list) -> None:
    """All dispatches in one compute pass (WebGPU orders their storage accesses), submitted and waited for."""
    dev = device()
    encoder = dev.create_command_encoder()
    compute_pass = encoder.begin_compute_pass()
    for pipe, group in steps:
        pipe.dispatch(compute_pass, group)
    compute_pass.end()
    dev.queue.submit([encoder.finish()])
    global _fence
    if _fence is None:
        _fence = _buffer(4)
    dev.queue.read_buffer(_fence, 0, 4)  # a mapped read waits for the work before it (wgpu 0.32's
    # on_submitted_work_done_sync fails with a ctypes signature error)


def _nbytes(shape) -> int:
    """Bytes of a tensor in a storage buffer: every element takes 4 (f32, or i32 for the integer types)."""
    return int(np.prod(shape, dtype=np.int64)) * 4


def _stored(a: np.ndarray) -> np.ndarray:
    """The array as the shader sees it: float32 stays, every integer and bool type becomes int32."""
    return np.ascontiguousarray(a, np.float32 if a.dtype == np.float32 else np.int32)


def _read(buf, shape, dtype) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    if not n:
        return np.zeros(shape, dtype)
    raw = device().queue.read_buffer(buf, 0, n * 4)
    return np.frombuffer(raw, np.float32 if np.dtype(dtype) == np.float32 else np.int32).astype(dtype).reshape(shape)


class WGPUKernel(Kernel):
    """A single kernel on the WebGPU device: NumPy arrays in, the arrays it writes filled in place."""

    def __init__(self, func: PrimFunc, target: str):
        from lathe.codegen.wgsl import render_wgsl

        source, launch = render_wgsl(func)
        self.pipe = Pipeline(func.name, source, launch)
        self.launch = launch
        specs = param_specs(func)
        self._written = launch["written"]
        self._sizes = [_nbytes(p["shape"]) for p in specs]
        self._dev = [_buffer(n) for n in self._sizes]
        self._group = self.pipe.bind([(b, max(4, n)) for b, n in zip(self._dev, self._sizes)])
        super().__init__(func.name, specs, lambda *_: _run([(self.pipe, self._group)]), None, source, func, target)

    def _upload(self, args) -> list:
        self._pointers(args)  # checks count, shapes, dtypes and layout
        arrays = [a._data if hasattr(a, "_data") else a for a in args]
        for buf, arr in zip(self._dev, arrays):
            if arr.size:
                device().queue.write_buffer(buf, 0, _stored(arr))
        return arrays

    def __call__(self, *args) -> None:
        arrays = self._upload(args)
        _run([(self.pipe, self._group)])
        for k in self._written:
            arrays[k][...] = _read(self._dev[k], arrays[k].shape, arrays[k].dtype)

    def time(self, *args, number: int = 1, repeat: int = 10, warmup: int = 2):
        """Seconds per kernel run on data already on the device (the copies are not timed)."""
        self._upload(args)
        return super().time(*args, number=number, repeat=repeat, warmup=warmup)

    def export_library(self, path: str) -> None:
        raise BuildError(f"kernel {self.name}: a WebGPU kernel has no shared library; save .source instead")


def build_webgpu(func: PrimFunc, target) -> WGPUKernel:
    from dataclasses import replace

    if func.name == "main":  # keep lathe.build's default name clear of WGSL's reserved words
        func = replace(func, name="main_kernel")
    return WGPUKernel(func, str(target))


class WGPUGraphModule(InBrowser, GraphModule):
    """A compiled model whose tensors live in WebGPU buffers between kernels; saves its WGSL.

    It runs here through wgpu-native (device state made on the first run, so compiling needs no GPU), or,
    after `attach(session)`, in a browser tab through web/webgpu.js over lathe.rpc."""

    kernel_file = "kernels.wgsl"

    def __init__(self, spec: dict, params: dict, sources: dict):
        self.spec, self.target, self.stats = spec, spec["target"], {}
        self.source = "\n".join(f"{SEPARATOR}{name}\n{src}" for name, src in sources.items())
        self._sources = sources
        self._params = {name: np.ascontiguousarray(a) for name, a in params.items()}
        self._bufs = {io["name"]: np.empty(io["shape"], io["dtype"]) for io in spec["inputs"]}
        self._input_names = [i["name"] for i in spec["inputs"]]
        self._local: tuple | None = None  # (buffers, steps) on this machine's device

    def _device_state(self) -> tuple:
        """Buffers (parameters uploaded, one per memory-plan slot) and bound steps, made once."""
        if self._local is not None:
            return self._local
        spec, values = self.spec, self.spec["values"]
        dev = {name: _buffer(a.size * 4, _stored(a)) for name, a in self._params.items()}
        slot_bytes = [0] * len(spec["slots"])  # the plan sized slots in the tensors' own types; here each is 4 bytes
        for name, slot in spec["slot_of"].items():
            slot_bytes[slot] = max(slot_bytes[slot], _nbytes(values[name]["shape"]))
        slots = [_buffer(n) for n in slot_bytes]
        for name, slot in spec["slot_of"].items():
            dev[name] = slots[slot]  # every value of a slot starts at its offset 0
        for io in spec["inputs"] + spec["outputs"]:
            if io["name"] not in dev:
                dev[io["name"]] = _buffer(_nbytes(io["shape"]))
        pipes = {name: Pipeline(name, src, spec["launch"][name]) for name, src in self._sources.items()}
        steps = []
        for st in spec["steps"]:
            sizes = [max(4, _nbytes(values[a]["shape"])) for a in st["args"]]
            pipe = pipes[st["kernel"]]
            steps.append((pipe, pipe.bind([(dev[a], n) for a, n in zip(st["args"], sizes)])))
        self._local = (dev, steps)
        return self._local

    # ------------------------------------------------------------------ in a browser tab (attach: InBrowser)
    def _send(self, session) -> int:
        """The files save() writes, to web/webgpu.js in the session's tab."""
        with tempfile.TemporaryDirectory(prefix="lathe-webgpu-") as tmp:
            self.save(tmp)
            with open(os.path.join(tmp, "graph.json")) as fh:
                plan = json.load(fh)
            with open(os.path.join(tmp, "params.bin"), "rb") as fh:
                blob = fh.read()
        return session.load_webgpu(plan, blob, self.source)

    def benchmark(self, feed: dict, repeat: int = 50, warmup: int = 5) -> list:
        """Seconds per run; in a browser timed there (each run ends when its outputs are mapped on the CPU)."""
        if self._session is None:
            return super().benchmark(feed, repeat, warmup)
        self._feed(feed)
        self._execute()
        session, model = self._loaded()
        return [t / 1e3 for t in session.time(model, repeat, warmup)["times_ms"]]

    def profile(self, feed: dict, repeat: int = 20) -> list:
        """Per-kernel times (see GraphModule.profile); in a browser each kernel is submitted alone there."""
        if self._session is None:
            return super().profile(feed, repeat)
        return self._browser_profile(feed, repeat)

    # ------------------------------------------------------------------ running
    def _feed(self, feed: dict) -> None:
        super()._feed(feed)
        if self._session is not None:
            return
        dev = self._device_state()[0]
        for name in self._input_names:
            if self._bufs[name].size:
                device().queue.write_buffer(dev[name], 0, _stored(self._bufs[name]))

    def _execute(self) -> None:
        if self._session is None:
            return _run(self._device_state()[1])
        session, model = self._loaded()
        for name in self._input_names:
            arr = self._bufs[name]
            session.set_input(model, name, arr, as_int32=arr.dtype != np.float32)
        session.run(model)

    def _run_step(self, k: int) -> None:
        _run(self._device_state()[1][k:k + 1])

    def _output(self, name: str) -> np.ndarray:
        if name in self._params:
            return np.array(self._params[name])
        v = self.spec["values"][name]
        if self._session is None:
            return _read(self._device_state()[0][name], tuple(v["shape"]), v["dtype"])
        session, model = self._loaded()
        raw = session.read(model, name, as_int32=np.dtype(v["dtype"]) != np.float32)
        return raw.astype(v["dtype"]).reshape(v["shape"])

    def _write_library(self, dest: str) -> None:
        with open(dest, "w") as fh:
            fh.write(self.source)


def split_sources(text: str) -> dict:
    """kernels.wgsl -> {kernel name: its WGSL module}."""
    parts = text.split(SEPARATOR)[1:]
    return {p.split("\n", 1)[0]: p.split("\n", 1)[1].rstrip("\n") + "\n" for p in parts}


def graph_from_funcs(spec: dict, params: dict, funcs: list) -> WGPUGraphModule:
    from lathe.codegen.wgsl import render_wgsl

    sources, launch = {}, {}
    for f in funcs:
        sources[f.name], launch[f.name] = render_wgsl(f)
    return WGPUGraphModule({**spec, "launch": launch}, params, sources)


def kernels_module(funcs: list) -> WGPUGraphModule:
    """Several kernels side by side as one model: argument k of kernel f is the input "f:k" (written ones are
    outputs too), and a run dispatches each kernel once. Loads many single kernels into a browser at once."""
    from lathe.codegen.wgsl import render_wgsl

    sources, launch, values, inputs, outputs, steps = {}, {}, {}, [], [], []
    for f in funcs:
        sources[f.name], launch[f.name] = render_wgsl(f)
        names = [f"{f.name}:{k}" for k in range(len(f.params))]
        for name, p in zip(names, param_specs(f)):
            values[name] = {"shape": p["shape"], "dtype": p["dtype"]}
            inputs.append({"name": name, **values[name]})
        outputs += [inputs[len(inputs) - len(names) + k] for k in launch[f.name]["written"]]
        steps.append({"kernel": f.name, "args": names, "ops": [f.name]})
    spec = {"target": "webgpu", "inputs": inputs, "outputs": outputs, "values": values, "slots": [], "slot_of": {},
            "steps": steps, "launch": launch}
    return WGPUGraphModule(spec, {}, sources)
