"""Tuning records: one JSON object per line, appended as candidates are measured (so a killed run resumes).

{"workload": key, "config": {knob: value}, "status": "ok" | "error" | "timeout" | "wrong",
 "median_s": ..., "min_s": ..., "gflops": ..., "vs_default": candidate time / default time (timed alternately),
 "error": text, "tuner": name ("default", "validate", "model", or the search), "elapsed_s": seconds into the run,
 "load": the machine's 1-minute load average then}
"""

from __future__ import annotations

import json
import os

import numpy as np


def load_records(path: str) -> list[dict]:
    """Every record of the log (a torn last line, from a killed run, is skipped)."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def append_record(path: str, rec: dict) -> None:
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"  # a killed run's half-written line: start a new one
        else:
            torn = False
        f.write((("\n" if torn else "") + json.dumps(rec) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


MARGIN = 0.98  # a config replaces the default only when this much faster: gains inside the noise are not gains


def best_records(records: list[dict]) -> dict[str, dict]:
    """workload -> the record of its fastest correct config, with `vs_default` its time over the default's.

    Candidates are timed alternately with the default schedule in the same worker, so their ratio
    `vs_default` holds under other load; a config's ratio is the median over its measurements. When
    some configs were measured again (validated), only those compete, so one lucky measurement among
    hundreds cannot win; and a config must beat the default by the noise MARGIN. Configs timed inside
    the whole model (tuner "model", tuner.validate_in_model) outrank all others, by their in-model ratio."""
    by_workload: dict = {}
    for r in records:
        if r.get("status") == "ok":
            key = json.dumps(r["config"], sort_keys=True)
            by_workload.setdefault(r["workload"], {}).setdefault(key, []).append(r)
    best: dict[str, dict] = {}
    for w, by_config in by_workload.items():
        most = max(len(v) for v in by_config.values())
        pool = {k: v for k, v in by_config.items() if len(v) == most or (most > 1 and len(v) > 1)}
        in_model = {k: [r for r in v if r.get("tuner") == "model"] for k, v in by_config.items()}
        pool = {k: v for k, v in in_model.items() if v} or pool
        score = {k: float(np.median([r.get("vs_default", 1.0) for r in v])) for k, v in pool.items()}
        k = min(score, key=score.get)
        default = next((k2 for k2, v in by_config.items() if any(r.get("tuner") == "default" for r in v)), None)
        if default is not None and score[k] > MARGIN:
            k, score[k] = default, 1.0
        best[w] = {**by_config[k][0], "vs_default": score[k]}
    return best


def best_configs(records: str | list[dict]) -> dict[str, dict]:
    """workload -> the knob values of its fastest correct record (`records` a log path or loaded records)."""
    recs = load_records(records) if isinstance(records, str) else records
    return {w: r["config"] for w, r in best_records(recs).items()}
