"""The `webgl` target: GLSL ES 3.00 kernels run by web/lathe.js in a browser, driven over lathe.rpc.

A compiled module is an artifact (launch plan, params blob, shaders; see glplan.py) plus a browser session.
The session is `lathe.rpc.default_session()` (headless Chromium, started on first run) unless one is given
with `mod.attach(session)`. `mod.save(dir)` writes the artifact a static page loads without Python.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from lathe.runtime.glplan import build_plan
from lathe.runtime.graph_module import GraphModule

FILES = ("graph.json", "params.bin", "kernels.json")


class InBrowser:
    """A module that runs in a browser tab: `attach(session)`, and the artifact loaded into each new tab
    once (`_send`, per kind of artifact). With no session attached, lathe.rpc's default one."""

    _session = None
    _handle: tuple | None = None  # (the session's generation, the tab's model handle)

    def attach(self, session):
        """Run in `session` (a lathe.rpc.Session) from now on; the artifact is sent on the next run."""
        self._session, self._handle = session, None
        return self

    def _loaded(self) -> tuple:
        if self._session is None:
            from lathe.rpc import default_session

            self._session = default_session()
        if self._handle is None or self._handle[0] is not self._session.generation():
            self._handle = (self._session.generation(), self._send(self._session))
        return self._session, self._handle[1]

    def _send(self, session) -> int:
        raise NotImplementedError

    def _browser_profile(self, feed: dict, repeat: int) -> list:
        """GraphModule.profile's rows, each kernel timed alone in the tab (after the ones before it)."""
        self._feed(feed)
        self._execute()
        session, model = self._loaded()
        ms = session.profile(model, repeat)
        total = sum(ms) or 1.0
        return [{"kernel": st["kernel"], "ops": "+".join(st["ops"]), "ms": t, "percent": 100 * t / total,
                 "flops": st.get("flops", 0), "gflops": st.get("flops", 0) / t / 1e6 if t > 0 else 0.0}
                for st, t in zip(self.spec["steps"], ms)]


class WebGLGraphModule(InBrowser, GraphModule):
    """A model that runs in a browser tab: inputs go over the socket, outputs come back."""

    def __init__(self, spec: dict, plan: dict, blob: bytes, programs: list[str]):
        self.spec, self.plan, self.blob, self.programs = spec, plan, blob, programs
        self.source, self._lib, self.target, self.stats = "\n".join(programs), None, spec["target"], {}
        self._input_names = [i["name"] for i in spec["inputs"]]
        self._bufs = {i["name"]: np.zeros(i["shape"], i["dtype"]) for i in spec["inputs"]}

    def _send(self, session) -> int:
        """Load the artifact into the session's tab; returns the tab's model handle."""
        return session.load(self.plan, self.blob, self.programs)

    def _execute(self) -> None:
        session, model = self._loaded()
        for name in self._input_names:
            session.set_input(model, name, self._bufs[name])
        session.run(model)

    def _output(self, name: str) -> np.ndarray:
        session, model = self._loaded()
        v = self.spec["values"][name]
        return session.read(model, name).astype(v["dtype"]).reshape(v["shape"])

    def benchmark(self, feed: dict, repeat: int = 50, warmup: int = 5) -> list:
        """Seconds per run, timed inside the browser (each run ends when a texel of the output is read)."""
        self._feed(feed)
        self._execute()
        session, model = self._loaded()
        return [t / 1e3 for t in session.time(model, repeat, warmup)["times_ms"]]

    def profile(self, feed: dict, repeat: int = 20) -> list:
        """Per-kernel times (see GraphModule.profile): each kernel drawn alone in the tab."""
        return self._browser_profile(feed, repeat)

    def save(self, path: str) -> None:
        """The artifact web/lathe.js loads: graph.json (plan), params.bin, kernels.json, manifest.json."""
        os.makedirs(path, exist_ok=True)
        for name, data in (("graph.json", json.dumps(self.plan, indent=1).encode()), ("params.bin", self.blob),
                           ("kernels.json", json.dumps(self.programs).encode())):
            with open(os.path.join(path, name), "wb") as fh:
                fh.write(data)
        digests = {}
        for f in FILES:
            with open(os.path.join(path, f), "rb") as fh:
                digests[f] = hashlib.sha256(fh.read()).hexdigest()
        with open(os.path.join(path, "manifest.json"), "w") as fh:
            json.dump({"format": "lathe-webgl-3", "sha256": digests}, fh, indent=1)


def graph_from_funcs(spec: dict, params: dict, funcs: list) -> WebGLGraphModule:
    plan, blob, programs = build_plan(spec, params, funcs, "es")
    return WebGLGraphModule(spec, plan, blob, programs)


def status() -> tuple[bool, str]:
    """(usable here without a person, why not) for `lathe targets` and the demo."""
    from lathe.rpc.server import chromium_path

    exe = chromium_path()
    try:
        import playwright  # noqa: F401
    except ImportError:
        exe = None
    if exe is None:
        return False, ("no chromium + Playwright for a headless browser (apt-get install chromium; pip install "
                       "playwright); lathe.rpc.browser() then prints a URL for your own browser")
    return True, f"WebGL2 in headless {exe} through Playwright (SwiftShader unless it finds a GPU)"
