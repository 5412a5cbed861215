"""Convert the Amazon 2014 review dumps (McAuley et al.) into RecBole atomic files.

Input: ``reviews_<Category>_5.json.gz`` (one JSON object per line) and
``meta_<Category>.json.gz`` (one *Python dict literal* per line in the 2014 dump, i.e.
single-quoted; JSON is accepted too).  Plain, uncompressed files work as well.

Output, under ``<out_dir>/<dataset_name>/``:

* ``<dataset_name>.inter`` -- ``user_id:token  item_id:token  timestamp:float``
  (plus ``rating:float`` with ``keep_rating``), grouped by user (users in the order they
  first appear in the review file), each user's interactions in time order.
* ``<dataset_name>.item`` -- ``item_id  title  brand  categories  price  description`` for
  the items that survive the filtering, in the order they first appear in the ``.inter``.

Processing:

1. Duplicate (user, item) pairs are dropped, keeping the first occurrence in the review
   file (``dedup=True``, the default).
2. k-core filtering (``k_core``, default 5): users and items with fewer than ``k``
   interactions are dropped, repeatedly, until no more go.  Dropping an item can push a
   user under ``k`` and vice versa, hence the rounds.
3. Stable time order.  Timestamps in the source are whole days and ties are common, so each
   user's interactions are sorted by ``unixReviewTime`` with a stable sort (ties keep the
   review file's order), and the written timestamp is the source timestamp plus the
   interaction's 0-based position in the user's sorted sequence, in seconds.  Within a user
   the timestamps then increase strictly, so any later sort by time (RecBole's included)
   reproduces exactly this order.  This is how the shared ``Amazon_Beauty`` copy was built.

Text fields (title, brand, category names, description) are HTML-unescaped once with
:func:`html.unescape`, and every run of whitespace or control characters (tabs and newlines
included) becomes a single space.  ``categories`` joins the names of all category paths
with ``", "``, de-duplicated, first occurrence kept.  ``price`` is written only when it
parses as a finite number (the dump has floats and strings such as ``"$12.99"``); anything
missing is written empty.  Fields are written as they are, without CSV quoting (atomic files
have none; :mod:`recbole_flexcode.compat` makes RecBole read a field that starts with ``"``
literally).

Each file is written to a temporary name in the target directory and moved into place with
:func:`os.replace`, so an interrupted run never leaves a half-written atomic file.

Command line::

    python -m recbole_flexcode.data.amazon --reviews reviews_Beauty_5.json.gz \\
        --meta meta_Beauty.json.gz --out dataset --name Amazon_Beauty [--k-core 5]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import html
import json
import logging
import math
import os
import re
import sys
import uuid
from array import array
from typing import Any, Iterable, Iterator

import numpy as np

logger = logging.getLogger(__name__)

INTER_FIELDS = ("user_id:token", "item_id:token", "timestamp:float")
RATING_FIELD = "rating:float"
ITEM_FIELDS = (
    "item_id:token",
    "title:token_seq",
    "brand:token",
    "categories:token_seq",
    "price:float",
    "description:token_seq",
)

_SPACE_RE = re.compile(r"[\s\x00-\x1f\x7f]+")
# The 2014 meta lines start with the asin key; reading it without a full parse lets us
# skip the (many) lines of items that did not survive the filtering cheaply.
_META_ASIN_RE = re.compile(r"""^\s*\{\s*(['"])asin\1\s*:\s*(['"])([^'"\\]*)\2""")


# --------------------------------------------------------------------------- reading


def _open_text(path: str):
    """Open ``path`` for reading text, gunzipping it when it starts with the gzip magic."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace")


def _progress(lines: Iterable[str], desc: str, show: bool) -> Iterable[str]:
    """Wrap ``lines`` in a tqdm bar when asked for and tqdm is importable."""
    if not show:
        return lines
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is an install requirement
        return lines
    return tqdm(lines, desc=desc, unit=" lines", mininterval=1.0)


def parse_record(line: str) -> dict | None:
    """Parse one dump line: JSON first, then a Python literal (never ``eval``).

    Returns ``None`` for a line that is neither, or that is not a dict.
    """
    try:
        value = json.loads(line)
    except ValueError:
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _iter_lines(path: str, desc: str, show_progress: bool, stats: dict, key: str
                ) -> Iterator[str]:
    """Yield the stripped non-blank lines of ``path``, counting them in ``stats[key]``."""
    with _open_text(path) as f:
        for line in _progress(f, desc, show_progress):
            line = line.strip()
            if line:
                stats[key] += 1
                yield line


