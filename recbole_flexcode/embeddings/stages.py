"""The two embedding stages as a model runs them: settings read from the RecBole config.

FlexCode and SOLID both start from the same item views — sentence-encoder embeddings of the
item text (FlexCode §4.1.1) and SASRec item embeddings from the training split (§4.1.2) — so
the config keys (``text_fields``, ``text_encoder``, ``cf_*``) mean the same in both models.
"""

from __future__ import annotations

import numpy as np

from recbole_flexcode.data.item_text import item_texts
from recbole_flexcode.embeddings.collaborative import collaborative_embeddings
from recbole_flexcode.embeddings.text import item_text_embeddings


def text_stage(config, dataset, cache_dir, show_progress, logger) -> tuple[np.ndarray, list[bool]]:
    """Item text embeddings ``[n_items, d]`` and which items had any text."""
    fields = list(config["text_fields"])
    texts, has_text = item_texts(dataset, fields)
    if not any(has_text[1:]):
        return np.zeros((len(texts), 0), dtype=np.float32), has_text
    emb = item_text_embeddings(
        texts, has_text, encoder=config["text_encoder"], cache_dir=cache_dir,
        fields=fields, batch_size=int(config["text_batch_size"]), device=str(config["device"]),
        show_progress=show_progress, logger=logger,
    )
    return emb, has_text


def collaborative_stage(config, dataset, cache_dir, show_progress, logger) -> dict[str, np.ndarray]:
    """SASRec item embeddings and their uncertainty (see :func:`collaborative_embeddings`)."""
    return collaborative_embeddings(
        config, dataset, epochs=int(config["cf_epochs"]),
        learning_rate=float(config["cf_learning_rate"]),
        batch_size=int(config["cf_batch_size"]), cache_dir=cache_dir,
        show_progress=show_progress, logger=logger,
    )
