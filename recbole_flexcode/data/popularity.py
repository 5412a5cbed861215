"""Item popularity statistics from the training split only (FlexCode §4.3 item features).

``x_i = [log(1+f_i), age_i, sparsity_i, uncertainty_i]``:

* ``f_i``: interactions of item ``i`` in the training split;
* ``age_i``: time from the item's first training interaction to the end of the training
  period (how long it has been in the system);
* ``sparsity_i``: inverse interaction density, ``(active span + 1 day) / f_i`` — an item with
  few interactions spread over a long time is sparse;
* ``uncertainty_i``: variance of the item's collaborative embedding across the CF model's
  training epochs (computed by :mod:`recbole_flexcode.embeddings.collaborative`).

The paper does not say how features are normalised.  Ours: heavy-tailed ones (frequency,
sparsity, uncertainty) through ``log1p``, then every feature min-max scaled to ``[0, 1]`` over
real items, so the router's input scale does not depend on the dataset (docs/design.md).
"""

from __future__ import annotations

import numpy as np

DAY = 86400.0


def training_item_counts(train_dataset) -> np.ndarray:
    """Interactions per item id in the training split, counting every position of every sequence.

    A RecBole sequential training set holds one row per prefix (target ``item_id`` plus the
    history ``item_id_list``); every training interaction is a target once, except each user's
    first item, which only ever appears as history of the length-1 row.
    """
    iid = train_dataset.iid_field
    n_items = train_dataset.item_num
    inter = train_dataset.inter_feat
    counts = np.bincount(inter[iid].numpy(), minlength=n_items)
    list_field = iid + train_dataset.config["LIST_SUFFIX"]
    len_field = train_dataset.config["ITEM_LIST_LENGTH_FIELD"]
    if list_field in inter.columns:
        first = inter[len_field].numpy() == 1
        counts += np.bincount(inter[list_field][:, 0].numpy()[first], minlength=n_items)
    counts[0] = 0
    return counts.astype(np.int64)


def popularity_strata(counts: np.ndarray, n_strata: int) -> np.ndarray:
    """Stratum ``0..n_strata-1`` of every item by quantiles of ``log(1 + count)`` (0 = rarest).

    ``counts`` is indexed by item id with the padding id 0 first, as from
    :func:`training_item_counts`; the quantiles are taken over the real items and the padding id
    gets stratum 0.  Ties share a stratum, so a heavy tail of equal counts can leave a stratum empty.
    """
    log_counts = np.log1p(np.asarray(counts)[1:].astype(np.float64))
    edges = np.quantile(log_counts, np.linspace(0, 1, n_strata + 1)[1:-1]) if len(log_counts) else []
    return np.concatenate([[0], np.searchsorted(edges, log_counts, side="right")]).astype(np.int64)


def _minmax(values: np.ndarray) -> np.ndarray:
    real = values[1:]
    lo, hi = float(real.min()), float(real.max())
    out = np.zeros_like(values, dtype=np.float32)
    if hi > lo:
        out[1:] = (real - lo) / (hi - lo)
    return out


def item_time_span(train_dataset) -> tuple[np.ndarray, np.ndarray, float]:
    """First and last training timestamp per item (targets' times), and the split's end time."""
    n_items = train_dataset.item_num
    time_field = train_dataset.time_field
    inter = train_dataset.inter_feat
    if time_field is None or time_field not in inter.columns:
        zeros = np.zeros(n_items)
        return zeros, zeros, 0.0
    items = inter[train_dataset.iid_field].numpy()
    times = inter[time_field].numpy().astype(np.float64)
    end = float(times.max()) if len(times) else 0.0
    first = np.full(n_items, end)
    last = np.full(n_items, end)
    np.minimum.at(first, items, times)
    last[:] = first
    np.maximum.at(last, items, times)
    return first, last, end


def item_features(train_dataset, uncertainty: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The router's item features ``x_i`` (``[n_items, 4]``, row 0 = padding = zeros) and raw stats."""
    counts = training_item_counts(train_dataset)
    first, last, end = item_time_span(train_dataset)
    span_days = (last - first) / DAY
    age_days = (end - first) / DAY
    sparsity = (span_days + 1.0) / np.maximum(counts, 1)
    if uncertainty is None:
        uncertainty = np.zeros(len(counts))
    feats = np.stack(
        [
            _minmax(np.log1p(counts.astype(np.float64))),
            _minmax(age_days),
            _minmax(np.log1p(sparsity)),
            _minmax(np.log1p(np.asarray(uncertainty, dtype=np.float64) * 1e3)),
        ],
        axis=1,
    ).astype(np.float32)
    feats[0] = 0.0
    return {"features": feats, "counts": counts, "age_days": age_days, "sparsity": sparsity}
