"""Tests for recbole_flexcode.data.amazon (Amazon 2014 dump -> RecBole atomic files)."""

from __future__ import annotations

import csv
import gzip
import json
import os

import pandas as pd
import pytest

import recbole_flexcode  # noqa: F401  (NumPy 2 compatibility fixes for RecBole)
from recbole_flexcode.data import amazon

DAY = 86400
BASE = 1388534400  # 2014-01-01 00:00 UTC, a whole day like the dump's unixReviewTime


def _review(user, item, day, rating=5.0):
    return {"reviewerID": user, "asin": item, "unixReviewTime": BASE + day * DAY,
            "overall": rating, "reviewText": "text\twith tab", "summary": "s"}


def _reviews():
    """Review records in file order.

    Core: U1..U5 x I1..I5 (5 each).  Round 1 drops I6 (U6, U7), U7 (1) and U8 (4: I7,
    I1, I2, I3).  Round 2 then drops U6 (I1..I4 left) and I7 (U1..U4 left), which both had
    exactly 5 in round 1.  U9 has 4 distinct items plus a duplicate: 5 rows without
    de-duplication, 4 with.  U1 has ties on day 1 and a duplicate of I1 on an *earlier*
    day, which must be dropped because it comes later in the file.
    """
    rows = [
        _review("U1", "I3", 2),
        _review("U2", "I1", 4),
        _review("U1", "I1", 1),
        _review("U6", "I6", 3),
        _review("U1", "I5", 1),
        _review("U1", "I7", 1),
        _review("U8", "I7", 1),
        _review("U1", "I2", 1),
        _review("U1", "I4", 3),
        _review("U1", "I1", 0, rating=1.0),  # duplicate pair, later in the file
        _review("U7", "I6", 2),
        _review("U9", "I1", 1),
        _review("U9", "I2", 1),
        _review("U9", "I3", 1),
        _review("U9", "I4", 1),
        _review("U9", "I4", 2),  # duplicate pair
    ]
    for user in ("U2", "U3", "U4", "U5"):
        for item in ("I5", "I4", "I3", "I2", "I1"):
            if (user, item) != ("U2", "I1"):
                rows.append(_review(user, item, 5))  # all tied on one day
    for user in ("U2", "U3", "U4"):
        rows.append(_review(user, "I7", 6))
    for item in ("I1", "I2", "I3", "I4"):
        rows.append(_review("U6", item, 7))
    for item in ("I1", "I2", "I3"):
        rows.append(_review("U8", item, 8))
    return rows


def _meta_lines():
    """Meta lines: mostly Python literals like the 2014 dump, one JSON, one broken."""
    records = [
        {"asin": "I1", "title": "Rose &amp; Oud\tCream\nDeluxe", "brand": "L'Or&eacute;al",
         "price": 12.5, "salesRank": {"Beauty": 12},
         "categories": [["Beauty", "Skin Care", "Face"], ["Beauty", "Makeup &amp; More"],
                        ["Skin Care"]],
         "description": "Line one\r\nline\ttwo &lt;b&gt;"},
        {"asin": "I3", "title": '"Best" lipstick', "brand": "Acme", "price": "unknown",
         "categories": [["Beauty"]], "description": ""},
        {"asin": "I5", "title": "Plain", "price": "15", "categories": [["Beauty", "Nails"]]},
        {"asin": "I6", "title": "Dropped six", "price": 1.0},
        {"asin": "I7", "title": "Dropped seven", "price": 2.0},
        {"asin": "I1", "title": "Second record of I1 (ignored)"},
    ]
    lines = [repr(r) for r in records]  # Python literal syntax, single quotes
    # I2: JSON, no title, price as a string with a dollar sign
    lines.insert(1, json.dumps({"asin": "I2", "brand": "Brand\ttwo", "price": "$1,007.99",
                                "categories": [["Beauty"]]}))
    lines.insert(3, "this is not a record")
    lines.insert(4, "__import__('os').getcwd()")
    # I4 has no meta line at all
    return lines


def _write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return str(path)


@pytest.fixture()
def fixture_files(tmp_path):
    reviews = _write_gz(tmp_path / "reviews_Test_5.json.gz",
                        [json.dumps(r) for r in _reviews()])
    meta = _write_gz(tmp_path / "meta_Test.json.gz", _meta_lines())
    return reviews, meta, tmp_path / "out"


def _convert(fixture_files, name="Amazon_Test", **kwargs):
    reviews, meta, out = fixture_files
    kwargs.setdefault("show_progress", False)
    stats = amazon.convert(reviews, meta, out, name, **kwargs)
    return stats, out / name / f"{name}.inter", out / name / f"{name}.item"


def _read(path):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, engine="python", quoting=csv.QUOTE_NONE)  # atomic files are unquoted


def test_parse_record_json_then_literal_never_eval():
    assert amazon.parse_record('{"asin": "A"}') == {"asin": "A"}
    assert amazon.parse_record("{'asin': 'A', 'price': 1.5}") == {"asin": "A", "price": 1.5}
    assert amazon.parse_record("__import__('os').getcwd()") is None
    assert amazon.parse_record("[1, 2]") is None


