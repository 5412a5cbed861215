"""Shared fixtures: tiny RecBole datasets cut from the ml-100k copy inside the recbole wheel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

import recbole_flexcode  # noqa: F401  (compatibility fixes before any recbole import)

ML100K = Path(os.path.dirname(__import__("recbole").__file__)) / "dataset_example" / "ml-100k"


def write_ml100k_slice(root: Path, name: str = "ml-tiny", n_users: int = 60) -> Path:
    """Atomic files with the first ``n_users`` users of ml-100k and the items they rated."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    keep_users = {str(u) for u in range(1, n_users + 1)}
    items = set()
    with open(ML100K / "ml-100k.inter", encoding="utf-8") as src, open(folder / f"{name}.inter", "w", encoding="utf-8") as dst:
        header = src.readline()
        dst.write(header)
        for line in src:
            user, item = line.split("\t")[:2]
            if user in keep_users:
                dst.write(line)
                items.add(item)
    with open(ML100K / "ml-100k.item", encoding="utf-8") as src, open(folder / f"{name}.item", "w", encoding="utf-8") as dst:
        dst.write(src.readline())
        for line in src:
            if line.split("\t", 1)[0] in items:
                dst.write(line)
    return folder


TINY_TEXT_FIELDS = ["movie_title", "release_year", "class"]


def tiny_config(data_path, **extra) -> dict:
    """Settings every test on ``ml-tiny`` needs (no dataset YAML exists for it), plus ``extra``."""
    cfg = {
        "data_path": str(data_path),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", *TINY_TEXT_FIELDS]},
        "text_fields": TINY_TEXT_FIELDS,
        "user_inter_num_interval": "[5,inf)",
        "item_inter_num_interval": "[5,inf)",
        "MAX_ITEM_LIST_LENGTH": 10,
        "show_progress": False,
        "epochs": 1,
    }
    cfg.update(extra)
    return cfg


#: FlexCode at toy sizes: every stage and the generator build and train in seconds on ``ml-tiny``.
TINY_FLEXCODE = {
    "token_budget": 3, "codebook_size": 16, "code_dim": 16, "rqvae_hidden_sizes": [32], "rqvae_epochs": 15,
    "rqvae_batch_size": 256, "align_proj_size": 16, "cf_epochs": 2, "cf_hidden_size": 16, "cf_inner_size": 32,
    "cf_n_layers": 1, "router_hidden_size": 8, "hidden_size": 16, "inner_size": 32, "n_encoder_layers": 1,
    "n_decoder_layers": 1, "dropout_prob": 0.1, "beam_size": 20, "train_batch_size": 128,
}


class FixedRouter(nn.Module):
    """Stands in for the PATA router: fixed split probabilities for every item."""

    def __init__(self, probs):
        super().__init__()
        self.register_buffer("probs", probs)
        self.budget = probs.shape[1] - 1

    def forward(self, features):
        return self.probs

    def alpha(self, probs):
        return (probs * torch.arange(self.budget + 1, dtype=probs.dtype)).sum(-1) / self.budget


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """``data_path`` holding ``ml-tiny/`` (60 users, ~1.1k items before 5-core filtering)."""
    root = tmp_path_factory.mktemp("data")
    write_ml100k_slice(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    """Tiny models train faster on one thread, and CI machines have two cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
