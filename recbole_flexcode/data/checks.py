"""Checks of a dataset's atomic files and of what RecBole's filtering leaves, before any stage runs.

RecBole reads whatever it is given and fails deep inside pandas or a model (or not at all) on
input that cannot mean anything. :func:`check_atomic_files` reads the ``.inter`` / ``.item`` files
once before RecBole does and turns such input into one :class:`ConfigError` line naming the file;
:func:`check_filtered_dataset` does the same for a dataset the k-core filter emptied. Input that
still makes sense gives a one-line warning with the numbers instead (duplicate interaction rows).
"""

from __future__ import annotations

import logging
import os
from collections import Counter

from recbole_flexcode.config import ConfigError

logger = logging.getLogger(__name__)


def _read_lines(path: str) -> list[str]:
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}, byte {exc.start}: {exc.reason}); "
                          "atomic files must be UTF-8") from None
    return text.splitlines()


def _header_fields(path: str, header: str) -> list[str]:
    fields = [f.split(":", 1)[0] for f in header.split("\t")]
    if not fields or any(":" not in f for f in header.split("\t")):
        raise ConfigError(f"{path}: the first line must name the columns as name:type, tab-separated; got '{header[:80]}'")
    return fields


def check_atomic_files(config) -> None:
    """The ``.inter`` file (and ``.item`` when item fields are loaded): UTF-8, a header with every
    loaded column, at least one row; warns about duplicate interaction rows."""
    folder, name = config["data_path"], config["dataset"]
    load_col = config["load_col"] or {}
    inter_path = os.path.join(folder, f"{name}.inter")
    lines = _read_lines(inter_path)
    if not lines:
        raise ConfigError(f"{inter_path}: empty file (expected a header line and interaction rows)")
    fields = _header_fields(inter_path, lines[0])
    wanted = list(load_col.get("inter", []) or [])
    needed = [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]]
    if (config["eval_args"] or {}).get("order") == "TO":
        needed.append(config["TIME_FIELD"])
    missing = [f for f in needed if f not in fields]
    if missing:
        hint = (" (the protocol orders each user's interactions by time: eval_args.order TO needs it)"
                if config["TIME_FIELD"] in missing else "")
        raise ConfigError(f"{inter_path}: no column {', '.join(missing)} (columns: {', '.join(fields)}){hint}")
    absent = [f for f in wanted if f not in fields and f not in needed]
    if absent:  # RecBole loads the columns it finds
        logger.warning("%s: load_col names columns the file lacks, not loaded: %s", inter_path, ", ".join(absent))
    rows = [line for line in lines[1:] if line.strip()]
    if not rows:
        raise ConfigError(f"{inter_path}: no interaction rows after the header")
    keep = [fields.index(f) for f in wanted if f in fields] if wanted else list(range(len(fields)))
    counts = Counter(tuple(row.split("\t")[i] if i < len(row.split("\t")) else "" for i in keep) for row in rows)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    if duplicates:
        logger.warning("%s: %d of %d interaction rows repeat an earlier row in every loaded column (%s); "
                       "RecBole keeps them as separate interactions", inter_path, duplicates, len(rows), ", ".join(fields[i] for i in keep))
    if load_col.get("item"):
        item_path = os.path.join(folder, f"{name}.item")
        if os.path.isfile(item_path):
            item_lines = _read_lines(item_path)
            if not item_lines:
                raise ConfigError(f"{item_path}: empty file (expected a header line)")
            item_fields = _header_fields(item_path, item_lines[0])
            absent = [f for f in load_col["item"] if f not in item_fields]
            if absent:  # optional item fields: RecBole loads the ones it finds (our Beauty copy has no brand)
                logger.warning("%s: load_col names columns the file lacks, not loaded: %s", item_path, ", ".join(absent))


def _emptied(config, users: int | str, items: int | str, inters: int | str) -> ConfigError:
    return ConfigError(
        f"dataset '{config['dataset']}': {inters} interactions of {users} users and {items} items are left after "
        f"filtering (user_inter_num_interval={config['user_inter_num_interval']}, "
        f"item_inter_num_interval={config['item_inter_num_interval']}); nothing to train or evaluate"
    )


def create_checked_dataset(config):
    """RecBole's ``create_dataset``; a dataset its k-core filter emptied is one :class:`ConfigError`."""
    from recbole.data import create_dataset

    try:
        dataset = create_dataset(config)
    except ValueError as exc:
        if "feat is empty" in str(exc):  # RecBole's words for a filter that removed every row
            raise _emptied(config, 0, 0, 0) from None
        raise
    check_filtered_dataset(dataset, config)
    return dataset


def check_filtered_dataset(dataset, config) -> None:
    """What RecBole's k-core filtering left must hold at least two users and two items."""
    users, items, inters = dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num
    if users < 2 or items < 2 or inters == 0:
        raise _emptied(config, users, items, inters)
