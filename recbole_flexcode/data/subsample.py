"""A user subsample of a RecBole atomic dataset, for CPU pilots of GPU benchmarks.

    python -m recbole_flexcode.data.subsample --source=../shared/datasets/Amazon_Beauty \\
        --name=Amazon_Beauty_u10 --users=0.1 --seed=2020 --out=dataset

Keeps a seeded random share of the users with *all* their interactions, in the source file's
order (the time order of ties survives, see the dataset's README), and the items they touched;
RecBole's k-core filter then applies as configured. The copy goes to ``<out>/<name>/`` — a
local folder (``dataset/`` is not committed: third-party data stays where it is kept).
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from recbole_flexcode.io import write_text


def subsample(source: str, name: str, share: float, seed: int, out: str) -> dict:
    """Write ``<out>/<name>/<name>.inter`` (and ``.item``) with ``share`` of the users of ``source``."""
    base = os.path.basename(os.path.normpath(source))
    with open(os.path.join(source, f"{base}.inter"), encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    users = sorted({r.split("\t", 1)[0] for r in rows if r})
    keep = set(random.Random(seed).sample(users, max(1, round(share * len(users)))))
    kept = [r for r in rows if r and r.split("\t", 1)[0] in keep]
    items = {r.split("\t", 2)[1] for r in kept}
    folder = os.path.join(out, name)
    write_text(os.path.join(folder, f"{name}.inter"), "\n".join([header, *kept]) + "\n")
    item_path = os.path.join(source, f"{base}.item")
    n_items = 0
    if os.path.isfile(item_path):
        with open(item_path, encoding="utf-8") as f:
            item_header, *item_rows = f.read().splitlines()
        chosen = [r for r in item_rows if r and r.split("\t", 1)[0] in items]
        n_items = len(chosen)
        write_text(os.path.join(folder, f"{name}.item"), "\n".join([item_header, *chosen]) + "\n")
    return {"users": len(keep), "of_users": len(users), "interactions": len(kept), "items": n_items or len(items)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.data.subsample", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="folder of the atomic files (<name>.inter, <name>.item)")
    p.add_argument("--name", required=True, help="name of the new dataset")
    p.add_argument("--users", type=float, required=True, help="share of the users to keep, in (0, 1]")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out", default="dataset")
    args = p.parse_args(argv)
    if not 0 < args.users <= 1:
        print(f"error: --users must be in (0, 1], got {args.users}", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(args.source, os.path.basename(os.path.normpath(args.source)) + ".inter")):
        print(f"error: no atomic .inter file in {args.source}", file=sys.stderr)
        return 2
    stats = subsample(args.source, args.name, args.users, args.seed, args.out)
    print(f"{args.name}: {stats['users']} of {stats['of_users']} users, {stats['interactions']} interactions, "
          f"{stats['items']} items -> {os.path.join(args.out, args.name)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
