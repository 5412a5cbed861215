"""Inference cost as the catalogue grows: trie-constrained beam search vs full-sort scoring.

Usage::

    python -m recbole_flexcode.benchmark.cost [--sizes=10000,100000,1000000] [--device=cpu|cuda]
        [--out=results/cost] [--batch_size=128] [--beam_size=20] [--topk=10] [--repeats=3]

For every catalogue size ``N`` the benchmark builds a synthetic semantic-ID table — ``L = 3``
levels of ``K = 256`` uniformly random codes per item, collisions numbered by
:func:`~recbole_flexcode.tokenizer.ids.resolve_collisions` and appended as a disambiguation
token (:func:`~recbole_flexcode.tokenizer.ids.append_disambiguation`), so every path is unique —
and its :class:`~recbole_flexcode.tokenizer.ids.PrefixTrie`.  A random-weight
:class:`~recbole_flexcode.model.generator.SemanticIDGenerator` (``d = 64``) stands in for a
trained FlexCode; throughput does not depend on the weights.  Two ways of recommending the top
items to a batch of users with random histories are timed:

* **generative**: encode the history with the generator's encoder, then
  :func:`~recbole_flexcode.model.generation.constrained_beam_search` (``beam_size`` items, ``L+1``
  decoder steps over ``batch × beam`` prefixes);
* **full-sort** (SASRec-style): the same encoder, the last position as the user vector
  ``[B, d]``, scores against an ``[N, d]`` item table by one matmul, then ``topk``.

Both share the history encoder, so the difference is the retrieval step.  The item vectors that
feed the encoder (sum of an item's token embeddings) are computed once per size, outside the
timing, as a SASRec item-embedding table would be.  Users/second = ``batch`` / median seconds
of one batch over ``repeats`` timed batches, after one warm-up batch (CUDA synchronised).
Uniform random codes give an evenly filled trie; learned codes are more skewed (wider nodes),
which makes beam steps somewhat costlier.  The first generative batch is checked: returned
items are distinct valid items and their beam scores equal their exact sequence
log-probabilities (``beam_valid``).

Writes ``cost.csv``, ``cost.md`` (command and machine) and ``cost.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import sys
import time
from datetime import datetime, timezone

import torch

from recbole_flexcode.benchmark.runner import peak_rss_bytes, reset_peak_rss
from recbole_flexcode.io import atomic_write, write_text
from recbole_flexcode.reporting import machine_line
from recbole_flexcode.model.generation import constrained_beam_search, last_position
from recbole_flexcode.model.generator import SemanticIDGenerator
from recbole_flexcode.tokenizer.ids import PrefixTrie, append_disambiguation, resolve_collisions

DEFAULT_SIZES = {"cpu": "10000,100000", "cuda": "10000,100000,1000000"}
CSV_FIELDS = [
    "n_items", "method", "users_per_s", "ms_per_batch", "batch_size", "beam_or_topk", "repeats",
    "peak_memory_bytes", "peak_memory_kind", "trie_build_s", "trie_nodes", "collision_rate",
    "n_disamb", "beam_valid", "beam_max_abs_err", "device",
]


def synthetic_paths(n_items: int, levels: int = 3, codebook_size: int = 256, seed: int = 0):
    """Random unique token paths ``[N, L+1]`` in a shared vocabulary; returns ``(paths, vocab_size, stats)``.

    Token of level ``l`` code ``c``: ``1 + l*K + c`` (0 is the decoder's BOS); disambiguation token
    ``d``: ``1 + L*K + d``.
    """
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, codebook_size, (n_items, levels), generator=g)
    tokens = codes + 1 + torch.arange(levels) * codebook_size
    disamb, stats = resolve_collisions(tokens)
    offset = 1 + levels * codebook_size
    paths = append_disambiguation(tokens, disamb, offset)
    n_disamb = int(disamb.max().item()) + 1 if n_items else 1
    stats = {**stats, "n_disamb": n_disamb}
    return paths, offset + n_disamb, stats


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> str:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "GPU max allocated"
    return "process peak RSS" if reset_peak_rss() else "process lifetime max RSS"


def _peak(device) -> int:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else peak_rss_bytes()


def _time_batches(step, device, repeats: int) -> float:
    """Median wall seconds of one batch over ``repeats`` timed batches, after one warm-up batch.

    The median resists a busy machine (one slow batch does not move it)."""
    step()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    times.sort()
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])


@torch.no_grad()
def check_beam(generator, memory, pad, paths, trie, ids, scores, n_items) -> tuple[bool, float]:
    """Distinct valid ids per user, sorted scores, and scores == exact sequence log-probs."""
    ok = bool((ids >= 0).all() and (ids < n_items).all())
    ok &= all(len(set(r)) == len(r) for r in ids.tolist())
    ok &= bool((scores[:, :-1] >= scores[:, 1:]).all())
    for seq, item in zip(paths[ids[0, :3].cpu()].tolist(), ids[0, :3].tolist()):
        ok &= trie.item_of(seq) == item
    cand = paths.to(ids.device)[ids]  # [B, W, T]
    lp = generator.decode_log_probs(memory, pad, cand[..., :-1])
    exact = lp.gather(-1, cand.unsqueeze(-1)).squeeze(-1).sum(-1)
    err = float((exact - scores).abs().max().item())
    return ok and err < 1e-3, err


@torch.no_grad()
def measure_size(n_items: int, device, batch_size=128, beam_size=20, topk=10, repeats=3, levels=3,
                 codebook_size=256, dim=64, history=20, seed=0) -> list[dict]:
    """Both methods at one catalogue size; two CSV records."""
    device = torch.device(device)
    paths, vocab, stats = synthetic_paths(n_items, levels, codebook_size, seed)
    t = time.perf_counter()
    trie = PrefixTrie(paths.to(device))
    _sync(device)
    trie_s = time.perf_counter() - t
    torch.manual_seed(seed)
    gen = SemanticIDGenerator(vocab, levels + 1, history, hidden_size=dim, n_heads=2, inner_size=4 * dim,
                              n_encoder_layers=2, n_decoder_layers=2, dropout=0.0).to(device).eval()
    paths_d = paths.to(device)
    # item vectors for the history encoder (index 0 = padding), and the full-sort item table
    item_vectors = torch.cat([torch.zeros(1, dim, device=device), gen.token_embedding(paths_d[:, :levels]).sum(1)])
    item_table = item_vectors[1:].contiguous()  # [N, d]
    g = torch.Generator().manual_seed(seed + 1)
    seq = torch.randint(1, n_items + 1, (batch_size, history), generator=g).to(device)
    seq_len = torch.full((batch_size,), history, dtype=torch.long, device=device)
    last = seq_len - 1
    rows = torch.arange(batch_size, device=device)

    def generative():
        memory, pad = gen.encode_history(item_vectors, seq, seq_len)
        fn = last_position(lambda prefix: gen.decode_log_probs(memory, pad, prefix))
        return constrained_beam_search(fn, trie, batch_size, beam_size, device=device), memory, pad

    def full_sort():
        memory, _ = gen.encode_history(item_vectors, seq, seq_len)
        user = memory[rows, last]  # [B, d]
        return torch.topk(user @ item_table.T, min(topk, n_items), dim=1)

    (ids, scores), memory, pad = generative()
    valid, err = check_beam(gen, memory, pad, paths_d, trie, ids, scores, n_items)
    top = full_sort()
    valid_fs = bool((top.indices >= 0).all() and (top.indices < n_items).all())

    out = []
    base = {
        "n_items": n_items, "batch_size": batch_size, "repeats": repeats, "trie_build_s": trie_s,
        "trie_nodes": int(sum(trie.n_nodes)), "collision_rate": stats["collision_rate"],
        "n_disamb": stats["n_disamb"], "device": str(device),
    }
    for method, step, k, ok, e in (("generative (trie beam search)", generative, beam_size, valid, err),
                                   ("full-sort (matmul + topk)", full_sort, topk, valid_fs, None)):
        kind = _reset_peak(device)
        seconds = _time_batches(step, device, repeats)
        out.append({
            **base, "method": method, "users_per_s": batch_size / seconds,
            "ms_per_batch": 1000.0 * seconds, "beam_or_topk": k,
            "peak_memory_bytes": _peak(device), "peak_memory_kind": kind,
            "beam_valid": ok, "beam_max_abs_err": e,
        })
    return out


def render_csv(records) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def render_markdown(records, command: str, machine: str, settings: dict) -> str:
    from recbole_flexcode.benchmark.tables import format_bytes
    from recbole_flexcode.reporting import markdown_table as _md_table

    rows = [[
        f"{r['n_items']:,}", r["method"], f"{r['users_per_s']:,.1f}", f"{r['ms_per_batch']:.1f}",
        f"{format_bytes(r['peak_memory_bytes'])} ({r['peak_memory_kind']})", f"{r['trie_build_s']:.2f}",
        f"{r['collision_rate']:.4f}", str(r["n_disamb"]), "yes" if r["beam_valid"] else "NO",
    ] for r in records]
    header = ["items N", "method", "users/s", "ms/batch", "peak memory", "trie build s",
              "collision rate", "disamb tokens", "results valid"]
    return "\n".join([
        "# Inference cost: trie-constrained beam search vs full-sort scoring",
        "",
        f"Command: `{command}`",
        f"Machine: {machine}",
        f"Written at: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
        _md_table(header, rows),
        "",
        "Synthetic data: uniformly random codes (L levels of K codes) with a disambiguation token; a "
        "random-weight SemanticIDGenerator. Both methods include the same history encoder; users/s = "
        "batch / median seconds per batch over the timed batches (after one warm-up batch). Peak memory is measured during the "
        "timed batches and includes the resident tables. 'results valid': distinct real items whose "
        "beam scores equal their exact log-probabilities (generative), ids in range (full-sort).",
        "",
    ])


def plot(records, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in records):
        pts = sorted((r["n_items"], r["users_per_s"]) for r in records if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("catalogue size N (items)")
    ax.set_ylabel("users / second")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recbole_flexcode.benchmark.cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="catalogue sizes (default: 10000,100000 on cpu; up to 1000000 on cuda)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=os.path.join("results", "cost"))
    p.add_argument("--batch_size", type=int, default=128, help="users per batch (default 128)")
    p.add_argument("--beam_size", type=int, default=20)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="timed batches after one warm-up (default 3)")
    p.add_argument("--levels", type=int, default=3, help="code levels L (default 3)")
    p.add_argument("--codebook_size", type=int, default=256, help="codes per level K (default 256)")
    p.add_argument("--dim", type=int, default=64, help="model width d (default 64)")
    p.add_argument("--history", type=int, default=20, help="history length (default 20)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "python -m recbole_flexcode.benchmark.cost " + " ".join(shlex.quote(a) for a in argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device=cuda but CUDA is not available", file=sys.stderr)
        return 2
    try:
        sizes = [int(x) for x in (args.sizes or DEFAULT_SIZES[args.device]).split(",") if x.strip()]
    except ValueError:
        print(f"error: --sizes must be comma-separated integers, got '{args.sizes}'", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1 or min(args.batch_size, args.beam_size, args.topk, args.repeats) < 1:
        print("error: sizes, batch_size, beam_size, topk and repeats must be positive", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("batch_size", "beam_size", "topk", "repeats", "levels",
                                               "codebook_size", "dim", "history", "seed")}
    records = []
    for n in sizes:
        print(f"N = {n:,} ...", flush=True)
        for rec in measure_size(n, args.device, **settings):
            records.append(rec)
            print(f"  {rec['method']:<32} {rec['users_per_s']:>12,.1f} users/s  valid={rec['beam_valid']}", flush=True)
    machine = machine_line(args.device)
    csv_path, md_path, png_path = (os.path.join(args.out, f) for f in ("cost.csv", "cost.md", "cost.png"))
    write_text(csv_path, render_csv(records))
    write_text(md_path, render_markdown(records, command, machine, settings))
    plot(records, png_path, f"Top-k inference throughput ({machine.split(';')[0]})")
    for p in (csv_path, md_path, png_path):
        print(f"wrote {p}")
    return 0 if all(r["beam_valid"] for r in records) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
