"""The configuration schema and its validation (run by :class:`recbole_flexcode.config.FlexConfig`).

One source of truth: the type and allowed values of every plugin setting live on its line in
``properties/*.yaml``, next to its default; this module reads them from there.  A configuration
is checked when it is built, before any dataset is loaded or stage trained, and every problem is
a :class:`ConfigError` with a one-line message naming the setting (or file) and what is allowed.

Annotation convention (``properties/*.yaml``)
---------------------------------------------
Every top-level key carries a trailing comment that *starts* with a type annotation::

    key: default   # (TYPES[, BOUND]...) [CHOICES] free text

* ``TYPES``: one or more of ``int``, ``float`` (any number), ``str``, ``bool``, ``list``, ``dict``,
  ``null`` (``~``), ``list[int]``, ``list[float]``, ``list[str]``, joined by ``|``:
  ``(int|list[int])``.  A default of ``~`` implies ``null``.  ``int`` refuses ``3.7`` (and
  ``True``); a ``str`` setting without choices takes a number as its text (``--cache_dir=2024``).
* ``BOUND``: ``>= x``, ``> x``, ``<= x``, ``< x`` or ``a..b`` (inclusive), for numbers (for a
  list type: each element): ``(int, 1..8)``, ``(float, >= 0, < 1)``.
* ``CHOICES`` (``str`` only): the comment text goes ``a | b | c``, each alternative starting with
  its literal value, optionally followed by an explanation: ``(str) beam: trie search | exact: ...``.
  A ``str`` comment containing `` | `` *is* a choice list.
* The comment may go on over the following lines when they are indented comment-only lines.

A key without a valid annotation is reported by :func:`schema_problems` (tests assert there are
none); at run time such a key is accepted and typed after its default, so a missing annotation
never blocks a run.

Which keys are valid
--------------------
RecBole's own keys: every key in RecBole's property files (``overall.yaml``, ``dataset/sample.yaml``,
``dataset/ml-100k.yaml``, ``quick_start_config/*.yaml``), the model's own ``model/<Model>.yaml``,
RecBole's argument lists (``recbole.utils.argument_list``), and every key RecBole's framework code
(``recbole/{config,data,evaluator,sampler,trainer,utils,quick_start}``) or, for a RecBole model,
that model's classes read from the config (found in their source).  Plugin keys: everything in
``properties/overall.yaml`` and ``properties/dataset/*.yaml``, and ``properties/model/<Model>.yaml``
of the plugin model configured, which also takes ``cf_<key>`` for every SASRec setting of its
collaborative stage (``recbole_flexcode.embeddings.collaborative.SASREC_KEYS``).  A key of another
model (a SOLID key given to FlexCode, a FlexCode key given to SASRec) is unknown.

Values: a plugin properties annotation applies to every model (so ``epochs``, ``topk``, ``metrics``
... of ``overall.yaml`` are checked for SASRec too); of RecBole's other keys only the common
numeric ones are checked (:data:`RECBOLE_CHECKED`, with the type of RecBole's default).  Nested
keys are not checked, except ``eval_args`` (a cross-key rule).

Cross-key rules (:data:`CROSS_RULES`): ``beam_size`` >= the largest ``topk``; ``fixed_cf_tokens``
between 0 and ``token_budget``; ``router_warmup_steps`` and ``router_warmup_epochs`` not both;
``hidden_size`` (and ``cf_hidden_size``) divisible by ``n_heads`` (``cf_n_heads``) for the plugin
models; ``metrics`` known to RecBole; ``valid_metric`` one of the metrics computed (``metrics``
at a ``topk`` cut-off); ``eval_args`` as RecBole's split accepts it (checked there only when the dataset is built);
``eval_step`` <= ``epochs`` (otherwise no epoch is validated and no checkpoint saved to test).

Errors and warnings
-------------------
Errors: unknown keys, wrong types, values out of range or not among the choices, the cross-key
rules above, unreadable or malformed config files and files that are not a mapping.  Warnings
(:data:`WARNING_RULES`, logged once the configuration is otherwise valid, and kept in
``config.config_warnings``) where the run still means something but a setting the user gave has
no effect: ``fixed_cf_tokens`` without ``variant=fix``, ``recode_every`` with
``training_mode=staged``, ``align_weight`` / ``align_temperature`` for a variant without alignment
(``semantic_only``, ``cf_only``, ``no_align``).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import math
import operator
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import yaml

logger = logging.getLogger("recbole_flexcode.config")

PROPERTIES_DIR = Path(__file__).resolve().parent / "properties"
if not PROPERTIES_DIR.is_dir():  # running from a source checkout without install
    PROPERTIES_DIR = Path(__file__).resolve().parent.parent / "properties"


class ConfigError(ValueError):
    """A user-facing configuration problem (unknown model or key, bad value, missing dataset or file)."""


class SchemaError(ValueError):
    """A malformed annotation in a properties file."""


# ------------------------------------------------------------------------------------- YAML


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


def _kind(value) -> str:
    if value is None:
        return "~"
    return {bool: "a boolean", int: "an int", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def read_config_file(path) -> dict:
    """A user's ``--config_files`` file as a dict; every problem is one :class:`ConfigError` line."""
    path = str(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = load_yaml(f)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"config file {path}: malformed YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: malformed YAML: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of setting: value, got {_kind(data)}")
    return data