def _as_id(value: Any) -> str | None:
    """A user/item id as a clean, non-empty string, else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        text = _SPACE_RE.sub(" ", str(value)).strip()
        return text or None
    return None


def _as_time(value: Any) -> int | None:
    """``unixReviewTime`` as an int (it is an int in the dump; numeric strings accepted)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def _as_float(value: Any) -> float | None:
    """A finite float from a number or a string like ``"$1,299.00"``, else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip().lstrip("$").replace(",", "").strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clean_text(value: Any) -> str:
    """HTML-unescape a text value and squeeze whitespace/control characters to one space.

    Lists (an odd ``description`` here and there) are joined with spaces; ``None`` is ``""``.
    """
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(filter(None, (clean_text(v) for v in value)))
    if not isinstance(value, str):
        value = str(value)
    return _SPACE_RE.sub(" ", html.unescape(value)).strip()


def join_categories(value: Any) -> str:
    """Join the names of all category paths with ``", "``, de-duplicated, order kept.

    ``categories`` is a list of paths, each a list of names; a flat list of names is
    accepted too.
    """
    if not isinstance(value, (list, tuple)):
        value = [value] if isinstance(value, str) else []
    names: dict[str, None] = {}
    for path in value:
        parts = path if isinstance(path, (list, tuple)) else [path]
        for part in parts:
            name = clean_text(part) if isinstance(part, str) else ""
            if name:
                names.setdefault(name, None)
    return ", ".join(names)


# --------------------------------------------------------------------------- writing


def _atomic_write(path: str, lines: Iterable[str]) -> str:
    """Write ``lines`` (each without newline) to a temporary file next to ``path``.

    Returns the temporary path; the caller moves it into place with :func:`os.replace`.
    The temporary file is removed if writing fails or is interrupted.
    """
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            chunk: list[str] = []
            for line in lines:
                chunk.append(line)
                if len(chunk) >= 10000:
                    f.write("\n".join(chunk) + "\n")
                    chunk.clear()
            if chunk:
                f.write("\n".join(chunk) + "\n")
    except BaseException:
        _remove_quietly(tmp)
        raise
    return tmp


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# --------------------------------------------------------------------------- filtering


def k_core_filter(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Boolean mask of the interactions left by iterative k-core filtering, and the rounds.

    Each round drops every user and every item with fewer than ``k`` of the interactions
    still kept, until a round drops nothing.  ``users``/``items`` are 0-based int codes.
    """
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep, 0
    n_users = int(users.max()) + 1
    n_items = int(items.max()) + 1
    rounds = 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        low_users = (user_count > 0) & (user_count < k)
        low_items = (item_count > 0) & (item_count < k)
        if not low_users.any() and not low_items.any():
            return keep, rounds
        rounds += 1
        new_keep = keep & ~low_users[users] & ~low_items[items]
        logger.info(
            "k-core round %d: dropped %d users, %d items, %d interactions; "
            "%d interactions left",
            rounds, int(low_users.sum()), int(low_items.sum()),
            int(keep.sum() - new_keep.sum()), int(new_keep.sum()),
        )
        keep = new_keep


