"""The item tokenizer: everything item -> tokens, fitted once and saved as one artefact.

FlexCode §4.1–§4.4 (and SOLID's semantic IDs) as one first-class object, in the manner of the
genrec code bases (RPG, ActionPiece). Built from the training split's item embeddings and the
config, an :class:`ItemTokenizer` owns

* the embeddings it quantises, per *source* (``semantic``: item text, ``collaborative``: SASRec
  item embeddings; a source may concatenate several standardised parts, as SOLID's does), and their
  normalisation statistics (:func:`standardize`);
* the codebooks (:mod:`recbole_flexcode.tokenizer.codebooks`: RQ-VAE or residual k-means);
* collision handling and the vocabulary layout (:mod:`recbole_flexcode.tokenizer.vocab`);
* every item's token path under every budget split (two sources: split ``s`` = ``s``
  collaborative tokens then ``L - s`` semantic ones, §4.3; one source: its ``L`` codes), and the
  prefix trie over the paths in use (§4.4).

API: :meth:`fit`, :meth:`save`, :meth:`load`, :meth:`encode` ``(item_ids, splits)``,
:attr:`vocab_size`, :meth:`trie`. On disk one folder, ``tokenizer.safetensors`` (every tensor) and
``tokenizer.json`` (the spec: kind, shape, settings, cache key, what it was built from, and the
SHA-256 of the safetensors file, checked on load), published as one unit. As an ``nn.Module`` it
also travels inside a model's checkpoint (the spec as a byte buffer), so a saved model
reloads without the stage caches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recbole_flexcode.io import publish_dir, sha256_file
from recbole_flexcode.tokenizer.codebooks import (
    COLLABORATIVE,
    SEMANTIC,
    ResidualKMeansCodebooks,
    RQVAECodebooks,
)
from recbole_flexcode.tokenizer.ids import PrefixTrie, append_disambiguation, resolve_collisions
from recbole_flexcode.tokenizer.vocab import TokenLayout, all_split_paths

FORMAT_VERSION = 1
TOKENIZER_TYPES = ("rqvae", "rkmeans")
WEIGHTS_FILE, SPEC_FILE = "tokenizer.safetensors", "tokenizer.json"


class DamagedArtefact(ValueError):
    """A saved tokenizer whose files are missing, unreadable or fail their checksum."""


def standardize(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre the rows and divide by one global scale (keeps the embedding geometry).

    Returns ``(standardised rows, mean [d], scale [])``: the statistics a new item's embedding
    would be normalised with.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    mean = x.mean(dim=0, keepdim=True)
    x = x - mean
    scale = x.pow(2).sum(dim=1).mean().sqrt().clamp_min(1e-8)
    return x / scale, mean[0], scale


def _codebooks(spec: dict) -> nn.Module:
    dims = {name: int(sum(src["dims"])) for name, src in spec["sources"].items()}
    kw = spec["codebook"]
    if spec["kind"] == "rqvae":
        return RQVAECodebooks(dims, spec["n_levels"], spec["codebook_size"], **kw)
    return ResidualKMeansCodebooks(dims, spec["n_levels"], spec["codebook_size"], kw["kmeans_iterations"])


class ItemTokenizer(nn.Module):
    """Item -> token paths (see module docstring). Build with :meth:`fit` or :meth:`load`.

    ``spec`` (JSON): ``kind`` (``rqvae`` | ``rkmeans``), ``sources`` (name -> widths of its parts),
    ``n_items`` (RecBole ids, padding 0 included), ``n_levels`` ``L``, ``codebook_size`` ``K``,
    ``n_disamb``, ``codebook`` (backend settings), ``fit`` (training settings), ``min_disamb``,
    ``collisions`` (per split, before resolution), ``cache_key`` and ``built_from``.
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = dict(spec)
        self.sources = list(spec["sources"])
        self.n_levels, self.codebook_size = int(spec["n_levels"]), int(spec["codebook_size"])
        self.layout = TokenLayout(self.n_levels, self.codebook_size, int(spec["n_disamb"]))
        n, L = int(spec["n_items"]), self.n_levels
        for name, src in spec["sources"].items():
            self.register_buffer(f"inputs_{name}", torch.zeros(n - 1, int(sum(src["dims"]))))
            for k, dim in enumerate(src["dims"]):
                self.register_buffer(f"mean_{name}_{k}", torch.zeros(int(dim)))
                self.register_buffer(f"scale_{name}_{k}", torch.ones(()))
            self.register_buffer(f"codes_{name}", torch.zeros(n, L, dtype=torch.long))
        self.register_buffer("paths", torch.zeros(self.n_splits, n, self.layout.path_length, dtype=torch.long))
        # the spec as UTF-8 bytes: a state dict of tensors only, from which from_state_dict rebuilds the tokenizer
        self.register_buffer("spec_json", torch.zeros(0, dtype=torch.uint8))
        self._sync_spec()
        self.codebooks = _codebooks(spec)
        self._trie_cache: tuple[torch.Tensor, PrefixTrie] | None = None

    # ------------------------------------------------------------------ shape
    @property
    def two_sources(self) -> bool:
        return set(self.sources) == {SEMANTIC, COLLABORATIVE}

    @property
    def n_splits(self) -> int:
        """Budget splits with a path: ``L + 1`` for two sources (§4.3), one for a single source."""
        return self.n_levels + 1 if self.two_sources else 1

    @property
    def n_items(self) -> int:
        return int(self.spec["n_items"])

    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    @property
    def path_length(self) -> int:
        return self.layout.path_length

    def inputs(self) -> dict:
        """The standardised embeddings the codebooks quantise, per source, ``[N - 1, d]`` (real items)."""
        return {name: getattr(self, f"inputs_{name}") for name in self.sources}

    def codes(self, source: str) -> torch.Tensor:
        """Code tuples ``[n_items, L]`` of one source (row 0 = padding)."""
        return getattr(self, f"codes_{source}")

    def level_tokens(self, source: str) -> torch.Tensor:
        """Token ids ``[n_items, L]`` of a source's codes in the shared vocabulary."""
        return self.layout.level_tokens(self.codes(source), semantic=source == SEMANTIC)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, embeddings: dict, kind: str, n_levels: int, codebook_size: int, codebook: dict, fit: dict,
            min_disamb: int = 1, disamb_headroom: int = 1, seed: int = 0, cache_key: str = "",
            built_from: dict | None = None,
            show_progress: bool = True, logger: logging.Logger | None = None) -> "ItemTokenizer":
        """Fit the codebooks on ``embeddings`` (source -> list of ``[n_items, d]`` arrays, row 0 =
        padding), encode every item and build its paths under every split. ``disamb_headroom``
        multiplies the disambiguation vocabulary (joint training re-encodes items and can grow a
        collision group).

        Seeded by ``seed`` alone, inside a forked RNG: the caller's random state is the same whether
        the tokenizer was fitted or loaded.
        """
        if kind not in TOKENIZER_TYPES:
            raise ValueError(f"unknown tokenizer '{kind}' (choose from {', '.join(TOKENIZER_TYPES)})")
        log = logger or logging.getLogger(__name__)
        parts = {name: [standardize(np.asarray(a)[1:]) for a in arrays] for name, arrays in embeddings.items()}
        n_items = len(next(iter(embeddings.values()))[0])
        spec = {
            "format": FORMAT_VERSION, "kind": kind, "n_items": int(n_items), "n_levels": int(n_levels),
            "codebook_size": int(codebook_size), "n_disamb": 0, "min_disamb": int(min_disamb),
            "sources": {name: {"dims": [int(p[0].shape[1]) for p in ps]} for name, ps in parts.items()},
            "codebook": dict(codebook), "fit": {**fit, "seed": int(seed)}, "collisions": [],
            "cache_key": cache_key, "built_from": dict(built_from or {}),
        }
        x = {name: torch.cat([p[0] for p in ps], dim=1) for name, ps in parts.items()}
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            tok = cls(spec)
            log.info("tokenizer (%s): fitting on %d items, sources %s (%s)", kind, n_items - 1, ", ".join(x), fit)
            history = tok.codebooks.fit(x, seed=seed, show_progress=show_progress, logger=log, **fit)
        with torch.no_grad():
            for name, ps in parts.items():
                getattr(tok, f"inputs_{name}").copy_(x[name])
                for k, (_, mean, scale) in enumerate(ps):
                    getattr(tok, f"mean_{name}_{k}").copy_(mean)
                    getattr(tok, f"scale_{name}_{k}").copy_(scale)
        tok.codebooks.eval()
        codes = tok._encode_all()
        paths, layout, stats = tok._build_paths(codes, min_disamb)
        if disamb_headroom > 1:
            paths, layout, _ = tok._build_paths(codes, disamb_headroom * layout.n_disamb)
        losses = history.get("loss", [])
        tok.spec.update(n_disamb=layout.n_disamb, collisions=stats,
                        fit_result={"epochs_run": len(losses), "final_loss": float(losses[-1]) if losses else None})
        tok._sync_spec()
        tok._set_paths(codes, paths, layout)
        return tok

    @torch.no_grad()
    def _encode_all(self) -> dict:
        """Code tuples ``[n_items, L]`` of every item per source (row 0 = padding, all zeros)."""
        codes = self.codebooks.encode({k: v.to(self.paths.device) for k, v in self.inputs().items()})
        pad = torch.zeros(1, self.n_levels, dtype=torch.long, device=self.paths.device)
        return {name: torch.cat([pad, c.to(pad.device)]) for name, c in codes.items()}

    def _build_paths(self, codes: dict, min_disamb: int):
        """Paths ``[n_splits, n_items, T]`` with collisions resolved per split (§4.4), their layout and stats."""
        if self.two_sources:
            return all_split_paths(codes[COLLABORATIVE], codes[SEMANTIC], self.codebook_size, min_disamb=min_disamb)
        (name,) = self.sources
        tokens = TokenLayout(self.n_levels, self.codebook_size, 0).level_tokens(codes[name], semantic=name == SEMANTIC)
        disamb, st = resolve_collisions(tokens)
        layout = TokenLayout(self.n_levels, self.codebook_size, max(min_disamb, int(disamb.max()) + 1))
        return append_disambiguation(tokens, disamb, layout.disamb_offset).unsqueeze(0), layout, [{"split": 0, **st}]

    def _set_paths(self, codes: dict, paths: torch.Tensor, layout: TokenLayout) -> None:
        # rebind, not copy_: joint training re-encodes between a step's forward and its backward,
        # whose graph still holds the old index tensors
        self.layout = layout
        self.paths = paths
        for name, c in codes.items():
            setattr(self, f"codes_{name}", c)
        self._trie_cache = None

    @torch.no_grad()
    def recode(self) -> bool:
        """Re-encode every item with the current codebooks (joint training, §4.5).

        Returns False, changing nothing, when a collision group would outgrow the disambiguation
        vocabulary (fixed: the generator's embedding table is built on it).
        """
        codes = self._encode_all()
        paths, layout, _ = self._build_paths(codes, self.layout.n_disamb)
        if layout.n_disamb > self.layout.n_disamb:
            return False
        self._set_paths(codes, paths, self.layout)
        return True

    # ------------------------------------------------------------------ using it
    def encode(self, item_ids: torch.Tensor, splits: torch.Tensor | int = 0) -> torch.Tensor:
        """Token paths ``[..., T]`` of ``item_ids`` under ``splits`` (collaborative tokens; same shape or one int)."""
        if isinstance(splits, int):
            splits = torch.full_like(item_ids, splits)
        return self.paths[splits, item_ids]

    def trie(self, splits: torch.Tensor) -> PrefixTrie:
        """Prefix trie over every real item's path under ``splits [n_items]`` (rebuilt when they change)."""
        items = torch.arange(1, self.n_items, device=self.paths.device)
        paths = self.encode(items, splits[items])
        if self._trie_cache is None or not torch.equal(self._trie_cache[0], paths):
            self._trie_cache = (paths, PrefixTrie(paths, items))
        return self._trie_cache[1]

    def code_vectors(self) -> dict:
        """The codebooks' vectors per source, ``[L, K, c]`` (RQ-VAE codes or k-means centroids)."""
        return self.codebooks.code_vectors()

    @torch.no_grad()
    def stats(self) -> dict:
        """Per-source, per-level code usage and reconstruction error (issue #3 item 3)."""
        return self.codebooks.stats({k: v for k, v in self.inputs().items()})

    def loss(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The codebooks' own loss on items ``item_ids`` (RecBole ids > 0), for joint training (§4.5)."""
        return self.codebooks.loss({name: x[item_ids - 1] for name, x in self.inputs().items()})

    # ------------------------------------------------------------------ persistence
    def _sync_spec(self) -> None:
        self.spec_json = torch.tensor(list(json.dumps(self.spec, sort_keys=True).encode("utf-8")), dtype=torch.uint8)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the spec travels with the tensors: adopt it (and its length) before they are copied
        key = f"{prefix}spec_json"
        if key in state_dict:
            self.spec = json.loads(bytes(state_dict[key].tolist()).decode("utf-8"))
            self.layout = TokenLayout(self.n_levels, self.codebook_size, int(self.spec["n_disamb"]))
            self.spec_json = torch.empty_like(state_dict[key], device=self.paths.device)
            self._trie_cache = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_state_dict(cls, state: dict, prefix: str = "") -> "ItemTokenizer":
        """The tokenizer stored in a model's ``state_dict`` under ``prefix`` (a checkpoint reload)."""
        key = f"{prefix}spec_json"
        if key not in state:
            raise DamagedArtefact(f"no item tokenizer in this state dict (missing {key})")
        tok = cls(json.loads(bytes(state[key].tolist()).decode("utf-8")))
        tok.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return tok

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.safetensors`` + ``tokenizer.json`` into ``directory``, published as one unit."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

        def fill(tmp: Path):
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            spec = {**self.spec, "weights_sha256": sha256_file(tmp / WEIGHTS_FILE)}
            (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2), encoding="utf-8")

        return publish_dir(directory, fill)

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> "ItemTokenizer":
        """Rebuild a saved tokenizer (no pickle); :class:`DamagedArtefact` when it does not verify."""
        directory = Path(directory)
        try:
            spec = json.loads((directory / SPEC_FILE).read_text(encoding="utf-8"))
            digest = spec.pop("weights_sha256")
            if spec.get("format") != FORMAT_VERSION:
                raise DamagedArtefact(f"{directory}: format {spec.get('format')}, expected {FORMAT_VERSION}")
            if sha256_file(directory / WEIGHTS_FILE) != digest:
                raise DamagedArtefact(f"{directory / WEIGHTS_FILE}: checksum mismatch")
            tok = cls(spec)
            tok.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device="cpu"))
        except DamagedArtefact:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise DamagedArtefact(f"{directory}: {type(exc).__name__}: {exc}") from exc
        return tok.to(map_location).eval()

    def __repr__(self) -> str:
        return (f"ItemTokenizer({self.spec['kind']}, sources={self.sources}, L={self.n_levels}, K={self.codebook_size}, "
                f"vocab={self.vocab_size}, items={self.n_items - 1})")
