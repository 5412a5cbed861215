"""Collaborative item embeddings ``c_i`` from a RecBole SASRec (FlexCode §4.1.2).

The SASRec is RecBole's own class, trained with cross-entropy on the *training split only*:
the dataset a RecBole model receives in its constructor is ``train_data.dataset``, whose rows
are the prefixes of each user's training sequence, so no validation or test interaction can
reach this stage.  Besides the final item embedding table it returns each item's
*uncertainty*, the variance of its embedding across training epochs (an input feature of the
PATA router, §4.3).  Results are cached under a key made of the training interactions, the
SASRec settings and the seed.
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import torch
from tqdm import tqdm

from recbole_flexcode.config import load_yaml
from recbole_flexcode.embeddings.cache import ArrayCache, cache_key

#: SASRec settings that can be overridden from the FlexCode config with a ``cf_`` prefix.
SASREC_KEYS = (
    "n_layers",
    "n_heads",
    "hidden_size",
    "inner_size",
    "hidden_dropout_prob",
    "attn_dropout_prob",
    "hidden_act",
    "layer_norm_eps",
    "initializer_range",
)


def sasrec_settings(config) -> dict:
    """RecBole's SASRec defaults, overridden by ``cf_<key>`` entries of ``config``."""
    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "properties", "model", "SASRec.yaml")
    with open(path, "r", encoding="utf-8") as f:
        # RecBole's float rule (plain YAML reads "1e-12" as a string). Not config.yaml_loader:
        # a Config unpickled from a checkpoint no longer has it.
        settings = load_yaml(f) or {}
    for key in SASREC_KEYS:
        value = config[f"cf_{key}"] if f"cf_{key}" in config else None
        if value is not None:
            settings[key] = value
    settings["loss_type"] = "CE"
    return {k: settings[k] for k in (*SASREC_KEYS, "loss_type")}


def _sub_config(config, overrides: dict):
    """A shallow copy of a RecBole Config whose final dict carries ``overrides``."""
    sub = copy.copy(config)
    sub.final_config_dict = dict(config.final_config_dict)
    sub.final_config_dict.update(overrides)
    return sub


def collaborative_embeddings(
    config,
    train_dataset,
    epochs: int = 10,
    learning_rate: float = 1e-3,
    batch_size: int = 256,
    cache_dir: str | None = None,
    show_progress: bool = True,
    logger: logging.Logger | None = None,
) -> dict[str, np.ndarray]:
    """Train SASRec on the training split; return ``{'embeddings': [n_items, d], 'uncertainty': [n_items]}``."""
    from recbole.data.dataloader import TrainDataLoader
    from recbole.model.sequential_recommender import SASRec
    from recbole.utils import init_seed

    log = logger or logging.getLogger(__name__)
    settings = sasrec_settings(config)
    inter = train_dataset.inter_feat
    iid = train_dataset.iid_field
    list_field = iid + config["LIST_SUFFIX"]
    key = cache_key(
        stage="sasrec_cf",
        dataset=config["dataset"],
        targets=inter[iid].numpy(),
        histories=inter[list_field].numpy(),
        n_items=train_dataset.item_num,
        max_len=config["MAX_ITEM_LIST_LENGTH"],
        settings=settings,
        epochs=epochs,
        lr=learning_rate,
        batch_size=batch_size,
        seed=config["seed"],
    )
    cache = ArrayCache(cache_dir) if cache_dir else None
    if cache is not None:
        hit = cache.load("cf_emb", key)
        if hit is not None:
            log.info("collaborative embeddings: cache hit %s", cache.path("cf_emb", key))
            return hit

    sub = _sub_config(
        config,
        {
            **settings,
            "train_batch_size": batch_size,
            "train_neg_sample_args": {"distribution": "none", "sample_num": "none", "alpha": "none", "dynamic": False, "candidate_num": 0},
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(sub, train_dataset).to(config["device"])
    loader = TrainDataLoader(sub, train_dataset, None, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    n = train_dataset.item_num
    mean = np.zeros((n, settings["hidden_size"]), dtype=np.float64)
    m2 = np.zeros_like(mean)
    log.info("collaborative embeddings: training SASRec on the training split (%d rows, %d epochs)", len(inter), epochs)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        batches = tqdm(loader, desc=f"SASRec (CF) epoch {epoch + 1}/{epochs}", disable=not show_progress, leave=False)
        for interaction in batches:
            interaction = interaction.to(config["device"])
            optimizer.zero_grad()
            loss = model.calculate_loss(interaction)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        log.info("collaborative embeddings: epoch %d loss %.4f", epoch + 1, total / max(len(loader), 1))
        # Welford update of each item's embedding variance across epochs
        snapshot = model.item_embedding.weight.detach().cpu().double().numpy()
        delta = snapshot - mean
        mean += delta / (epoch + 1)
        m2 += delta * (snapshot - mean)
    embeddings = model.item_embedding.weight.detach().cpu().float().numpy()
    variance = (m2 / max(epochs - 1, 1)).mean(axis=1).astype(np.float32)
    embeddings[0] = 0.0
    variance[0] = 0.0
    result = {"embeddings": embeddings.astype(np.float32), "uncertainty": variance}
    if cache is not None:
        path = cache.save("cf_emb", key, result, meta={"settings": settings, "epochs": epochs})
        log.info("collaborative embeddings: cached at %s", path)
    return result
