"""The loop IR: statements over buffers, lowering from schedules, and passes."""

from lathe.tir.lower import lower_schedule
from lathe.tir.passes import PIPELINE, run_pipeline
from lathe.tir.stmt import Allocate, Buffer, Evaluate, For, IfThenElse, PrimFunc, Seq, Store

__all__ = ["lower_schedule", "PIPELINE", "run_pipeline", "Allocate", "Buffer", "Evaluate", "For", "IfThenElse",
           "PrimFunc", "Seq", "Store"]
