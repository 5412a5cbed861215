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
   :func:`trust_checkpoint`.  Any other file is loaded with ``weights_only=True`` (asked for
   explicitly, so torch < 2.6, whose default is a full unpickle, is safe too).  The torch
   module seen by RecBole's trainer (checkpoints, ``resume_checkpoint``) and by the RecBole
   models that read a pretrained file (NeuMF, NAIS, ConvNCF, RaCT, S3Rec, KD_DAGFM) is wrapped
   to route through it; LDiffRec's ``np.load(..., allow_pickle=True)`` of the dataset's
   ``item_emb.npy`` gets ``allow_pickle`` only for a trusted file; and
   ``recbole.quick_start.load_data_and_model`` is replaced by :func:`load_data_and_model`,
   which also knows the plugin's models.
4. **Anomaly detection.**  RecBole's SINE module turns ``torch.autograd`` anomaly detection on
   at import time, for every model in the process; we turn it back off.
5. **Quotes in atomic files.**  RecBole reads atomic files with pandas' CSV quoting, so a text
   field starting with ``"`` breaks the load; the dataset module reads them with quoting off.
6. **A deprecation notice per run.**  RecBole's trainer builds ``torch.cuda.amp.GradScaler``,
   which torch ≥ 2.4 flags with a ``FutureWarning`` in every training log; that one message
   (it is RecBole's to change, not the user's) is filtered.
7. **RecBole's pickled dataset and dataloader caches.**  ``create_dataset`` unpickles
   ``<checkpoint_dir>/<dataset>-<DatasetClass>.pth`` (or ``dataset_save_path``) and
   ``load_split_dataloaders`` ``<checkpoint_dir>/<dataset>-for-<model>-dataloader.pth`` (or
   ``dataloaders_save_path``) whenever such a file exists, so a planted file would run its code in
   any run.  The same rule as for checkpoints applies: RecBole writes them with ``pickle.dump``
   (``Dataset.save`` / ``save_split_dataloaders``, with ``save_dataset`` / ``save_dataloaders``),
   which now records a sha256 of the bytes written, and they are unpickled only when this process
   wrote them or the user trusts them (:func:`trust_checkpoint`).  Any other such file is skipped
   with one warning line naming it, and RecBole rebuilds the dataset / dataloaders from the atomic
   files as if it were absent (``recbole.data.utils`` sees it as missing).  Its ``pickle.load``
   also checks the digest of the bytes it actually unpickles, so a file swapped after that check
   is refused (:class:`UntrustedFileError`) rather than run.
8. **RecBole's own entry points know the plugin's models.**  ``recbole.utils.get_model`` (and
   the copies of that name in ``recbole.config.configurator`` and
   ``recbole.quick_start.quick_start``) resolves ``FlexCode`` and ``SOLID`` first and, for an
   unknown name, raises a ``ValueError`` naming it (RecBole's own lookup fails with a lightgbm
   import error, from importing the optional ``exlib_recommender`` family).  RecBole's plain
   ``Config`` for a plugin model layers the plugin's ``properties/`` exactly as
   :class:`recbole_flexcode.config.FlexConfig` does (its ``_load_internal_config_dict`` is used),
   so e.g. FlexCode gets no negative sampling; RecBole's own models keep RecBole's behaviour.  The
   ``data_preparation`` that ``run_recbole`` / ``objective_function`` call (and
   :func:`load_data_and_model`) also runs :func:`prepare_plugin_stages` for plugin models, which
   builds their stage artefacts through ``recbole_flexcode.pipeline.prepare``.
9. **The plugin's trainer.**  ``recbole.trainer.FlexCodeTrainer`` and ``SOLIDTrainer`` are
   :class:`recbole_flexcode.trainer.GenerativeTrainer` (RecBole's trainer plus a learning-rate
   schedule and bf16), which RecBole's ``get_trainer`` finds by name.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import importlib.metadata
import logging
import os
import pickle
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
    if "weights_only" in kwargs:
        return _torch_load(f, *args, **kwargs)
    if path is None or path not in _TRUSTED_CHECKPOINTS:
        # explicit, so torch < 2.6 (whose default unpickles everything) is just as safe
        return _torch_load(f, *args, weights_only=True, **kwargs)
    with open(path, "rb") as fh:
        data = fh.read()
    trusted = hashlib.sha256(data).hexdigest() == _TRUSTED_CHECKPOINTS[path]
    return _torch_load(io.BytesIO(data), *args, weights_only=not trusted, **kwargs)


