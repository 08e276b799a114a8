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


def best_records(records: list[dict]) -> dict[str, dict]:
    """workload -> its fastest correct record (by the minimum of its repeats: the least disturbed by other load)."""
    best: dict[str, dict] = {}
    for r in records:
        if r.get("status") == "ok" and (r["workload"] not in best or r["min_s"] < best[r["workload"]]["min_s"]):
            best[r["workload"]] = r
    return best


def best_configs(records: str | list[dict]) -> dict[str, dict]:
    """workload -> the knob values of its fastest correct record (`records` a log path or loaded records)."""
    recs = load_records(records) if isinstance(records, str) else records
    return {w: r["config"] for w, r in best_records(recs).items()}