# ------------------------------------------------------------------------------ annotations

_SCALARS = ("int", "float", "str", "bool", "list", "dict", "null")
_ELEMENT = re.compile(r"^list\[(int|float|str)\]$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf"
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_ANNOTATION = re.compile(r"^\(([^()]*)\)(.*)$", re.S)
_CHOICE = re.compile(r"^\s*([A-Za-z0-9_][A-Za-z0-9_.@-]*)")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class Spec:
    """The schema of one setting: allowed types, numeric bounds and string choices."""

    key: str
    types: tuple[str, ...]
    bounds: tuple[tuple[str, float], ...] = ()
    choices: tuple[str, ...] = ()
    origin: str = ""

    def describe(self) -> str:
        names = {"int": "an int", "float": "a number", "str": "a string", "bool": "true or false",
                 "list": "a list", "dict": "a mapping", "list[int]": "a list of ints",
                 "list[float]": "a list of numbers", "list[str]": "a list of strings"}
        parts = []
        for t in self.types:
            if t == "null":
                continue
            if t == "str" and self.choices:
                parts.append("one of " + " | ".join(self.choices))
            else:
                parts.append(names[t])
        text = " or ".join(parts) or "~"
        if self.bounds:
            ops = dict(self.bounds)
            if set(ops) == {">=", "<="} and all(_is_int(v) or float(v).is_integer() for v in ops.values()):
                text += f" in {_fmt(ops['>='])}..{_fmt(ops['<='])}"
            else:
                text += " " + " and ".join(f"{op} {_fmt(v)}" for op, v in self.bounds)
        if "null" in self.types and parts:
            text += ", or ~"
        return text

    def _match(self, t: str, value):
        """(matches, normalised value) for one type alternative."""
        if t == "null":
            return value is None, value
        if t == "bool":
            return isinstance(value, bool), value
        if t == "int":
            return _is_int(value), value
        if t == "float":
            return _is_number(value), value
        if t == "str":
            if isinstance(value, str):
                return True, value
            if _is_number(value) and not self.choices:  # YAML read --cache_dir=2024 as a number
                return True, str(value)
            return False, value
        if t == "list":
            return isinstance(value, (list, tuple)), value
        if t == "dict":
            return isinstance(value, dict), value
        m = _ELEMENT.match(t)
        if m and isinstance(value, (list, tuple)):
            check = {"int": _is_int, "float": _is_number, "str": lambda v: isinstance(v, str)}[m.group(1)]
            return all(check(v) for v in value), value
        return False, value

    def check(self, value):
        """``(normalised value, None)``, or ``(value, "must be ...")`` when ``value`` does not fit."""
        for t in self.types:
            ok, normalised = self._match(t, value)
            if ok:
                break
        else:
            return value, f"must be {self.describe()}"
        numbers = [normalised] if _is_number(normalised) else (
            [v for v in normalised if _is_number(v)] if isinstance(normalised, (list, tuple)) else []
        )
        for n in numbers:
            for op, bound in self.bounds:
                if isinstance(n, float) and math.isnan(n) or not _OPS[op](n, bound):
                    return value, f"must be {self.describe()}"
        if self.choices and isinstance(normalised, str) and normalised not in self.choices:
            return value, f"must be {self.describe()}"
        return normalised, None


def _parse_bound(text: str) -> list[tuple[str, float]]:
    m = re.fullmatch(rf"\s*({_NUMBER})\s*\.\.\s*({_NUMBER})\s*", text)
    if m:
        return [(">=", _number(m.group(1))), ("<=", _number(m.group(2)))]
    m = re.fullmatch(rf"\s*(>=|>|<=|<)\s*({_NUMBER})\s*", text)
    if m:
        return [(m.group(1), _number(m.group(2)))]
    raise SchemaError(f"cannot read the bound '{text.strip()}' (use >= x, > x, <= x, < x or a..b)")


def _number(text: str):
    value = float(text)
    return int(value) if value.is_integer() and re.fullmatch(r"[-+]?\d+", text) else value


def parse_annotation(key: str, comment: str | None, default=None, origin: str = "") -> Spec:
    """The :class:`Spec` of ``key`` from its trailing comment (see the module docstring)."""
    text = (comment or "").strip()
    m = _ANNOTATION.match(text)
    if not m:
        raise SchemaError(f"{key} has no type annotation: its comment must start with (int), (float), "
                          f"(str) a | b, ... (got {('# ' + text) if text else 'no comment'})")
    parts = [p.strip() for p in m.group(1).split(",")]
    types = tuple(t.strip() for t in parts[0].split("|"))
    for t in types:
        if t not in _SCALARS and not _ELEMENT.match(t):
            raise SchemaError(f"{key}: unknown type '{t}' in ({m.group(1)}) "
                              f"(use {', '.join(_SCALARS)}, list[int], list[float], list[str])")
    bounds: list[tuple[str, float]] = []
    for p in parts[1:]:
        try:
            bounds += _parse_bound(p)
        except SchemaError as exc:
            raise SchemaError(f"{key}: {exc}") from None
    numeric = {"int", "float", "list[int]", "list[float]"}
    if bounds and not numeric & set(types):
        raise SchemaError(f"{key}: bounds given for a non-numeric type ({m.group(1)})")
    rest = m.group(2)
    choices: tuple[str, ...] = ()
    if " | " in rest:
        if set(types) - {"str", "null"}:
            raise SchemaError(f"{key}: choices ('a | b') are for (str) settings, not ({m.group(1)})")
        names = []
        for alt in rest.split("|"):
            cm = _CHOICE.match(alt)
            if not cm:
                raise SchemaError(f"{key}: a choice must start with its value, got '{alt.strip()}'")
            names.append(cm.group(1))
        choices = tuple(names)
    if default is None and "null" not in types:
        types = types + ("null",)
    return Spec(key, types, tuple(bounds), choices, origin)


# ------------------------------------------------------------------------- properties files

_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)\s*:(\s.*|)$")


