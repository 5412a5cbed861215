"""How a user's history becomes encoder positions (config ``history_encoding``; docs/design.md, "Generator options").

Both generators (:mod:`recbole_flexcode.model.generator`, :mod:`recbole_flexcode.model.t5_generator`)
take one of two small objects, which answer two questions:

* :meth:`table` — the representation of *every* item from its routed codes (called once per step
  by FlexCode with the level tokens and straight-through masks of all items, §4.3);
* :meth:`inputs` — the encoder inputs ``[B, S', d]`` and padding mask ``[B, S']`` of a batch of
  left-aligned histories ``[B, S]`` (0 = padding), given the table and the generator's recency
  embedding (distance from the most recent item).

:class:`PooledHistory` (``pooled``, the default and FlexCode's reading): one position per history
item, the sum of its masked code embeddings. :class:`TokenHistory` (``tokens``, what every strong
public recipe does, SPEC §6): every history item contributes its path tokens under its *hard*
split — the same sequence the trie and the decoder use — as separate positions, each with the
item's recency embedding and a level embedding (the position within the path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

HISTORY_ENCODINGS = ("pooled", "tokens")


def _history_positions(item_seq: torch.Tensor, item_seq_len: torch.Tensor):
    """Padding mask and recency (distance from the latest item, 0 on padding) of left-aligned histories."""
    positions = torch.arange(item_seq.shape[1], device=item_seq.device).unsqueeze(0)
    pad = positions >= item_seq_len.unsqueeze(1)
    recency = (item_seq_len.unsqueeze(1) - 1 - positions).clamp_min(0)
    return pad, recency


class PooledHistory(nn.Module):
    """One encoder position per history item: the sum of its masked code embeddings (§4.3). No parameters."""

    def table(self, token_embedding: nn.Embedding, cf_tokens, sem_tokens, cf_mask, sem_mask) -> torch.Tensor:
        """``[N, d]``: ``Σ_k m^cf_k e(c_k) + Σ_k m^sem_k e(s_k)``."""
        cf = token_embedding(cf_tokens) * cf_mask.unsqueeze(-1)
        sem = token_embedding(sem_tokens) * sem_mask.unsqueeze(-1)
        return cf.sum(1) + sem.sum(1)

    def inputs(self, table: torch.Tensor, item_seq, item_seq_len, recency_embedding: nn.Embedding):
        pad, recency = _history_positions(item_seq, item_seq_len)
        return table[item_seq] + recency_embedding(recency), pad


@dataclass
class TokenTable:
    """Every item's path token embeddings ``[N, P, d]`` (masked), plus an optional per-item vector ``[N, d]``.

    Adding an ``[N, d]`` tensor (FlexCode's ``history_item_embedding``) adds it to each of the item's
    positions, as the pooled table adds it to the item's one vector.
    """

    tokens: torch.Tensor
    extra: torch.Tensor | None = None

    def __add__(self, other: torch.Tensor) -> "TokenTable":
        if not isinstance(other, torch.Tensor) or other.shape != (self.tokens.shape[0], self.tokens.shape[2]):
            return NotImplemented
        return TokenTable(self.tokens, other if self.extra is None else self.extra + other)

    __radd__ = __add__


class TokenHistory(nn.Module):
    """Every history item's path tokens as separate encoder positions (see module docstring).

    Item ``i`` under its hard split ``s`` (``s`` collaborative tokens; read off the masks, whose
    forward value is the hard mask under FlexCode's straight-through masks) lays out
    ``(c_1..c_s, s_1..s_{L-s}[, disamb])``: exactly its path, coarse levels first. Each code token's
    embedding is multiplied by its mask value (1 in the forward pass), so the router's gradient still
    reaches the masks of the tokens in use. The disambiguation token is added when ``path_source``
    (an object with ``paths [n_splits, N, T]``, the item tokenizer) is given.

    Args:
        path_length: ``T = L + 1``, the size of the level embedding.
        hidden_size: model width.
        path_source: the item tokenizer (held by reference, not as a submodule), or ``None``.
    """

    def __init__(self, path_length: int, hidden_size: int, path_source=None):
        super().__init__()
        self.level_embedding = nn.Embedding(path_length, hidden_size)
        object.__setattr__(self, "path_source", path_source)  # not a submodule: FlexCode owns the tokenizer

    def table(self, token_embedding: nn.Embedding, cf_tokens, sem_tokens, cf_mask, sem_mask) -> TokenTable:
        n, levels = cf_tokens.shape
        split = cf_mask.detach().sum(-1).round().long().clamp(0, levels)  # hard split: collaborative tokens
        j = torch.arange(levels, device=cf_tokens.device).unsqueeze(0)
        slot = torch.where(j < split.unsqueeze(1), j, levels + j - split.unsqueeze(1))  # into [cf levels | sem levels]
        tokens = torch.cat([cf_tokens, sem_tokens], 1).gather(1, slot)
        masks = torch.cat([cf_mask, sem_mask], 1).gather(1, slot)
        emb = token_embedding(tokens) * masks.unsqueeze(-1)
        if self.path_source is not None:
            paths = self.path_source.paths
            if paths.shape[1] != n:
                raise ValueError(f"TokenHistory: the table needs all {paths.shape[1]} items, got {n}")
            disamb = paths[split, torch.arange(n, device=paths.device), -1]
            emb = torch.cat([emb, token_embedding(disamb).unsqueeze(1)], 1)
        return TokenTable(emb)

    def inputs(self, table: TokenTable, item_seq, item_seq_len, recency_embedding: nn.Embedding):
        """``[B, S·P, d]``: the history items' paths one after the other, oldest first; padding ``[B, S·P]``."""
        pad, recency = _history_positions(item_seq, item_seq_len)
        batch, length = item_seq.shape
        per = table.tokens.shape[1]
        x = table.tokens[item_seq] + self.level_embedding.weight[:per] + recency_embedding(recency).unsqueeze(2)
        if table.extra is not None:
            x = x + table.extra[item_seq].unsqueeze(2)
        return x.reshape(batch, length * per, -1), pad.repeat_interleave(per, dim=1)


def build_history(kind: str, path_length: int, hidden_size: int, path_source=None) -> nn.Module:
    """The history encoding ``kind`` (``pooled`` | ``tokens``)."""
    if kind == "pooled":
        return PooledHistory()
    if kind == "tokens":
        return TokenHistory(path_length, hidden_size, path_source)
    raise ValueError(f"history_encoding: unknown value '{kind}' (choose from {', '.join(HISTORY_ENCODINGS)})")
