"""Measure one candidate: build and run its kernel in a worker process with a time limit.

Workers come from a forkserver (a clean process that never ran a kernel: libgomp, OpenCL and GL
state do not survive fork), so a candidate that crashes, hangs or computes a wrong result ends as a
record with that status and the tuner goes on. The first measurement of a task is its default
config; its outputs are the reference later candidates must match.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time

import numpy as np

REPEAT = 5
_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["lathe", "lathe.codegen.llvm", "lathe.runtime.module", "numpy"])
    return _CTX


def random_args(params: list, n_out: int, halos: list[int], seed: int = 0) -> list[np.ndarray]:
    """Seeded random inputs (small integers for integer types) and zeroed outputs; a haloed blocked
    (N, C/b, H, W, b) argument is the interior view of an array with a zero border, as in whole models."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (p, h) in enumerate(zip(params, halos)):
        shape, dtype = tuple(p["shape"]), np.dtype(p["dtype"])
        stored = shape if not h else (*shape[:2], shape[2] + 2 * h, shape[3] + 2 * h, shape[4])
        full = np.zeros(stored, dtype)
        arr = full[:, :, h:-h, h:-h, :] if h else full
        if k < len(params) - n_out:
            arr[...] = rng.standard_normal(shape) if dtype.kind == "f" else rng.integers(0, 3, shape)
        out.append(arr)
    return out


def _time(kern, args: list, repeat: int) -> list[float]:
    """Seconds per call, `repeat` times, each averaged over enough calls to last about a millisecond."""
    t0 = time.perf_counter()
    kern(*args)
    number = max(1, min(100, int(1e-3 / max(time.perf_counter() - t0, 1e-7))))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            kern(*args)
        times.append((time.perf_counter() - t0) / number)
    return times


def _worker(conn, func, target: str, n_out: int, halos: list[int], fault: str | None, repeat: int,
            baseline=None) -> None:
    try:
        if fault == "crash":  # test hook (tests/test_tune.py): a worker that dies like a segfaulting kernel
            import os

            os.abort()
        if fault == "hang":
            time.sleep(3600)
        import lathe
        from lathe.runtime.module import param_specs

        args = random_args(param_specs(func), n_out, halos)
        kern = _callable(lathe.build(func, target=target), args, halos)
        kern(*args)
        outs = args[len(args) - n_out:]
        if fault == "wrong":
            outs[0] += 1
        outs = [o.copy() for o in outs]
        if baseline is None:
            conn.send(("ok", outs, _time(kern, args, repeat), ""))
            return
        # the default schedule timed alternately with the candidate: their ratio survives other load
        base = _callable(lathe.build(baseline, target=target), args, halos)
        times, base_times = [], []
        for _ in range(repeat):
            times += _time(kern, args, 1)
            base_times += _time(base, args, 1)
        conn.send(("ok", outs, (times, base_times), ""))
    except Exception as err:  # noqa: BLE001 - any failure to build or run is this candidate's result
        conn.send(("error", None, None, f"{type(err).__name__}: {err}"[:2000]))


def _callable(built, args: list, halos: list[int]):
    if not any(halos):
        return built
    ptrs = [a.ctypes.data for a in args]  # interior views are not contiguous: pass addresses as whole models do
    return lambda *_: built._cfunc(*ptrs)  # `built` (captured) keeps the JIT code alive


def run_candidate(func, target: str, n_out: int, halos: list[int], timeout: float, fault: str | None = None,
                  repeat: int = REPEAT, baseline=None) -> tuple[str, list | None, object, str]:
    """(status, outputs, seconds per repeat, error text) of one lowered kernel, in a worker process;
    with a `baseline` function the times are (candidate's, baseline's), measured alternately."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(send, func, target, n_out, halos, fault, repeat, baseline),
                       daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            return "timeout", None, None, f"no result within {timeout:.0f} s (build + run); worker killed"
        try:
            return recv.recv()
        except EOFError:
            proc.join(5)
            code = proc.exitcode
            why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            return "error", None, None, f"worker died ({why})"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        recv.close()


class LocalRunner:
    """Candidates one after another on this machine, each in a fresh worker process (the default)."""

    def run(self, jobs: list[tuple]) -> list[tuple]:
        """`jobs`: run_candidate's positional arguments per candidate; returns its results in order."""
        return [run_candidate(*job) for job in jobs]


