"""Collaborative item embeddings ``c_i`` from a RecBole SASRec (FlexCode §4.1.2).

The SASRec is RecBole's own class, trained with cross-entropy on the *training split only*:
the dataset a RecBole model receives in its constructor is ``train_data.dataset``, whose rows
are the prefixes of each user's training sequence, so no validation or test interaction can
reach this stage.  Besides the final item embedding table it returns each item's
*uncertainty*, the variance of its embedding across training epochs (an input feature of the
PATA router, §4.3).  Results are cached under a key made of the training interactions, the
SASRec settings and the seed.

Two ways to feed it the same training targets (``cf_sequences``):

* ``prefixes`` — RecBole's own: one row per training target, its last ``MAX_ITEM_LIST_LENGTH``
  items as the history, the loss at the row's last position (RecBole's ``calculate_loss``);
* ``windows`` — SASRec's original all-position objective (Kang & McAuley 2018): each user's
  training sequence is cut into windows of ``W = MAX_ITEM_LIST_LENGTH`` inputs overlapping by half
  (stride ``W // 2``), and every position's output predicts the next item, each target counted
  once (in the first window it falls into with at least ``W - W // 2`` items of history, or the
  user's first window). A target sees the same items as its prefix row when fewer than ``W`` come
  before it and between ``W - W // 2 + 1`` and ``W`` otherwise; the transformer runs over
  ``~2`` positions per target instead of ``W``, so an epoch costs about ``W / 2`` times less
  (docs/design.md, "Speed on a 2-core CPU"). The windows are built from the training rows alone
  (each row's history and target), checked against every row, so no held-out item can enter.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time

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


CF_SEQUENCES = ("prefixes", "windows")


def format_eta(done: int, total: int, elapsed: float) -> str:
    """``"elapsed 12.3 s, about 45.6 s left"`` after ``done`` of ``total`` equal units of work."""
    left = elapsed / max(done, 1) * max(total - done, 0)
    return f"elapsed {elapsed:.1f} s, about {left:.1f} s left"


def user_sequences(train_dataset, max_len: int, list_suffix: str = "_list",
                   length_field: str = "item_length") -> tuple[list[np.ndarray], np.ndarray] | None:
    """Each user's training item sequence, rebuilt from the training rows (history + target).

    RecBole's training split holds one row per target in time order within a user: the row of the
    user's ``p``-th target (from 0) holds the ``min(t, max_len)`` items before position ``t = t0 + p``
    (``t0``: the first row's history length). Returns ``(sequences, t0)``: a list of ``int64`` arrays and
    the first target position of each user, or None when some row does not fit its rebuilt sequence
    (another row layout), so the caller trains on the rows themselves. Vectorised over rows.
    """
    inter = train_dataset.inter_feat
    uid, iid = train_dataset.uid_field, train_dataset.iid_field
    users = inter[uid].numpy()
    targets = inter[iid].numpy()
    hist = inter[iid + list_suffix].numpy()
    lengths = inter[length_field].numpy()
    if len(users) == 0:
        return None
    order = np.argsort(users, kind="stable")
    users, targets, hist, lengths = users[order], targets[order], hist[order], lengths[order]
    first = np.r_[True, users[1:] != users[:-1]]
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)  # p: the row's rank within its user
    t0 = lengths[starts]  # history length of each user's first row
    if np.any(t0 < 1) or np.any(t0 > max_len):
        return None
    pos = np.repeat(t0, counts) + rank  # absolute position t of each row's target
    # flat layout: user k's sequence is flat[off[k] : off[k] + t0[k] + counts[k]]
    n_seq = t0 + counts
    off = np.r_[0, np.cumsum(n_seq)[:-1]]
    flat = np.zeros(int(n_seq.sum()), dtype=np.int64)
    first_hist = hist[starts]
    cols = np.arange(max_len)
    head = cols[None, :] < t0[:, None]
    flat[(off[:, None] + cols[None, :])[head]] = first_hist[head]
    row_off = np.repeat(off, counts)
    flat[row_off + pos] = targets
    # every row must be (the min(t, max_len) items before t, the item at t) of its rebuilt sequence
    if np.any(lengths != np.minimum(pos, max_len)):
        return None
    idx = row_off[:, None] + pos[:, None] - lengths[:, None] + cols[None, :]
    valid = cols[None, :] < lengths[:, None]
    expect = np.where(valid, flat[np.where(valid, idx, 0)], 0)
    if not np.array_equal(np.where(valid, hist[:, :max_len], 0), expect):
        return None
    return [flat[o : o + n] for o, n in zip(off, n_seq)], t0


def sequence_windows(sequences, first_targets, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows over user sequences for the all-position objective (module docstring).

    Returns ``(inputs [n_windows, W], targets [n_windows, W])``, left-aligned with 0 = padding:
    position ``j`` of a window predicts ``targets[:, j]``; a target of 0 is not trained on (padding,
    a position before the user's first training target, or a target an earlier window already
    counted). Windows start at ``0, S, 2S, ...`` (``S = max(1, W // 2)``); the first of a user counts
    every position, later ones the last ``S``. Every training target is counted exactly once.
    """
    w = int(max_len)
    stride = max(1, w // 2)
    inputs, outputs = [], []
    cols = np.arange(w)
    for seq, t0 in zip(sequences, first_targets):
        n = len(seq)
        n_windows = 1 + max(0, math.ceil((n - 1 - w) / stride))
        a = np.arange(n_windows)[:, None] * stride  # window starts
        pos = a + cols[None, :]  # input positions
        tgt = pos + 1  # target positions
        ok_in = pos < n - 1  # an input whose next item is in the sequence
        counted = (a == 0) | (cols[None, :] >= w - stride)
        ok_t = ok_in & counted & (tgt >= t0)
        inputs.append(np.where(ok_in, seq[np.minimum(pos, n - 1)], 0))
        outputs.append(np.where(ok_t, seq[np.minimum(tgt, n - 1)], 0))
    return torch.as_tensor(np.concatenate(inputs)), torch.as_tensor(np.concatenate(outputs))


def all_position_output(model, item_seq: torch.Tensor) -> torch.Tensor:
    """RecBole's ``SASRec.forward`` at every position, ``[B, W, d]`` (its forward returns the last one).

    SASRec's attention is causal, so position ``j`` of a left-aligned sequence sees the items
    ``0..j`` only: its output is what ``forward`` returns for the prefix of length ``j + 1``.
    """
    model.gather_indexes = lambda output, index: output  # the instance attribute shadows the method ...
    try:
        return model.forward(item_seq, (item_seq > 0).sum(1).clamp_min(1))
    finally:
        del model.gather_indexes  # ... until it is removed again


def window_loss(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the counted positions of a batch of windows (``targets > 0``)."""
    output = all_position_output(model, inputs)
    keep = targets > 0
    logits = output[keep] @ model.item_embedding.weight.t()
    return torch.nn.functional.cross_entropy(logits, targets[keep])


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
    sequences: str | None = None,
) -> dict[str, np.ndarray]:
    """Train SASRec on the training split; return ``{'embeddings': [n_items, d], 'uncertainty': [n_items]}``.

    ``sequences``: ``prefixes`` | ``windows`` (module docstring; default: ``config['cf_sequences']``,
    else ``prefixes``). In ``windows`` mode ``batch_size`` counts windows. One log line per epoch with
    its loss, the time spent and an estimate of the time left.
    """
    from recbole.data.dataloader import TrainDataLoader
    from recbole.model.sequential_recommender import SASRec
    from recbole.utils import init_seed

    log = logger or logging.getLogger(__name__)
    if sequences is None:
        sequences = config["cf_sequences"] if "cf_sequences" in config and config["cf_sequences"] else "prefixes"
    if sequences not in CF_SEQUENCES:
        raise ValueError(f"cf_sequences: unknown value '{sequences}' (choose from {', '.join(CF_SEQUENCES)})")
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
        # absent for prefixes: the key (and every cache entry) of RecBole's own row-by-row training is unchanged
        **({"sequences": sequences} if sequences != "prefixes" else {}),
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
    windows = None
    if sequences == "windows":
        rebuilt = user_sequences(train_dataset, int(config["MAX_ITEM_LIST_LENGTH"]), config["LIST_SUFFIX"],
                                 config["ITEM_LIST_LENGTH_FIELD"])
        if rebuilt is None:
            log.warning("collaborative embeddings: the training rows do not form per-user sequences; "
                        "training on the rows (cf_sequences=prefixes)")
        else:
            windows = sequence_windows(*rebuilt, int(config["MAX_ITEM_LIST_LENGTH"]))
            windows = tuple(x.to(config["device"]) for x in windows)
    if windows is None:
        loader = TrainDataLoader(sub, train_dataset, None, shuffle=True)
        n_batches = len(loader)
    else:
        n_batches = math.ceil(len(windows[0]) / batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    n = train_dataset.item_num
    mean = np.zeros((n, settings["hidden_size"]), dtype=np.float64)
    m2 = np.zeros_like(mean)
    log.info("collaborative embeddings: training SASRec on the training split (%d rows, %d epochs, %s%s)", len(inter),
             epochs, sequences if windows is not None else "prefixes",
             f": {len(windows[0])} windows of {windows[0].shape[1]}" if windows is not None else "")
    start = time.time()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        if windows is None:
            batches = loader
        else:
            perm = torch.randperm(len(windows[0]), device=windows[0].device)
            batches = (perm[i : i + batch_size] for i in range(0, len(perm), batch_size))
        batches = tqdm(batches, desc=f"SASRec (CF) epoch {epoch + 1}/{epochs}", total=n_batches,
                       disable=not show_progress, leave=False)
        for batch in batches:
            optimizer.zero_grad()
            if windows is None:
                loss = model.calculate_loss(batch.to(config["device"]))
            else:
                loss = window_loss(model, windows[0][batch], windows[1][batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        log.info("collaborative embeddings: epoch %d/%d loss %.4f (%s)", epoch + 1, epochs, total / max(n_batches, 1),
                 format_eta(epoch + 1, epochs, time.time() - start))
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
        path = cache.save("cf_emb", key, result, meta={"settings": settings, "epochs": epochs, "sequences": sequences})
        log.info("collaborative embeddings: cached at %s", path)
    return result
