"""Give a finished run the row name that describes its settings today: ``<row>-seed<s>.json`` renamed.

    python -m recbole_flexcode.benchmark.relabel <out>/<dataset>/runs/FlexCode-seed2020.json FlexCode-dropout0 \
        --why="ran before Amazon_Beauty's section took dropout 0.1 (db2ed8c)"

A benchmark row is a name for settings, and a dataset's section can change under it: the ``FlexCode``
runs of a results folder made before a section change measured what another row names now. The tables
group runs by row name, so left alone such a run would be averaged with runs of other settings. This moves
the run JSON (and its ``_artifacts`` folder) to the new row's name and records the move in the JSON
(``benchmark.relabelled``: the former row, the reason, the time); the run's own ``command`` is kept as it
ran, and the tables list every relabelled run beside the commands. Nothing is retrained or re-evaluated;
checking that the new row's settings are the ones the run had is the caller's part, stated in ``--why``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone

from recbole_flexcode.benchmark import tables
from recbole_flexcode.benchmark.runner import BenchmarkError, parse_row, write_json_atomic


def relabel(path: str, row: str, why: str) -> str:
    """Move the run JSON ``path`` to row ``row``; return the new path. Raises :class:`BenchmarkError` for a
    file that is not a finished run, an unknown row, an empty reason or an existing target."""
    if not why.strip():
        raise BenchmarkError("--why must say why the run belongs to the new row")
    spec = parse_row(row)  # an unknown row is refused here
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    bench = record.get("benchmark") if isinstance(record, dict) else None
    if not isinstance(bench, dict) or "test_result" not in record:
        raise BenchmarkError(f"{path} is not a finished benchmark run")
    old = tables.row_of(record, path)
    if spec.model != (bench.get("model") or record.get("model")):
        raise BenchmarkError(f"row {row} is a {spec.model} row; {path} ran {bench.get('model') or record.get('model')}")
    seed = record.get("seed", bench.get("seed"))
    if old == row:
        raise BenchmarkError(f"{path} is already row {row}")
    directory = os.path.dirname(path)
    target = os.path.join(directory, f"{row}-seed{seed}.json")
    if os.path.exists(target):
        raise BenchmarkError(f"{target} exists: row {row} already has seed {seed} here")
    old_artifacts, new_artifacts = os.path.splitext(path)[0] + "_artifacts", os.path.splitext(target)[0] + "_artifacts"
    text = json.dumps(record)
    if os.path.isdir(old_artifacts):  # the JSON names its artefact files by path
        text = text.replace(json.dumps(old_artifacts)[1:-1] + "/", json.dumps(new_artifacts)[1:-1] + "/")
    record = json.loads(text)
    record["benchmark"]["row"] = row
    record["benchmark"]["row_overrides"] = dict(spec.overrides)
    record["benchmark"]["relabelled"] = {"from": old, "from_overrides": bench.get("row_overrides"), "why": why.strip(),
                                         "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json_atomic(target, record)
    if os.path.isdir(old_artifacts):
        os.replace(old_artifacts, new_artifacts)
    os.remove(path)
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.benchmark.relabel", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run JSON under <out>/<dataset>/runs/")
    p.add_argument("row", help="the row that names the run's settings today")
    p.add_argument("--why", required=True, help="why the run's settings are the new row's (kept in the JSON)")
    args = p.parse_args(argv)
    try:
        print(f"wrote {relabel(args.run, args.row, args.why)}")
    except (BenchmarkError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
