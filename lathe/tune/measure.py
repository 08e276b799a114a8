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


def matches(outs: list, ref: list) -> bool:
    """Same results as the default schedule, up to float reassociation."""
    return all(o.shape == r.shape and np.allclose(o, r, rtol=1e-3, atol=1e-4 * (float(np.abs(r).max()) + 1.0))
               for o, r in zip(outs, ref))
