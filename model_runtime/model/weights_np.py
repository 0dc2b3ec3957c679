"""Weight files read into NumPy without torch: torch ``.pth`` files, safetensors and heads.

A ``.pth`` file is a pickle that describes tensors plus their raw storages, either in a zip
(``archive/data.pkl`` and ``archive/data/<key>``, torch >= 1.6) or in the legacy stream (five
pickles, then each storage as an int64 element count and its bytes). The pickle is read by a
restricted unpickler that resolves only the few globals a state dict needs (the tensor rebuild
function, the storage classes, ``OrderedDict``); any other global is refused, so a file cannot
run code. torch is never imported.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_runtime.errors import DataError

#: torch's storage classes (``torch.FloatStorage`` ...) and their NumPy types
_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    """A storage named in the pickle; its bytes are attached once they are read."""

    dtype: np.dtype
    key: str
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise DataError(f"storage {self.storage.key} was never read")
        if not self.shape:
            return data[self.offset].copy()
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], self.shape, tuple(s * item for s in self.stride), writeable=False)
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, offset, shape, stride, *_ignored):
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(tensor, *_ignored):
    return tensor


class _Unpickler(pickle.Unpickler):
    """Resolves only what a state dict of plain tensors needs; never an arbitrary global."""

    def __init__(self, file, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _StorageType(_STORAGES[name])
        raise DataError(f"refusing to load '{module}.{name}' from a weight file: only plain "
                        "tensors are read without torch")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise DataError(f"unknown persistent id {pid!r} in a weight file")
        stype, key = pid[1], str(pid[2])
        if not isinstance(stype, _StorageType):
            raise DataError(f"unsupported storage type {stype!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise DataError("storage views are not supported")
        if key not in self._storages:
            self._storages[key] = _Storage(np.dtype(stype.dtype), key)
        return self._storages[key]


def _resolve(obj) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise DataError(f"a weight file holds a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, _TensorRef):
            out[key] = value.array()
        elif isinstance(value, dict):  # {"state_dict": {...}} wrappers
            out.update({f"{key}.{k}": v for k, v in _resolve(value).items()})
    return out


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise DataError(f"{path}: no data.pkl in the archive")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(archive.read(pkl)), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _resolve(obj)


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        plain = _Unpickler(f, {})
        if plain.load() != _LEGACY_MAGIC:
            raise DataError(f"{path} is not a torch weight file")
        plain.load()  # protocol version
        info = plain.load()
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise DataError(f"{path}: big-endian weight files are not supported")
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(f, storages).load()
        keys = _Unpickler(f, {}).load()
        for key in keys:
            storage = storages[str(key)]
            (count,) = struct.unpack("<q", f.read(8))
            raw = f.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise DataError(f"{path} is truncated")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _resolve(obj)


def load_torch_file(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a torch state-dict file (zip or legacy format), in file order."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except DataError:
        raise
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError,
            struct.error) as err:
        raise DataError(f"Cannot read the weight file {path} without torch: {err}") from err


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, as float32 where they are floating point."""
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises several types for corrupt files
        raise DataError(f"Cannot read {path}: {err}") from err
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in tensors.items()}


def load_heads_np(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """A heads file's tensors (float32) and its parsed metadata, without torch."""
    from model_runtime.model.heads_format import read_metadata

    meta = read_metadata(path)
    return load_safetensors(path), meta
