"""Tuning records: one JSON object per line, appended as candidates are measured (so a killed run resumes).

{"workload": key, "config": {knob: value}, "status": "ok" | "error" | "timeout" | "wrong",
 "median_s": ..., "min_s": ..., "gflops": ..., "error": text, "tuner": name, "elapsed_s": seconds into the run}
"""

from __future__ import annotations

import json
import os


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
    """workload -> the record of its fastest correct config. A config's time is the median over its
    measurements of their minimum repeat; when some configs were measured again (validated), only
    those compete, so one lucky measurement among hundreds cannot win."""
    times: dict = {}
    for r in records:
        if r.get("status") == "ok":
            times.setdefault(r["workload"], {}).setdefault(json.dumps(r["config"], sort_keys=True), []).append(r)
    best: dict[str, dict] = {}
    for w, by_config in times.items():
        most = max(len(v) for v in by_config.values())
        pool = {k: v for k, v in by_config.items() if len(v) == most or (most > 1 and len(v) > 1)}
        score = {k: float(sorted(r["min_s"] for r in v)[len(v) // 2]) for k, v in pool.items()}
        k = min(score, key=score.get)
        default = next((k2 for k2, v in by_config.items() if any(r.get("tuner") == "default" for r in v)), None)
        if default in score and score[k] > MARGIN * score[default]:
            k = default
        best[w] = {**pool[k][0], "min_s": score[k]}
    return best


def best_configs(records: str | list[dict]) -> dict[str, dict]:
    """workload -> the knob values of its fastest correct record (`records` a log path or loaded records)."""
    recs = load_records(records) if isinstance(records, str) else records
    return {w: r["config"] for w, r in best_records(recs).items()}
