"""Semantic-ID tables: collision resolution and the prefix trie used for constrained decoding.

Every item ``i`` is described by a fixed-length tuple of ``T`` tokens (its *semantic ID*).  A
quantiser (RQ-VAE, residual k-means, ...) may give two items the same code tuple; following
TIGER (Rajput et al. 2023, "Recommender Systems with Generative Retrieval") such collisions are
resolved by appending one extra token that numbers the items of a group ``0, 1, 2, ...``
(:func:`resolve_collisions`, :func:`append_disambiguation`).

The resulting unique sequences are stored in a :class:`PrefixTrie`.  Generation restricted to
the trie can only produce real items: FlexCode §4.4 (ARG): constrained decoding over a prefix
trie.  The trie is kept as padded per-level tensors so that one decoding step for every user and
beam is a handful of gathers (see :func:`recbole_flexcode.model.generation.constrained_beam_search`).

Everything here is vectorised: no Python loop runs over rows/items (only over the ``T`` levels),
so catalogues of 10^6 items are handled in seconds.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["resolve_collisions", "append_disambiguation", "PrefixTrie"]


def _as_long_2d(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor [N, L], got shape {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.dtype.is_complex:
        raise ValueError(f"{name} must hold integers, got dtype {x.dtype}")
    return x.long()


def _lex_keys(x: torch.Tensor) -> torch.Tensor:
    """One int64 key per row of ``x [N, L]`` (N >= 1) whose order is the rows' lexicographic order
    and whose equality is row equality.

    Columns are packed mixed-radix (``key = key * span_j + x[:, j]``, each column shifted to start
    at 0); when the next column would overflow int64 the key is first compressed to its dense rank
    (``torch.unique(..., return_inverse=True)``), so any table works.  This replaces the much
    slower multi-column ``torch.unique(dim=0)`` / ``L`` stable sorts by one 1-D sort.
    """
    n, l = x.shape
    key = torch.zeros(n, dtype=torch.long, device=x.device)
    if l == 0:
        return key
    x = x - x.min(dim=0).values
    spans = (x.max(dim=0).values + 1).tolist()
    key_max = 0
    for j in range(l):
        span = int(spans[j])
        if (key_max + 1) * span > 2**62:
            key = torch.unique(key, return_inverse=True)[1]
            key_max = int(key.max().item())
        key = key * span + x[:, j]
        key_max = (key_max + 1) * span - 1
    return key


def resolve_collisions(codes: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Number the items that share a code tuple.

    Args:
        codes: integer tensor ``[N, L]``, one code tuple per row (item).

    Returns:
        ``(disamb, stats)`` where ``disamb`` is a LongTensor ``[N]`` giving, for each row, its rank
        (``0 .. g-1``) among the ``g`` rows with the identical tuple, in row order (the first row of a
        group gets ``0``; a row with a unique tuple gets ``0``), and ``stats`` is a dict:

        * ``collision_rate``: fraction of rows whose tuple is shared with at least one other row
          (measured before resolution),
        * ``n_colliding_items``: number of such rows,
        * ``max_group_size``: size of the largest group of identical tuples (1 when no collision),
        * ``n_groups_with_collisions``: number of distinct tuples held by more than one row.

    This is TIGER's (Rajput et al. 2023) extra disambiguation code; append it with
    :func:`append_disambiguation`.  Vectorised: ``torch.unique(return_inverse=True)`` over packed
    lexicographic row keys (equivalent to ``torch.unique(codes, dim=0, ...)``, much faster) gives
    each row its group, a stable sort of the group ids keeps row order inside a group, and a
    row's rank is its position in the sorted order minus the start of its group.
    """
    codes = _as_long_2d(codes, "codes")
    n = codes.shape[0]
    device = codes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=device), {
            "collision_rate": 0.0,
            "n_colliding_items": 0,
            "max_group_size": 0,
            "n_groups_with_collisions": 0,
        }
    _, inverse, counts = torch.unique(_lex_keys(codes), return_inverse=True, return_counts=True)
    order = torch.sort(inverse, stable=True).indices  # rows grouped, row order kept inside groups
    group_start = torch.cumsum(counts, 0) - counts  # start of each group in `order`
    rank_sorted = torch.arange(n, device=device) - group_start[inverse[order]]
    disamb = torch.empty(n, dtype=torch.long, device=device)
    disamb[order] = rank_sorted

    colliding = counts[inverse] > 1
    n_colliding = int(colliding.sum().item())
    stats = {
        "collision_rate": n_colliding / n,
        "n_colliding_items": n_colliding,
        "max_group_size": int(counts.max().item()),
        "n_groups_with_collisions": int((counts > 1).sum().item()),
    }
    return disamb, stats


