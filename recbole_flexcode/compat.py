"""Make RecBole 1.2.1 run on today's NumPy, setuptools and PyTorch.

Importing :mod:`recbole_flexcode` calls :func:`apply` once.  Each fix is small, only
touches what RecBole 1.2.1 itself needs, and is a no-op on a stack that does not need it:

1. **NumPy aliases.**  RecBole uses ``np.float``/``np.bool``/... (removed in NumPy 1.24) and
   restores them only inside ``Config.__init__``, whose own restoring code reads
   ``np.float_``/``np.unicode_``/``np.complex_`` (removed in NumPy 2).  ray 2.6.3 (imported by
   ``recbole.quick_start``) uses ``np.bool8`` (removed in NumPy 2).  We define the missing
   aliases once, at import, so a model reloaded by ``load_data_and_model`` (which never
   builds a ``Config``) evaluates NDCG too.
2. **pkg_resources.**  ray 2.6.3 imports ``pkg_resources``, which new setuptools no longer
   ships.  When it is missing we register a tiny stand-in backed by
   :mod:`importlib.metadata` that offers exactly what ray calls.
3. **torch.load(weights_only=True).**  Since torch 2.6 ``torch.load`` refuses RecBole's
   checkpoints (they hold the ``Config`` object).  We do *not* switch the default off
   globally: :func:`load_trusted_checkpoint` unpickles fully only files that this process
   itself wrote through ``torch.save`` (recorded with a sha256 of the bytes, so a file
   replaced afterwards is not trusted), or that the user trusts explicitly with
   :func:`trust_checkpoint`.  The torch module seen by RecBole's trainer is wrapped to route
   through it, and ``recbole.quick_start.load_data_and_model`` is replaced by
   :func:`load_data_and_model`, which also knows the plugin's models.
4. **Anomaly detection.**  RecBole's SINE module turns ``torch.autograd`` anomaly detection on
   at import time, for every model in the process; we turn it back off.
5. **Quotes in atomic files.**  RecBole reads atomic files with pandas' CSV quoting, so a text
   field starting with ``"`` breaks the load; the dataset module reads them with quoting off.
6. **A deprecation notice per run.**  RecBole's trainer builds ``torch.cuda.amp.GradScaler``,
   which torch ≥ 2.4 flags with a ``FutureWarning`` in every training log; that one message
   (it is RecBole's to change, not the user's) is filtered.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import importlib.metadata
import os
import sys
import types
import warnings

import numpy as np
import torch

_APPLIED = False

#: Checkpoints written by ``torch.save`` in this process: real path -> sha256 of the bytes written.
_TRUSTED_CHECKPOINTS: dict[str, str] = {}

_NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "bool8": "bool_",
    "float": "float64",
    "int": "int_",
    "bool": "bool_",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "long": "int_",
    "unicode": "str_",
}


def _patch_numpy() -> list[str]:
    added = []
    for alias, target in _NUMPY_ALIASES.items():
        with warnings.catch_warnings():
            # probing a deprecated alias warns; only its absence matters here
            warnings.simplefilter("ignore")
            present = hasattr(np, alias)
        if not present:
            setattr(np, alias, getattr(np, target))
            added.append(alias)
    return added


def _make_pkg_resources() -> types.ModuleType:
    """A minimal ``pkg_resources`` with the calls ray 2.6.3 makes."""
    mod = types.ModuleType("pkg_resources")
    mod.__doc__ = "recbole_flexcode stand-in for the removed setuptools pkg_resources"

    class DistributionNotFound(Exception):
        pass

    class _Distribution:
        def __init__(self, name: str):
            try:
                self.version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError as exc:
                raise DistributionNotFound(name) from exc
            self.project_name = name

    def get_distribution(name: str) -> _Distribution:
        return _Distribution(name)

    def require(name: str) -> list:
        return [_Distribution(name.split("=")[0].split("<")[0].split(">")[0].strip())]

    mod.DistributionNotFound = DistributionNotFound
    mod.get_distribution = get_distribution
    mod.require = require
    # ray reads pkg_resources.packaging and pkg_resources._vendor.packaging.version.parse
    try:
        packaging_version = importlib.import_module("packaging.version")
        mod.packaging = importlib.import_module("packaging")
        vendor = types.ModuleType("pkg_resources._vendor")
        packaging = types.ModuleType("pkg_resources._vendor.packaging")
        packaging.version = packaging_version
        vendor.packaging = packaging
        mod._vendor = vendor
        sys.modules["pkg_resources._vendor"] = vendor
        sys.modules["pkg_resources._vendor.packaging"] = packaging
        sys.modules["pkg_resources._vendor.packaging.version"] = packaging_version
    except ImportError:  # pragma: no cover - packaging ships with pip/setuptools
        pass
    return mod


def _patch_pkg_resources() -> bool:
    try:
        importlib.import_module("pkg_resources")
        return False
    except ImportError:
        sys.modules["pkg_resources"] = _make_pkg_resources()
        return True


def _real_path(path) -> str | None:
    if isinstance(path, (str, os.PathLike)):
        return os.path.realpath(os.fspath(path))
    return None


_torch_save = torch.save
_torch_load = torch.load


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(obj, f, *args, **kwargs):
    """``torch.save`` that records the file (and a digest of its bytes) as written by us."""
    _torch_save(obj, f, *args, **kwargs)
    path = _real_path(f)
    if path is not None and os.path.isfile(path):
        _TRUSTED_CHECKPOINTS[path] = _sha256(path)


def is_trusted_checkpoint(f) -> bool:
    """True when ``f`` is a file this process wrote and nobody has changed since."""
    path = _real_path(f)
    return (
        path is not None
        and path in _TRUSTED_CHECKPOINTS
        and os.path.isfile(path)
        and _sha256(path) == _TRUSTED_CHECKPOINTS[path]
    )


def load_trusted_checkpoint(f, *args, **kwargs):
    """``torch.load`` that unpickles fully only checkpoints this process wrote.

    Anything else keeps torch's safe default (``weights_only=True``), so a foreign or
    modified checkpoint holding arbitrary objects is refused exactly as plain torch would.
    The bytes are read once, hashed and loaded from memory, so the file cannot be swapped
    between the check and the load.
    """
    path = _real_path(f)
    if "weights_only" in kwargs or path is None or path not in _TRUSTED_CHECKPOINTS:
        return _torch_load(f, *args, **kwargs)
    with open(path, "rb") as fh:
        data = fh.read()
    if hashlib.sha256(data).hexdigest() == _TRUSTED_CHECKPOINTS[path]:
        kwargs["weights_only"] = False
    return _torch_load(io.BytesIO(data), *args, **kwargs)


def trust_checkpoint(path) -> None:
    """Explicitly trust a checkpoint the user knows to be theirs (e.g. from an earlier run)."""
    real = os.path.realpath(os.fspath(path))
    _TRUSTED_CHECKPOINTS[real] = _sha256(real)


def _torch_proxy() -> types.ModuleType:
    """A module that forwards to ``torch`` except for ``save`` and ``load``."""

    class _TorchProxy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

    proxy = _TorchProxy("torch")
    proxy.save = save_checkpoint
    proxy.load = load_trusted_checkpoint
    return proxy


def load_data_and_model(model_file):
    """RecBole's ``load_data_and_model`` on torch >= 2.6 and for the plugin's models.

    RecBole's own imports ``torch`` inside the function (so the module-level proxy cannot
    reach it) and resolves models only among RecBole's.  Same steps, same return value:
    ``(config, model, dataset, train_data, valid_data, test_data)``.
    """
    from logging import getLogger

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_logger, init_seed

    from recbole_flexcode.config import get_model_class

    checkpoint = load_trusted_checkpoint(model_file, map_location="cpu")
    config = checkpoint["config"]
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    getLogger().info(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model_class(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def _patch_recbole_torch() -> None:
    proxy = _torch_proxy()
    trainer_module = importlib.import_module("recbole.trainer.trainer")
    if getattr(trainer_module, "torch", None) is torch:
        trainer_module.torch = proxy
    for name in ("recbole.quick_start.quick_start", "recbole.quick_start"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            # recbole.quick_start needs ray (hyper-parameter tuning) at import; where ray is absent
            # (an offline GPU image) there is nothing to patch, and this plugin never imports it
            continue
        module.load_data_and_model = load_data_and_model


def _pandas_proxy() -> types.ModuleType:
    """``pandas`` whose ``read_csv`` treats ``"`` as an ordinary character unless told otherwise."""
    import csv

    import pandas as pd

    class _PandasProxy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(pd, name)

    def read_csv(*args, **kwargs):
        kwargs.setdefault("quoting", csv.QUOTE_NONE)
        return pd.read_csv(*args, **kwargs)

    proxy = _PandasProxy("pandas")
    proxy.read_csv = read_csv
    return proxy


