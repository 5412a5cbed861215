"""Item-level capacity on the output side: a free embedding per item that re-scores generated items.

Ours, not in FlexCode (issue #13; results/cpu/Amazon_Beauty/analysis/token_fit.md): the generator
scores an item only through its shared code tokens, so a rare item whose codes are dominated by
popular neighbours cannot get a score of its own, even on training rows. :class:`ItemHead` gives
every item a free vector ``e_i`` (zero at the start) and the user a vector ``u`` (the encoded history
pooled by ``item_head_user`` and projected: ``mean`` of its positions, or ``mean_last``, that mean
beside the latest position's state, or ``last``, that state alone, the one SASRec scores from); it trains ``CE(softmax_i(u·e_i), target)`` beside ``L_ARG`` with
weight ``item_head_weight``, and adds ``item_head_rescore · log softmax_i(u·e_i)`` to the score of
every item the decoder returns — the beam's candidates under constrained decoding, every item
under exact scoring — so it re-ranks what the trie allows. With ``item_head_candidates: K > 0``
the head also *proposes*: its own top ``K`` items join the beam's candidates, each scored by its
exact path log-probability plus the head's term (:meth:`ItemHead.rescore_beam`), so an item the beam
missed can still be ranked; at ``K = 0`` it never adds an item to the beam.

An item never seen as a training target is only pushed down, like every negative, through the
softmax's normaliser; within the beam its rank still comes mostly from its code path (what that
does to the tail is measured in docs/results.md, not assumed here).

Both the generator and the head are trained towards ``p(i | history)``, so each carries the item's
prior ``p(i)``: their product counts popularity twice. ``item_head_prior: β`` subtracts
``β · log p_train(i)`` (add-one smoothed training frequency) from the head's term, so ``β = 1``
turns the product of the two posteriors back into one posterior times one likelihood ratio
(a product of experts with the shared prior divided out once). The head proposes by that corrected
term too, so at ``β > 0`` its candidates reach further into the tail. Inference only; ``β = 0``
is the uncorrected sum.

A free vector learns only from the rows an item is the target of, so a tail item's stays near zero.
``item_head_features`` adds a projection of the item's own embeddings, those the tokenizer quantises
(the CF stage's SASRec vectors, the text encoder's vectors, or both): ``e_i + W x_i`` with ``W``
zero at the start (:class:`ItemFeatures`). ``W`` is shared by all items, so every training row
teaches it, and an item with few interactions is scored by where its embeddings lie.

The generator and the head both estimate ``log p(i | history)``, but the generator's estimate of a
rare item rests on code tokens it shares with popular neighbours. ``item_head_shrink: τ`` trusts
each estimate by the evidence behind it, as a credibility weight: item ``i``'s score keeps
``λ_i = c_i / (c_i + τ)`` of the path log-probability (``c_i``: its training interactions) and takes
the rest from the head's log-probability, ``λ_i g_i + (1 − λ_i) h_i`` in place of ``g_i``, before
the head's term is added. ``τ = 0`` is the plain sum; a popular item keeps its path score at any
``τ``, an item never seen in training is scored by the head alone. Inference only.

A free vector also learns only as a target, while SASRec scores items with the same embeddings it
reads histories by, so an item's vector learns from every history it appears in as well.
``item_head_tied`` does the same here: the head's ``e_i`` *is* the history's per-item embedding
(``history_item_embedding``, added to the item's code embeddings at the encoder's input), so a tail
item seen in a few histories but rarely as a target gets its vector trained by those histories.

``item_head_features: codes`` completes that tie: the head's item vector also adds the item's code
embeddings, summed as the history sums them (:class:`CodeVectors`, no projection), so with
``item_head_tied`` the head scores item ``i`` with exactly the vector the history reads it by, as
SASRec's one embedding table does. A rare item's code embeddings are trained by every item that shares
its codes, so its head score no longer rests on its own few rows alone; the head's loss now also
trains the code embeddings.

``item_head_weight: 0`` (the default) builds :class:`NoItemHead`, which changes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recbole_flexcode.config import ConfigError


class NoItemHead(nn.Module):
    """The paper's model: item scores are the generator's path log-probabilities alone."""

    def add_loss(self, loss, memory, pad, target):
        return loss

    def rescore(self, scores, memory, pad, items=None, lp=None):
        return scores

    def rescore_beam(self, ids, scores, memory, pad, path_log_probs):
        return ids, scores


def credibility(counts: torch.Tensor, shrink: float) -> torch.Tensor:
    """``λ_i = c_i / (c_i + τ)`` per item (``τ = shrink``), 1 for every item at ``τ = 0``."""
    total = counts + shrink
    return torch.where(total > 0, counts / total.clamp_min(1e-12), torch.ones_like(counts))


def mean_pool(memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """``[B, d]``: the mean of the encoder states over the history's real positions."""
    keep = (~pad).unsqueeze(-1).to(memory.dtype)
    return (memory * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def last_pool(memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """``[B, d]``: the state of the latest real position (histories are left-aligned, so it is the last one
    not padded; with token histories, the latest item's last token), the one SASRec scores items from."""
    last = (~pad).sum(1).clamp_min(1) - 1
    return memory[torch.arange(memory.shape[0], device=memory.device), last]


def mean_last_pool(memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """``[B, 2d]``: :func:`mean_pool` beside :func:`last_pool`."""
    return torch.cat([mean_pool(memory, pad), last_pool(memory, pad)], -1)


USER_POOLS = {"mean": (mean_pool, 1), "mean_last": (mean_last_pool, 2), "last": (last_pool, 1)}  # name -> (pool, width in hidden sizes)
#: ``item_head_features`` -> the tokenizer sources whose standardised embeddings the head projects
#: (``codes``, the model's own code embeddings, is :class:`CodeVectors`)
FEATURE_SOURCES = {"none": (), "collaborative": ("collaborative",), "semantic": ("semantic",),
                   "both": ("collaborative", "semantic")}
CODE_FEATURES = "codes"


class NoItemFeatures(nn.Module):
    """The head's item vectors are its free embeddings alone."""

    def forward(self) -> float:
        return 0.0


class ItemFeatures(nn.Module):
    """``W x_i`` for every item ``[N, d]``: fixed item embeddings ``x`` (``[N, F]``, row 0 = padding, zero)
    through a linear map ``W`` that is zero at the start, so the head starts where the free vectors do."""

    def __init__(self, features: torch.Tensor, hidden_size: int):
        super().__init__()
        # derived from the tokenizer, which the checkpoint holds: rebuilt at construction, not saved twice
        self.register_buffer("x", torch.as_tensor(features, dtype=torch.float32), persistent=False)
        self.proj = nn.Linear(self.x.shape[1], hidden_size, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self) -> torch.Tensor:
        return self.proj(self.x)


class CodeVectors(nn.Module):
    """Every item's code embeddings summed as the history sums them, ``[N, d]`` (``item_head_features: codes``).

    ``vectors`` is the model's function that computes them from its generator's token embeddings under the
    current splits; it is held by reference, not as a submodule, since the embeddings are the generator's."""

    def __init__(self, vectors):
        super().__init__()
        object.__setattr__(self, "vectors", vectors)

    def forward(self) -> torch.Tensor:
        return self.vectors()


class ItemHead(NoItemHead):
    """Free item embeddings re-scoring generated items (see module docstring)."""

    def __init__(self, n_items: int, hidden_size: int, weight: float, rescore_weight: float, n_candidates: int = 0,
                 item_counts=None, prior_weight: float = 0.0, user_pool: str = "mean", features: nn.Module = None,
                 shrink: float = 0.0, items: nn.Embedding = None):
        super().__init__()
        self.pool, width = USER_POOLS[user_pool]  # the value was checked against properties/ (config_check)
        self.user = nn.Linear(width * hidden_size, hidden_size)
        # item_head_tied: the history's per-item embedding, shared (zero at the start too)
        self.items = nn.Embedding(n_items, hidden_size, padding_idx=0) if items is None else items
        if items is None:
            nn.init.zeros_(self.items.weight)  # start from the generator's own ranking
        self.features = NoItemFeatures() if features is None else features
        self.weight, self.rescore_weight = float(weight), float(rescore_weight)
        self.n_candidates = int(n_candidates)  # inference only: a trained model can be evaluated under several
        self.prior_weight = float(prior_weight)  # inference only, like n_candidates
        self.shrink = float(shrink)  # inference only, like n_candidates
        counts = torch.zeros(n_items) if item_counts is None else torch.as_tensor(item_counts, dtype=torch.float32)
        log_prior = torch.log((counts + 1.0) / (counts[1:] + 1.0).sum())
        log_prior[0] = 0.0
        # rebuilt from the training split at every construction, so not in the checkpoint (older ones load)
        self.register_buffer("log_prior", log_prior, persistent=False)
        self.register_buffer("counts", counts, persistent=False)

    def log_probs(self, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """``log softmax_i(u·e_i)`` over all items ``[B, N]`` (padding item excluded)."""
        u = self.user(self.pool(memory, pad))
        logits = u @ (self.items.weight + self.features()).t()
        logits[:, 0] = float("-inf")
        return F.log_softmax(logits, dim=-1)

    def add_loss(self, loss, memory, pad, target):
        return loss + self.weight * F.nll_loss(self.log_probs(memory, pad), target)

    def term(self, lp: torch.Tensor) -> torch.Tensor:
        """The head's addition to every item's score, ``[B, N]``: ``w · log softmax_i(u·e_i) − β · log p_train(i)``
        from :meth:`log_probs` ``lp``."""
        return self.rescore_weight * lp - self.prior_weight * self.log_prior.to(lp.dtype)

    def rescore(self, scores, memory, pad, items=None, lp=None):
        """The generator's path scores ``scores [B, M]`` of ``items [B, M]`` (or of every item, ``[B, N]``),
        each shrunk towards the head's log-probability by its :func:`credibility`, plus the head's
        :meth:`term` (``lp``: :meth:`log_probs`, when the caller has it already). Unscored items stay ``-inf``."""
        lp = self.log_probs(memory, pad) if lp is None else lp
        extra, trust = self.term(lp), credibility(self.counts, self.shrink).to(lp.dtype).expand_as(lp)
        if items is not None:
            index = items.clamp_min(0)
            lp, extra, trust = lp.gather(1, index), extra.gather(1, index), trust.gather(1, index)
        blended = trust * scores + (1.0 - trust) * lp + extra
        return torch.where(torch.isfinite(scores), blended, scores)

    @torch.no_grad()
    def rescore_beam(self, ids, scores, memory, pad, path_log_probs):
        """The beam's ``ids, scores [B, M]`` with the head's top ``n_candidates`` items appended,
        ``[B, M + K]``, every score re-scored (:meth:`rescore`); the head's log-probabilities are
        computed once for both.

        ``path_log_probs(items [B, K]) -> [B, K]`` is the generator's exact log-probability of each
        item's path, the score the beam would have given it, so beam and proposed items are ranked on
        one scale. A proposed item already in the beam is appended as id ``-1`` (ignored downstream).
        """
        lp = self.log_probs(memory, pad)
        k = min(self.n_candidates, self.items.num_embeddings - 1)
        if k > 0:
            proposed = self.term(lp).topk(k, dim=1).indices  # never the padding item: its logit is -inf
            seen = (proposed.unsqueeze(-1) == ids.unsqueeze(1)).any(-1)
            extra = path_log_probs(proposed).to(scores.dtype).masked_fill(seen, float("-inf"))
            ids, scores = torch.cat([ids, proposed.masked_fill(seen, -1)], 1), torch.cat([scores, extra], 1)
        return ids, self.rescore(scores, memory, pad, ids, lp)


def item_features(tokenizer, sources) -> torch.Tensor:
    """``[N, F]``: the tokenizer's standardised embeddings of ``sources`` side by side, a zero padding row first."""
    inputs = tokenizer.inputs()
    x = torch.cat([inputs[name].float().cpu() for name in sources], dim=1)
    return torch.cat([x.new_zeros(1, x.shape[1]), x], dim=0)


def build_item_head(config, n_items: int, hidden_size: int, item_counts=None, tokenizer=None,
                    history_items: nn.Embedding = None, code_vectors=None) -> NoItemHead:
    """The head of ``config`` (``item_counts``: training interactions per item id, for ``item_head_prior``;
    ``tokenizer``: the item embeddings ``item_head_features`` names; ``history_items``: the model's
    per-item history embedding, or ``None``, which ``item_head_tied`` scores items with; ``code_vectors``:
    the model's function giving every item's summed code embeddings, for ``item_head_features: codes``)."""
    weight = float(config["item_head_weight"])
    feature = config["item_head_features"]  # the value was checked against properties/
    sources = FEATURE_SOURCES.get(feature, ())
    tied = bool(config["item_head_tied"])
    if weight == 0:
        for key in ("item_head_prior", "item_head_shrink"):
            if float(config[key]) > 0:
                raise ConfigError(f"{key} needs the item head (item_head_weight > 0)")
        if feature != "none" or tied:
            raise ConfigError(f"{'item_head_features' if feature != 'none' else 'item_head_tied'} needs the item head (item_head_weight > 0)")
        return NoItemHead()
    if tied and history_items is None:
        raise ConfigError("item_head_tied needs history_item_embedding: True (the per-item vectors it shares)")
    if feature == CODE_FEATURES:
        if code_vectors is None:
            raise ConfigError("item_head_features: codes needs a model with code embeddings (FlexCode)")
        features = CodeVectors(code_vectors)
    else:
        features = ItemFeatures(item_features(tokenizer, sources), hidden_size) if sources else None
    return ItemHead(n_items, hidden_size, weight, float(config["item_head_rescore"]),
                    int(config["item_head_candidates"]), item_counts, float(config["item_head_prior"]),
                    config["item_head_user"], features, float(config["item_head_shrink"]),
                    history_items if tied else None)