def _split_comment(text: str) -> tuple[str, str | None]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes or glued to a word is text."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i + 1:].strip()
    return text.rstrip(), None


def _scan_keys(text: str) -> list[tuple[str, int, str | None]]:
    """(key, line, comment with its continuation lines) for every top-level key of a YAML file."""
    entries: list[list] = []
    continuing = False
    for number, line in enumerate(text.splitlines(), start=1):
        m = _TOP_KEY.match(line)
        if m:
            _, comment = _split_comment(m.group(2))
            entries.append([m.group(1), number, comment])
            continuing = comment is not None
            continue
        stripped = line.strip()
        if continuing and line[:1].isspace() and stripped.startswith("#"):
            entries[-1][2] += " " + stripped[1:].strip()
            continue
        continuing = False
    return [tuple(e) for e in entries]


@dataclass(frozen=True)
class PropertiesFile:
    path: Path
    defaults: dict
    specs: dict
    problems: tuple[str, ...]


def read_properties(path) -> PropertiesFile:
    """Defaults, specs and schema problems of one properties file (cached while it is unchanged)."""
    path = Path(path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return PropertiesFile(path, {}, {}, (f"{path}: missing",))
    return _read_properties(str(path), stamp)


@functools.lru_cache(maxsize=64)
def _read_properties(path: str, _stamp: int) -> PropertiesFile:
    text = Path(path).read_text(encoding="utf-8")
    name = _short(path)
    problems = []
    try:
        defaults = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        return PropertiesFile(Path(path), {}, {}, (f"{name}: malformed YAML ({' '.join(str(exc).split())})",))
    if not isinstance(defaults, dict):
        return PropertiesFile(Path(path), {}, {}, (f"{name}: not a mapping",))
    specs = {}
    scanned = _scan_keys(text)
    for key, line, comment in scanned:
        origin = f"{name}:{line}"
        default = defaults.get(key)
        try:
            spec = parse_annotation(key, comment, default, origin)
        except SchemaError as exc:
            problems.append(f"{origin}: {exc}")
            spec = _inferred_spec(key, default, origin)
        else:
            _, problem = spec.check(default)
            if problem:
                problems.append(f"{origin}: the default of {key} ({default!r}) {problem}")
        specs[key] = spec
    names = [k for k, _, _ in scanned]
    if set(names) != set(defaults) or len(names) != len(set(names)):
        problems.append(f"{name}: top-level keys read line by line ({sorted(names)}) differ from the YAML "
                        f"keys ({sorted(defaults)}); keys must be plain and unquoted, each on one line")
    return PropertiesFile(Path(path), defaults, specs, tuple(problems))


def _short(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROPERTIES_DIR.parent))
    except ValueError:
        return str(path)


