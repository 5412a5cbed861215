"""Plugin-aware RecBole configuration.

:class:`FlexConfig` is RecBole's :class:`recbole.config.Config` with three additions:

* it resolves the plugin's models (``FlexCode``, ``SOLID``) as well as RecBole's own;
* it layers the plugin's ``properties/`` (protocol, dataset and plugin-model YAMLs) between
  RecBole's internal defaults and the user's files, so the precedence is
  RecBole internals < plugin properties < ``config_file_list`` < ``config_dict`` < ``--key=value``;
  RecBole's own models keep their own model defaults;
* it takes command-line overrides as an explicit list (never by reading ``sys.argv`` behind the
  caller's back) and parses their values with ``yaml.safe_load`` instead of RecBole's ``eval``.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import yaml
from recbole.config import Config

import recbole_flexcode  # noqa: F401  (applies the compatibility fixes)

PROPERTIES_DIR = Path(__file__).resolve().parent / "properties"
if not PROPERTIES_DIR.is_dir():  # running from a source checkout without install
    PROPERTIES_DIR = Path(__file__).resolve().parent.parent / "properties"

#: Models provided by this plugin: name -> "module:Class".
PLUGIN_MODELS = {
    "FlexCode": "recbole_flexcode.model.flexcode:FlexCode",
    "SOLID": "recbole_flexcode.model.solid:SOLID",
}


def config_value(config, key: str, default=None):
    """``config[key]``, or ``default`` when the key is absent or set to ``~`` (None)."""
    value = config[key] if key in config else None
    return default if value is None else value


class ConfigError(ValueError):
    """A user-facing configuration problem (unknown model, missing dataset, bad override)."""


def get_model_class(name: str):
    """Resolve a model name to its class: the plugin's models first, then RecBole's."""
    if name in PLUGIN_MODELS:
        module_name, class_name = PLUGIN_MODELS[name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"model '{name}' is not available in this version ({exc})") from exc
        return getattr(module, class_name)
    from recbole.utils import get_model

    try:
        return get_model(name)
    except (ValueError, ImportError, AttributeError) as exc:
        # RecBole's lookup also imports optional model families (lightgbm, xgboost): keep the cause
        known = ", ".join(sorted(PLUGIN_MODELS))
        raise ConfigError(
            f"unknown model '{name}': not a plugin model ({known}) nor a RecBole model ({exc})"
        ) from exc


class _Loader(yaml.SafeLoader):
    """Safe YAML with RecBole's float rule, so ``1e-3`` is a float as in RecBole's own files."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text_or_stream):
    return yaml.load(text_or_stream, Loader=_Loader)


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


def _read_yaml(path: Path) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        return load_yaml(f) or {}


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
        for f in config_file_list or []:
            if not os.path.isfile(f):
                raise ConfigError(f"config file not found: {f}")
        if isinstance(model, str):
            model = get_model_class(model)
        elif model is None:
            name = self._plugin_cmd.get("model") or (config_dict or {}).get("model")
            if name is None:
                raise ConfigError("no model given (use --model=NAME)")
            model = get_model_class(name)
        super().__init__(model, dataset, list(config_file_list or []), config_dict)

    # RecBole reads sys.argv here; we take the overrides given to the constructor instead.
    def _load_cmd_line(self):
        return dict(self._plugin_cmd)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        files = [PROPERTIES_DIR / "overall.yaml", PROPERTIES_DIR / "dataset" / f"{dataset}.yaml"]
        if model in PLUGIN_MODELS:
            files.append(PROPERTIES_DIR / "model" / f"{model}.yaml")
        for path in files:
            if path.is_file():
                layer = _read_yaml(path)
                self.internal_config_dict.update(layer)
                if path.parent.name == "dataset":
                    self.parameters["Dataset"] += [k for k in layer if k not in self.parameters["Dataset"]]
        # A partial eval_args (say {mode: uni100}) refines the protocol instead of replacing it
        user_eval = self.external_config_dict.get("eval_args")
        if isinstance(user_eval, dict) and isinstance(self.internal_config_dict.get("eval_args"), dict):
            self.external_config_dict["eval_args"] = {**self.internal_config_dict["eval_args"], **user_eval}
        # Cross-entropy models train on the full softmax: no negative sampling unless asked for.
        loss_type = self.external_config_dict.get("loss_type", self.internal_config_dict.get("loss_type"))
        if loss_type == "CE" and "train_neg_sample_args" not in self.external_config_dict:
            self.internal_config_dict["train_neg_sample_args"] = None

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