def stable_time_order(users: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order interactions by user, then time; ties keep their input order.

    Returns ``(order, positions)``: indices into the inputs, and for each ordered
    interaction its 0-based position within its user's sequence.
    """
    n = len(users)
    order = np.lexsort((np.arange(n), times, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    lengths = np.diff(np.r_[starts, n])
    positions = np.arange(n) - np.repeat(starts, lengths)
    return order, positions


# --------------------------------------------------------------------------- convert


def _read_reviews(path: str, show_progress: bool, stats: dict):
    """Read the review file into int-coded arrays; ids are coded by first appearance."""
    user_codes: dict[str, int] = {}
    item_codes: dict[str, int] = {}
    users, items, times = array("q"), array("q"), array("q")
    ratings = array("d")
    for line in _iter_lines(path, "reviews", show_progress, stats, "review_lines"):
        record = parse_record(line)
        if record is None:
            stats["bad_review_lines"] += 1
            continue
        user = _as_id(record.get("reviewerID"))
        item = _as_id(record.get("asin"))
        time = _as_time(record.get("unixReviewTime"))
        if user is None or item is None or time is None:
            stats["bad_review_lines"] += 1
            continue
        rating = _as_float(record.get("overall"))
        users.append(user_codes.setdefault(user, len(user_codes)))
        items.append(item_codes.setdefault(item, len(item_codes)))
        times.append(time)
        ratings.append(math.nan if rating is None else rating)
    return (
        list(user_codes), list(item_codes),
        np.frombuffer(users, dtype=np.int64), np.frombuffer(items, dtype=np.int64),
        np.frombuffer(times, dtype=np.int64), np.frombuffer(ratings, dtype=np.float64),
    )


def _read_meta(path: str, wanted: set[str], show_progress: bool, stats: dict
               ) -> dict[str, dict]:
    """Read the meta records of the ``wanted`` asins (first record of an asin wins)."""
    meta: dict[str, dict] = {}
    for line in _iter_lines(path, "meta", show_progress, stats, "meta_lines"):
        quick = _META_ASIN_RE.match(line)
        if quick is not None and (quick.group(3) not in wanted or quick.group(3) in meta):
            continue
        record = parse_record(line)
        if record is None:
            stats["bad_meta_lines"] += 1
            continue
        asin = _as_id(record.get("asin"))
        if asin is None:
            stats["bad_meta_lines"] += 1
            continue
        if asin in wanted and asin not in meta:
            meta[asin] = record
    return meta


def _item_row(asin: str, record: dict | None) -> list[str]:
    record = record or {}
    price = _as_float(record.get("price"))
    return [
        asin,
        clean_text(record.get("title")),
        clean_text(record.get("brand")),
        join_categories(record.get("categories")),
        "" if price is None else repr(price),
        clean_text(record.get("description")),
    ]


def convert(
    reviews_path: str | os.PathLike,
    meta_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    dataset_name: str,
    k_core: int = 5,
    keep_rating: bool = False,
    dedup: bool = True,
    show_progress: bool = True,
) -> dict:
    """Convert one Amazon 2014 category into ``<out_dir>/<dataset_name>/`` atomic files.

    See the module docstring for what is written and why.  Returns statistics:
    ``users_before``/``items_before``/``interactions_before`` (valid review lines read),
    ``duplicates_dropped``, ``users_after``/``items_after``/``interactions_after``,
    ``filter_rounds``, ``items_without_meta``, ``items_without_title``, line counts
    (``review_lines``, ``bad_review_lines``, ``meta_lines``, ``bad_meta_lines``) and the
    written paths (``inter_path``, ``item_path``).

    Raises :class:`FileNotFoundError` for a missing input (before any work is done) and
    :class:`ValueError` for bad arguments or when no interaction survives the filtering.
    """
    reviews_path, meta_path = os.fspath(reviews_path), os.fspath(meta_path)
    for label, path in (("reviews", reviews_path), ("meta", meta_path)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{label} file not found: {path}")
    if (not dataset_name or dataset_name in (".", "..")
            or any(sep and sep in dataset_name for sep in (os.sep, os.altsep))):
        raise ValueError(f"invalid dataset name: {dataset_name!r}")
    if isinstance(k_core, bool) or not isinstance(k_core, int) or k_core < 0:
        raise ValueError(f"k_core must be a non-negative int, got {k_core!r}")

    stats: dict[str, Any] = {
        "review_lines": 0, "bad_review_lines": 0, "meta_lines": 0, "bad_meta_lines": 0,
    }
    logger.info("reading reviews from %s", reviews_path)
    user_ids, item_ids, users, items, times, ratings = _read_reviews(
        reviews_path, show_progress, stats)
    stats.update(
        users_before=len(user_ids), items_before=len(item_ids),
        interactions_before=len(users),
    )
    if stats["bad_review_lines"]:
        logger.warning("skipped %d unreadable or incomplete review lines",
                       stats["bad_review_lines"])
    logger.info("read %d interactions of %d users and %d items",
                len(users), len(user_ids), len(item_ids))

    # 1. duplicates: keep the first occurrence of each (user, item) in file order
    index = np.arange(len(users))
    if dedup and len(users):
        pair = users * len(item_ids) + items
        _, first = np.unique(pair, return_index=True)
        index = np.sort(first)
    stats["duplicates_dropped"] = len(users) - len(index)
    if stats["duplicates_dropped"]:
        logger.info("dropped %d duplicate (user, item) interactions",
                    stats["duplicates_dropped"])
    users, items, times, ratings = users[index], items[index], times[index], ratings[index]

    # 2. iterative k-core
    keep, rounds = k_core_filter(users, items, k_core)
    users, items, times, ratings = users[keep], items[keep], times[keep], ratings[keep]
    stats["filter_rounds"] = rounds
    if len(users) == 0:
        raise ValueError(f"no interaction survives the {k_core}-core filtering")

    # 3. stable time order, timestamps made strictly increasing within each user
    order, positions = stable_time_order(users, times)
    users, items, ratings = users[order], items[order], ratings[order]
    timestamps = times[order] + positions

    kept_items = list(dict.fromkeys(items.tolist()))  # order of first appearance
    stats.update(
        users_after=int(len(np.unique(users))), items_after=len(kept_items),
        interactions_after=int(len(users)),
    )
    logger.info("%d-core: %d users, %d items, %d interactions", k_core,
                stats["users_after"], stats["items_after"], stats["interactions_after"])

    wanted = {item_ids[i] for i in kept_items}
    logger.info("reading meta data from %s", meta_path)
    meta = _read_meta(meta_path, wanted, show_progress, stats)
    if stats["bad_meta_lines"]:
        logger.warning("skipped %d unreadable meta lines", stats["bad_meta_lines"])
    item_rows = [_item_row(item_ids[i], meta.get(item_ids[i])) for i in kept_items]
    stats["items_without_meta"] = len(wanted) - len(meta)
    stats["items_without_title"] = sum(1 for row in item_rows if not row[1])

    # 4. write both files to temporary names, then move them into place
    target = os.path.join(os.fspath(out_dir), dataset_name)
    os.makedirs(target, exist_ok=True)
    inter_path = os.path.join(target, f"{dataset_name}.inter")
    item_path = os.path.join(target, f"{dataset_name}.item")

    def inter_lines() -> Iterator[str]:
        header = list(INTER_FIELDS) + ([RATING_FIELD] if keep_rating else [])
        yield "\t".join(header)
        rating_text = (["" if math.isnan(r) else repr(r) for r in ratings.tolist()]
                       if keep_rating else None)
        for n, (u, i, t) in enumerate(zip(users.tolist(), items.tolist(),
                                          timestamps.tolist())):
            row = [user_ids[u], item_ids[i], str(t)]
            if rating_text is not None:
                row.append(rating_text[n])
            yield "\t".join(row)

    def item_lines() -> Iterator[str]:
        yield "\t".join(ITEM_FIELDS)
        for row in item_rows:
            yield "\t".join(row)

    tmp_files: list[tuple[str, str]] = []
    try:
        tmp_files.append((_atomic_write(inter_path, inter_lines()), inter_path))
        tmp_files.append((_atomic_write(item_path, item_lines()), item_path))
        for tmp, final in tmp_files:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in tmp_files:
            _remove_quietly(tmp)
        raise
    stats.update(inter_path=inter_path, item_path=item_path)
    logger.info("wrote %s and %s (%d items without title, %d without meta)",
                inter_path, item_path, stats["items_without_title"],
                stats["items_without_meta"])
    return stats


# --------------------------------------------------------------------------- command line


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recbole_flexcode.data.amazon",
        description="Convert Amazon 2014 review/meta dumps into RecBole atomic files "
                    "(k-core filtered, stable time order, item text fields).",
    )
    parser.add_argument("--reviews", required=True, help="reviews_<Category>_5.json.gz")
    parser.add_argument("--meta", required=True, help="meta_<Category>.json.gz")
    parser.add_argument("--out", default="dataset",
                        help="output root; files go to <out>/<name>/ (default: dataset)")
    parser.add_argument("--name", required=True, help="dataset name, e.g. Amazon_Beauty")
    parser.add_argument("--k-core", type=_non_negative_int, default=5,
                        help="minimum interactions per user and item (default: 5)")
    parser.add_argument("--keep-rating", action="store_true",
                        help="also write the review's rating as rating:float")
    parser.add_argument("--no-dedup", dest="dedup", action="store_false",
                        help="keep duplicate (user, item) interactions")
    parser.add_argument("--no-progress", dest="show_progress", action="store_false",
                        help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0, or exits 2 (missing input) / 1 (other error)
    after one ``error: ...`` line on stderr."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                            datefmt="%H:%M:%S")
    elif logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        stats = convert(args.reviews, args.meta, args.out, args.name, k_core=args.k_core,
                        keep_rating=args.keep_rating, dedup=args.dedup,
                        show_progress=args.show_progress)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (ValueError, OSError, EOFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    summary = {k: v for k, v in stats.items() if not k.endswith("_path")}
    logger.info("done: %s", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