def _inferred_spec(key: str, default, origin: str = "") -> Spec:
    """A spec from a default alone (for a key without a usable annotation): its type, nothing more."""
    if default is None:
        return Spec(key, ("int", "float", "str", "bool", "list", "dict", "null"), origin=origin)
    if isinstance(default, bool):
        types = ("bool",)
    elif _is_int(default):
        types = ("int",)
    elif isinstance(default, float):
        types = ("float",)
    elif isinstance(default, str):
        types = ("str",)
    elif isinstance(default, (list, tuple)):
        types = ("list",)
    elif isinstance(default, dict):
        types = ("dict",)
    else:
        types = ("int", "float", "str", "bool", "list", "dict", "null")
    return Spec(key, types, origin=origin)


def plugin_property_files(model: str | None = None, dataset: str | None = None, plugin_model: bool = True) -> list[Path]:
    """``overall.yaml``, every ``dataset/*.yaml`` (the configured dataset's last, so it wins) and,
    for a plugin model, its ``model/<model>.yaml``."""
    files = [PROPERTIES_DIR / "overall.yaml"]
    datasets = sorted((PROPERTIES_DIR / "dataset").glob("*.yaml"), key=lambda p: (p.stem == dataset, p.name))
    files += datasets
    if model and plugin_model:
        path = PROPERTIES_DIR / "model" / f"{model}.yaml"
        if path.is_file():
            files.append(path)
    return files


def plugin_model_names() -> list[str]:
    return sorted(p.stem for p in (PROPERTIES_DIR / "model").glob("*.yaml"))


def schema_problems(paths: Iterable | None = None) -> list[str]:
    """Every annotation problem in the plugin's properties files (or in ``paths``); tests want none."""
    if paths is None:
        paths = [PROPERTIES_DIR / "overall.yaml", *sorted((PROPERTIES_DIR / "dataset").glob("*.yaml")),
                 *sorted((PROPERTIES_DIR / "model").glob("*.yaml"))]
    return [p for path in paths for p in read_properties(path).problems]


# ------------------------------------------------------------------------- RecBole's keys

#: RecBole keys whose values are checked here too, with the type of RecBole's default and a bound.
RECBOLE_CHECKED = {
    "epochs": ">= 1",
    "learning_rate": "> 0",
    "train_batch_size": ">= 1",
    "eval_batch_size": ">= 1",
    "stopping_step": ">= 1",
    "seed": None,
    "topk": ">= 1",
    "MAX_ITEM_LIST_LENGTH": ">= 1",
    "eval_step": None,
}

#: RecBole's activations (``recbole.model.layers.FeedForward.get_hidden_act``).
HIDDEN_ACTS = ("gelu", "relu", "swish", "tanh", "sigmoid")

#: Bounds of the ``cf_<SASRec key>`` settings (their types come from RecBole's SASRec defaults).
CF_BOUNDS = {
    "n_layers": ">= 1",
    "n_heads": ">= 1",
    "hidden_size": ">= 1",
    "inner_size": ">= 1",
    "hidden_dropout_prob": ">= 0, < 1",
    "attn_dropout_prob": ">= 0, < 1",
    "layer_norm_eps": "> 0",
    "initializer_range": "> 0",
}

