"""Plugin-aware RecBole configuration.

:class:`FlexConfig` is RecBole's :class:`recbole.config.Config` with four additions:

* it resolves the plugin's models (``FlexCode``, ``SOLID``) as well as RecBole's own;
* it layers the plugin's ``properties/`` (protocol, dataset and plugin-model YAMLs) between
  RecBole's internal defaults and the user's files, so the precedence is
  RecBole internals < plugin properties < ``config_file_list`` < ``config_dict`` < ``--key=value``;
  RecBole's own models keep their own model defaults; within the plugin properties, overall <
  dataset < model < the dataset YAML's section for the model (``FlexCode:``, :func:`dataset_model_section`);
* it takes command-line overrides as an explicit list (never by reading ``sys.argv`` behind the
  caller's back) and parses their values with ``yaml.safe_load`` instead of RecBole's ``eval``;
* it validates the configuration when it is built (unknown keys, types, ranges, choices, cross-key
  rules, malformed files; :mod:`recbole_flexcode.config_check`), so a bad input is one
  :class:`ConfigError` before any dataset is loaded or stage trained.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
from typing import Iterable, Sequence

import yaml
from recbole.config import Config

import recbole_flexcode  # noqa: F401  (applies the compatibility fixes)
from recbole_flexcode import config_check
from recbole_flexcode.config_check import (  # noqa: F401  (re-exported: one home for these names)
    PROPERTIES_DIR,
    ConfigError,
    _Loader,
    load_yaml,
)

#: Models provided by this plugin: name -> "module:Class".
PLUGIN_MODELS = {
    "FlexCode": "recbole_flexcode.model.flexcode:FlexCode",
    "SOLID": "recbole_flexcode.model.solid:SOLID",
}

#: RecBole model families searched for a model name (``exlib_recommender`` only for its own two
#: models: looking there imports lightgbm / xgboost, whose absence says nothing about the name).
_RECBOLE_FAMILIES = ("general_recommender", "context_aware_recommender", "sequential_recommender",
                     "knowledge_aware_recommender")
_RECBOLE_EXLIB = ("lightgbm", "xgboost")
#: Named in the unknown-model message as examples.
_RECBOLE_EXAMPLES = ("SASRec", "BERT4Rec", "GRU4Rec", "Caser", "BPR", "LightGCN", "Pop")


def recbole_model_names() -> list[str]:
    """RecBole's model names, from its ``properties/model/*.yaml`` (nothing imported)."""
    import recbole

    folder = os.path.join(os.path.dirname(recbole.__file__), "properties", "model")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml") and f[:-5] not in _RECBOLE_EXLIB)


def _unknown_model(name) -> ConfigError:
    known = sorted(PLUGIN_MODELS)
    recbole_names = recbole_model_names()
    hint = ""
    if isinstance(name, str):
        by_lower = {n.lower(): n for n in known + recbole_names}
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
        if close:
            hint = f"; did you mean {by_lower[close[0]]}?"
    return ConfigError(
        f"unknown model '{name}': plugin models are {', '.join(known)}; RecBole models include "
        f"{', '.join(_RECBOLE_EXAMPLES)} ({len(recbole_names)} in all){hint}"
    )


