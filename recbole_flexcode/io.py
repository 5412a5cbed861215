"""Files that are never half-written: atomic single files, folders published as one unit, checksums.

Every artefact the plugin writes (stage caches, the item tokenizer, run JSONs, tables, plots) goes
through these helpers: the data is written next to its final name and moved into place with
:func:`os.replace`, so a killed process leaves either the old entry or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _temp_name(path: Path) -> Path:
    # unique within the target folder (same filesystem, so os.replace is atomic); not mkstemp,
    # whose 0600 mode would carry over to the final file
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        write(str(tmp))
        fd = os.open(tmp, os.O_RDONLY)  # on disk before it takes the final name
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (non-JSON values as ``str``)."""
    return write_text(path, json.dumps(data, indent=2, default=str))


def publish_dir(final: str | os.PathLike, fill: Callable[[Path], Any]) -> Path:
    """Build a folder with ``fill(tmp_dir)`` and publish it under ``final`` as one unit.

    Readers see either no folder or a complete one: the files are written into a temporary sibling
    folder which is then renamed. An existing ``final`` (a damaged entry being rebuilt) is replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(final)
    tmp.mkdir()
    try:
        fill(tmp)
        if final.exists():
            old = _temp_name(final)
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def is_writable_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` (or its nearest existing parent) accepts new files."""
    path = Path(path)
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    if not path.is_dir():
        return False
    probe = path / f".write-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False
