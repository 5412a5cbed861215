"""config_check: the schema read from properties/*.yaml, and FlexConfig refusing bad input early."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recbole_flexcode import config_check
from recbole_flexcode.config import PROPERTIES_DIR, ConfigError, FlexConfig, get_model_class
from recbole_flexcode.config_check import SchemaError, Spec, parse_annotation, read_properties, schema_problems
from conftest import tiny_config

PROPERTY_FILES = [
    PROPERTIES_DIR / "overall.yaml",
    *sorted((PROPERTIES_DIR / "dataset").glob("*.yaml")),
    *sorted((PROPERTIES_DIR / "model").glob("*.yaml")),
]
PLUGIN_KEYS = [(path, key) for path in PROPERTY_FILES for key in read_properties(path).defaults]


def _id(item):
    path, key = item
    return f"{path.relative_to(PROPERTIES_DIR)}:{key}"


# ------------------------------------------------------------------------ the shipped schema


def test_every_properties_key_is_annotated_and_consistent():
    """No key without a valid annotation, no default that breaks its own annotation."""
    assert schema_problems() == []
    assert {p.name for p in PROPERTY_FILES} >= {"overall.yaml", "ml-100k.yaml", "FlexCode.yaml", "SOLID.yaml"}


@pytest.mark.parametrize("item", PLUGIN_KEYS, ids=[_id(i) for i in PLUGIN_KEYS])
def test_every_default_validates_against_its_own_annotation(item):
    path, key = item
    props = read_properties(path)
    spec = props.specs[key]
    assert spec.origin.startswith(str(path.relative_to(PROPERTIES_DIR.parent)))
    assert spec.types, key
    _, problem = spec.check(props.defaults[key])
    assert problem is None, f"{spec.origin}: {key}={props.defaults[key]!r} {problem}"


def test_the_properties_files_document_the_convention():
    for path in PROPERTY_FILES:
        head = path.read_text(encoding="utf-8").splitlines()[:3]
        assert any("config_check" in line for line in head), path


def test_shipped_enumerations_are_read_from_the_comments():
    flex = read_properties(PROPERTIES_DIR / "model" / "FlexCode.yaml").specs
    assert flex["variant"].choices == ("full", "semantic_only", "cf_only", "fix", "no_align")
    assert flex["training_mode"].choices == ("staged", "joint")
    assert flex["decode_mode"].choices == ("beam", "exact")
    assert flex["router_mode"].choices == ("expected_loss", "decoupled")  # a comment over three lines
    assert flex["router_loss_balance"].choices == ("stratum", "plain")
    assert flex["token_budget"].bounds == ((">=", 1), ("<=", 8))
    assert flex["fixed_cf_tokens"].types == ("int", "null")  # a default of ~ allows ~
    solid = read_properties(PROPERTIES_DIR / "model" / "SOLID.yaml").specs
    assert set(solid["hidden_act"].choices) == set(config_check.HIDDEN_ACTS)


# ------------------------------------------------------------------------------- the parser


def _props(tmp_path, text: str):
    path = tmp_path / "props.yaml"
    path.write_text(text, encoding="utf-8")
    return read_properties(path)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("a: 1\n", "a has no type annotation"),
        ("a: 1   # plain words\n", "a has no type annotation"),
        ("a:\n  b: 1   # (int)\n", "a has no type annotation"),      # the nested line does not count
        ("a: 1   # (integer)\n", "unknown type 'integer'"),
        ("a: 1   # (int, about 3)\n", "cannot read the bound"),
        ("a: x   # (str, >= 1)\n", "bounds given for a non-numeric type"),
        ("a: 1   # (int) b | c\n", "choices ('a | b') are for (str)"),
        ("a: 9   # (int, 1..8)\n", "the default of a (9) must be an int in 1..8"),
        ("a: x   # (str) b | c\n", "the default of a ('x') must be one of b | c"),
        ("a: 1.5 # (int)\n", "the default of a (1.5) must be an int"),
        ("'a': 1 # (int)\n", "keys must be plain"),
    ],
    ids=["no-comment", "no-annotation", "block-without-annotation", "unknown-type", "bad-bound",
         "bound-on-str", "choices-on-int", "default-out-of-range", "default-not-a-choice", "default-wrong-type",
         "quoted-key"],
)
def test_parser_reports_schema_problems(tmp_path, text, needle):
    problems = _props(tmp_path, text).problems
    assert any(needle in p for p in problems), problems
    assert all("props.yaml:" in p for p in problems)


def test_parser_reads_types_bounds_choices_and_continuations(tmp_path):
    props = _props(
        tmp_path,
        "# header comment\n"
        "mode: b      # (str) b: first, with a (note) | c (second)\n"
        "             #       | d: third, on a continuation line\n"
        "# a section comment is not a continuation | x\n"
        "rate: 0.5    # (float, >= 0, < 1) dropout\n"
        "sizes: [1]   # (list[int], >= 1)\n"
        "k: [5]       # (int|list[int], 1..20)\n"
        "opt: ~       # (dict) nothing yet\n"
        "url: 'a#b'   # (str) the # inside quotes is text\n"
        "block:       # (dict)\n"
        "  inner: 1   # (str) nested keys are part of the value\n",
    )
    assert props.problems == ()
    s = props.specs
    assert s["mode"].choices == ("b", "c", "d")
    assert s["rate"].bounds == ((">=", 0), ("<", 1)) and s["rate"].types == ("float",)
    assert s["sizes"].types == ("list[int]",)
    assert s["k"].types == ("int", "list[int]")
    assert s["opt"].types == ("dict", "null")
    assert s["url"].types == ("str",) and props.defaults["url"] == "a#b"
    assert set(s) == {"mode", "rate", "sizes", "k", "opt", "url", "block"}


@pytest.mark.parametrize(
    "annotation, good, bad",
    [
        ("(int, 1..8)", [1, 8], [0, 9, 3.7, True, "3", None, [3]]),
        ("(float, > 0)", [1, 0.5, 1e-9], [0, -1.0, "abc", False, float("nan")]),
        ("(float, >= 0, < 1)", [0, 0.99], [1, 1.0, -0.1]),
        ("(int|list[int], >= 1)", [1, [5, 10]], [0, [5, 0], [5.5], "10"]),
        ("(list[str])", [[], ["a"]], [["a", 1], "a"]),
        ("(bool)", [True, False], [1, 0, "True"]),
        ("(str) a | b", ["a", "b"], ["c", 1, None]),
        ("(dict|null)", [{}, None], [[], "x"]),
        ("(str|null)", ["x", None], [True, [1]]),
    ],
)
def test_spec_check(annotation, good, bad):
    spec = parse_annotation("k", annotation, default=good[0])
    for value in good:
        assert spec.check(value)[1] is None, value
    for value in bad:
        assert spec.check(value)[1] is not None, value


def test_spec_descriptions_and_string_settings_take_numbers():
    assert parse_annotation("k", "(int, 1..8)", 3).describe() == "an int in 1..8"
    assert parse_annotation("k", "(float, >= 0, < 1)", 0.1).describe() == "a number >= 0 and < 1"
    assert parse_annotation("k", "(float, > 0)").describe() == "a number > 0, or ~"
    assert parse_annotation("k", "(str) x | y: why", "x").describe() == "one of x | y"
    # --cache_dir=2024 is read by YAML as a number: a string setting without choices takes its text
    assert parse_annotation("k", "(str)", "a").check(2024) == ("2024", None)
    with pytest.raises(SchemaError, match="has no type annotation"):
        parse_annotation("k", "no annotation", 1)


# ----------------------------------------------------------------------- valid configurations


@pytest.fixture
def tiny(tiny_data):
    return tiny_config(tiny_data)


@pytest.mark.parametrize("model", ["FlexCode", "SOLID", "SASRec", "GRU4Rec", "BERT4Rec", "Caser", "BPR", "Pop"])
def test_defaults_and_the_tiny_config_are_valid(model, tiny):
    cfg = FlexConfig(model, "ml-tiny", config_dict=tiny)
    assert cfg.config_warnings == []
    assert FlexConfig(model, "ml-100k").config_warnings == []  # the shipped defaults alone


def test_the_test_suites_configs_are_valid(tiny_data, tmp_path):
    from test_flexcode import base_config_dict
    from test_solid import TINY

    FlexConfig("FlexCode", "ml-tiny", config_dict=base_config_dict(tiny_data, tmp_path))
    FlexConfig("FlexCode", "ml-tiny", config_dict=tiny_config(tiny_data, cf_hidden_size=16, cf_inner_size=32, cf_n_layers=1))
    FlexConfig("SOLID", "ml-tiny", config_dict=dict(TINY, data_path=str(tiny_data), cache_dir=str(tmp_path)))
    # the settings of the published SOLID runs (results/ml-100k: sampled evaluation, GAUC)
    FlexConfig("SOLID", "ml-tiny", config_dict=tiny_config(tiny_data), cmd_args=[
        "--epochs=6", "--eval_args={mode: uni100}", "--metrics=[GAUC]", "--valid_metric=GAUC", "--state=WARNING"])


def test_benchmark_rows_are_valid(tiny):
    from recbole_flexcode.benchmark import runner

    names = runner.DEFAULT_MODELS.split(",") + [f"FlexCode-{r}" for r in runner.FLEXCODE_SETTING_ROWS]
    names += ["FlexCode-L4", "FlexCode-no_align-L6"] + [f"SOLID-{r}" for r in runner.SOLID_ROWS] + ["SOLID"]
    for name in names:
        spec = runner.parse_row(name)
        FlexConfig(spec.model, "ml-tiny", config_dict=tiny, cmd_args={**spec.overrides, "seed": 2021})


RECBOLE_KEYS = {
    "gpu_id": "0", "worker": 0, "use_gpu": False, "checkpoint_dir": "x", "dataset_save_path": "x",
    "dataloaders_save_path": "x", "save_dataset": False, "seq_separator": " ", "field_separator": "\t",
    "USER_ID_FIELD": "user_id", "ITEM_LIST_LENGTH_FIELD": "item_length", "LIST_SUFFIX": "_list",
    "NEG_PREFIX": "neg_", "threshold": None, "benchmark_filename": None, "state": "WARNING", "seed": 7,
    "eval_step": 1, "weight_decay": 0.0, "clip_grad_norm": None, "reproducibility": True, "repeatable": True,
    "learner": "adam", "normalize_all": None, "rm_dup_inter": None, "val_interval": None, "unused_col": None,
    "transform": None, "enable_amp": False, "log_wandb": False, "shuffle": True, "encoding": "utf-8",
    "train_time_budget": 60, "results_dir": "r", "text_fields": ["movie_title"],
}


@pytest.mark.parametrize("model", ["FlexCode", "SOLID", "SASRec"])
def test_recbole_framework_keys_are_known_to_every_model(model, tiny):
    FlexConfig(model, "ml-tiny", config_dict=dict(tiny, **RECBOLE_KEYS))


def test_model_specific_keys(tiny):
    # RecBole models take their own settings (their YAML and what their classes read)...
    FlexConfig("SASRec", "ml-tiny", config_dict=tiny, cmd_args=["--n_layers=1", "--hidden_dropout_prob=0.1"])
    FlexConfig("BPR", "ml-tiny", config_dict=tiny, cmd_args=["--embedding_size=8"])
    # ...the plugin models theirs, plus cf_<SASRec key> for the collaborative stage
    cf = {f"cf_{k}": v for k, v in {"n_layers": 1, "n_heads": 2, "inner_size": 32, "hidden_dropout_prob": 0.1,
                                    "attn_dropout_prob": 0.1, "hidden_act": "relu", "layer_norm_eps": 1e-12,
                                    "initializer_range": 0.02}.items()}
    for model in ("FlexCode", "SOLID"):
        FlexConfig(model, "ml-tiny", config_dict=dict(tiny, **cf))
    with pytest.raises(ConfigError, match="unknown setting --cf_n_layers for SASRec"):
        FlexConfig("SASRec", "ml-tiny", config_dict=tiny, cmd_args=["--cf_n_layers=1"])
    with pytest.raises(ConfigError, match=r"unknown setting --cf_typo for FlexCode"):
        FlexConfig("FlexCode", "ml-tiny", config_dict=tiny, cmd_args=["--cf_typo=1"])


# ------------------------------------------------------------------------------- bad inputs

BAD_CMD = [
    # unknown keys, with the nearest valid one or the model they belong to
    ("FlexCode", ["--token_budgett=4"], ["unknown setting --token_budgett", "did you mean --token_budget?"]),
    ("SASRec", ["--max_item_list_length=5"], ["--max_item_list_length", "did you mean --MAX_ITEM_LIST_LENGTH?"]),
    ("FlexCode", ["--z_size=4"], ["unknown setting --z_size for FlexCode", "SOLID"]),
    ("SOLID", ["--token_budget=4"], ["unknown setting --token_budget for SOLID", "FlexCode"]),
    ("SASRec", ["--variant=full"], ["unknown setting --variant for SASRec", "FlexCode"]),
    # types
    ("FlexCode", ["--token_budget=abc"], ["--token_budget", "an int in 1..8", "'abc'"]),
    ("SASRec", ["--learning_rate=abc"], ["--learning_rate", "a number > 0", "'abc'"]),
    ("FlexCode", ["--learning_rate=abc"], ["--learning_rate", "a number > 0"]),
    ("FlexCode", ["--token_budget=3.7"], ["--token_budget", "an int in 1..8", "3.7"]),
    ("SASRec", ["--epochs=2.5"], ["--epochs", "an int >= 1"]),
    ("SASRec", ["--seed=abc"], ["--seed", "an int"]),
    ("SASRec", ["--train_batch_size=big"], ["--train_batch_size", "an int >= 1"]),
    ("SASRec", ["--eval_batch_size=0"], ["--eval_batch_size", "an int >= 1"]),
    ("SASRec", ["--MAX_ITEM_LIST_LENGTH=x"], ["--MAX_ITEM_LIST_LENGTH", "an int >= 1"]),
    ("SASRec", ["--topk=ten"], ["--topk", "an int or a list of ints >= 1"]),
    ("SASRec", ["--show_progress=maybe"], ["--show_progress", "true or false"]),
    ("FlexCode", ["--rqvae_hidden_sizes=[64, x]"], ["--rqvae_hidden_sizes", "a list of ints"]),
    # ranges
    ("FlexCode", ["--token_budget=0"], ["--token_budget", "1..8"]),
    ("FlexCode", ["--token_budget=9"], ["--token_budget", "1..8"]),
    ("FlexCode", ["--codebook_size=1"], ["--codebook_size", ">= 2"]),
    ("SASRec", ["--epochs=-1"], ["--epochs", ">= 1", "-1"]),
    ("SASRec", ["--epochs=0"], ["--epochs", ">= 1"]),
    ("SASRec", ["--train_time_budget=0"], ["--train_time_budget", "> 0, or ~"]),
    ("SASRec", ["--train_time_budget=-5"], ["--train_time_budget", "> 0"]),
    ("SASRec", ["--stopping_step=0"], ["--stopping_step", ">= 1"]),
    ("SASRec", ["--learning_rate=0"], ["--learning_rate", "> 0"]),
    ("FlexCode", ["--rqvae_learning_rate=-0.1"], ["--rqvae_learning_rate", "> 0"]),
    ("FlexCode", ["--cf_learning_rate=0"], ["--cf_learning_rate", "> 0"]),
    ("SOLID", ["--metacode_learning_rate=0"], ["--metacode_learning_rate", "> 0"]),
    ("FlexCode", ["--dropout_prob=1"], ["--dropout_prob", ">= 0 and < 1"]),
    ("SOLID", ["--hidden_dropout_prob=-0.1"], ["--hidden_dropout_prob", ">= 0 and < 1"]),
    ("FlexCode", ["--cf_hidden_dropout_prob=1.5"], ["--cf_hidden_dropout_prob", ">= 0 and < 1"]),
    ("FlexCode", ["--router_warmup_steps=-1"], ["--router_warmup_steps", ">= 0"]),
    ("SASRec", ["--topk=[5, 0]"], ["--topk", ">= 1"]),
    # choices
    ("FlexCode", ["--variant=bogus"], ["--variant", "full | semantic_only | cf_only | fix | no_align", "'bogus'"]),
    ("FlexCode", ["--training_mode=sometimes"], ["--training_mode", "staged | joint"]),
    ("FlexCode", ["--decode_mode=greedy"], ["--decode_mode", "beam | exact"]),
    ("FlexCode", ["--router_mode=sometimes"], ["--router_mode", "expected_loss | decoupled"]),
    ("FlexCode", ["--router_loss_balance=mean"], ["--router_loss_balance", "stratum | plain"]),
    ("SOLID", ["--hidden_act=softplus"], ["--hidden_act", "relu | gelu"]),
    ("FlexCode", ["--cf_hidden_act=softplus"], ["--cf_hidden_act", "gelu | relu"]),
    # cross-key rules
    ("FlexCode", ["--beam_size=5"], ["beam_size (5) must be >= the largest topk (10)"]),
    ("FlexCode", ["--topk=[5,50]"], ["beam_size (20) must be >= the largest topk (50)"]),
    ("FlexCode", ["--variant=fix", "--fixed_cf_tokens=4"], ["fixed_cf_tokens (4) must be between 0 and token_budget (3)"]),
    ("FlexCode", ["--fixed_cf_tokens=-1"], ["--fixed_cf_tokens", ">= 0"]),
    ("FlexCode", ["--router_warmup_steps=3", "--router_warmup_epochs=1"], ["not both"]),
    ("FlexCode", ["--hidden_size=15"], ["hidden_size (15) must be divisible by n_heads (2)"]),
    ("SOLID", ["--cf_n_heads=3"], ["cf_hidden_size (64) must be divisible by cf_n_heads (3)"]),
    ("SASRec", ["--valid_metric=NDCG@20"], ["valid_metric (NDCG@20)", "topk (5, 10)"]),
    ("SASRec", ["--valid_metric=MRR@10"], ["valid_metric (MRR@10)", "Recall, NDCG"]),
    ("SASRec", ["--valid_metric=NDCG"], ["valid_metric (NDCG) needs a cut-off"]),
    ("SASRec", ["--metrics=[Recall, Foo]"], ["unknown metric Foo"]),
    ("SASRec", ["--epochs=2", "--eval_step=3"], ["eval_step (3) must be <= epochs (2)"]),
    ("SASRec", ["--eval_args={split: {XX: 1}}"], ["eval_args: split must be one of"]),
    ("SASRec", ["--eval_args={split: {LS: valid_and_tset}}"], ["eval_args: split LS must be one of valid_and_test"]),
    ("SASRec", ["--eval_args={split: {RS: 0.8}}"], ["eval_args: split RS must be a list of ratios"]),
    ("SASRec", ["--eval_args={order: XO}"], ["eval_args: order must be one of RO, TO"]),
    ("SASRec", ["--eval_args={sp1it: {LS: valid_and_test}}"], ["eval_args: unknown key 'sp1it'"]),
    ("SASRec", ["--eval_args=full"], ["--eval_args", "a mapping"]),
    ("SASRec", ["--eval_args={mode: uni}"], ["eval_args: mode must be full, labeled, uniN or popN", "'uni'"]),
    ("SASRec", ["--eval_args={mode: {valid: full, test: pop0}}"], ["eval_args: mode must be", "'pop0'"]),
    # RecBole's own checks become one ConfigError too
    ("SASRec", ["--train_neg_sample_args={distribution: pop}", "--loss_type=BPR"], ["invalid configuration", "pop"]),
]


@pytest.mark.parametrize("model, args, needles", BAD_CMD, ids=[" ".join(a) for _, a, _ in BAD_CMD])
def test_bad_settings_are_one_config_error(model, args, needles, tiny):
    with pytest.raises(ConfigError) as info:
        FlexConfig(model, "ml-tiny", config_dict=tiny, cmd_args=args)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_several_unknown_keys_are_reported_together(tiny):
    with pytest.raises(ConfigError) as info:
        FlexConfig("FlexCode", "ml-tiny", config_dict=tiny, cmd_args=["--token_budgett=4", "--codebook_sise=8"])
    assert "--token_budgett" in str(info.value) and "--codebook_sise" in str(info.value)


def test_config_dict_keys_and_values_are_checked(tiny):
    with pytest.raises(ConfigError, match=r"unknown setting 'token_budgett' in config_dict for FlexCode \(did you mean token_budget\?\)"):
        FlexConfig("FlexCode", "ml-tiny", config_dict=dict(tiny, token_budgett=4))
    with pytest.raises(ConfigError, match=r"invalid value for 'epochs' in config_dict: must be an int >= 1, got -1"):
        FlexConfig("SASRec", "ml-tiny", config_dict=dict(tiny, epochs=-1))
    # the command line wins over config_dict, and only the effective value is checked
    cfg = FlexConfig("SASRec", "ml-tiny", config_dict=dict(tiny, epochs=-1), cmd_args=["--epochs=2"])
    assert cfg["epochs"] == 2


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "text, needles",
    [
        ("epochs: [1\n", ["malformed YAML", "line 2"]),
        ("epochs: 1\n  bad: indent\n", ["malformed YAML", "line 2, column"]),
        ("- epochs\n- 1\n", ["expected a mapping of setting: value, got a list"]),
        ("just a string\n", ["expected a mapping", "got a string"]),
        ("token_budgett: 4\n", ["unknown setting 'token_budgett' in", "did you mean token_budget?"]),
        ("token_budget: 3.7\n", ["invalid value for 'token_budget' in", "an int in 1..8"]),
        ("variant: sideways\n", ["invalid value for 'variant' in", "full | semantic_only"]),
    ],
    ids=["unclosed-list", "bad-indent", "a-list", "a-string", "unknown-key", "float-for-int", "bad-choice"],
)
def test_bad_config_files(text, needles, tiny, tmp_path):
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        FlexConfig("FlexCode", "ml-tiny", config_file_list=[path], config_dict=tiny)
    message = str(info.value)
    assert path in message and "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_config_file_values_are_read_once_with_recbole_floats(tiny, tmp_path):
    path = _write(tmp_path / "ok.yaml", "learning_rate: 1e-2\nmodel: SASRec\nstopping_step: 3\n")
    cfg = FlexConfig(None, "ml-tiny", config_file_list=[path], config_dict=tiny)
    assert cfg["model"] == "SASRec" and cfg["learning_rate"] == pytest.approx(1e-2) and cfg["stopping_step"] == 3
    assert isinstance(cfg["learning_rate"], float)
    assert FlexConfig("SASRec", "ml-tiny", config_file_list=[_write(tmp_path / "e.yaml", "")], config_dict=tiny)


@pytest.mark.parametrize("name", ["Nope", "sasrec", "foo.bar", "lightgbmx"])
def test_unknown_model_lists_models_without_optional_packages(name):
    with pytest.raises(ConfigError) as info:
        get_model_class(name)
    message = str(info.value)
    assert message.startswith(f"unknown model '{name}'")
    assert "FlexCode" in message and "SOLID" in message and "SASRec" in message and "BERT4Rec" in message
    assert "lightgbm" not in message.replace(name, "") and "xgboost" not in message
    if name == "sasrec":
        assert "did you mean SASRec?" in message


# ---------------------------------------------------------------------------------- warnings


def test_settings_without_effect_are_warnings(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="recbole_flexcode.config"):
        cfg = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny,
                         cmd_args=["--fixed_cf_tokens=1", "--recode_every=5", "--variant=cf_only", "--align_weight=0.5"])
    assert len(cfg.config_warnings) == 3
    assert any("fixed_cf_tokens" in w and "variant=fix" in w for w in cfg.config_warnings)
    assert any("recode_every" in w and "training_mode=staged" in w for w in cfg.config_warnings)
    assert any("align_weight" in w and "variant=cf_only" in w for w in cfg.config_warnings)
    assert [r.getMessage() for r in caplog.records] == [f"config: {w}" for w in cfg.config_warnings]
    # the same settings where they do matter: no warning
    cfg = FlexConfig("FlexCode", "ml-tiny", config_dict=tiny,
                     cmd_args=["--fixed_cf_tokens=1", "--variant=fix", "--training_mode=joint", "--recode_every=5"])
    assert cfg.config_warnings == []


def test_checked_specs_cover_recboles_common_numeric_keys():
    specs = config_check.recbole_specs()
    for key in ("epochs", "learning_rate", "train_batch_size", "eval_batch_size", "stopping_step", "seed",
                "topk", "MAX_ITEM_LIST_LENGTH"):
        assert key in specs, key
    assert specs["learning_rate"].types == ("float",) and specs["seed"].types == ("int",)
    assert isinstance(specs["epochs"], Spec) and specs["epochs"].check(0)[1] is not None