#: Keys RecBole's Config sets or reads that its regex scan below cannot see.
RECBOLE_EXTRA_KEYS = frozenset({"model", "dataset", "config_files"})

_FRAMEWORK_DIRS = ("config", "data", "evaluator", "sampler", "trainer", "utils", "quick_start")
_SOURCE_KEY_PATTERNS = (
    re.compile(r"""(?:config|config_dict|final_config_dict)\s*\[\s*["']([A-Za-z_]\w*)["']\s*\]"""),
    re.compile(r"""["']([A-Za-z_]\w*)["']\s+(?:not\s+)?in\s+(?:self\.)?(?:config|final_config_dict|external_config_dict)\b(?!\s*[\[.(])"""),
    re.compile(r"""(?:config|config_dict|final_config_dict)\.get\(\s*["']([A-Za-z_]\w*)["']"""),
)


def _recbole_root() -> Path:
    import recbole

    return Path(os.path.dirname(recbole.__file__))


def _source_keys(text: str) -> set[str]:
    return {m.group(1) for pattern in _SOURCE_KEY_PATTERNS for m in pattern.finditer(text)}


@functools.lru_cache(maxsize=1)
def recbole_framework_keys() -> frozenset:
    """Every key RecBole itself knows, whatever the model (see the module docstring)."""
    from recbole.utils import argument_list

    root = _recbole_root()
    keys = set(RECBOLE_EXTRA_KEYS)
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys.update(getattr(argument_list, name))
    props = root / "properties"
    for path in [props / "overall.yaml", props / "dataset" / "sample.yaml", props / "dataset" / "ml-100k.yaml",
                 *sorted((props / "quick_start_config").glob("*.yaml"))]:
        if path.is_file():
            data = load_yaml(path.read_text(encoding="utf-8")) or {}
            keys.update(k for k in data if isinstance(k, str))
    for folder in _FRAMEWORK_DIRS:
        for path in (root / folder).rglob("*.py"):
            if path.name == "hyper_tuning.py":  # its config_dict is a search space, not a configuration
                continue
            keys |= _source_keys(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(keys)


@functools.lru_cache(maxsize=32)
def _module_keys(module_name: str) -> frozenset:
    module = sys.modules.get(module_name)
    try:
        return frozenset(_source_keys(inspect.getsource(module))) if module is not None else frozenset()
    except (OSError, TypeError):
        return frozenset()


def recbole_model_keys(model_class) -> set[str]:
    """Keys a RecBole (or user) model class and its RecBole base classes read from the config."""
    keys: set[str] = set()
    for cls in getattr(model_class, "__mro__", ()):
        module = getattr(cls, "__module__", "") or ""
        if cls is model_class or module.startswith("recbole."):
            keys |= _module_keys(module)
    return keys


@functools.lru_cache(maxsize=1)
def _recbole_defaults() -> dict:
    props = _recbole_root() / "properties"
    out: dict = {}
    for path in (props / "overall.yaml", props / "dataset" / "sample.yaml"):
        out.update(load_yaml(path.read_text(encoding="utf-8")) or {})
    return out


@functools.lru_cache(maxsize=1)
def _sasrec_defaults() -> dict:
    return load_yaml((_recbole_root() / "properties" / "model" / "SASRec.yaml").read_text(encoding="utf-8")) or {}


def _typed_spec(key: str, default, bounds: str | None, origin: str, nullable: bool = False) -> Spec:
    if isinstance(default, bool):
        types = "bool"
    elif _is_int(default):
        types = "int"
    elif isinstance(default, float):
        types = "float"
    elif isinstance(default, list):
        # RecBole turns an int topk into [topk] (Config._set_default_parameters)
        types = "int|list[int]" if all(_is_int(v) for v in default) else "list"
    else:
        types = "str"
    if nullable:
        types += "|null"
    suffix = ""
    if isinstance(default, str) and key.endswith("hidden_act"):
        suffix = " " + " | ".join(HIDDEN_ACTS)
    return parse_annotation(key, f"({types}{', ' + bounds if bounds else ''}){suffix}", default, origin)


@functools.lru_cache(maxsize=1)
def recbole_specs() -> dict:
    defaults = _recbole_defaults()
    return {
        key: _typed_spec(key, defaults[key], bounds, "RecBole's default")
        for key, bounds in RECBOLE_CHECKED.items()
        if key in defaults
    }


def _sasrec_keys() -> tuple[str, ...]:
    from recbole_flexcode.embeddings.collaborative import SASREC_KEYS

    return tuple(SASREC_KEYS)


def cf_specs() -> dict:
    """``cf_<key>`` specs of the collaborative SASRec stage: RecBole's SASRec default types, ~ allowed."""
    defaults = _sasrec_defaults()
    return {
        f"cf_{key}": _typed_spec(f"cf_{key}", defaults.get(key), CF_BOUNDS.get(key), "RecBole's SASRec default",
                                 nullable=True)
        for key in _sasrec_keys()
    }


# ----------------------------------------------------------------------------- validation


@dataclass
class Context:
    """What one configuration is checked against."""

    model: str
    model_class: object
    dataset: str | None
    plugin_model: bool
    internal: Mapping
    sources: list  # [(label function, dict)], lowest precedence first

    @functools.cached_property
    def plugin_files(self) -> list[PropertiesFile]:
        return [read_properties(p) for p in plugin_property_files(self.model, self.dataset, self.plugin_model)]

    @functools.cached_property
    def specs(self) -> dict:
        specs = dict(recbole_specs())
        if self.plugin_model:
            specs.update(cf_specs())
        for f in self.plugin_files:
            specs.update(f.specs)
        return specs

    @functools.cached_property
    def known_keys(self) -> set:
        keys = set(recbole_framework_keys()) | {k for k in self.internal if isinstance(k, str)}
        for f in self.plugin_files:
            keys.update(f.defaults)
        if self.plugin_model:
            keys.update(cf_specs())
        else:
            keys |= recbole_model_keys(self.model_class)
        return keys


def cmd_label(key) -> str:
    return f"--{key}"


def dict_label(key) -> str:
    return f"'{key}' in config_dict"


def file_label(path) -> Callable[[str], str]:
    return lambda key: f"'{key}' in {path}"


def _label(ctx: Context, key: str) -> str:
    """Where the effective value of ``key`` came from: the highest-precedence source that sets it."""
    for label, values in reversed(ctx.sources):
        if key in values:
            return label(key)
    return key


def _nearest(key: str, candidates: Iterable[str]) -> str | None:
    by_lower: dict[str, str] = {}
    for c in sorted(candidates):
        by_lower.setdefault(c.lower(), c)
    for cutoff in (0.6, 0.0):
        hit = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=cutoff)
        if hit:
            return by_lower[hit[0]]
    return None


