"""The `wasm` target: a model's kernels as one WebAssembly module, run by web/wasm.js in a browser.

The plan is plain data: byte offsets (from the first 64-byte boundary at or above the module's
`__heap_base`) of every parameter, memory-plan slot, input and output, and per step the kernel and
its argument addresses. Parameters come first, so the params blob is the image of that region; a
value with a zero halo points at its interior, and fresh WebAssembly memory is zero, so the borders
are zero as graph_module.py's arena makes them. Like `webgl`, a module runs in a browser session
(`lathe.rpc`, headless Chromium by default) and `save()` writes what a static page loads.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from lathe.codegen.wasm import compile_wasm, render_wasm_module
from lathe.graph.ir import Value
from lathe.runtime.webgl import WebGLGraphModule

ALIGN = 64
FILES = ("graph.json", "params.bin", "kernels.wasm")


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def build_plan(spec: dict, params: dict) -> tuple[dict, bytes]:
    """(plan, params blob) for the graph compiler's memory-planned `spec`."""
    blob, where = bytearray(), {}
    for name, arr in params.items():
        blob += b"\0" * (_aligned(len(blob)) - len(blob))
        where[name] = len(blob)
        blob += np.ascontiguousarray(arr).astype(np.asarray(arr).dtype.newbyteorder("<")).tobytes()
    end = _aligned(len(blob))
    slot_at = []
    for nbytes in spec["slots"]:
        slot_at.append(end)
        end += _aligned(max(int(nbytes), 1))
    for name, slot in spec["slot_of"].items():
        v = spec["values"][name]
        h = v.get("halo", 0)
        stored = Value(name, tuple(v["shape"]), v["dtype"], halo=h)
        interior = 0
        if h:  # the kernels get the address of element (0, 0, h, h, 0) of the stored (N, C, H+2h, W+2h, b)
            _, _, _, ws, b = stored.stored_shape
            interior = (h * ws + h) * b * np.dtype(v["dtype"]).itemsize
        where[name] = slot_at[slot] + interior
    for io in spec["inputs"] + spec["outputs"]:
        if io["name"] not in where:
            where[io["name"]] = end
            end += _aligned(int(np.prod(io["shape"], dtype=np.int64)) * np.dtype(io["dtype"]).itemsize)
    io = [{**x, "offset": where[x["name"]], "nbytes": int(np.prod(x["shape"], dtype=np.int64))
           * np.dtype(x["dtype"]).itemsize} for x in spec["inputs"] + spec["outputs"]]
    plan = {"format": "lathe-wasm-1", "bytes": end, "inputs": io[:len(spec["inputs"])],
            "outputs": io[len(spec["inputs"]):],
            "steps": [{"kernel": st["kernel"], "args": [where[a] for a in st["args"]]} for st in spec["steps"]]}
    return plan, bytes(blob)


class WasmGraphModule(WebGLGraphModule):
    """A model whose kernels run as WebAssembly in a browser tab; inputs and outputs go over the socket."""

    kind = "wasm"

    def __init__(self, spec: dict, plan: dict, blob: bytes, wasm: bytes, source: str):
        super().__init__(spec, plan, blob, [])
        self.programs, self.source = wasm, source

    def _send(self, session) -> int:
        return session.load_wasm(self.plan, self.blob, self.programs)

    def _execute(self) -> None:
        session, model = self._loaded()
        for io in self.plan["inputs"]:
            session.set_bytes(model, io["name"], np.ascontiguousarray(self._bufs[io["name"]]).astype(
                np.dtype(io["dtype"]).newbyteorder("<")).tobytes())
        session.run(model)

    def _output(self, name: str) -> np.ndarray:
        session, model = self._loaded()
        v = self.spec["values"][name]
        data = session.read_bytes(model, name)
        return np.frombuffer(data, dtype=np.dtype(v["dtype"]).newbyteorder("<")).astype(v["dtype"]).reshape(v["shape"])

    def save(self, path: str) -> None:
        """graph.json (plan), params.bin, kernels.wasm and manifest.json: what web/wasm.js loads."""
        os.makedirs(path, exist_ok=True)
        for name, data in (("graph.json", json.dumps(self.plan, indent=1).encode()), ("params.bin", self.blob),
                           ("kernels.wasm", self.programs)):
            with open(os.path.join(path, name), "wb") as fh:
                fh.write(data)
        digests = {f: hashlib.sha256(open(os.path.join(path, f), "rb").read()).hexdigest() for f in FILES}
        with open(os.path.join(path, "manifest.json"), "w") as fh:
            json.dump({"format": "lathe-wasm-1", "sha256": digests}, fh, indent=1)


def graph_from_funcs(spec: dict, params: dict, funcs: list) -> WasmGraphModule:
    source = render_wasm_module(funcs)
    plan, blob = build_plan(spec, params)
    return WasmGraphModule(spec, plan, blob, compile_wasm(source), source)


def status() -> tuple[bool, str]:
    """(usable here without a person, why not) for `lathe targets` and the demo."""
    from lathe.codegen.wasm import clang_path
    from lathe.runtime.webgl import status as browser_status

    clang = clang_path()
    if clang is None:
        return False, "no clang/lld to build WebAssembly (apt-get install clang lld)"
    ok, why = browser_status()
    return ok, f"WebAssembly SIMD128 built by {clang}, run in headless Chromium through Playwright" if ok else why


def kernels_module(funcs: list) -> WasmGraphModule:
    """Several kernels side by side as one model: argument k of kernel f is the input "f:k" and, when the kernel
    stores to it, an output too; a run calls each kernel once. Loads many single kernels into a browser at once."""
    from lathe.runtime.module import param_specs
    from lathe.tir.stmt import Store, walk

    values, inputs, outputs, steps = {}, [], [], []
    for f in funcs:
        names = [f"{f.name}:{k}" for k in range(len(f.params))]
        stored = set()
        walk(f.body, lambda s: stored.add(id(s.buffer)) if isinstance(s, Store) else None)
        for name, p, buf in zip(names, param_specs(f), f.params):
            values[name] = {"shape": p["shape"], "dtype": p["dtype"]}
            inputs.append({"name": name, **values[name]})
            if id(buf) in stored:
                outputs.append(inputs[-1])
        steps.append({"kernel": f.name, "args": names, "ops": [f.name]})
    spec = {"target": "wasm", "inputs": inputs, "outputs": outputs, "values": values, "slots": [], "slot_of": {},
            "steps": steps}
    return graph_from_funcs(spec, {}, funcs)
