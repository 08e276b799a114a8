"""Shared by the benchmark scripts: the harness lives in lathe.benchmark; results go to bench/results/."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from lathe.benchmark import interleaved, machine, save_json, stats

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def save(name: str, payload: dict) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return save_json(os.path.join(RESULTS, f"{name}-{stamp}.json"), name, payload)


__all__ = ["interleaved", "machine", "save", "stats", "RESULTS"]