def unknown_key_errors(ctx: Context) -> list[str]:
    errors = []
    seen = set()
    for label, values in reversed(ctx.sources):
        for key in values:
            if not isinstance(key, str):
                errors.append(f"setting names must be strings, got {key!r} ({label(key)})")
                continue
            if key in seen or key in ctx.known_keys:
                continue
            seen.add(key)
            errors.append(f"unknown setting {label(key)} for {ctx.model}{_unknown_hint(ctx, key, label)}")
    return errors


def _unknown_hint(ctx: Context, key: str, label) -> str:
    owners = [m for m in plugin_model_names()
              if m != ctx.model and key in read_properties(PROPERTIES_DIR / "model" / f"{m}.yaml").defaults]
    if owners:
        return f": it is a setting of {' and '.join(owners)}, not of {ctx.model}"
    nearest = _nearest(key, ctx.known_keys)
    if nearest is None:
        return ""
    shown = f"--{nearest}" if label is cmd_label else nearest
    close = difflib.SequenceMatcher(None, key.lower(), nearest.lower()).ratio() >= 0.6
    return f" (did you mean {shown}?)" if close else f" (no similar setting; the nearest is {shown})"


def value_errors(ctx: Context, external: dict) -> list[str]:
    """Check every user-given value against its spec; normalises ``external`` in place (number -> str)."""
    errors = []
    for key, value in external.items():
        spec = ctx.specs.get(key)
        if spec is None or key in ("model", "dataset"):
            continue
        normalised, problem = spec.check(value)
        if problem:
            errors.append(f"invalid value for {_label(ctx, key)}: {problem}, got {value!r}")
        elif normalised is not value:
            external[key] = normalised
    return errors


# --- cross-key rules: each takes the merged configuration and the Context, returns a message or None


def _ints(v) -> list | None:
    if _is_int(v):
        return [v]
    if isinstance(v, (list, tuple)) and v and all(_is_int(x) for x in v):
        return list(v)
    return None