def get_model_class(name: str):
    """Resolve a model name to its class: the plugin's models first, then RecBole's."""
    if name in PLUGIN_MODELS:
        module_name, class_name = PLUGIN_MODELS[name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"model '{name}' is not available in this version ({exc})") from exc
        return getattr(module, class_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise _unknown_model(name)
    if name in _RECBOLE_EXLIB:
        from recbole.utils import get_model

        try:
            return get_model(name)
        except ImportError as exc:
            raise ConfigError(f"model '{name}' needs the optional package {name} ({exc})") from exc
    for family in _RECBOLE_FAMILIES:
        module_path = f"recbole.model.{family}.{name.lower()}"
        if importlib.util.find_spec(module_path) is None:
            continue
        model_class = getattr(importlib.import_module(module_path), name, None)
        if isinstance(model_class, type):
            return model_class
    raise _unknown_model(name)


def parse_overrides(args: Iterable[str]) -> dict:
    """Parse RecBole-style ``--key=value`` arguments; values are YAML (``0.01``, ``[5,10]``, ``{LS: valid_and_test}``)."""
    out: dict = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"cannot parse argument '{arg}': expected --key=value")
        key, value = arg[2:].split("=", 1)
        if not key:
            raise ConfigError(f"cannot parse argument '{arg}': empty key")
        try:
            parsed = load_yaml(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        if key in out and out[key] != parsed:
            raise ConfigError(f"argument --{key} given twice with different values")
        out[key] = parsed
    return out


def _read_yaml(path) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        return load_yaml(f) or {}


def dataset_model_section(path, model: str, sections: dict) -> dict:
    """The settings a dataset YAML gives one plugin model, checked against that model's YAML.

    A dataset file may hold a mapping named after a plugin model (``FlexCode:`` in
    ``properties/dataset/ml-100k.yaml``): its keys override ``properties/model/<model>.yaml`` (and
    ``overall.yaml``) for that model on that dataset only, so per-dataset defaults of a model's
    settings (batch size, schedule, stage budgets) never reach RecBole's baselines on the same data.
    Precedence: RecBole < ``overall.yaml`` < dataset YAML < model YAML < the dataset's model section
    < the user's files, dict and command line. Every key must be one the model's or the protocol's
    YAML defines, with a value its annotation accepts (else :class:`ConfigError`, naming the file).
    """
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: '{name}' must be a mapping of {name}'s settings, got {section!r}")
    section = sections.get(model) or {}
    if not section:
        return {}
    specs = dict(config_check.recbole_specs())  # eval_step and the other checked RecBole keys
    for props in (PROPERTIES_DIR / "overall.yaml", PROPERTIES_DIR / "model" / f"{model}.yaml"):
        specs.update(config_check.read_properties(props).specs)
    specs.update(config_check.cf_specs())
    for key, value in section.items():
        spec = specs.get(key)
        if spec is None:
            raise ConfigError(f"{path}: '{key}' in its {model} section is not a setting of "
                              f"properties/model/{model}.yaml, properties/overall.yaml or RecBole's checked keys")
        _, problem = spec.check(value)
        if problem:
            raise ConfigError(f"{path}: {model}.{key} {problem}, got {value!r}")
    return dict(section)


#: RecBole's own Config raises these for inputs it rejects; FlexConfig reports them as ConfigError.
_RECBOLE_INPUT_ERRORS = (ValueError, TypeError, KeyError, NotImplementedError, RuntimeError)


class FlexConfig(Config):
    """RecBole ``Config`` that knows the plugin's models and properties (see module docstring)."""

    def __init__(
        self,
        model=None,
        dataset=None,
        config_file_list: Sequence[str] | None = None,
        config_dict: dict | None = None,
        cmd_args: Sequence[str] | dict | None = None,
    ):
        if isinstance(cmd_args, dict):
            self._plugin_cmd = dict(cmd_args)
        else:
            self._plugin_cmd = parse_overrides(cmd_args or [])
        if isinstance(config_file_list, str):
            config_file_list = [config_file_list]
        # read here, so a missing or malformed file is one ConfigError line (RecBole's reader raises)
        self._plugin_files = [(str(f), config_check.read_config_file(f)) for f in config_file_list or []]
        if config_dict is not None and not isinstance(config_dict, dict):
            raise ConfigError(f"config_dict must be a dict of setting: value, got {type(config_dict).__name__}")
        if isinstance(model, str):
            model = get_model_class(model)
        elif model is None:
            name = self._plugin_cmd.get("model") or (config_dict or {}).get("model")
            for _, data in reversed(self._plugin_files):
                name = name or data.get("model")
            if name is None:
                raise ConfigError("no model given (use --model=NAME)")
            model = get_model_class(name)
        self._flex_validate = True  # _load_internal_config_dict checks the user's settings (not compat's plain Config)
        self.config_warnings: list[str] = []
        try:
            super().__init__(model, dataset, [f for f, _ in self._plugin_files], config_dict)
        except ConfigError:
            raise
        except _RECBOLE_INPUT_ERRORS as exc:
            # what RecBole's own checks refuse (an unknown metric, a bad split...): one line too
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise ConfigError(f"invalid configuration: {' '.join(str(message).split())}") from exc
        for message in self.config_warnings:
            config_check.logger.warning("config: %s", message)

    def _load_config_files(self, file_list):
        if "_plugin_files" not in self.__dict__:  # pragma: no cover  (RecBole's own path)
            return super()._load_config_files(file_list)
        merged: dict = {}
        for _, data in self._plugin_files:
            merged.update(data)
        return merged

    # RecBole reads sys.argv here; we take the overrides given to the constructor instead.
    def _load_cmd_line(self):
        return dict(self._plugin_cmd)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        files = [PROPERTIES_DIR / "overall.yaml", PROPERTIES_DIR / "dataset" / f"{dataset}.yaml"]
        if model in PLUGIN_MODELS:
            files.append(PROPERTIES_DIR / "model" / f"{model}.yaml")
        model_section = {}  # the dataset's settings for this plugin model: over the model's own YAML
        for path in files:
            if path.is_file():
                layer = _read_yaml(path)
                if path.parent.name == "dataset":
                    sections = {name: layer.pop(name) for name in PLUGIN_MODELS if name in layer}
                    model_section = dataset_model_section(path, model, sections)
                    self.parameters["Dataset"] += [k for k in layer if k not in self.parameters["Dataset"]]
                self.internal_config_dict.update(layer)
        self.internal_config_dict.update(model_section)
        if self.__dict__.get("_flex_validate"):
            self._validate(model, model_class, dataset)
        # A partial eval_args (say {mode: uni100}) refines the protocol instead of replacing it
        user_eval = self.external_config_dict.get("eval_args")
        if isinstance(user_eval, dict) and isinstance(self.internal_config_dict.get("eval_args"), dict):
            self.external_config_dict["eval_args"] = {**self.internal_config_dict["eval_args"], **user_eval}
        # Cross-entropy models train on the full softmax: no negative sampling unless asked for.
        loss_type = self.external_config_dict.get("loss_type", self.internal_config_dict.get("loss_type"))
        if loss_type == "CE" and "train_neg_sample_args" not in self.external_config_dict:
            self.internal_config_dict["train_neg_sample_args"] = None

    def _validate(self, model, model_class, dataset) -> None:
        """Unknown keys, values and cross-key rules of the user's settings (config_check); raises ConfigError."""
        for key in self.external_config_dict:
            if key in PLUGIN_MODELS:
                raise ConfigError(f"'{key}' is a section of the dataset YAMLs in properties/dataset/, not a setting: "
                                  f"give {key}'s settings directly (--key=value)")
        sources = [(config_check.file_label(path), data) for path, data in self._plugin_files]
        sources += [(config_check.dict_label, self.variable_config_dict),
                    (config_check.cmd_label, self.cmd_config_dict)]
        ctx = config_check.Context(
            model=model, model_class=model_class, dataset=dataset, plugin_model=model in PLUGIN_MODELS,
            internal=self.internal_config_dict, sources=sources,
        )
        self.config_warnings = config_check.validate(ctx, self.external_config_dict)
        self.known_keys = frozenset(ctx.known_keys)  # every setting this model accepts (the benchmark runner filters by it)

    def _set_default_parameters(self):
        super()._set_default_parameters()
        # RecBole always points ml-100k at the copy inside its wheel; prefer the user's own.
        if self.dataset == "ml-100k":
            user_path = os.path.join(
                self.external_config_dict.get("data_path", "dataset/"), self.dataset
            )
            if os.path.isfile(os.path.join(user_path, f"{self.dataset}.inter")):
                self.final_config_dict["data_path"] = user_path

    def check_dataset(self) -> None:
        """Fail early, with one clear line, when the dataset's interaction file is missing."""
        path = os.path.join(self["data_path"], f"{self.dataset}.inter")
        if not os.path.isfile(path):
            raise ConfigError(
                f"dataset '{self.dataset}' not found: no file {path} "
                f"(set --data_path to the folder that holds {self.dataset}/)"
            )
