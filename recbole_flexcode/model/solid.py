r"""SOLID: Semantic Codebook Learning for Dynamic Recommendation Models (Lv et al., ACM MM 2024).

A RecBole ``SequentialRecommender`` (pointwise, BCE on the positive and sampled negatives).
Stages 1-4 run before the model is built, on the *training split*
(:func:`recbole_flexcode.pipeline.prepare`, cached on disk); the constructor reads them from
the dataset (:func:`recbole_flexcode.pipeline.stages_of`):

1. item text -> sentence-encoder embeddings (as FlexCode);
2. RecBole SASRec on the training split -> collaborative item embeddings (as FlexCode);
3. semantic IDs: ``[standardize(text) | standardize(cf)]`` -> the shared :class:`RQVAE`
   (``semantic_levels`` levels of ``semantic_vocab`` codes); an item's semantic ID is its
   level-1 code (several levels: mixed-radix number of the code tuple), renumbered
   compactly over the codes actually used, ``0`` = padding (docs/solid.md);
4. Semantic Metacode Learning (SML): a dynamic model trained on semantic-ID sequences
   (semantic-level click prediction, sampled negatives); its semantic-ID embedding table is
   the *metacode* (``self.metacode``) and initialises the codebook.

Then the model RecBole trains:

* primary model: item embedding + position -> Dense+tanh -> Transformer -> user state ``h``;
  target tower on the target embedding; two ``d x d`` dynamic layers (tanh between) on ``h``;
  ``logit = <f_Θ(h), target vector>``;
* Semantic Parameter Generation (dual trunk): ``W = W_sem + clip(W_item, -t, t)`` (same for the
  biases), ``W_sem`` generated from the semantic-ID sequence (embedded by the codebook),
  ``W_item`` from the item sequence;
* Semantic Codebook Learning (SCL): every history item embedding is matched to its nearest
  code (L2); the code, through a decoder MLP (d -> 2d -> d, LeakyReLU), is what the item trunk
  sees; ``L_Con = MSE(E_hist, sg(c*))``; loss ``BCE + con_weight * L_Con``.

Ablations: ``dynamic: False`` (static layers, no generator, no semantics) and
``use_semantics: False`` (DUET: item trunk on the raw history embeddings, no clip).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_flexcode.model.dynamic import (
    DynamicLayerGenerator,
    SequenceEncoder,
    StaticLayers,
    TargetTower,
    apply_dynamic_layers,
)
from recbole_flexcode.model.metacode import init_weights, solid_network_settings
from recbole_flexcode.model.training_setup import require_sampled_negatives
from recbole_flexcode.pipeline import stages_of
from recbole_flexcode.tokenizer.codebooks import SEMANTIC

__all__ = ["SOLID", "semantic_ids_from_codes", "solid_uses_semantics"]




def semantic_ids_from_codes(codes: np.ndarray, codebook_size: int) -> tuple[np.ndarray, int]:
    """Semantic ID per item from RQ-VAE code tuples ``[N, L]``.

    The tuple is read as a mixed-radix number (level 1 most significant, radix
    ``codebook_size``), so with one level the ID is the level-1 code; the numbers actually
    used are then renumbered ``1..V`` in increasing order (``0`` stays the padding ID), so no
    codebook row belongs to an unused code.  Returns ``(ids [N], V)``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError("codes must be [N, L]")
    radix = codebook_size ** np.arange(codes.shape[1] - 1, -1, -1, dtype=np.int64)
    values = codes @ radix
    used, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64) + 1, int(len(used))


def solid_uses_semantics(config) -> bool:
    """SOLID proper (not its DUET or static ablations) needs the semantic stages."""
    return bool(config["dynamic"]) and bool(config["use_semantics"])


