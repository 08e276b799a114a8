"""The RPC server (one browser tab at a time) and the browser launcher; see lathe/rpc/__init__.py."""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import itertools
import json
import os
import queue
import secrets
import shutil
import sys
import tempfile
import threading
from urllib.parse import parse_qs, urlsplit

import numpy as np

from lathe.errors import LatheError, TargetError

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "web")
PAGES = {"/": "rpc.html", "/rpc.html": "rpc.html", "/rpc.js": "rpc.js", "/lathe.js": "lathe.js",
         "/webgpu.js": "webgpu.js", "/wasm.js": "wasm.js"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
MAX_MESSAGE = 64 << 20  # bytes per frame from the browser: outputs and errors, never weights
CHROMIUM_ARGS = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--enable-unsafe-webgpu", "--no-sandbox",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic"]


class RPCError(LatheError):
    """The browser side failed, went away, or did not answer in time."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Session:
    """An RPC server plus the browser tab connected to it. Requests are synchronous, one at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
                 max_message: int = MAX_MESSAGE, timeout: float = 600.0):
        from websockets.sync.server import serve

        if not _is_loopback(host) and not allow_remote:
            raise TargetError(f"lathe.rpc: refusing to bind {host!r}, beyond loopback; pass allow_remote=True "
                              "to let other machines reach the server (they still need the token)")
        self.token, self.timeout, self.max_message = secrets.token_urlsafe(24), timeout, max_message
        self._lock, self._conn, self._inbox = threading.Lock(), None, None
        self._connected, self._gen, self._ids = threading.Event(), None, itertools.count(1)
        self._server = serve(self._handle, host, port, process_request=self._http, max_size=max_message)
        self.host, self.port = host, self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="lathe-rpc")
        self._thread.start()
        self._browser = None

    @property
    def url(self) -> str:
        """The page a browser opens to run lathe (the token is in it: treat it as a password)."""
        return f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.port}/?token={self.token}"

    # ------------------------------------------------------------------ server side
    def _http(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        parts = urlsplit(request.path)
        if parts.path == "/ws":
            given = parse_qs(parts.query).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return connection.respond(403, "lathe.rpc: wrong or missing token\n")
            return None  # go on with the websocket handshake
        name = PAGES.get(parts.path)
        if name is None:
            return connection.respond(404, "not found\n")
        with open(os.path.join(WEB_DIR, name), "rb") as fh:
            body = fh.read()
        headers = Headers([("Content-Type", TYPES[os.path.splitext(name)[1]]), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store")])
        return Response(200, "OK", headers, body)

    def _handle(self, conn) -> None:
        inbox: queue.Queue = queue.Queue()
        with self._lock:
            old = self._conn
            self._conn, self._inbox, self._gen = conn, inbox, object()  # the newest tab wins
            self._connected.set()
        if old is not None:
            old.close()
        try:
            for message in conn:
                inbox.put(message)
        except Exception:  # noqa: BLE001 - a broken or oversized frame ends this tab's connection only
            pass
        finally:
            inbox.put(None)  # wakes a request waiting on this tab
            with self._lock:
                if self._conn is conn:
                    self._conn = None
                    self._connected.clear()

    # ------------------------------------------------------------------ requests
    def wait(self, timeout: float = 60.0) -> None:
        """Block until a browser tab is connected."""
        if not self._connected.wait(timeout):
            raise RPCError(f"lathe.rpc: no browser connected within {timeout:.0f} s; open {self.url}")

    def generation(self) -> object:
        """Changes whenever a new tab connects (models must be loaded again)."""
        self.wait(self.timeout)
        return self._gen

    def request(self, op: str, payload: bytes | None = None, **fields) -> tuple[dict, bytes | None]:
        self.wait(self.timeout)
        with self._lock:
            conn, inbox = self._conn, self._inbox
        if conn is None:
            raise RPCError(f"lathe.rpc: the browser disconnected before {op}")
        msg = {"id": next(self._ids), "op": op, "binary": payload is not None, **fields}
        try:
            conn.send(json.dumps(msg))
            if payload is not None:
                conn.send(payload)
        except Exception as e:  # noqa: BLE001 - the websockets library raises several closed-connection types
            raise RPCError(f"lathe.rpc: sending {op} failed: the browser went away ({e})") from None
        reply = self._next(inbox, op)
        if not isinstance(reply, str):
            raise RPCError(f"lathe.rpc: {op}: expected a JSON reply, got a binary frame")
        try:
            answer = json.loads(reply)
            assert isinstance(answer, dict) and answer.get("id") == msg["id"]
        except (ValueError, AssertionError):
            raise RPCError(f"lathe.rpc: {op}: a malformed reply from the browser: {reply[:200]!r}") from None
        data = None
        if answer.get("binary"):
            data = self._next(inbox, op)
            if not isinstance(data, bytes):
                raise RPCError(f"lathe.rpc: {op}: expected a binary frame after the reply")
        if not answer.get("ok"):
            raise RPCError(f"lathe.rpc: {op} failed in the browser: {answer.get('error')}")
        return answer, data

    def _next(self, inbox: queue.Queue, op: str):
        try:
            item = inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise RPCError(f"lathe.rpc: {op}: no answer from the browser within {self.timeout:.0f} s") from None
        if item is None:
            raise RPCError(f"lathe.rpc: the browser disconnected during {op}")
        return item

    def info(self) -> dict:
        return self.request("info")[0]

    def load(self, plan: dict, blob: bytes, programs: list[str]) -> int:
        """A webgl artifact (plan, params blob, GLSL programs) -> the tab's model handle."""
        return self.request("load", blob, plan=plan, programs=programs)[0]["model"]

    def load_webgpu(self, plan: dict, blob: bytes, kernels: str) -> int:
        """A webgpu artifact (graph.json, params.bin, kernels.wgsl) -> the tab's model handle."""
        return self.request("load", blob, kind="webgpu", plan=plan, kernels=kernels)[0]["model"]

    def load_wasm(self, plan: dict, blob: bytes, wasm: bytes) -> int:
        """A wasm artifact (graph.json; params.bin and kernels.wasm in one frame) -> the tab's model handle."""
        return self.request("load", blob + wasm, kind="wasm", plan=plan, params_bytes=len(blob))[0]["model"]

    def set_bytes(self, model: int, name: str, data: bytes) -> None:
        """An input's raw little-endian bytes (the wasm runtime keeps every dtype as it is)."""
        self.request("set", data, model=model, name=name, raw=True)

    def read_bytes(self, model: int, name: str) -> bytes:
        return self.request("read", model=model, name=name)[1]

    def set_input(self, model: int, name: str, arr: np.ndarray, as_int32: bool = False) -> None:
        """Send an input as float32, or as int32 (how webgpu stores integer and bool tensors)."""
        data = np.ascontiguousarray(arr, dtype="<i4" if as_int32 else "<f4").tobytes()
        self.request("set", data, model=model, name=name, int=as_int32)

    def run(self, model: int) -> None:
        self.request("run", model=model)

    def read(self, model: int, name: str, as_int32: bool = False) -> np.ndarray:
        """A value's elements: little-endian float32 (or int32) and nothing else is made of the bytes."""
        return np.frombuffer(self.request("read", model=model, name=name)[1], dtype="<i4" if as_int32 else "<f4").copy()

    def time(self, model: int, repeat: int = 50, warmup: int = 5) -> dict:
        """{median_ms, mean_ms, times_ms} of `repeat` runs, timed with performance.now() in the page."""
        answer = self.request("time", model=model, repeat=repeat, warmup=warmup)[0]
        return {k: answer[k] for k in ("median_ms", "mean_ms", "times_ms")}

    def profile(self, model: int, repeat: int = 5) -> list[float]:
        """Milliseconds per step of a webgpu model, each kernel submitted alone and waited for (median)."""
        return [float(t) for t in self.request("profile", model=model, repeat=repeat)[0]["ms"]]

    def close(self) -> None:
        if self._browser is not None:
            self._browser()
            self._browser = None
        self._server.shutdown()
        self._thread.join(5)


def chromium_path() -> str | None:
    return next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and os.path.exists(p)), None)


def browser(headless: bool = True, session: Session | None = None, launch: bool = True) -> Session:
    """A session with a browser tab connected: headless Debian Chromium through Playwright when both are
    installed (and `launch`), otherwise the URL is printed for the user's own browser and this waits."""
    session = session or Session()
    exe = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if not (launch and exe and sync_playwright):
        print(f"lathe.rpc: open {session.url} in a browser with WebGL2 (WebGPU for webgpu models)", file=sys.stderr)
        session.wait(session.timeout)
        return session
    pw = sync_playwright().start()
    profile = tempfile.mkdtemp(prefix="lathe-chromium-")
    ctx = pw.chromium.launch_persistent_context(user_data_dir=profile, executable_path=exe, headless=headless,
                                                args=CHROMIUM_ARGS)
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.goto(session.url)

    def stop() -> None:
        ctx.close()
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)

    session._browser, session.page = stop, page
    session.wait(60)
    return session


_default: Session | None = None


def default_session() -> Session:
    """The session webgl modules use unless attached to another: headless Chromium, started once."""
    global _default
    if _default is None:
        _default = browser()
        atexit.register(_default.close)
    return _default
