"""Shared by the benchmarks: the machine's description and the JSON/result conventions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import datetime, UTC

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


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


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(RESULTS)).stdout.strip()
    except OSError:
        return ""


def stats(times: list) -> dict:
    t = np.asarray(times)
    return {"median_ms": float(np.median(t) * 1e3), "p10_ms": float(np.percentile(t, 10) * 1e3),
            "p90_ms": float(np.percentile(t, 90) * 1e3), "runs": len(t)}


def interleaved(fns: dict, runs: int, blocks: int = 5, warmup: int = 5) -> dict:
    """Time each callable `runs` times, alternating in blocks so machine noise hits all alike.

    Blocks rather than single calls: each system's thread pool spins for a while after a call,
    and alternating call by call would measure the two pools fighting over the cores.
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


def save(name: str, payload: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(RESULTS, f"{name}-{stamp}.json")
    payload = {"benchmark": name, "date": stamp, "commit": git_commit(), "machine": machine(), **payload}
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1)
    return path