def trust_checkpoint(path) -> None:
    """Explicitly trust a file the user knows to be theirs (e.g. from an earlier run).

    Covers checkpoints and RecBole's pickled dataset / dataloader files alike (fix 7); the trust
    is in the current bytes, so a file changed afterwards is no longer trusted.
    """
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
    _add_new_defaults(config)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    getLogger().info(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    prepare_plugin_stages(config, train_data._dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model_class(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def _add_new_defaults(config) -> None:
    """Give a checkpoint's config the keys its model's YAML gained after it was saved, at their defaults.

    Only keys the saved config lacks: every value the run had stays. A key added later (an
    inference option such as ``item_head_candidates``) defaults to what reproduces the old model.
    """
    from recbole_flexcode.config import PROPERTIES_DIR, _read_yaml

    props = PROPERTIES_DIR / "model" / f"{config['model']}.yaml"
    if not props.is_file():  # a RecBole model
        return
    for key, value in _read_yaml(props).items():
        if key not in config.final_config_dict:
            config.final_config_dict[key] = value


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
    several times slower (tests/test_compat.py times a step).  We import it once here and switch
    the mode back off.
    """
    importlib.import_module("recbole.model.sequential_recommender.sine")
    torch.autograd.set_detect_anomaly(False)


def _quiet_recbole_notices() -> None:
    """Fix 6: filter the GradScaler deprecation that RecBole's trainer triggers on every run."""
    warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated",
                            category=FutureWarning)


# ----------------------------------------------------------------- fix 3: pretrained-file loaders

#: RecBole models that ``torch.load`` a file named in the config (a pretrained model, a warm-up).
_RECBOLE_TORCH_LOADERS = (
    "recbole.model.general_recommender.convncf",
    "recbole.model.general_recommender.nais",
    "recbole.model.general_recommender.neumf",
    "recbole.model.general_recommender.ract",
    "recbole.model.context_aware_recommender.kd_dagfm",
    "recbole.model.sequential_recommender.s3rec",
)


def _load_npy(file, *args, allow_pickle=False, **kwargs):
    """``np.load`` that unpickles object arrays only from a trusted file (fix 3)."""
    if allow_pickle and not is_trusted_checkpoint(file):
        allow_pickle = False  # a plain numeric array loads the same; a pickled one is refused
    return np.load(file, *args, allow_pickle=allow_pickle, **kwargs)


def _numpy_proxy() -> types.ModuleType:
    class _NumpyProxy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(np, name)

    proxy = _NumpyProxy("numpy")
    proxy.load = _load_npy
    return proxy


def _patch_recbole_model_file_loads() -> None:
    proxy = _torch_proxy()
    for name in _RECBOLE_TORCH_LOADERS:
        module = importlib.import_module(name)
        if getattr(module, "torch", None) is torch:
            module.torch = proxy
    ldiffrec = importlib.import_module("recbole.model.general_recommender.ldiffrec")
    if getattr(ldiffrec, "np", None) is np:
        ldiffrec.np = _numpy_proxy()


# ------------------------------------------------------- fix 7: RecBole's pickled dataset caches


class UntrustedFileError(pickle.UnpicklingError):
    """Refused to unpickle a file this process did not write and the user did not trust."""


def _file_object_path(fileobj) -> str | None:
    name = getattr(fileobj, "name", None)
    if isinstance(name, (str, bytes, os.PathLike)):
        return os.path.realpath(os.fsdecode(name))
    return None  # a file opened from a descriptor, an in-memory buffer


def _tell(fileobj) -> int | None:
    try:
        return fileobj.tell()
    except (AttributeError, OSError, ValueError):
        return None


class _HashingWriter:
    """A write-only file that hashes what passes through it on the way to ``fileobj``."""

    def __init__(self, fileobj):
        self.fileobj = fileobj
        self.digest = hashlib.sha256()

    def write(self, data):
        self.digest.update(data)
        return self.fileobj.write(data)


def save_pickle(obj, file, *args, **kwargs) -> None:
    """``pickle.dump`` that records the file (sha256 of what it wrote) as written by this process.

    Only a file written from its start is recorded (RecBole opens them with ``"wb"``); the digest
    covers exactly the pickle, so anything written to it afterwards makes it untrusted again.
    """
    path, start = _file_object_path(file), _tell(file)
    writer = _HashingWriter(file)
    pickle.dump(obj, writer, *args, **kwargs)
    if path is not None and start == 0:
        _TRUSTED_CHECKPOINTS[path] = writer.digest.hexdigest()


def load_pickle(file, **kwargs):
    """``pickle.load`` of an open file, only when its bytes are those this process wrote or the user trusted.

    The bytes are read once, checked and unpickled from memory, so the file cannot be swapped between
    the check and the load.  Anything else raises :class:`UntrustedFileError` without unpickling.
    """
    path, start = _file_object_path(file), _tell(file)
    data = file.read()
    if not (path is not None and start == 0 and _TRUSTED_CHECKPOINTS.get(path) == hashlib.sha256(data).hexdigest()):
        raise UntrustedFileError(
            f"refusing to unpickle {path or file!r}: this process did not write it and it is not trusted "
            "(recbole_flexcode.compat.trust_checkpoint)"
        )
    return pickle.loads(data, **kwargs)


def _pickle_proxy() -> types.ModuleType:
    class _PickleProxy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(pickle, name)

    proxy = _PickleProxy("pickle")
    proxy.dump = save_pickle
    proxy.load = load_pickle
    return proxy


def _cache_file_usable(path) -> bool:
    """``os.path.exists`` as ``recbole.data.utils`` sees it: a pickled cache counts only if trusted.

    That module calls ``os.path.exists`` only to decide whether to unpickle a saved dataset or saved
    dataloaders, so an untrusted file is treated as absent: RecBole rebuilds from the atomic files
    (and, with ``save_dataset`` / ``save_dataloaders``, writes a trusted one in its place).
    """
    if not os.path.exists(path):
        return False
    if is_trusted_checkpoint(path):
        return True
    logging.getLogger().warning(
        "recbole_flexcode: not loading %s: this process did not write it and it is not trusted "
        "(recbole_flexcode.compat.trust_checkpoint); building it from the atomic files instead",
        os.path.realpath(os.fspath(path)),
    )
    return False


def _os_proxy() -> types.ModuleType:
    class _PathProxy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(os.path, name)

    class _OsProxy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(os, name)

    path_proxy = _PathProxy("os.path")
    path_proxy.exists = _cache_file_usable
    proxy = _OsProxy("os")
    proxy.path = path_proxy
    return proxy


def _patch_recbole_pickle_caches() -> None:
    """Fix 7 (see the module docstring)."""
    utils_module = importlib.import_module("recbole.data.utils")
    dataset_module = importlib.import_module("recbole.data.dataset.dataset")
    for module in (utils_module, dataset_module):
        if getattr(module, "pickle", None) is pickle:
            module.pickle = _pickle_proxy()
    if getattr(utils_module, "os", None) is os:
        utils_module.os = _os_proxy()


# ------------------------------------------------------ fix 8: RecBole's entry points and plugin models

_RECBOLE_GET_MODEL = None  # RecBole's own get_model, kept by _patch_recbole_entry_points
_RECBOLE_LOAD_INTERNAL_CONFIG = None  # RecBole's Config._load_internal_config_dict
_RECBOLE_DATA_PREPARATION = None  # recbole.data.utils.data_preparation


def _is_recbole_model_file(model_name: str) -> bool:
    """Whether RecBole ships a module for ``model_name`` (found without importing any family)."""
    root = os.path.dirname(importlib.import_module("recbole.model").__file__)
    return any(
        os.path.isfile(os.path.join(root, family, f"{model_name.lower()}.py"))
        for family in os.listdir(root)
        if os.path.isdir(os.path.join(root, family))
    )


def get_model(model_name):
    """``recbole.utils.get_model`` that knows the plugin's models.

    Plugin models (``recbole_flexcode.config.PLUGIN_MODELS``) resolve first; RecBole's own through
    RecBole's lookup.  An unknown name raises a ``ValueError`` that names it: RecBole's lookup would
    import the optional ``exlib_recommender`` family on the way and fail on a missing lightgbm.
    """
    from recbole_flexcode.config import PLUGIN_MODELS, get_model_class

    if model_name in PLUGIN_MODELS:
        return get_model_class(model_name)
    try:
        return _RECBOLE_GET_MODEL(model_name)
    except (ImportError, ValueError):
        if isinstance(model_name, str) and _is_recbole_model_file(model_name):
            raise  # a RecBole model whose optional dependency is missing (lightgbm, xgboost)
    raise ValueError(
        f"unknown model '{model_name}': neither a model of this plugin "
        f"({', '.join(sorted(PLUGIN_MODELS))}) nor a RecBole model"
    )


def _load_internal_config_dict(self, model, model_class, dataset):
    """``Config._load_internal_config_dict``: for a plugin model, with the plugin's ``properties/``.

    RecBole's own models, and every :class:`FlexConfig` (which layers them itself on top of this
    method), get RecBole's method unchanged.  A plain ``Config`` of a plugin model runs
    ``FlexConfig._load_internal_config_dict`` itself, so both configure a plugin model the same way.
    """
    from recbole_flexcode.config import PLUGIN_MODELS, FlexConfig

    if isinstance(self, FlexConfig) or model not in PLUGIN_MODELS:
        return _RECBOLE_LOAD_INTERNAL_CONFIG(self, model, model_class, dataset)
    cls = self.__class__
    self.__class__ = FlexConfig  # for the method's super(), which resolves to RecBole's method
    try:
        return FlexConfig._load_internal_config_dict(self, model, model_class, dataset)
    finally:
        self.__class__ = cls


def prepare_plugin_stages(config, train_dataset):
    """For a plugin model, build its stage artefacts before the model is constructed.

    Returns ``recbole_flexcode.pipeline.prepare(config, train_dataset)``; does nothing for RecBole's
    models. A model's constructor only reads the artefacts (a checkpoint reload takes them from the
    checkpoint); it never trains a stage.
    """
    from recbole_flexcode.config import PLUGIN_MODELS

    if config["model"] not in PLUGIN_MODELS:
        return None
    from recbole_flexcode.pipeline import prepare  # here: the pipeline imports the model stack

    return prepare(config, train_dataset)


def data_preparation(config, dataset):
    """RecBole's ``data_preparation``, then :func:`prepare_plugin_stages` on the training split."""
    train_data, valid_data, test_data = _RECBOLE_DATA_PREPARATION(config, dataset)
    prepare_plugin_stages(config, train_data._dataset)
    return train_data, valid_data, test_data


def _patch_recbole_entry_points() -> None:
    """Fix 8 (see the module docstring)."""
    global _RECBOLE_GET_MODEL, _RECBOLE_LOAD_INTERNAL_CONFIG, _RECBOLE_DATA_PREPARATION
    utils_module = importlib.import_module("recbole.utils.utils")
    configurator = importlib.import_module("recbole.config.configurator")
    data_utils = importlib.import_module("recbole.data.utils")
    if _RECBOLE_GET_MODEL is None:
        _RECBOLE_GET_MODEL = utils_module.get_model
        _RECBOLE_LOAD_INTERNAL_CONFIG = configurator.Config._load_internal_config_dict
        _RECBOLE_DATA_PREPARATION = data_utils.data_preparation
    modules = [utils_module, importlib.import_module("recbole.utils"), configurator]
    try:
        quick_start = importlib.import_module("recbole.quick_start.quick_start")
    except ImportError:
        quick_start = None  # no ray (see _patch_recbole_torch): RecBole's quick start is unusable anyway
    if quick_start is not None:
        modules.append(quick_start)
        quick_start.data_preparation = data_preparation
    for module in modules:
        if getattr(module, "get_model", None) is _RECBOLE_GET_MODEL:
            module.get_model = get_model
    configurator.Config._load_internal_config_dict = _load_internal_config_dict


def _register_plugin_trainers() -> None:
    """Fix 9: RecBole's ``get_trainer`` looks up ``recbole.trainer.<Model>Trainer``; the plugin's models
    get :class:`recbole_flexcode.trainer.GenerativeTrainer` there, from every entry point."""
    from recbole_flexcode.trainer import GenerativeTrainer

    trainers = importlib.import_module("recbole.trainer")
    for name in ("FlexCode", "SOLID"):
        setattr(trainers, f"{name}Trainer", GenerativeTrainer)


def apply() -> None:
    """Apply every fix once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_numpy()
    _patch_pkg_resources()
    _patch_recbole_torch()
    _patch_recbole_model_file_loads()
    _undo_sine_anomaly_mode()
    _patch_atomic_file_quoting()
    _quiet_recbole_notices()
    _patch_recbole_pickle_caches()
    _patch_recbole_entry_points()
    _register_plugin_trainers()
    _APPLIED = True