class RayRunner:
    """Candidates measured at once on a Ray cluster (https://docs.ray.io): many machines tune one model.

    Each candidate is a Ray task that runs `run_candidate` on some node, so a crash or hang stays a
    record there too. A task reserves as many CPUs as the target's threads: a 2-core node measures one
    candidate at a time and its timings are not disturbed by another. Nodes must have the tuning
    machine's CPU (the workload key names it) and lathe installed. `address`: "auto" joins the cluster
    `ray start` made, None starts a local one on this machine."""

    def __init__(self, address: str | None = None, cpus_per_candidate: int = 1):
        try:
            import ray
        except ImportError:
            from lathe.errors import TargetError

            raise TargetError("the Ray runner needs Ray: pip install 'lathe[distributed]'") from None
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        self._ray = ray
        self._remote = ray.remote(num_cpus=cpus_per_candidate, max_retries=0)(run_candidate)

    def run(self, jobs: list[tuple]) -> list[tuple]:
        return self._ray.get([self._remote.remote(*job) for job in jobs])


class BrowserRunner:
    """Candidates measured one after another in a browser tab through lathe.rpc: targets webgpu, wasm, webgl.

    Each candidate becomes a one-kernel model (runtime.<kind>.graph_from_funcs: its non-output arguments
    are inputs) on random_args' seeded inputs, timed in the tab (each sample averages enough runs to
    last ~10 ms: see _number), alternately with the default schedule as locally.
    A shader that does not compile, an answer that never comes (`timeout` seconds per request) or a
    crashed tab is a record; then the browser is started again (when this runner's session launched
    it) and the next candidate goes on. `session`: a lathe.rpc.Session, by default headless Chromium."""

    serial = True  # one tab measures one candidate at a time: the tuner validates finalists here too

    def __init__(self, session=None):
        self.session = session
        self._base: tuple | None = None  # (baseline PrimFunc, its module, runs per sample)

    def run(self, jobs: list[tuple]) -> list[tuple]:
        return [self._guarded(*job) for job in jobs]

    def _guarded(self, func, target: str, n_out: int, halos: list[int], timeout: float, fault: str | None = None,
                 repeat: int = REPEAT, baseline=None) -> tuple[str, list | None, object, str]:
        from lathe.rpc import RPCError, default_session

        self.session = self.session or default_session()
        saved, self.session.timeout = self.session.timeout, timeout
        try:
            return self._measure(func, target, n_out, halos, fault, repeat, baseline)
        except RPCError as err:
            if "failed in the browser" not in str(err):  # the tab did not answer: it is gone or stuck
                self._restart()
            return "timeout" if "no answer" in str(err) else "error", None, None, str(err)[:2000]
        except Exception as err:  # noqa: BLE001 - a kernel that does not build here is this candidate's result
            return "error", None, None, f"{type(err).__name__}: {err}"[:2000]
        finally:
            self.session.timeout = saved

    def _restart(self) -> None:
        """After a tab crashed, hung or went away: a fresh browser, or the user's tab reconnecting."""
        import lathe.rpc

        s, old = self.session, self.session._gen
        if getattr(s, "_browser", None) is not None:
            s._browser()  # closes the browser, however stuck its tab is
            s._browser = None
            lathe.rpc.browser(session=s)
        deadline = time.time() + 60
        while s._gen is old and time.time() < deadline:  # not the old tab's connection, still closing
            time.sleep(0.05)

    def _measure(self, func, target: str, n_out: int, halos: list[int], fault: str | None, repeat: int,
                 baseline) -> tuple[str, list | None, object, str]:
        from lathe.runtime.module import param_specs

        args = random_args(param_specs(func), n_out, halos)
        mod = one_kernel_module(func, target, n_out, halos, broken=fault == "broken").attach(self.session)
        self._fault(fault)
        outs = _run_in_tab(mod, args, n_out, halos)
        if fault == "wrong":
            outs[0] += 1
        number = self._number(mod)
        if baseline is None:
            times = [self._sample(mod, number) for _ in range(repeat)]
        else:
            if self._base is None or self._base[0] is not baseline:  # a new batch: its default, loaded once
                if self._base is not None:
                    self._free(self._base[1])
                base = one_kernel_module(baseline, target, n_out, halos).attach(self.session)
                _run_in_tab(base, args, n_out, halos)
                self._base = (baseline, base, self._number(base))
            _, base, base_number = self._base
            times, base_times = [], []
            for _ in range(repeat):
                times.append(self._sample(mod, number))
                base_times.append(self._sample(base, base_number))
            times = (times, base_times)
        self._free(mod)
        return "ok", outs, times, ""

    def _free(self, mod) -> None:
        """Let the tab drop a module it holds (a module of an earlier tab is gone already)."""
        if mod._handle is not None and mod._handle[0] is self.session._gen:
            self.session.request("free", model=mod._handle[1])

    def _sample(self, mod, number: int, repeat: int = 1) -> float:
        """Seconds per run: the median of `repeat` samples of `number` runs each, timed in the tab."""
        answer = self.session.request("time", model=mod._loaded()[1], repeat=repeat, warmup=1, number=number)[0]
        return answer["median_ms"] / 1e3

    def _number(self, mod) -> int:
        """Runs per sample: doubled until a sample lasts 10 ms, so the tab's fixed cost per sample (a WebGPU
        read-back, ~2.5 ms on SwiftShader) and the timer's 0.1 ms grain matter little."""
        number = 1
        while number < 1024 and self._sample(mod, number) * number < 10e-3:
            number *= 2
        return number

    def _fault(self, fault: str | None) -> None:
        """Test hooks (tests/test_tune_browser.py): the tab crashes, or its JavaScript thread never returns."""
        page = getattr(self.session, "page", None)
        if fault == "crash" and page is not None:
            try:
                page.goto("chrome://crash", timeout=2000)  # Chromium kills the tab's renderer
            except Exception:  # noqa: BLE001 - Playwright reports the crash as a failed navigation
                pass
        if fault == "hang" and page is not None:
            page.evaluate("setTimeout(() => { for (;;); }, 0)")


