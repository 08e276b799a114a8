"""Auto-tuning: knobs in schedules, measured candidates, cost-model search, JSONL records (docs/tuning.md)."""

from lathe.tune.knobs import Config, current, using
from lathe.tune.records import best_configs, load_records

__all__ = ["Config", "current", "using", "load_records", "best_configs"]
