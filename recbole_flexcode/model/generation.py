"""Batched generation over semantic IDs: trie-constrained beam search and exact item scoring.

An autoregressive generator models ``p(item) = prod_k p(t_k | t_<k, user context)`` over the
``T`` tokens of an item's semantic ID (TIGER, Rajput et al. 2023, "Recommender Systems with
Generative Retrieval").  Decoding is beam search restricted to a :class:`PrefixTrie`, so every
generated sequence is a real item (FlexCode §4.4 (ARG): constrained decoding over a prefix trie).

The model plugs in through one callable, its *all-positions* log-probability function::

    f(prefix: LongTensor [B, M, k]) -> Tensor [B, M, k+1, V]

where ``f(prefix)[b, m, j]`` is the log-distribution of token ``j`` of sequence ``m`` for user
``b`` given its tokens ``< j`` (``j = 0 .. k``; position 0 is conditioned on the user context
only).  The closure holds the per-user context (one row per user of the batch, in order).  The
same ``f`` serves both uses:

* :func:`exact_item_scores` calls it once per item chunk with teacher forcing (all ``T`` positions
  of ``M`` items at once) and sums the log-probabilities of the items' tokens;
* :func:`constrained_beam_search` needs the *next-token* function
  ``g(prefix [B, W, k]) -> [B, W, V]``, which :func:`last_position` builds from ``f`` by taking
  ``f(prefix)[..., -1, :]``.  A model with a KV cache may pass its own faster ``g`` instead; the
  two must agree for beam scores to equal exact scores.

Everything is batched over users and beams/items: Python loops only run over the ``T`` decoding
steps (and over item chunks in :func:`exact_item_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from recbole_flexcode.tokenizer.ids import PrefixTrie

__all__ = [
    "constrained_beam_search",
    "exact_item_scores",
    "scatter_item_scores",
    "last_position",
    "PrefixTree",
    "shared_prefix_tree",
    "tree_nll",
]

NextTokenFn = Callable[[torch.Tensor], torch.Tensor]
AllPositionsFn = Callable[[torch.Tensor], torch.Tensor]


def last_position(token_log_probs_all: AllPositionsFn) -> NextTokenFn:
    """Turn an all-positions function ``f(prefix [B, M, k]) -> [B, M, k+1, V]`` into the
    next-token function ``g(prefix [B, W, k]) -> [B, W, V]`` used by :func:`constrained_beam_search`
    (``g(prefix) = f(prefix)[..., -1, :]``, the distribution of token ``k`` given the ``k`` prefix
    tokens).  Recomputes all positions each step; fine for short semantic IDs."""

    def next_token_log_probs(prefix: torch.Tensor) -> torch.Tensor:
        return token_log_probs_all(prefix)[..., -1, :]

    return next_token_log_probs


@torch.no_grad()
def constrained_beam_search(
    token_log_probs: NextTokenFn,
    trie: PrefixTrie,
    batch_size: int,
    beam_size: int,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search restricted to the items of ``trie``, batched over users and beams.

    FlexCode §4.4 (ARG): constrained decoding over a prefix trie; TIGER (Rajput et al. 2023)
    decodes semantic IDs the same way.

    Args:
        token_log_probs: next-token function ``g(prefix: LongTensor [B, W, k]) -> Tensor [B, W, V]``
            giving the log-probabilities of token ``k`` given the first ``k`` tokens of each beam
            (``k = 0`` at the first step, where ``prefix`` has shape ``[B, 1, 0]``).  The closure
            holds the per-user context.  Build it from an all-positions function with
            :func:`last_position`.  Rows of beams that are already dead (fewer valid candidates
            than beams) carry filler token ``0``; their outputs are ignored.
        trie: the item trie (moved to ``device`` if needed).
        batch_size: number of users ``B``.
        beam_size: number of items returned per user.
        device: device for the search (default: the trie's device).

    Returns:
        ``(item_ids [B, beam_size], scores [B, beam_size])``: distinct valid items per user with
        their sequence log-probability (sum of the chosen tokens' log-probs), sorted descending.
        If fewer than ``beam_size`` items exist, the tail is padded with id ``-1`` and score
        ``-inf``.

    Each step starts from ``W`` beams (``W = 1`` at the root), gathers the children of each beam's
    node from the trie's padded tensors (``[B, W, C]``), scores ``beam score + log_prob[child
    token]``, masks pads to ``-inf`` and keeps the top ``min(beam_size, #valid)`` of ``W * C``.
    Distinct beams sit at distinct trie nodes, so the final items are distinct.  A valid item
    with score ``-inf`` (a zero-probability token) still ranks above padding.
    """
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    device = trie.device if device is None else torch.device(device)
    trie = trie.to(device)
    b = int(batch_size)

    nodes = torch.zeros(b, 1, dtype=torch.long, device=device)  # node index at current depth
    alive = torch.ones(b, 1, dtype=torch.bool, device=device)
    scores: torch.Tensor | None = None
    prefix = torch.zeros(b, 1, 0, dtype=torch.long, device=device)

    for k in range(trie.depth):
        w = nodes.shape[1]
        lp = token_log_probs(prefix)
        if lp.dim() != 3 or lp.shape[0] != b or lp.shape[1] != w:
            raise ValueError(
                f"token_log_probs must return [B={b}, W={w}, V] at step {k}, got {tuple(lp.shape)}"
            )
        if scores is None:
            scores = torch.zeros(b, 1, dtype=lp.dtype, device=device)
        lp = lp.to(device=device, dtype=scores.dtype)
        neg_inf = torch.tensor(float("-inf"), dtype=scores.dtype, device=device)

        safe_nodes = nodes.clamp(min=0)
        child_tok = trie.children_tokens[k][safe_nodes]  # [B, W, C]
        child_node = trie.children_nodes[k][safe_nodes]  # [B, W, C]
        c = child_tok.shape[-1]
        valid = (child_tok >= 0) & alive.unsqueeze(-1)
        cand = scores.unsqueeze(-1) + lp.gather(-1, child_tok.clamp(min=0))
        cand = torch.where(valid, cand, neg_inf)
        # Ranking key: valid candidates (even at -inf) before padding.
        key = torch.where(valid, cand.clamp(min=torch.finfo(cand.dtype).min), neg_inf)

        n_keep = max(1, min(beam_size, int(valid.sum(dim=(1, 2)).max().item())))
        top = torch.topk(key.reshape(b, w * c), n_keep, dim=1).indices  # sorted descending
        src = torch.div(top, c, rounding_mode="floor")  # source beam of each new beam

        alive = valid.reshape(b, w * c).gather(1, top)
        scores = torch.where(alive, cand.reshape(b, w * c).gather(1, top), neg_inf)
        nodes = torch.where(alive, child_node.reshape(b, w * c).gather(1, top), -1)
        new_tok = torch.where(alive, child_tok.reshape(b, w * c).gather(1, top), 0)
        prefix = torch.cat(
            [prefix.gather(1, src.unsqueeze(-1).expand(-1, -1, k)), new_tok.unsqueeze(-1)], dim=-1
        )

    items = torch.where(alive, trie.leaf_items[nodes.clamp(min=0)], -1)
    pad = beam_size - items.shape[1]
    if pad > 0:
        items = torch.cat([items, items.new_full((b, pad), -1)], dim=1)
        scores = torch.cat([scores, scores.new_full((b, pad), float("-inf"))], dim=1)
    return items, scores


