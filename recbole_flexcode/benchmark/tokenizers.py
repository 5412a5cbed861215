"""Tokenizer quality on one dataset's items: RQ-VAE (fixed epochs, to convergence) vs residual k-means.

Usage::

    python -m recbole_flexcode.benchmark.tokenizers --dataset=Amazon_Beauty --data_path=../shared/datasets \\
        [--sources=semantic|semantic,collaborative] [--levels=3] [--codebook_size=256] \\
        [--out=results/cpu/Amazon_Beauty/tokenizers] [--key=value ...]

Every tokenizer is fitted on the same rows (the dataset's items, standardised as the
:class:`~recbole_flexcode.tokenizer.item_tokenizer.ItemTokenizer` does, so a source's mean squared
norm is 1 and ``recon_mse`` is the fraction of its variance left unreconstructed), with the
run's seed. Reported per source and level: used codes, perplexity and the residual error after
the level; per tokenizer: reconstruction error, the share of items whose code tuple collides,
the disambiguation tokens needed, epochs and fit time. The embeddings come from the pipeline's
cached stages (``semantic`` is cheap; ``collaborative`` trains SASRec on the training split).
Writes ``tokenizers.json`` and ``tokenizers.md`` (command and machine) under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time

import recbole_flexcode  # noqa: F401  (compatibility fixes first)
from recbole_flexcode.io import write_json, write_text

#: (name, settings) compared; rqvae_* keys come from the config unless set here.
CANDIDATES = (
    ("rqvae, rqvae_epochs (fixed)", {"kind": "rqvae", "patience": 0}),
    ("rqvae, to convergence", {"kind": "rqvae", "patience": 50, "epochs": 5000}),
    ("rkmeans (faiss)", {"kind": "rkmeans"}),
)


def _settings(config, candidate: dict, levels: int, codebook_size: int, two_sources: bool) -> dict:
    from recbole_flexcode.pipeline import _codebook_settings

    cfg = dict(config.final_config_dict, tokenizer=candidate["kind"])
    align = ({"align_weight": float(config["align_weight"]), "align_temperature": float(config["align_temperature"]),
              "proj_dim": int(config["align_proj_size"])} if two_sources else None)
    settings = _codebook_settings(cfg, levels, codebook_size, config["code_dim"], align)
    if candidate["kind"] == "rqvae":
        settings["fit"].update({k: candidate[k] for k in ("patience", "epochs") if k in candidate})
    return settings


def compare(config, dataset, sources: list[str], levels: int, codebook_size: int, logger) -> list[dict]:
    from recbole_flexcode.embeddings.stages import collaborative_stage, text_stage
    from recbole_flexcode.pipeline import stage_cache_dir
    from recbole_flexcode.tokenizer.item_tokenizer import ItemTokenizer

    cache_dir = stage_cache_dir(config, logger)
    embeddings = {}
    if "semantic" in sources:
        embeddings["semantic"] = [text_stage(config, dataset, cache_dir, False, logger)[0]]
    if "collaborative" in sources:
        embeddings["collaborative"] = [collaborative_stage(config, dataset, cache_dir, False, logger)["embeddings"]]
    rows = []
    for name, candidate in CANDIDATES:
        settings = _settings(config, candidate, levels, codebook_size, len(embeddings) == 2)
        t = time.time()
        tok = ItemTokenizer.fit(embeddings, **settings, show_progress=False, logger=logger)
        seconds = time.time() - t
        rows.append({"tokenizer": name, "settings": settings, "fit_s": seconds, "fit_result": tok.spec.get("fit_result"),
                     "n_items": tok.n_items - 1, "disambiguation_tokens": tok.layout.n_disamb,
                     "collisions_by_split": tok.spec["collisions"], "stats": tok.stats()})
        logger.info("%s: %.1f s, %s", name, seconds, {s: round(v["recon_mse"], 4) for s, v in rows[-1]["stats"].items()})
    return rows


def render_markdown(rows: list[dict], command: str, machine: dict, dataset: str) -> str:
    from recbole_flexcode.reporting import markdown_table

    lines = [f"# Tokenizer quality on {dataset}", "", f"Command: `{command}`", "",
             f"Machine: {machine}", "",
             "recon mse = fraction of the standardised embedding's variance left unreconstructed; "
             "collisions = share of items whose whole code tuple is shared (before disambiguation).", ""]
    for source in rows[0]["stats"]:
        header = ["tokenizer", "epochs", "fit s", "recon mse", "collisions", "disamb tokens"]
        n_levels = len(rows[0]["stats"][source]["levels"])
        header += [f"L{k + 1} used / perplexity / residual" for k in range(n_levels)]
        body = []
        for r in rows:
            st = r["stats"][source]
            epochs = (r["fit_result"] or {}).get("epochs_run") if r["settings"]["kind"] == "rqvae" else "-"
            cells = [r["tokenizer"], str(epochs or "-"), f"{r['fit_s']:.1f}", f"{st['recon_mse']:.4f}",
                     f"{st['collision_rate']:.4f}", str(r["disambiguation_tokens"])]
            cells += [f"{lv['used_codes']} / {lv['perplexity']:.1f} / {lv['residual_mse']:.4f}" for lv in st["levels"]]
            body.append(cells)
        lines += [f"## {source} source", "", markdown_table(header, body), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.benchmark.tokenizers", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--sources", default="semantic")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook_size", type=int, default=256)
    p.add_argument("--out", default=None)
    args, rest = p.parse_known_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if not sources or set(sources) - {"semantic", "collaborative"}:
        print("error: --sources takes semantic and/or collaborative", file=sys.stderr)
        return 2
    from recbole.data import create_dataset
    from recbole.utils import init_logger, init_seed

    from recbole_flexcode.config import ConfigError, FlexConfig
    from recbole_flexcode.reporting import machine_description

    try:
        config = FlexConfig("FlexCode", args.dataset, cmd_args=rest + ["--show_progress=False"])
        config.check_dataset()
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = logging.getLogger()
    dataset = create_dataset(config)
    rows = compare(config, dataset, sources, args.levels, args.codebook_size, logger)
    command = "python -m recbole_flexcode.benchmark.tokenizers " + " ".join(shlex.quote(a) for a in argv)
    machine = machine_description(config["device"])
    out = args.out or os.path.join("results", args.dataset, "tokenizers")
    write_json(os.path.join(out, "tokenizers.json"), {"command": command, "machine": machine, "seed": config["seed"], "rows": rows})
    write_text(os.path.join(out, "tokenizers.md"), render_markdown(rows, command, machine, args.dataset))
    print(render_markdown(rows, command, machine, args.dataset))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