class SOLID(SequentialRecommender):
    """SOLID (see module docstring). Hyperparameters: ``properties/model/SOLID.yaml``."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        require_sampled_negatives(config, "SOLID")
        self.dynamic = bool(config["dynamic"])
        self.use_semantics = solid_uses_semantics(config)
        if not self.dynamic and bool(config["use_semantics"]):
            self.logger.info("SOLID: dynamic=False -> static layers; the semantic modules are not built")
        self.variant = "SOLID" if self.use_semantics else ("DUET" if self.dynamic else "static")
        self.LABEL = config["LABEL_FIELD"]
        net = solid_network_settings(config)
        d = self.hidden_size = net["d"]
        self.n_dynamic_layers = net["n_dynamic_layers"]
        self.clip_threshold = float(config["clip_threshold"])
        self.con_weight = float(config["con_weight"]) if self.use_semantics else 0.0
        self.freeze_codebook = bool(config["freeze_codebook"])
        self.initializer_range = net["initializer_range"]
        self.encoder_kwargs, self.generator_kwargs = net["encoder"], net["generator"]
        dims = [d] * (self.n_dynamic_layers + 1)

        # -- primary model
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.encoder = SequenceEncoder(self.max_seq_length, d, **self.encoder_kwargs)
        self.target_tower = TargetTower(d)
        if not self.dynamic:
            self.static_layers = StaticLayers(dims)
        self.apply(self._init_weights)  # SASRec-style init of the static parts (before the generators)
        if self.dynamic:
            self.item_generator = DynamicLayerGenerator(d, dims, **self.generator_kwargs)
        self.n_semantic = 0
        self.semantic_stats: dict = {}
        self.metacode_history: list[float] = []
        stages = stages_of(dataset)
        if self.use_semantics and stages is not None:
            self._build_semantics(stages.tokenizer, stages.metacode, int(config["semantic_vocab"]))

    def _init_weights(self, module):
        init_weights(module, self.initializer_range)

    def _build_semantics(self, tokenizer, metacode: dict | None, codebook_size: int, n_semantic: int | None = None) -> None:
        """SPG's semantic trunk and SCL's codebook over the semantic IDs of ``tokenizer`` (or, for a
        checkpoint reload, ``n_semantic`` IDs whose values the checkpoint brings)."""
        d = self.hidden_size
        if tokenizer is not None:
            codes = tokenizer.codes(SEMANTIC)[1:].cpu().numpy()
            sem, n_semantic = semantic_ids_from_codes(codes, codebook_size)
            sizes = np.bincount(sem, minlength=n_semantic + 1)[1:]
            self.semantic_codes = codes
            self.semantic_stats = {
                "n_semantic_ids": n_semantic, "items_per_id_mean": float(sizes.mean()), "items_per_id_max": int(sizes.max()),
                "sources": (["text"] if len(tokenizer.spec["sources"][SEMANTIC]["dims"]) == 2 else []) + ["collaborative"],
                "rqvae": tokenizer.stats()[SEMANTIC],
            }
            self.logger.info("SOLID: %d items -> %d semantic IDs (max %d items per ID)", len(sem), n_semantic, int(sizes.max()))
            item_sem = torch.as_tensor(np.concatenate([[0], sem]), dtype=torch.long)
            self.metacode_history = list(metacode["history"])
            book, book_init = metacode["metacode"], metacode["init"]
        else:
            item_sem = torch.zeros(self.n_items, dtype=torch.long)
            book = book_init = torch.zeros(n_semantic, d)
        self.n_semantic = n_semantic
        self.register_buffer("item_sem", item_sem)
        self.register_buffer("metacode", torch.as_tensor(book))
        self.register_buffer("metacode_init", torch.as_tensor(book_init), persistent=False)
        dims = [d] * (self.n_dynamic_layers + 1)
        self.sem_generator = DynamicLayerGenerator(d, dims, **self.generator_kwargs)
        self.code_decoder = nn.Sequential(nn.Linear(d, 2 * d), nn.LeakyReLU(), nn.Linear(2 * d, d))
        # codebook = semantic-ID embedding table of both the semantic trunk and SCL; row 0 = padding
        self.codebook = nn.Embedding(self.n_semantic + 1, d, padding_idx=0)
        with torch.no_grad():
            self.codebook.weight.zero_()
            self.codebook.weight[1:] = self.metacode
        self.codebook.weight.requires_grad_(not self.freeze_codebook)
        self.to(self.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """A model built without stages (RecBole's ``load_data_and_model``) sizes its semantic modules from the checkpoint."""
        if self.use_semantics and not self.n_semantic and "metacode" in state_dict:
            self._build_semantics(None, None, 0, n_semantic=int(state_dict["metacode"].shape[0]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ model
    def quantize(self, hist_emb: torch.Tensor, item_seq: torch.Tensor):
        """Nearest code (L2) of every history embedding; returns ``(c* [B, L, d], code ids [B, L], L_Con)``.

        Code ids are semantic IDs (``1..V``); ``L_Con = MSE(E_hist, sg(c*))`` over real positions.
        """
        book = self.codebook.weight[1:]
        flat = hist_emb.reshape(-1, hist_emb.shape[-1]).detach()
        dist = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ book.detach().t() + book.detach().pow(2).sum(1).unsqueeze(0)
        idx = dist.argmin(1).view(item_seq.shape) + 1
        codes = self.codebook(idx)
        mask = item_seq != 0
        con = (hist_emb - codes.detach()).pow(2).mean(-1)[mask].mean() if mask.any() else hist_emb.new_zeros(())
        return codes, idx, con

    def generate_parameters(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, hist_emb: torch.Tensor | None = None) -> dict:
        """The generated dynamic-layer parameters of each row.

        Returns a dict with ``weights`` / ``biases`` (lists over layers, ``[B, d, d]`` / ``[B, d]``,
        what the primary model uses), ``item_weights`` / ``item_biases`` (item trunk, before the
        clip) and, for SOLID, ``sem_weights`` / ``sem_biases``, ``item_weights_clipped`` /
        ``item_biases_clipped``, ``codes`` (matched code ids) and ``con_loss``.
        """
        if not self.dynamic:
            raise RuntimeError("SOLID: dynamic=False has no generated parameters")
        if hist_emb is None:
            hist_emb = self.item_embedding(item_seq)
        if not self.use_semantics:  # DUET
            w, b = self.item_generator(hist_emb, item_seq_len)
            return {"weights": w, "biases": b, "item_weights": w, "item_biases": b, "con_loss": hist_emb.new_zeros(())}
        sem_seq = self.item_sem[item_seq]
        sem_w, sem_b = self.sem_generator(self.codebook(sem_seq), item_seq_len)
        codes, code_ids, con = self.quantize(hist_emb, item_seq)
        item_w, item_b = self.item_generator(self.code_decoder(codes), item_seq_len)
        t = self.clip_threshold
        clip_w = [w.clamp(-t, t) for w in item_w]
        clip_b = [b.clamp(-t, t) for b in item_b]
        return {
            "weights": [s + c for s, c in zip(sem_w, clip_w)],
            "biases": [s + c for s, c in zip(sem_b, clip_b)],
            "sem_weights": sem_w, "sem_biases": sem_b,
            "item_weights": item_w, "item_biases": item_b,
            "item_weights_clipped": clip_w, "item_biases_clipped": clip_b,
            "codes": code_ids, "con_loss": con,
        }

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """User vector ``f_Θ(h)`` ``[B, d]`` and ``L_Con`` (0 without semantics)."""
        hist_emb = self.item_embedding(item_seq)
        h = self.encoder(hist_emb, item_seq, item_seq_len)
        if not self.dynamic:
            return self.static_layers(h), h.new_zeros(())
        params = self.generate_parameters(item_seq, item_seq_len, hist_emb)
        return apply_dynamic_layers(h, params["weights"], params["biases"]), params["con_loss"]

    def target_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.target_tower(self.item_embedding(items))

    def calculate_loss(self, interaction):
        u, con = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        if self.LABEL in interaction:  # pointwise rows: positives and sampled negatives
            logits = (u * self.target_vectors(interaction[self.ITEM_ID])).sum(-1)
            loss = F.binary_cross_entropy_with_logits(logits, interaction[self.LABEL].float())
        elif self.NEG_ITEM_ID in interaction:  # pairwise rows: BCE on both
            pos = (u * self.target_vectors(interaction[self.POS_ITEM_ID])).sum(-1)
            neg = (u * self.target_vectors(interaction[self.NEG_ITEM_ID])).sum(-1)
            loss = 0.5 * (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                          + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
        else:
            raise ValueError("SOLID trains on sampled negatives: set train_neg_sample_args (see properties/model/SOLID.yaml)")
        if self.con_weight > 0:
            loss = loss + self.con_weight * con
        return loss

    def predict(self, interaction):
        u, _ = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (u * self.target_vectors(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        """Logits of every item: generated layers once per user, then ``[B, d] x [N, d]^T``."""
        u, _ = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        all_items = self.target_tower(self.item_embedding.weight)
        return u @ all_items.t()
