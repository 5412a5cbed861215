"""A small on-disk cache for expensive pipeline stages (text embeddings, codebooks, ...).

Each entry is one ``.npz`` file ``<directory>/<stage>-<key>.npz`` holding plain numeric /
string arrays, written atomically (temporary file in the same directory, then
:func:`os.replace`) and read back with ``allow_pickle=False``: a cache file can never run
code, and a reader never sees a half-written file.  Optional metadata is stored inside the
same archive as a JSON string array, again without pickle, and so is the SHA-256 of every
array (dtype, shape and bytes), checked on load: an entry whose arrays were damaged or
overwritten after it was written (still a valid ``.npz``) is reported in one warning line and
treated as missing, so the stage recomputes it.  Entries written before the checksums existed
carry none and load unchecked.

Keys come from :func:`cache_key`, a SHA-256 over a canonical JSON rendering of everything
that determines the stage's output (encoder name, field list, the item texts themselves,
input arrays hashed by dtype + shape + bytes), so changing any input selects a new entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from recbole_flexcode.io import atomic_write

logger = logging.getLogger(__name__)

#: Name of the array inside an ``.npz`` that carries the JSON metadata.
META_KEY = "__meta__"
#: Name of the array inside an ``.npz`` that carries the JSON ``{array name: sha256}`` of the others.
CHECKSUM_KEY = "__sha256__"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


# ----------------------------------------------------------------------------- keys


def _hash_bytes(dtype: str, shape: tuple, data: bytes) -> dict:
    h = hashlib.sha256()
    h.update(dtype.encode("utf-8"))
    h.update(repr(tuple(int(s) for s in shape)).encode("utf-8"))
    h.update(data)
    return {"__array__": {"dtype": dtype, "shape": [int(s) for s in shape], "sha256": h.hexdigest()}}


def _array_sha256(arr: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (what :class:`ArrayCache` checks on load)."""
    arr = np.ascontiguousarray(arr)
    return _hash_bytes(arr.dtype.str, arr.shape, arr.tobytes())["__array__"]["sha256"]


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into something :func:`json.dumps` renders deterministically."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            return {"__float__": repr(obj)}
        return obj
    if isinstance(obj, np.generic):
        return _canonical(obj.item())
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return {"__object_array__": {"shape": list(obj.shape), "items": _canonical(obj.tolist())}}
        arr = np.ascontiguousarray(obj)
        return _hash_bytes(arr.dtype.str, arr.shape, arr.tobytes())
    if hasattr(obj, "detach") and hasattr(obj, "cpu") and hasattr(obj, "dtype"):  # torch.Tensor
        t = obj.detach().cpu().contiguous()
        try:
            arr = t.numpy()
            return _hash_bytes(arr.dtype.str, arr.shape, arr.tobytes())
        except TypeError:  # e.g. bfloat16 has no NumPy dtype: hash the raw 16-bit words
            import torch

            raw = t.view(torch.int16).numpy() if t.element_size() == 2 else t.float().numpy()
            return _hash_bytes(str(t.dtype), tuple(t.shape), raw.tobytes())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, bytes):
        return {"__bytes__": hashlib.sha256(obj).hexdigest()}
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        items = [_canonical(v) for v in obj]
        return {"__set__": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(obj, (list, tuple)) or hasattr(obj, "__iter__"):
        return [_canonical(v) for v in obj]
    raise TypeError(f"cache_key: cannot hash a value of type {type(obj).__name__}")


def cache_key(**parts: Any) -> str:
    """A short, stable key for ``parts`` (16 hex characters of a SHA-256).

    The parts are rendered as canonical JSON (sorted keys, no whitespace); lists of texts are
    included verbatim, NumPy arrays and torch tensors are replaced by the SHA-256 of their
    dtype, shape and bytes.  Equal inputs give equal keys across processes and machines.
    """
    payload = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- cache


class ArrayCache:
    """Atomic, pickle-free ``.npz`` cache: one file per ``(stage, key)``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser()

    @staticmethod
    def _check_name(kind: str, value: str) -> str:
        if not isinstance(value, str) or not _SAFE_NAME.match(value):
            raise ValueError(f"ArrayCache: invalid {kind} {value!r} (use letters, digits, '_', '.', '-')")
        return value

    def path(self, stage: str, key: str) -> Path:
        """``<directory>/<stage>-<key>.npz``."""
        self._check_name("stage", stage)
        self._check_name("key", key)
        return self.directory / f"{stage}-{key}.npz"

    def _read(self, stage: str, key: str) -> dict[str, np.ndarray] | None:
        path = self.path(stage, key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {name: np.asarray(npz[name]) for name in npz.files}
            expected = json.loads(str(data.pop(CHECKSUM_KEY).item())) if CHECKSUM_KEY in data else None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            logger.warning("cache: ignoring corrupt file %s (%s: %s)", path, type(exc).__name__, exc)
            return None
        if expected is not None:
            arrays = {name: arr for name, arr in data.items() if name != META_KEY}
            bad = sorted(set(expected) ^ set(arrays)) or [n for n in sorted(arrays) if _array_sha256(arrays[n]) != expected[n]]
            if bad:
                logger.warning("cache: ignoring damaged file %s (arrays %s fail their checksum)", path, ", ".join(bad))
                return None
        return data

    def load(self, stage: str, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored for ``(stage, key)``; ``None`` when missing or corrupt."""
        data = self._read(stage, key)
        if data is None:
            return None
        data.pop(META_KEY, None)
        return data

    def load_meta(self, stage: str, key: str) -> dict | None:
        """The metadata dict saved with ``(stage, key)``; ``None`` when absent or unreadable."""
        data = self._read(stage, key)
        if data is None or META_KEY not in data:
            return None
        try:
            return json.loads(str(data[META_KEY].item()))
        except (ValueError, TypeError) as exc:
            logger.warning("cache: unreadable metadata in %s (%s)", self.path(stage, key), exc)
            return None

    def save(
        self,
        stage: str,
        key: str,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write ``arrays`` (and ``meta`` as JSON) to the entry's file, atomically."""
        path = self.path(stage, key)
        payload: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            if name in (META_KEY, CHECKSUM_KEY):
                raise ValueError(f"ArrayCache: array name {name!r} is reserved")
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise TypeError(f"ArrayCache: array {name!r} has dtype object, which needs pickle")
            payload[name] = arr
        payload[CHECKSUM_KEY] = np.array(json.dumps({name: _array_sha256(arr) for name, arr in payload.items()}, sort_keys=True))
        if meta is not None:
            payload[META_KEY] = np.array(json.dumps(_canonical(dict(meta)), sort_keys=True))

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **payload)

        return atomic_write(path, write)

    def __repr__(self) -> str:
        return f"ArrayCache({str(self.directory)!r})"
