"""Runtime: compiled kernels callable from Python, saved and loaded as shared libraries."""

from lathe.runtime.module import Kernel, TimeResult, load_module

__all__ = ["Kernel", "TimeResult", "load_module"]
