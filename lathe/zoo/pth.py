"""Read a PyTorch state_dict (.pth) into NumPy arrays without torch and without running pickle code.

A .pth file is a pickle whose tensors point at raw storages kept beside it. Two layouts exist:

- zip (torch >= 1.6): `<dir>/data.pkl` plus one member `<dir>/data/<key>` of raw bytes per storage;
- legacy (older torch): back-to-back pickles (magic number, protocol, sys info, the object, the list of
  storage keys), then each storage as an int64 element count followed by its bytes, in that key order.

The unpickler below only resolves the few globals a state_dict needs, each mapped to a small local
function; anything else (os.system, builtins.eval, ...) raises WeightsError (a lathe.ModelError and a
pickle.UnpicklingError) naming it.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from lathe.errors import ModelError


class WeightsError(ModelError, pickle.UnpicklingError):
    """A weight file that lathe refuses (code, unknown globals) or cannot read; in lathe's error family."""


# torch's typed storage classes, as pickled ("torch FloatStorage"), to the element type they hold
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class _StorageType:
    """Stands in for a torch storage class: only its element type matters."""

    dtype: np.dtype


@dataclass
class _Storage:
    """A storage named in the pickle; its bytes are attached once they have been read."""

    key: str
    dtype: np.dtype
    numel: int
    offset: int = 0  # in elements, for legacy views into a larger root storage
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """What torch._utils._rebuild_tensor_v2 would return, kept lazy until the storages are read."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise WeightsError(f"storage {self.storage.key!r} is never written in the file")
        start = self.storage.offset + self.offset
        extent = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides) if n > 0)
        if start < 0 or (0 not in self.shape and start + extent > flat.size):
            raise WeightsError(f"tensor of shape {self.shape} runs past its storage {self.storage.key!r}")
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[start:], self.shape, [s * item for s in self.strides])
        return view.copy()  # C-contiguous, and no longer sharing the storage with other tensors


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple, strides: tuple, *_ignored: Any) -> _TensorRef:
    # _ignored: requires_grad, backward hooks and (newer torch) metadata; none matter for inference
    return _TensorRef(storage, int(offset), tuple(int(n) for n in shape), tuple(int(s) for s in strides))


def _rebuild_parameter(data: _TensorRef, *_ignored: Any) -> _TensorRef:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(np.dtype(dt)) for name, dt in _STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler that can build a state_dict and nothing else."""

    def __init__(self, file: io.BufferedIOBase, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            msg = f"refusing to load global {module}.{name}: a state_dict never needs it"
            raise WeightsError(msg) from None

    def persistent_load(self, pid: Any) -> _Storage:
        # zip: ('storage', type, key, location, numel); legacy adds view metadata (view_key, offset, numel)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"unexpected persistent id {pid!r}")
        stype, key, numel = pid[1], str(pid[2]), int(pid[4])
        root = self.storages.setdefault(key, _Storage(key, stype.dtype, numel))
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        view_key, offset, view_numel = view
        # a view shares the root's bytes; give it its own record that points back at them
        return self.storages.setdefault(f"{key}/{view_key}", _Storage(key, stype.dtype, int(view_numel), int(offset)))


def _restricted_load(data: bytes | io.BufferedIOBase, storages: dict[str, _Storage]) -> Any:
    file = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return _StateDictUnpickler(file, storages).load()
    except WeightsError:
        raise
    except Exception as err:  # truncated or garbled input: report it as the unpickling error it is
        raise WeightsError(f"malformed pickle: {type(err).__name__}: {err}") from err


def _read_zip(path: str | os.PathLike) -> tuple[Any, dict[str, _Storage]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise WeightsError(f"{path}: a .pth zip holds exactly one <dir>/data.pkl, found {pkl}")
        root = pkl[0][: -len("data.pkl")]
        byteorder = zf.read(root + "byteorder").decode() if root + "byteorder" in names else "little"
        storages: dict[str, _Storage] = {}
        obj = _restricted_load(zf.read(pkl[0]), storages)
        for st in storages.values():
            raw = zf.read(f"{root}data/{st.key}")
            st.data = _from_bytes(raw, st.dtype, byteorder, st.key)
    return obj, storages


def _read_legacy(path: str | os.PathLike) -> tuple[Any, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        # the three header pickles hold only ints and a dict of ints, so the restricted loader reads them too
        if _restricted_load(f, storages) != _LEGACY_MAGIC:
            raise WeightsError(f"{path}: neither a zip nor a legacy torch file (bad magic number)")
        _restricted_load(f, storages)  # protocol version
        info = _restricted_load(f, storages)
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise WeightsError(f"{path}: big-endian legacy files are not supported")
        obj = _restricted_load(f, storages)
        keys = _restricted_load(f, storages)
        roots = {st.key: st for name, st in storages.items() if name == st.key}
        for key in keys:
            st = roots[str(key)]
            numel = int.from_bytes(f.read(8), "little")
            raw = f.read(numel * st.dtype.itemsize)
            st.data = _from_bytes(raw, st.dtype, "little", key)
    for st in storages.values():  # views take their root's bytes
        if st.data is None and st.key in roots:
            st.data = roots[st.key].data
    return obj, storages


def _from_bytes(raw: bytes, dtype: np.dtype, byteorder: str, key: str) -> np.ndarray:
    if len(raw) % dtype.itemsize:
        raise WeightsError(f"storage {key!r}: {len(raw)} bytes is not a whole number of {dtype}")
    order = "<" if byteorder == "little" else ">"
    return np.frombuffer(raw, dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype).astype(dtype)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state_dict file, by name, as NumPy arrays (float32 stays float32)."""
    try:
        obj, _ = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as err:
        raise WeightsError(f"{path}: cannot read the weight file ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    out = {}
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise WeightsError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        out[str(name)] = value.to_numpy()
    return out
