"""FlexCode's stages of one dataset and seed rebuilt from an empty cache folder; prints their content
fingerprints as one JSON line, to compare with a run JSON's ``model_report.stage_fingerprints`` (the same
machine: are the stages deterministic? another machine: which stage differs first?).

Usage: python scripts/stage_fingerprints.py [--dataset=Amazon_Beauty --data_path=../shared/datasets]
       [--seed=2020] [--threads=1] [--text_only]
(--text_only: the text embeddings alone, a few minutes on a CPU; otherwise text, CF SASRec and the
tokenizer, ~20 min on one CPU thread for Amazon_Beauty.)
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_flexcode.config import FlexConfig
from recbole_flexcode.embeddings.cache import cache_key
from recbole_flexcode.embeddings.stages import text_stage
from recbole_flexcode.pipeline import prepare, stages_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None, help="the folder holding the dataset (ml-100k: the embedded copy)")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--text_only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as empty:
        settings = {"seed": args.seed, "show_progress": False, "cache_dir": empty}
        if args.data_path:
            settings["data_path"] = args.data_path
        config = FlexConfig("FlexCode", args.dataset, cmd_args=settings)
        init_seed(config["seed"], config["reproducibility"])
        train, _, _ = data_preparation(config, create_dataset(config))
        t = time.time()
        if args.text_only:
            emb, _ = text_stage(config, train._dataset, None, False, logging.getLogger(__name__))
            out = {"inputs": {"semantic": [cache_key(embedding=emb)]}}
        else:
            init_seed(config["seed"], config["reproducibility"])
            prepare(config, train._dataset)
            tok = stages_of(train._dataset).tokenizer
            out = {"inputs": tok.spec["built_from"]["fingerprints"], "tokenizer": tok.spec["cache_key"],
                   "paths": cache_key(paths=tok.paths.cpu().numpy())}
    print(json.dumps({**out, "dataset": args.dataset, "seed": args.seed, "threads": args.threads,
                      "seconds": round(time.time() - t)}), flush=True)


if __name__ == "__main__":
    main()
