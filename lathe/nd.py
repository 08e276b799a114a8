"""`lathe.nd`: arrays the kernels read and write. On the CPU they are NumPy arrays underneath."""

from __future__ import annotations

import numpy as np

ALIGN = 64  # bytes: one cache line and one AVX-512 register


class NDArray:
    def __init__(self, data: np.ndarray, device: str = "cpu"):
        self._data, self.device = data, device

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> str:
        return str(self._data.dtype)

    def numpy(self) -> np.ndarray:
        return self._data.copy()

    def copyfrom(self, src) -> NDArray:
        src = np.asarray(src.numpy() if isinstance(src, NDArray) else src)
        if src.shape != self.shape:
            raise ValueError(f"copyfrom: shape {src.shape} does not match {self.shape}")
        self._data[...] = src
        return self

    def __repr__(self) -> str:
        return f"lathe.nd.array({self._data!r}, device={self.device!r})"


def _aligned_empty(shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(n + ALIGN, dtype=np.uint8)
    off = (-raw.ctypes.data) % ALIGN
    return raw[off:off + n].view(dtype).reshape(shape)


def empty(shape, dtype: str = "float32", device: str = "cpu") -> NDArray:
    return NDArray(_aligned_empty(tuple(shape), dtype), device)


def array(data, dtype: str | None = None, device: str = "cpu") -> NDArray:
    src = np.asarray(data, dtype=dtype)
    out = empty(src.shape, src.dtype, device)
    out._data[...] = src
    return out