def append_disambiguation(codes: torch.Tensor, disamb: torch.Tensor, offset: int) -> torch.Tensor:
    """Append the disambiguation token ``offset + disamb`` as a last column: ``[N, L] -> [N, L+1]``.

    ``offset`` lets the extra token live in its own range of a shared vocabulary (e.g. after the
    ``L`` codebooks).  With ``disamb`` from :func:`resolve_collisions` every row becomes unique.
    """
    codes = _as_long_2d(codes, "codes")
    disamb = torch.as_tensor(disamb, device=codes.device).long()
    if disamb.shape != (codes.shape[0],):
        raise ValueError(f"disamb must have shape [{codes.shape[0]}], got {tuple(disamb.shape)}")
    return torch.cat([codes, (disamb + int(offset)).unsqueeze(1)], dim=1)


class PrefixTrie:
    """Prefix trie over item token sequences, stored as padded per-level tensors for batched GPU/CPU decoding.

    Used for constrained generation (FlexCode §4.4 (ARG): constrained decoding over a prefix
    trie; TIGER, Rajput et al. 2023): at decoding step ``k`` a beam sitting at a node of depth
    ``k`` may only emit one of that node's child tokens.

    Layout (``T = depth``; nodes at depth ``k`` are the distinct length-``k`` prefixes of the item
    sequences, numbered in lexicographic order, the root being the single node at depth 0):

    * ``children_tokens[k]``: LongTensor ``[n_nodes_k, max_children_k]``, the child tokens of each
      depth-``k`` node, ascending, padded with ``-1`` at the end;
    * ``children_nodes[k]``: LongTensor ``[n_nodes_k, max_children_k]``, the index of each child
      among the nodes at depth ``k+1`` (pad ``-1``); at the last level ``k = T-1`` this indexes leaves;
    * ``leaf_items``: LongTensor ``[N]``, the item id of each leaf (leaves = full sequences, in
      lexicographic order);
    * ``n_nodes``: list of the node counts per depth ``0..T``.

    Memory is ``sum_k n_nodes_k * max_children_k``: padding follows the widest node of a level,
    so a very unbalanced level (e.g. one huge collision group at the disambiguation level) costs
    ``n_nodes_k * largest_group`` entries.

    Construction is vectorised: the rows are sorted lexicographically once (one sort of packed
    int64 row keys), then the node index of every row's length-``d`` prefix is the
    running count of positions where that prefix changes — the same numbering and inverse map that
    ``torch.unique(sequences[:, :d], dim=0, return_inverse=True)`` would give, with one sort
    plus ``O(N T)`` work instead of ``T`` multi-column sorts.  Tokens must be non-negative
    (``-1`` is the pad).

    Raises:
        ValueError: if ``T < 1``, the table is empty, a token is negative, shapes disagree, or two
            rows share the same full sequence (resolve collisions first).
    """

    def __init__(self, sequences: torch.Tensor, item_ids: torch.Tensor | None = None):
        sequences = _as_long_2d(sequences, "sequences")
        n, t = sequences.shape
        if t < 1:
            raise ValueError("PrefixTrie needs sequences of length T >= 1")
        if n == 0:
            raise ValueError("PrefixTrie needs at least one item")
        device = sequences.device
        if item_ids is None:
            item_ids = torch.arange(n, device=device)
        item_ids = torch.as_tensor(item_ids, device=device).long()
        if item_ids.shape != (n,):
            raise ValueError(f"item_ids must have shape [{n}], got {tuple(item_ids.shape)}")
        if bool((sequences < 0).any()):
            raise ValueError("tokens must be non-negative (-1 is reserved for padding)")

        # Lexicographic order of the rows (one sort of packed int64 row keys).
        perm = torch.sort(_lex_keys(sequences), stable=True).indices
        rows = sequences[perm]  # [N, T] sorted

        # new_prefix[:, d] = row's length-(d+1) prefix differs from the previous row's.
        change = torch.ones(n, t, dtype=torch.bool, device=device)
        if n > 1:
            change[1:] = rows[1:] != rows[:-1]
        new_prefix = torch.cumsum(change.long(), dim=1) > 0  # running OR along the columns
        if not bool(new_prefix[:, t - 1].all()):
            dup = int((~new_prefix[:, t - 1]).nonzero()[0, 0].item())
            a, b = int(perm[dup - 1].item()), int(perm[dup].item())
            raise ValueError(
                f"duplicate sequences: rows {a} and {b} are both {rows[dup].tolist()}; "
                "resolve collisions (resolve_collisions/append_disambiguation) first"
            )

        # node_of[:, d] = index of the row's length-d prefix among nodes at depth d (d = 0..T).
        node_of = torch.zeros(n, t + 1, dtype=torch.long, device=device)
        node_of[:, 1:] = torch.cumsum(new_prefix.long(), dim=0) - 1
        n_nodes = [1] + [int(node_of[-1, d].item()) + 1 for d in range(1, t + 1)]

        children_tokens: list[torch.Tensor] = []
        children_nodes: list[torch.Tensor] = []
        for k in range(t):
            first = new_prefix[:, k]  # first row of each depth-(k+1) node, in node order
            parent = node_of[first, k]  # non-decreasing (lexicographic order)
            token = rows[first, k]  # ascending within a parent
            child = node_of[first, k + 1]  # == arange(n_nodes[k+1])
            counts = torch.bincount(parent, minlength=n_nodes[k])
            start = torch.cumsum(counts, 0) - counts
            slot = child - start[parent]
            width = int(counts.max().item())
            ct = torch.full((n_nodes[k], width), -1, dtype=torch.long, device=device)
            cn = torch.full((n_nodes[k], width), -1, dtype=torch.long, device=device)
            ct[parent, slot] = token
            cn[parent, slot] = child
            children_tokens.append(ct)
            children_nodes.append(cn)

        self.children_tokens = children_tokens
        self.children_nodes = children_nodes
        self.leaf_items = item_ids[perm]
        self.n_nodes = n_nodes
        self.depth = t
        self.n_items = n

    # ------------------------------------------------------------------ utilities
    @property
    def device(self) -> torch.device:
        return self.leaf_items.device

    @property
    def max_children(self) -> list[int]:
        return [int(ct.shape[1]) for ct in self.children_tokens]

    def to(self, device) -> "PrefixTrie":
        """A copy of the trie with all tensors on ``device`` (``self`` if already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        other = PrefixTrie.__new__(PrefixTrie)
        other.children_tokens = [x.to(device) for x in self.children_tokens]
        other.children_nodes = [x.to(device) for x in self.children_nodes]
        other.leaf_items = self.leaf_items.to(device)
        other.n_nodes = list(self.n_nodes)
        other.depth = self.depth
        other.n_items = self.n_items
        return other

    def _walk(self, prefix: Sequence[int]) -> int | None:
        """Node index reached by ``prefix`` (a leaf index when ``len(prefix) == depth``), or None."""
        prefix = [int(x) for x in (prefix.tolist() if torch.is_tensor(prefix) else prefix)]
        if len(prefix) > self.depth:
            return None
        node = 0
        for k, tok in enumerate(prefix):
            if tok < 0:
                return None
            hits = (self.children_tokens[k][node] == tok).nonzero()
            if hits.numel() == 0:
                return None
            node = int(self.children_nodes[k][node, hits[0, 0]].item())
        return node

    def sibling_tokens(self, sequences: torch.Tensor) -> list[torch.Tensor]:
        """For full item sequences ``[B, T]``: per depth ``k`` the tokens allowed at step ``k``.

        Entry ``k`` is ``[B, max_children_k]`` (pad ``-1``): the children of the node each
        sequence's length-``k`` prefix reaches, i.e. what constrained decoding chooses among
        when it extends that prefix. Vectorised over the batch.

        Raises:
            ValueError: if a sequence is not an item's path in this trie.
        """
        sequences = _as_long_2d(sequences, "sequences").to(self.device)
        if sequences.shape[1] != self.depth:
            raise ValueError(f"sequences must have length {self.depth}, got {sequences.shape[1]}")
        node = torch.zeros(len(sequences), dtype=torch.long, device=self.device)
        out = []
        for k in range(self.depth):
            children = self.children_tokens[k][node]
            hit = children == sequences[:, k : k + 1]
            found = hit.any(1)
            if not bool(found.all()):
                row = int((~found).nonzero()[0, 0])
                raise ValueError(f"sequence {row} ({sequences[row].tolist()}) is not a path of this trie")
            out.append(children)
            node = self.children_nodes[k][node, hit.long().argmax(1)]
        return out

    def contains(self, seq: Sequence[int]) -> bool:
        """True iff ``seq`` is the full token sequence of an item."""
        return self.item_of(seq) is not None

    def item_of(self, seq: Sequence[int]) -> int | None:
        """Item id whose full sequence is ``seq``, or None."""
        if len(seq) != self.depth:
            return None
        leaf = self._walk(seq)
        return None if leaf is None else int(self.leaf_items[leaf].item())

    def next_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Sorted list of tokens that may follow ``prefix`` (empty for a full or invalid prefix)."""
        if len(prefix) >= self.depth:
            return []
        node = self._walk(prefix)
        if node is None:
            return []
        row = self.children_tokens[len(prefix)][node]
        return sorted(int(x) for x in row[row >= 0].tolist())

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        return (
            f"PrefixTrie(n_items={self.n_items}, depth={self.depth}, n_nodes={self.n_nodes}, "
            f"max_children={self.max_children}, device={self.device})"
        )