@torch.no_grad()
def exact_item_scores(
    token_log_probs_all: AllPositionsFn,
    sequences: torch.Tensor,
    batch_size: int,
    item_chunk: int = 4096,
    device=None,
) -> torch.Tensor:
    """Exact sequence log-probabilities of every item for every user (teacher forcing).

    Args:
        token_log_probs_all: all-positions function ``f(prefix: LongTensor [B, M, k]) -> Tensor
            [B, M, k+1, V]`` (log-probs of each position ``j = 0..k`` given tokens ``< j``).  It is
            called with ``k = T-1``: ``prefix`` is ``sequences[chunk, :T-1]`` expanded (a view,
            not contiguous) to ``[B, M, T-1]``.  The same ``f`` gives the beam-search next-token
            function through :func:`last_position`.
        sequences: LongTensor ``[N, T]``, the token sequence of item ``n`` in row ``n``.
        batch_size: number of users ``B``.
        item_chunk: number of items ``M`` scored per call of ``f``.
        device: device to run on (default: the device of ``sequences``).

    Returns:
        Tensor ``[B, N]``: ``sum_j log p(sequences[n, j] | sequences[n, <j], user b)``.
    """
    if item_chunk < 1:
        raise ValueError("item_chunk must be >= 1")
    device = sequences.device if device is None else torch.device(device)
    sequences = torch.as_tensor(sequences).long().to(device)
    n, t = sequences.shape
    b = int(batch_size)
    parts = []
    for start in range(0, n, item_chunk):
        chunk = sequences[start : start + item_chunk]  # [M, T]
        m = chunk.shape[0]
        prefix = chunk[:, : t - 1].unsqueeze(0).expand(b, m, t - 1)
        lp = token_log_probs_all(prefix)
        if tuple(lp.shape[:3]) != (b, m, t) or lp.dim() != 4:
            raise ValueError(
                f"token_log_probs_all must return [B={b}, M={m}, T={t}, V], got {tuple(lp.shape)}"
            )
        idx = chunk.view(1, m, t, 1).expand(b, m, t, 1).to(lp.device)
        parts.append(lp.gather(-1, idx).squeeze(-1).sum(-1))
    if not parts:
        return torch.zeros(b, 0, device=device)
    return torch.cat(parts, dim=1)


