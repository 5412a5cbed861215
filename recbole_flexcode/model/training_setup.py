"""What a plugin model trains with, checked against the RecBole config it is built from.

FlexCode's generator is trained by token cross-entropy over the full vocabulary, so a RecBole
config that samples negatives (RecBole's default for non-CE losses) would hand it sampled items as
generation targets; SOLID trains pointwise BCE on sampled negatives and has nothing to learn from
a config without them. Both refuse the other's setup with one clear message.
"""

from __future__ import annotations

from recbole_flexcode.config import ConfigError


def _sampling(config) -> str:
    args = config["train_neg_sample_args"] if "train_neg_sample_args" in config else None
    return "none" if not args else str(args.get("distribution", "none"))


def require_full_softmax(config, model: str) -> None:
    """``loss_type: CE`` and no negative sampling."""
    if config["loss_type"] != "CE":
        raise ConfigError(f"{model} trains with token cross-entropy: loss_type must be CE, got {config['loss_type']}")
    if _sampling(config) != "none":
        raise ConfigError(f"{model} generates the next item's tokens: train_neg_sample_args must be None "
                          f"(sampled negatives would become generation targets), got {config['train_neg_sample_args']}")


def require_sampled_negatives(config, model: str) -> None:
    """``loss_type: BCE`` with sampled negatives."""
    if config["loss_type"] != "BCE":
        raise ConfigError(f"{model} trains pointwise BCE: loss_type must be BCE, got {config['loss_type']}")
    if _sampling(config) == "none":
        raise ConfigError(f"{model} trains on sampled negatives: set train_neg_sample_args "
                          "(see properties/model/SOLID.yaml)")
