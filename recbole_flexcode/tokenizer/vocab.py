"""Semantic-ID vocabulary and token paths (FlexCode §4.3 "combined representation", §4.4).

One shared token vocabulary for the generator::

    0                         BOS (decoder start; never a target)
    1 + l*K + c               collaborative code c of level l      (l = 0..L-1)
    1 + L*K + l*K + c         semantic code c of level l
    1 + 2*L*K + d             disambiguation token d               (d = 0..D-1)

An item under split ``s`` (``s`` collaborative tokens, coarse levels first, then ``L - s``
semantic ones) has the path ``(c_1..c_s, s_1..s_{L-s}, disamb)``.  Paths of different splits
never coincide (at position ``min(s, s')`` one holds a collaborative and the other a semantic
token), so the disambiguation token only has to separate items that share a split and codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recbole_flexcode.tokenizer.ids import append_disambiguation, resolve_collisions

BOS = 0


@dataclass(frozen=True)
class TokenLayout:
    """Offsets of the shared vocabulary (see module docstring)."""

    n_levels: int
    codebook_size: int
    n_disamb: int

    @property
    def cf_offset(self) -> int:
        return 1

    @property
    def sem_offset(self) -> int:
        return 1 + self.n_levels * self.codebook_size

    @property
    def disamb_offset(self) -> int:
        return 1 + 2 * self.n_levels * self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.disamb_offset + self.n_disamb

    @property
    def path_length(self) -> int:
        return self.n_levels + 1

    def level_tokens(self, codes: torch.Tensor, semantic: bool) -> torch.Tensor:
        """Token ids of a ``[N, L]`` code table (level ``l`` codes shifted into level ``l``'s range)."""
        levels = torch.arange(self.n_levels, device=codes.device) * self.codebook_size
        offset = self.sem_offset if semantic else self.cf_offset
        return codes + levels + offset


def split_paths(cf_tokens: torch.Tensor, sem_tokens: torch.Tensor, split: int) -> torch.Tensor:
    """``[N, L]`` paths under split ``split``: first ``split`` CF levels, then semantic levels."""
    n_levels = cf_tokens.shape[1]
    return torch.cat([cf_tokens[:, :split], sem_tokens[:, : n_levels - split]], dim=1)


def all_split_paths(cf_codes: torch.Tensor, sem_codes: torch.Tensor, codebook_size: int, min_disamb: int = 1):
    """Paths of every item under every split ``s = 0..L``, with collisions resolved per split.

    Returns ``(paths [L+1, N, L+1], layout, stats)`` where ``stats[s]`` holds the collision rate
    *before* resolution of split ``s`` (:func:`resolve_collisions`).
    """
    n_levels = cf_codes.shape[1]
    base = TokenLayout(n_levels, codebook_size, 0)
    cf_tokens = base.level_tokens(cf_codes, semantic=False)
    sem_tokens = base.level_tokens(sem_codes, semantic=True)
    raw, disambs, stats = [], [], []
    for split in range(n_levels + 1):
        path = split_paths(cf_tokens, sem_tokens, split)
        disamb, st = resolve_collisions(path)
        raw.append(path)
        disambs.append(disamb)
        stats.append({"split": split, **st})
    n_disamb = max(min_disamb, max(int(d.max()) + 1 if d.numel() else 1 for d in disambs))
    layout = TokenLayout(n_levels, codebook_size, n_disamb)
    paths = torch.stack([append_disambiguation(p, d, layout.disamb_offset) for p, d in zip(raw, disambs)])
    return paths, layout, stats