def scatter_item_scores(
    item_ids: torch.Tensor, scores: torch.Tensor, n_items: int, fill: float = float("-inf")
) -> torch.Tensor:
    """Dense ``[B, n_items]`` score matrix from beam results (for RecBole ``full_sort_predict``).

    Entry ``[b, item_ids[b, j]]`` receives ``scores[b, j]``; every other entry is ``fill``.  Ids
    ``-1`` (padding from :func:`constrained_beam_search`) are ignored.
    """
    if item_ids.shape != scores.shape or item_ids.dim() != 2:
        raise ValueError("item_ids and scores must both have shape [B, beam]")
    b = item_ids.shape[0]
    out = torch.full((b, int(n_items)), fill, dtype=scores.dtype, device=scores.device)
    item_ids = item_ids.to(scores.device).long()
    mask = item_ids >= 0
    if bool((item_ids[mask] >= n_items).any()):
        raise ValueError(f"item id out of range [0, {n_items})")
    rows = torch.arange(b, device=scores.device).unsqueeze(1).expand_as(item_ids)
    out[rows[mask], item_ids[mask]] = scores[mask]
    return out


@dataclass
class PrefixTree:
    """Decoder positions of ``M`` candidate paths that share prefixes (:func:`shared_prefix_tree`).

    Node ``u`` stands for one input prefix of length ``depth[u]`` of the candidates in its group; its
    decoder input is the last token of that prefix (BOS at depth 0), taken from candidate ``rep[u]``.

    * ``depth``, ``rep``: ``[n_nodes]`` long;
    * ``node_of``: ``[M, T]`` long, the node whose output predicts token ``j`` of candidate ``m``;
    * ``blocked``: ``[n_nodes, n_nodes]`` bool, True = may not attend (not an ancestor-or-self);
      with it a node sees exactly the prefix its candidates see in the packed layout.
    """

    depth: torch.Tensor
    rep: torch.Tensor
    node_of: torch.Tensor
    blocked: torch.Tensor

    @property
    def n_nodes(self) -> int:
        return int(self.depth.numel())


