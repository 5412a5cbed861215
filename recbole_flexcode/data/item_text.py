"""One text string per item, built from a RecBole dataset's item features.

FlexCode §4.1.1 (semantic codebook): item text -> pretrained sentence encoder.  This module
produces the *item text* half: for every internal item id it joins the configured fields as
``"field: value; field: value"`` (the field names tell the encoder what each part is), so
that :func:`recbole_flexcode.embeddings.text.item_text_embeddings` can encode it.
"""

from __future__ import annotations

import html
import logging
import math
import re
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

_WS = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _WS.sub(" ", html.unescape(text)).strip()


def _format_float(value: Any, dtype: np.dtype | None = None) -> str:
    """Shortest faithful decimal for ``value`` ('' for NaN/inf); integers without '.0'."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(f):
        return ""
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    scalar = np.dtype(dtype).type(f) if dtype is not None and np.dtype(dtype).kind == "f" else np.float64(f)
    return np.format_float_positional(scalar, trim="-")


def _to_numpy(column: Any) -> np.ndarray:
    """A feature column (torch tensor, pandas Series or array) as a NumPy array."""
    if hasattr(column, "detach"):
        return column.detach().cpu().numpy()
    if hasattr(column, "to_numpy"):
        return column.to_numpy()
    return np.asarray(column)


def _token_string(id2token: np.ndarray, token_id: Any) -> str:
    try:
        f = float(token_id)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(f):
        return ""
    idx = int(f)
    if idx <= 0 or idx >= len(id2token):  # 0 is the padding token '[PAD]'
        return ""
    return str(id2token[idx])


def _row_values(row: Any) -> list:
    """The elements of one sequence cell (an array, a list, or a scalar)."""
    if row is None:
        return []
    if isinstance(row, float) and math.isnan(row):
        return []
    arr = np.asarray(row)
    return arr.reshape(-1).tolist()


def _mean_imputed(values: np.ndarray, skip_row: np.ndarray) -> np.ndarray:
    """Rows whose value is RecBole's fill for a missing ``float`` (the column mean).

    ``Dataset._fill_nan`` replaces a missing ``float`` by the mean of the column, and filling
    with the mean leaves the mean unchanged, so those rows hold exactly the mean of the
    whole column.  Only applies when the column has at least two distinct values.
    """
    real = values[np.isfinite(values) & ~skip_row]
    if real.size == 0 or np.unique(real).size < 2:
        return np.zeros(values.shape, dtype=bool)
    mean = real.mean(dtype=np.float64)
    tol = 1e-6 * max(abs(mean), float(np.abs(real).max()), 1e-12)
    return np.isfinite(values) & (np.abs(values - mean) <= tol)


def _field_texts(
    dataset,
    field: str,
    column: Any,
    n_rows: int,
    padding_rows: np.ndarray,
    skip_imputed_float: bool = True,
) -> list[str]:
    """The string value of ``field`` for each row of the item feature table."""
    from recbole.utils import FeatureType

    ftype = dataset.field2type[field]
    numerical = field in (dataset.config["numerical_features"] or [])
    out = [""] * n_rows

    if ftype == FeatureType.TOKEN:
        id2token = dataset.field2id_token[field]
        values = _to_numpy(column).reshape(n_rows, -1)[:, 0]
        for r in range(n_rows):
            out[r] = _token_string(id2token, values[r])

    elif ftype == FeatureType.TOKEN_SEQ:
        id2token = dataset.field2id_token[field]
        if hasattr(column, "detach") or (isinstance(column, np.ndarray) and column.dtype != object):
            rows = _to_numpy(column).reshape(n_rows, -1)  # padded [n_rows, max_len], 0 = padding
        else:
            rows = [_row_values(v) for v in _to_numpy(column)]  # DataFrame cells (before build())
        for r in range(n_rows):
            tokens = [_token_string(id2token, t) for t in rows[r]]
            out[r] = " ".join(t for t in tokens if t)

    elif ftype == FeatureType.FLOAT:
        raw = _to_numpy(column)
        dtype = raw.dtype if raw.dtype.kind == "f" else None
        # RecBole stores numerical features as (value, 1) or, discretized, (1, bucket) pairs.
        discretized = field in (dataset.config["discretization"] or {})
        pick = 1 if discretized else 0
        cells = raw.reshape(n_rows, -1) if raw.dtype != object else raw
        values = np.full(n_rows, np.nan)
        for r in range(n_rows):
            vals = _row_values(cells[r])
            if vals:
                try:
                    values[r] = float(vals[pick] if numerical and len(vals) == 2 else vals[0])
                except (TypeError, ValueError):
                    pass
        if skip_imputed_float and not discretized:
            imputed = _mean_imputed(values, skip_row=padding_rows)
            if imputed.any():
                logger.debug("item_texts: %d values of %r look mean-imputed, skipped", imputed.sum(), field)
                values[imputed] = np.nan
        for r in range(n_rows):
            out[r] = _format_float(values[r], dtype)

    elif ftype == FeatureType.FLOAT_SEQ:
        discretized = field in (dataset.config["discretization"] or {})
        if hasattr(column, "detach") or (isinstance(column, np.ndarray) and column.dtype != object):
            arr = _to_numpy(column)
            dtype = arr.dtype
            if numerical and arr.ndim == 3 and arr.shape[-1] == 2:
                arr = arr[..., 1] if discretized else arr[..., 0]
            rows = arr.reshape(n_rows, -1)
            # padded with 0.0: drop the trailing padding only
            rows = [np.trim_zeros(np.asarray(row), "b").tolist() for row in rows]
        else:
            dtype = None
            rows = []
            for cell in _to_numpy(column):
                if numerical and isinstance(cell, tuple) and len(cell) == 2:
                    cell = cell[1] if discretized else cell[0]
                rows.append(_row_values(cell))
        for r in range(n_rows):
            parts = (_format_float(v, dtype) for v in rows[r])
            out[r] = " ".join(p for p in parts if p)

    else:  # pragma: no cover - RecBole has no other feature types
        logger.warning("item_texts: field %r has unsupported type %s, skipped", field, ftype)
    return out


def item_texts(
    dataset, fields: Sequence[str], *, skip_imputed_float: bool = True
) -> tuple[list[str], list[bool]]:
    """Compose one text per item id ``0 .. dataset.item_num - 1``.

    FlexCode §4.1.1 (semantic codebook): item text -> pretrained sentence encoder.

    Args:
        dataset: a :class:`recbole.data.dataset.Dataset` (e.g. the training split of a
            ``SequentialDataset``), before or after ``build()``.
        fields: item fields to use, in order, e.g. ``['title', 'brand', 'categories',
            'price', 'description']`` (Amazon) or ``['movie_title', 'release_year',
            'class']`` (ml-100k).  Fields absent from the dataset are skipped.

    Returns:
        ``(texts, has_text)``: ``texts[i]`` is ``"field: value; field: value"`` for item ``i``
        (HTML entities unescaped, whitespace collapsed, empty fields left out); ``texts[0]``
        (the padding item) is ``''``.  ``has_text[i]`` is ``False`` for the padding item and
        for items whose listed fields are all empty.

    Values are rendered from RecBole's internal ids: ``token`` -> its original string,
    ``token_seq`` -> its tokens joined by spaces, ``float``/``float_seq`` -> shortest decimal
    (NaN and padding skipped; after RecBole's normalization, if the config asks for one).
    RecBole fills a missing ``float`` with the column mean; with ``skip_imputed_float`` (the
    default) a value equal to the mean of a column with at least two distinct values is
    treated as missing, so an item without a price does not get the average price as text.
    """
    n_items = int(dataset.item_num)
    texts = [""] * n_items
    has_text = [False] * n_items
    item_feat = getattr(dataset, "item_feat", None)
    if item_feat is None or n_items == 0:
        logger.warning("item_texts: dataset has no item features; every item text is empty")
        return texts, has_text

    columns = list(item_feat.columns)
    present = [f for f in fields if f in columns and f in dataset.field2type]
    missing = [f for f in fields if f not in present]
    if missing:
        logger.info("item_texts: fields not in the dataset, skipped: %s", missing)
    if not present:
        logger.warning("item_texts: none of the fields %s is in the item features", list(fields))
        return texts, has_text

    n_rows = len(item_feat)
    iid_field = dataset.iid_field
    if iid_field in columns:
        row_ids = _to_numpy(item_feat[iid_field]).reshape(n_rows, -1)[:, 0]
        row_ids = np.asarray(row_ids, dtype=np.float64)
    else:
        row_ids = np.arange(n_rows, dtype=np.float64)

    padding_rows = ~np.isfinite(row_ids) | (row_ids <= 0)
    per_field = [
        (f, _field_texts(dataset, f, item_feat[f], n_rows, padding_rows, skip_imputed_float))
        for f in present
    ]
    for r in range(n_rows):
        rid = row_ids[r]
        if not math.isfinite(rid):
            continue
        item = int(rid)
        if item <= 0 or item >= n_items:  # padding or out of range
            continue
        parts = []
        for field, values in per_field:
            value = _clean(values[r])
            if value:
                parts.append(f"{field}: {value}")
        if parts:
            texts[item] = "; ".join(parts)
            has_text[item] = True
    return texts, has_text