def test_iterative_k_core_survivors(fixture_files):
    stats, inter_path, item_path = _convert(fixture_files)
    inter = _read(inter_path)
    assert sorted(inter["user_id:token"].unique()) == ["U1", "U2", "U3", "U4", "U5"]
    assert sorted(inter["item_id:token"].unique()) == ["I1", "I2", "I3", "I4", "I5"]
    assert len(inter) == 25
    assert not inter.duplicated(["user_id:token", "item_id:token"]).any()
    assert stats["filter_rounds"] == 2  # U6 and I7 only fall out in the second round
    assert stats["users_before"] == 9 and stats["items_before"] == 7
    assert stats["interactions_before"] == len(_reviews())
    assert stats["duplicates_dropped"] == 2
    assert (stats["users_after"], stats["items_after"], stats["interactions_after"]) == (
        5, 5, 25)
    assert stats["bad_review_lines"] == 0


def test_k_core_filter_rounds_logged(caplog):
    """Rounds repeat until nothing is dropped, with one log line per dropping round."""
    import numpy as np

    users = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    items = np.array([0, 1, 0, 1, 0, 1, 2, 0])
    with caplog.at_level("INFO", logger=amazon.__name__):
        keep, rounds = amazon.k_core_filter(users, items, 2)
    # round 1: user 3 (1) and item 2 (1); round 2: nothing else -> users 0, 1, 2 stay
    assert rounds == 1 and keep.tolist() == [True] * 6 + [False, False]
    keep, rounds = amazon.k_core_filter(users, items, 3)
    # round 1: users 0, 1, 3 and item 2; round 2: user 2 (2 left) and items 0, 1
    assert rounds == 2 and not keep.any()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["k-core round 1"]


def test_dedup_option(fixture_files):
    stats, inter_path, _ = _convert(fixture_files, dedup=False)
    inter = _read(inter_path)
    assert sorted(inter["user_id:token"].unique()) == ["U1", "U2", "U3", "U4", "U5", "U9"]
    assert stats["duplicates_dropped"] == 0
    assert len(inter) == 25 + 1 + 5  # U1's duplicate of I1, U9's five rows


def test_stable_order_and_timestamps(fixture_files):
    _, inter_path, _ = _convert(fixture_files)
    inter = pd.read_csv(inter_path, sep="\t", dtype={"user_id:token": str,
                                                     "item_id:token": str})
    u1 = inter[inter["user_id:token"] == "U1"]
    # day 1 ties keep the file order I1, I5, I2; the later-in-file duplicate (day 0) is gone
    assert list(u1["item_id:token"]) == ["I1", "I5", "I2", "I3", "I4"]
    day = [BASE + d * DAY for d in (1, 1, 1, 2, 3)]
    assert list(u1["timestamp:float"]) == [d + pos for pos, d in enumerate(day)]
    # U3: all five on one day, file order I5, I4, I3, I2, I1
    u3 = inter[inter["user_id:token"] == "U3"]
    assert list(u3["item_id:token"]) == ["I5", "I4", "I3", "I2", "I1"]
    assert list(u3["timestamp:float"]) == [BASE + 5 * DAY + pos for pos in range(5)]
    for _, group in inter.groupby("user_id:token"):
        assert group["timestamp:float"].diff().dropna().gt(0).all()
        # a later (stable or not) sort by time reproduces the written order
        resorted = group.sort_values("timestamp:float", kind="quicksort")
        assert list(resorted["item_id:token"]) == list(group["item_id:token"])


def test_headers(fixture_files):
    _, inter_path, item_path = _convert(fixture_files)
    assert inter_path.read_text().splitlines()[0] == (
        "user_id:token\titem_id:token\ttimestamp:float")
    assert item_path.read_text().splitlines()[0] == (
        "item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\t"
        "price:float\tdescription:token_seq")
    _, inter_path, _ = _convert(fixture_files, name="Rated", keep_rating=True)
    lines = inter_path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float\trating:float"
    assert all(line.split("\t")[3] == "5.0" for line in lines[1:])


def test_item_text_fields(fixture_files):
    stats, _, item_path = _convert(fixture_files)
    raw = item_path.read_text(encoding="utf-8").split("\n")
    assert raw[-1] == "" and all(line.count("\t") == 5 for line in raw[:-1])
    assert "\r" not in item_path.read_text(encoding="utf-8")
    items = _read(item_path).set_index("item_id:token")
    assert sorted(items.index) == ["I1", "I2", "I3", "I4", "I5"]  # only survivors

    i1 = items.loc["I1"]
    assert i1["title:token_seq"] == "Rose & Oud Cream Deluxe"
    assert i1["brand:token"] == "L'Oréal"
    assert i1["categories:token_seq"] == "Beauty, Skin Care, Face, Makeup & More"
    assert i1["price:float"] == "12.5"
    assert i1["description:token_seq"] == "Line one line two <b>"

    assert items.loc["I2", "title:token_seq"] == ""  # missing title
    assert items.loc["I2", "brand:token"] == "Brand two"
    assert items.loc["I2", "price:float"] == "1007.99"  # "$1,007.99"
    assert items.loc["I3", "title:token_seq"] == '"Best" lipstick'
    assert items.loc["I3", "price:float"] == ""  # unparsable
    assert items.loc["I5", "price:float"] == "15.0"  # string price
    assert items.loc["I5", "categories:token_seq"] == "Beauty, Nails"
    assert list(items.loc["I4"]) == [""] * 5  # no meta at all

    assert stats["items_without_title"] == 2  # I2 (no title) and I4 (no meta)
    assert stats["items_without_meta"] == 1
    assert stats["bad_meta_lines"] == 2