def shared_prefix_tree(paths: torch.Tensor) -> PrefixTree | None:
    """The prefix tree of the ``M`` candidates of ``paths [B, M, T]`` over prefixes shared in *every* row.

    Candidates ``m`` and ``m'`` share the input prefix of length ``j`` (tokens ``0..j-1``) when
    ``paths[b, m, :j] == paths[b, m', :j]`` for all rows ``b``; such a prefix is decoded once. The
    ``L + 1`` budget splits of one target are the case this is for: split ``s`` starts with the
    item's first ``s`` collaborative tokens, so splits ``s, s' >= j`` share their first ``j`` tokens
    and a teacher-forced pass over all splits needs ``L + 1 + L(L+1)/2`` decoder positions instead
    of ``(L+1)^2`` (10 instead of 16 at ``L = 3``); candidates that share nothing else still share the
    start token. Returns None for a single candidate (the packed layout is the same).

    Sharing is decided over the whole batch, so the tree (a handful of nodes) is built with
    ``O(B M^2 T)`` comparisons and no loop over rows.
    """
    if paths.dim() != 3:
        raise ValueError(f"paths must be [B, M, T], got {tuple(paths.shape)}")
    _, m, t = paths.shape
    if m < 2 or t < 1:
        return None
    # same[j, a, c]: candidates a and c agree on tokens < j in every row (j = 0..T-1)
    agree = (paths.unsqueeze(2) == paths.unsqueeze(1)).all(0)  # [M, M, T], per position
    prefix_agree = torch.cumprod(agree.long(), dim=-1).bool()  # agree on tokens 0..j
    ones = torch.ones(m, m, 1, dtype=torch.bool, device=paths.device)
    same = torch.cat([ones, prefix_agree[..., : t - 1]], dim=-1).permute(2, 0, 1).cpu()  # [T, M, M]
    depth, rep, node_of = [], [], torch.empty(m, t, dtype=torch.long)
    members = []
    for j in range(t):
        for a in range(m):
            group = same[j, a].nonzero().flatten()
            first = int(group[0])
            if first == a:  # a is its group's representative: a new node
                node_of[group, j] = len(depth)
                depth.append(j)
                rep.append(a)
                members.append(same[j, a])
    n = len(depth)
    if n >= m * t:
        return None
    depth_t = torch.tensor(depth)
    rep_t = torch.tensor(rep)
    member = torch.stack(members)  # [n, M]: which candidates hold the node's prefix
    # v is an ancestor-or-self of u: not deeper, and u's representative holds v's prefix
    allowed = (depth_t.unsqueeze(0) <= depth_t.unsqueeze(1)) & member[:, rep_t].t()
    dev = paths.device
    return PrefixTree(depth_t.to(dev), rep_t.to(dev), node_of.to(dev), (~allowed).to(dev))


class _TreeNLL(torch.autograd.Function):
    """``nll[b, c] = logsumexp(logits[b, node[c]]) - logits[b, node[c], token[b, c]]`` with a fused backward.

    The forward keeps ``exp(logits - max)`` (the one buffer it allocates), and the backward scales it into
    ``softmax · Σ g - onehot · g`` per node, one pass, instead of autograd's separate logsumexp, gather
    and sum gradients (four more passes over ``[B, n, V]``). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, logits, node, token):
        batch, n, vocab = logits.shape
        top = logits.amax(dim=-1, keepdim=True)
        shifted = (logits - top).exp_()  # [B, n, V]
        total = shifted.sum(dim=-1)  # [B, n]
        lse = total.log() + top.squeeze(-1)
        picked = logits.reshape(batch, n * vocab).gather(1, node.unsqueeze(0) * vocab + token)  # [B, C]
        ctx.save_for_backward(shifted, total, node, token)
        return lse[:, node] - picked

    @staticmethod
    def backward(ctx, grad):
        shifted, total, node, token = ctx.saved_tensors
        batch, n, vocab = shifted.shape
        per_node = torch.zeros(batch, n, dtype=grad.dtype, device=grad.device).index_add_(1, node, grad)
        out = shifted * (per_node / total).unsqueeze(-1)  # softmax · Σ g (not in place: a retained graph reuses it)
        out.view(batch, n * vocab).scatter_add_(1, node.unsqueeze(0) * vocab + token, -grad)
        return out, None, None


def tree_nll(logits: torch.Tensor, tree: PrefixTree, paths: torch.Tensor) -> torch.Tensor:
    """``L_ARG`` per candidate from the node logits ``[B, n, V]`` of :func:`shared_prefix_tree`'s tree:
    ``−Σ_j log softmax(logits[b, node_of[m, j]])[paths[b, m, j]]`` for paths ``[B, M, T]`` → ``[B, M]``."""
    batch, m, t = paths.shape
    nll = _TreeNLL.apply(logits, tree.node_of.reshape(-1), paths.reshape(batch, m * t))
    return nll.reshape(batch, m, t).sum(-1)