def _patch_atomic_file_quoting() -> None:
    """Atomic files are plain tab-separated text with no quoting convention.

    RecBole reads them with pandas' default CSV quoting, so a text field that starts with
    ``"`` (an Amazon title such as ``"Cucumber Delight" eye gel``) opens a quoted field that
    swallows the following tabs and lines, and the load fails.  The dataset module's pandas
    reads them with quoting off instead.
    """
    module = importlib.import_module("recbole.data.dataset.dataset")
    module.pd = _pandas_proxy()


def _undo_sine_anomaly_mode() -> None:
    """RecBole's ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import.

    Importing any RecBole sequential model imports it, which switches anomaly detection on for
    the whole process: every autograd op then records a Python stack trace, making training
    several times slower (we measured a tiny Transformer step at 0.50 s with it, see
    tests/test_compat.py).  We import it once here and switch the mode back off.
    """
    importlib.import_module("recbole.model.sequential_recommender.sine")
    torch.autograd.set_detect_anomaly(False)


def _quiet_recbole_notices() -> None:
    """Fix 6: filter the GradScaler deprecation that RecBole's trainer triggers on every run."""
    warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated",
                            category=FutureWarning)


def apply() -> None:
    """Apply every fix once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_numpy()
    _patch_pkg_resources()
    _patch_recbole_torch()
    _undo_sine_anomaly_mode()
    _patch_atomic_file_quoting()
    _quiet_recbole_notices()
    _APPLIED = True