def test_atomic_write_leaves_nothing_on_interrupt(tmp_path):
    target = tmp_path / "x.inter"
    target.write_text("old\n")

    def lines():
        yield "header"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        amazon._atomic_write(str(target), lines())
    assert sorted(os.listdir(tmp_path)) == ["x.inter"]
    assert target.read_text() == "old\n"


def test_no_temporary_files_left(fixture_files):
    _, inter_path, _ = _convert(fixture_files)
    assert sorted(os.listdir(inter_path.parent)) == ["Amazon_Test.inter", "Amazon_Test.item"]


def test_plain_text_input(tmp_path):
    reviews = tmp_path / "reviews.json"
    reviews.write_text("\n".join(json.dumps(r) for r in _reviews()) + "\n")
    meta = tmp_path / "meta.json"
    meta.write_text("\n".join(_meta_lines()) + "\n")
    stats = amazon.convert(reviews, meta, tmp_path / "out", "Plain", show_progress=False)
    assert (stats["users_after"], stats["items_after"]) == (5, 5)


def test_nothing_survives_raises(fixture_files):
    with pytest.raises(ValueError, match="no interaction survives"):
        _convert(fixture_files, k_core=50)


def test_loads_in_recbole(fixture_files):
    from recbole.config import Config
    from recbole.data import create_dataset

    stats, inter_path, _ = _convert(fixture_files, name="Amazon_Test")
    out_dir = inter_path.parent.parent
    config = Config(model="Pop", dataset="Amazon_Test",
                    config_dict={"data_path": str(out_dir), "load_col": None,
                                 "show_progress": False})
    dataset = create_dataset(config)
    assert dataset.user_num == 5 + 1  # + padding id
    assert dataset.item_num == 5 + 1
    assert dataset.inter_num == 25
    titles = dataset.item_feat["title"]
    assert titles.shape[0] == 6
    tokens = set(dataset.field2id_token["title"])
    assert {'"Best"', "lipstick", "Rose", "&"} <= tokens  # quoted title read back intact


def test_main_success(fixture_files, capsys):
    reviews, meta, out = fixture_files
    rc = amazon.main(["--reviews", reviews, "--meta", meta, "--out", str(out),
                      "--name", "Cli", "--k-core", "5", "--no-progress"])
    assert rc == 0
    assert (out / "Cli" / "Cli.inter").is_file() and (out / "Cli" / "Cli.item").is_file()


def test_main_missing_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.json.gz"
    meta = _write_gz(tmp_path / "meta.json.gz", _meta_lines())
    with pytest.raises(SystemExit) as exc:
        amazon.main(["--reviews", str(missing), "--meta", meta, "--out", str(tmp_path),
                     "--name", "X"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(missing) in err and err.startswith("error:")
    assert not (tmp_path / "X").exists()


def test_user_subsample_keeps_whole_users_in_file_order(tmp_path):
    """data.subsample: a seeded share of users with all their rows, in the source order, and their items."""
    from recbole_flexcode.data.subsample import main, subsample

    src = tmp_path / "Toy"
    src.mkdir()
    rows = [f"u{u}\ti{(u * 7 + k) % 13}\t{1000 + 10 * u + k}" for u in range(20) for k in range(6)]
    (src / "Toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (src / "Toy.item").write_text("item_id:token\ttitle:token_seq\n" + "".join(f"i{i}\tt{i}\n" for i in range(13)), encoding="utf-8")
    stats = subsample(str(src), "Toy_half", 0.5, 7, str(tmp_path / "out"))
    out = (tmp_path / "out" / "Toy_half" / "Toy_half.inter").read_text(encoding="utf-8").splitlines()
    kept = out[1:]
    users = {r.split("\t")[0] for r in kept}
    assert stats["users"] == len(users) == 10 and stats["interactions"] == len(kept) == 60
    assert kept == [r for r in rows if r.split("\t")[0] in users]  # whole users, source order
    items = (tmp_path / "out" / "Toy_half" / "Toy_half.item").read_text(encoding="utf-8").splitlines()[1:]
    assert {r.split("\t")[0] for r in items} == {r.split("\t")[1] for r in kept}
    assert subsample(str(src), "Toy_again", 0.5, 7, str(tmp_path / "out"))["users"] == 10
    again = (tmp_path / "out" / "Toy_again" / "Toy_again.inter").read_text(encoding="utf-8").splitlines()[1:]
    assert again == kept  # seeded
    assert main([f"--source={src}", "--name=x", "--users=0"]) == 2
