"""Benchmark harness shared by `lathe bench` and bench/*.py: same-run comparisons with peers.

Every system runs in one process, alternating in blocks (each with its own warm-up, so one
system's spinning thread pool does not tax the next), and results carry the machine's description.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime

import numpy as np


def machine() -> dict:
    """What the numbers were measured on: CPU model, LLVM's view of it, SIMD features, cores."""
    from lathe.codegen.llvm import host_cpu

    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    cpu, features = host_cpu()
    simd = [f for f in ("avx512f", "avx2", "fma", "avx") if f"+{f}" in features]
    return {"cpu_model": model, "llvm_cpu": cpu, "simd": simd, "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()}


def stats(times: list) -> dict:
    t = np.asarray(times)
    return {"median_ms": float(np.median(t) * 1e3), "p10_ms": float(np.percentile(t, 10) * 1e3),
            "p90_ms": float(np.percentile(t, 90) * 1e3), "runs": len(t)}


def interleaved(fns: dict, runs: int, blocks: int = 5, warmup: int = 5) -> dict:
    """Time each callable `runs` times, alternating in blocks so machine noise hits all alike.

    Blocks rather than single calls: each system's thread pool spins for a while after a call,
    and alternating call by call would measure the pools fighting over the cores.
    """
    times: dict = {k: [] for k in fns}
    per_block = max(1, runs // blocks)
    while min(len(v) for v in times.values()) < runs:
        for k, f in fns.items():
            for _ in range(warmup):
                f()
            for _ in range(min(per_block, runs - len(times[k]))):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return times


def save_json(path: str, name: str, payload: dict) -> str:
    """Write payload plus date, git commit (and whether tracked files differ from it) and machine description;
    returns the path. LATHE_COMMIT names the commit where git cannot: a copy of a working tree on another
    machine carries whatever .git it was given."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()

    commit, dirty = os.environ.get("LATHE_COMMIT", ""), None
    if not commit:
        try:
            commit, dirty = git("rev-parse", "--short", "HEAD"), bool(git("status", "--porcelain", "-uno"))
        except OSError:
            pass
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    head = {"benchmark": name, "date": stamp, "commit": commit, **({"dirty": dirty} if dirty is not None else {})}
    with open(path, "w") as fh:
        json.dump({**head, "machine": machine(), **payload}, fh, indent=1)
    return path


def fma_peak(target: str = "llvm", threads: int = 2, seconds: float = 0.3) -> float:
    """GFLOP/s of lathe's own convolution micro-kernel on data that stays in L1: each thread repeats a
    (4 channel vectors x 4 pixels) register tile, 4 vector loads and 4 broadcasts per 16 FMAs. Profiles
    report layers against it. It is a lower bound on the machine's peak, not the peak: large
    convolutions have measured a few percent above it."""
    import lathe
    from lathe import te
    from lathe.ops.cpu import vector_lanes

    lanes = vector_lanes(target)
    k, reps = 128, 256
    a = te.placeholder((threads, k, 4), "float32", name="a")
    b = te.placeholder((threads, k, 4, lanes), "float32", name="b")
    r, rk = te.reduce_axis(reps, name="r"), te.reduce_axis(k, name="k")
    # r repeats the pass over the same data (r * 0: the loop stays, the index does not move)
    c = te.compute((threads, 4, 4, lanes), lambda t, j, i, v: te.sum(a[t, rk + r * 0, i] * b[t, rk, j, v],
                                                                      axis=[r, rk]), name="c")
    s = te.create_schedule(c)
    acc = s.cache_write(c, "local")
    ct, cj, ci, cv = s[c].op.axis
    s[c].parallel(ct)
    s[acc].compute_at(s[c], ct)
    at, aj, ai, av = s[acc].op.axis
    s[acc].reorder(at, *s[acc].op.reduce_axis, aj, ai, av)
    s[acc].unroll(aj)
    s[acc].unroll(ai)
    s[acc].vectorize(av)
    fn = lathe.build(s, [a, b, c], target=f"{target} -threads={threads}")
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(t.shape).astype("float32") for t in (a, b)] + [np.zeros(c.shape, "float32")]
    fn(*args)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return 2 * threads * reps * k * 16 * lanes / best / 1e9


PEERS = ("onnxruntime", "torch", "torch-compile")


def peer_runner(peer: str, model, feed: dict, threads: int, name: str | None = None):
    """A zero-argument callable running `model` in a peer system, or ImportError if it is not installed.
    The torch peers run the zoo's nn.Module of the model called `name` (same weights), eagerly or
    through torch.compile's default back end (inductor), compiled here by a first call."""
    if peer == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, feed)
    if peer in ("torch", "torch-compile"):
        import torch

        from lathe.zoo.torch_models import MODULES

        if name not in MODULES:
            raise ValueError(f"peer {peer} runs the zoo's PyTorch modules: {', '.join(MODULES)}; not {name!r}")
        torch.set_num_threads(threads)
        net = MODULES[name]()
        fn = torch.compile(net) if peer == "torch-compile" else net
        args = [torch.from_numpy(v) for v in feed.values()]

        def run():
            with torch.inference_mode():
                return fn(*args)

        run()  # torch.compile compiles on the first call: not timed
        return run
    raise ValueError(f"unknown peer {peer!r}; peers: {', '.join(PEERS)}")


def bench_model(model, targets: list, runs: int, threads: int, peers: list, name: str | None = None) -> dict:
    """Median/p10/p90 of lathe on each target and of each peer, plus each one's ratio to the fastest peer."""
    import lathe
    from lathe.frontend.onnx import parse

    proto = parse(model)
    systems: dict = {}
    feed = None
    for t in targets:
        mod = lathe.compile(proto, f"{t} -threads={threads}" if "-threads" not in t else t)
        if feed is None:
            rng = np.random.default_rng(0)
            feed = {s["name"]: rng.standard_normal(s["shape"]).astype(s["dtype"]) for s in mod.spec["inputs"]}
        systems[f"lathe {t}"] = mod.bind(feed)
    for p in peers:
        systems[p] = peer_runner(p, proto, feed, threads, name)
    res = {k: stats(v) for k, v in interleaved(systems, runs).items()}
    best_peer = min((res[p]["median_ms"] for p in peers), default=None)
    for r in res.values():
        r["ratio_to_fastest_peer"] = r["median_ms"] / best_peer if best_peer else None
    return res