def _rule_beam_covers_topk(cfg, ctx):
    beam, ks = cfg.get("beam_size"), _ints(cfg.get("topk"))
    if "beam_size" in cfg and _is_int(beam) and ks and beam < max(ks):
        return f"beam_size ({beam}) must be >= the largest topk ({max(ks)}): the beam is the ranked list"


def _rule_fixed_cf_tokens_within_budget(cfg, ctx):
    fixed, budget = cfg.get("fixed_cf_tokens"), cfg.get("token_budget")
    if _is_int(fixed) and _is_int(budget) and not 0 <= fixed <= budget:
        return f"fixed_cf_tokens ({fixed}) must be between 0 and token_budget ({budget})"


def _rule_router_warmup_not_both(cfg, ctx):
    if cfg.get("router_warmup_epochs") is not None and cfg.get("router_warmup_steps"):
        return "give router_warmup_steps or router_warmup_epochs, not both"


def _rule_heads_divide_width(cfg, ctx):
    if not ctx.plugin_model:
        return None
    sasrec = _sasrec_defaults()
    pairs = []
    if not (cfg.get("generator") == "t5" and cfg.get("head_size") is not None):  # T5 heads have their own width
        pairs.append(("hidden_size", "n_heads", cfg.get("hidden_size"), cfg.get("n_heads")))
    if any(k.startswith("cf_") for k in cfg):
        width = cfg.get("cf_hidden_size")
        heads = cfg.get("cf_n_heads")
        pairs.append(("cf_hidden_size", "cf_n_heads", sasrec.get("hidden_size") if width is None else width,
                      sasrec.get("n_heads") if heads is None else heads))
    for wk, hk, width, heads in pairs:
        if _is_int(width) and _is_int(heads) and heads > 0 and width % heads:
            return f"{wk} ({width}) must be divisible by {hk} ({heads})"


def _metric_names(cfg) -> list | None:
    metrics = cfg.get("metrics")
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, (list, tuple)) and all(isinstance(m, str) for m in metrics):
        return list(metrics)
    return None


def _rule_metrics_exist(cfg, ctx):
    metrics = _metric_names(cfg)
    try:
        from recbole.evaluator.register import metrics_dict
    except ImportError:  # pragma: no cover
        return None
    unknown = [m for m in metrics or [] if m.lower() not in metrics_dict]
    if unknown:
        names = sorted({cls.__name__ for cls in metrics_dict.values()})
        return f"metrics: unknown metric {', '.join(unknown)} (RecBole's metrics: {', '.join(names)})"


def _rule_valid_metric_is_computed(cfg, ctx):
    metric, metrics = cfg.get("valid_metric"), _metric_names(cfg)
    if not isinstance(metric, str) or metrics is None:
        return None
    if _rule_metrics_exist(cfg, ctx):
        return None  # reported by that rule
    name, at, k = metric.lower().partition("@")
    if name not in [m.lower() for m in metrics]:
        return f"valid_metric ({metric}) must be one of the metrics computed ({', '.join(metrics)})"
    ks = _ints(cfg.get("topk"))
    if at and ks and (not k.isdigit() or int(k) not in ks):
        return f"valid_metric ({metric}) must use a cut-off in topk ({', '.join(map(str, ks))})"
    try:
        from recbole.evaluator.base_metric import TopkMetric
        from recbole.evaluator.register import metrics_dict
    except ImportError:  # pragma: no cover
        return None
    cls = metrics_dict.get(name)
    if not at and cls is not None and issubclass(cls, TopkMetric) and ks:
        return f"valid_metric ({metric}) needs a cut-off, e.g. {metric}@{max(ks)}"


#: What RecBole's dataset split accepts (``Dataset.build`` and ``leave_one_out``), checked before it runs.
EVAL_ARGS = {"split": None, "group_by": ("user", "none", None), "order": ("RO", "TO"), "mode": None}
SPLIT_MODES = {"RS": "a list of ratios", "TS": "a list of ratios", "LS": ("valid_and_test", "valid_only", "test_only")}