def one_kernel_module(func, target: str, n_out: int, halos: list[int], broken: bool = False):
    """A browser module running one lowered kernel: arguments a0, a1, ... (the last `n_out` outputs). A
    haloed argument (wasm only) is sent whole, border included, and the kernel gets its interior address."""
    import importlib

    from lathe.errors import TargetError
    from lathe.graph.ir import Value
    from lathe.runtime.module import param_specs
    from lathe.target import Target

    kind = Target.parse(target).kind
    values, interior = {}, {}
    for k, (p, h) in enumerate(zip(param_specs(func), halos)):
        v = Value(f"a{k}", tuple(p["shape"]), p["dtype"], halo=h)
        values[v.name] = {"shape": list(v.stored_shape), "dtype": v.dtype}
        if h:
            if kind != "wasm":
                raise TargetError(f"kernel {func.name}: haloed argument {k} on {kind}: the browser runner lays "
                                  "out halos for wasm only")
            interior[k] = (h * v.stored_shape[3] + h) * v.shape[4] * np.dtype(v.dtype).itemsize
    names = list(values)
    spec = {"target": kind, "inputs": [{"name": n, **values[n]} for n in names[:len(names) - n_out]],
            "outputs": [{"name": n, **values[n]} for n in names[len(names) - n_out:]], "values": values,
            "slots": [], "slot_of": {}, "steps": [{"kernel": func.name, "args": names, "ops": [func.name]}]}
    mod = importlib.import_module(f"lathe.runtime.{kind}").graph_from_funcs(spec, {}, [func])
    for k, offset in interior.items():  # wasm plans address arguments in bytes
        mod.plan["steps"][0]["args"][k] += offset
    if broken:  # test hook: a kernel the browser refuses to compile
        if kind == "wasm":
            mod.programs = b"\0asm" + mod.programs[4:64]
        elif kind == "webgpu":
            mod.source = mod.source.replace("fn ", "fn fn ", 1)
        else:
            mod.programs = [p.replace("void main", "void main main", 1) for p in mod.programs]
    return mod


def _run_in_tab(mod, args: list, n_out: int, halos: list[int]) -> list[np.ndarray]:
    """Outputs of one run of `mod` on `args` (whole stored arrays in, interiors out)."""
    whole = [a.base if h else a for a, h in zip(args, halos)]
    outs = mod.run({f"a{k}": a for k, a in enumerate(whole[:len(args) - n_out])})
    return [o[:, :, h:-h, h:-h, :] if h else o for o, h in zip(outs, halos[len(args) - n_out:])]


def matches(outs: list, ref: list) -> bool:
    """Same results as the default schedule, up to float reassociation."""
    return all(o.shape == r.shape and np.allclose(o, r, rtol=1e-3, atol=1e-4 * (float(np.abs(r).max()) + 1.0))
               for o, r in zip(outs, ref))