def _rule_eval_args(cfg, ctx):
    args = cfg.get("eval_args")
    internal = ctx.internal.get("eval_args")
    if isinstance(args, dict) and isinstance(internal, dict):
        args = {**internal, **args}  # a partial eval_args refines the protocol (FlexConfig)
    if not isinstance(args, dict):
        return None
    unknown = [k for k in args if k not in EVAL_ARGS]
    if unknown:
        return f"eval_args: unknown key {unknown[0]!r} (RecBole's are {', '.join(EVAL_ARGS)})"
    for key, allowed in EVAL_ARGS.items():
        if allowed is not None and key in args and args[key] not in allowed:
            return f"eval_args: {key} must be one of {', '.join(map(str, allowed))}, got {args[key]!r}"
    mode = args.get("mode")
    phases = mode if isinstance(mode, dict) else {"valid": mode, "test": mode}
    for phase, value in phases.items():
        if phase not in ("valid", "test"):
            return f"eval_args: mode takes the keys valid and test, got {phase!r}"
        if not (isinstance(value, str) and re.fullmatch(r"full|labeled|(?:uni|pop)[1-9]\d*", value)):
            return f"eval_args: mode must be full, labeled, uniN or popN (N negatives), got {value!r}"
    split = args.get("split")
    if split is None:
        return None
    if not isinstance(split, dict) or len(split) != 1 or next(iter(split)) not in SPLIT_MODES:
        return f"eval_args: split must be one of {{RS: [...]}}, {{TS: [...]}}, {{LS: mode}}, got {split!r}"
    (mode, value), = split.items()
    allowed = SPLIT_MODES[mode]
    if isinstance(allowed, tuple) and value not in allowed:
        return f"eval_args: split {mode} must be one of {', '.join(allowed)}, got {value!r}"
    if not isinstance(allowed, tuple) and not (isinstance(value, list) and all(_is_number(v) for v in value)):
        return f"eval_args: split {mode} must be {allowed}, got {value!r}"


def _rule_eval_step_within_epochs(cfg, ctx):
    step, epochs = cfg.get("eval_step"), cfg.get("epochs")
    if _is_int(step) and _is_int(epochs) and step > epochs:
        return (f"eval_step ({step}) must be <= epochs ({epochs}): otherwise no epoch is validated and "
                f"no checkpoint is saved to test")


#: The cross-key rules (errors), in the order they are checked.
CROSS_RULES = (
    _rule_beam_covers_topk,
    _rule_fixed_cf_tokens_within_budget,
    _rule_router_warmup_not_both,
    _rule_heads_divide_width,
    _rule_metrics_exist,
    _rule_valid_metric_is_computed,
    _rule_eval_args,
    _rule_eval_step_within_epochs,
)


# --- warnings: a setting the user gave that has no effect on this run


def _warn_fixed_cf_tokens(cfg, given, ctx):
    if "fixed_cf_tokens" in given and cfg.get("fixed_cf_tokens") is not None and cfg.get("variant") != "fix":
        return f"fixed_cf_tokens is used by variant=fix only; ignored for variant={cfg.get('variant')}"


def _warn_recode_every(cfg, given, ctx):
    if "recode_every" in given and cfg.get("training_mode") == "staged":
        return "recode_every is used by training_mode=joint only; ignored for training_mode=staged"


def _warn_alignment(cfg, given, ctx):
    keys = sorted(k for k in given if k in ("align_weight", "align_temperature"))  # the alignment loss only
    if ctx.model == "FlexCode" and keys and cfg.get("variant") in ("semantic_only", "cf_only", "no_align"):
        return f"{', '.join(keys)}: variant={cfg.get('variant')} has no alignment; ignored"


#: Warning rules: ``(merged config, keys the user gave, Context) -> message or None``.
WARNING_RULES = (_warn_fixed_cf_tokens, _warn_recode_every, _warn_alignment)


def validate(ctx: Context, external: dict) -> list[str]:
    """Raise one :class:`ConfigError` for every problem found (joined by '; '); return the warnings.

    ``external`` is the user's merged configuration (files < config_dict < command line); its
    values are normalised in place (a number given for a string setting becomes its text).
    """
    errors = unknown_key_errors(ctx)
    if not errors:
        errors = value_errors(ctx, external)
    if not errors:
        merged = {**ctx.internal, **external}
        errors = [m for m in (rule(merged, ctx) for rule in CROSS_RULES) if m]
    if errors:
        raise ConfigError("; ".join(errors))
    merged = {**ctx.internal, **external}
    return [m for m in (rule(merged, set(external), ctx) for rule in WARNING_RULES) if m]
