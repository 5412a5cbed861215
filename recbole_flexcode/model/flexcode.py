r"""FlexCode: dual-codebook semantic IDs with popularity-aware token allocation.

"Semantics Meet Signals: Dual Codebook Representation Learning for Generative Recommendation"
(arXiv 2511.20673), as a RecBole ``SequentialRecommender``.

The stages (text embeddings §4.1.1, collaborative embeddings §4.1.2, the item tokenizer §4.1–§4.4)
run before the model, in :mod:`recbole_flexcode.pipeline`, which hands the fitted
:class:`~recbole_flexcode.tokenizer.item_tokenizer.ItemTokenizer` to the constructor through the
training dataset. The model itself is

* a split policy (:mod:`recbole_flexcode.model.split_policy`): a fixed split or the PATA router
  (§4.3) deciding how many of an item's ``L`` tokens are collaborative;
* the encoder-decoder generator (§4.4) over the tokenizer's vocabulary, trained by RecBole's trainer
  on ``λ_ARG L_ARG`` plus the policy's terms (``λ_lb L_lb + λ_smooth L_smooth``) and, in joint mode,
  the tokenizer's own loss (§4.5).

``full_sort_predict`` serves RecBole's full-ranking evaluator with trie-constrained beam search
(items outside the beam score ``-inf``) or, with ``decode_mode: exact``, the exact sequence
log-probability of every item. Variants (``variant``) are presets, see
:mod:`recbole_flexcode.model.variants`. Reports and diagnostics: :mod:`recbole_flexcode.analysis`.
"""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_flexcode.config import ConfigError
from recbole_flexcode.data.popularity import training_item_counts
from recbole_flexcode.model.generation import constrained_beam_search, exact_item_scores, scatter_item_scores
from recbole_flexcode.model.generator import build_generator
from recbole_flexcode.model.item_head import build_item_head
from recbole_flexcode.model.split_policy import build_split_policy
from recbole_flexcode.model.variants import flexcode_variant
from recbole_flexcode.model.training_setup import require_full_softmax
from recbole_flexcode.pipeline import stages_of
from recbole_flexcode.tokenizer.codebooks import COLLABORATIVE, SEMANTIC
from recbole_flexcode.tokenizer.item_tokenizer import ItemTokenizer
from recbole_flexcode.tokenizer.router import level_masks


class FlexCode(SequentialRecommender):
    """FlexCode (see module docstring). Hyperparameters: ``properties/model/FlexCode.yaml``."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        require_full_softmax(config, "FlexCode")
        self.variant = flexcode_variant(config)
        self.budget = int(config["token_budget"])
        self.training_mode = config["training_mode"]
        if self.training_mode not in ("staged", "joint"):
            raise ConfigError(f"training_mode: unknown value '{self.training_mode}' (choose from staged, joint)")
        self.decode_mode = config["decode_mode"]
        if self.decode_mode not in ("beam", "exact"):
            raise ConfigError(f"decode_mode: unknown value '{self.decode_mode}' (choose from beam, exact)")
        self.beam_size = int(config["beam_size"])
        if self.beam_size < max(config["topk"]):
            raise ConfigError(f"beam_size: {self.beam_size} is below the largest top-k ({max(config['topk'])})")
        self.arg_weight = float(config["arg_weight"])
        self.recode_every = int(config["recode_every"])
        self.item_counts = training_item_counts(dataset)  # training popularity: router features, strata, analysis
        self._config, self._train_dataset = config, dataset
        self.register_buffer("joint_steps", torch.zeros((), dtype=torch.long))  # in the checkpoint, for --resume
        self.tokenizer = None
        stages = stages_of(dataset)
        if stages is not None and stages.tokenizer is not None:
            self._build(stages.tokenizer, stages.item_uncertainty)
        elif stages is not None:
            raise ConfigError("FlexCode: the stages stopped before the tokenizer (stage=embed); nothing to train")

    def _build(self, tokenizer: ItemTokenizer, uncertainty) -> None:
        """The modules that depend on the tokenizer: split policy (§4.3), generator (§4.4), item embeddings."""
        config = self._config
        if tokenizer.n_levels != self.budget or not tokenizer.two_sources:
            raise ConfigError(f"FlexCode: the item tokenizer has {tokenizer.n_levels} levels over {tokenizer.sources}; "
                              f"token_budget is {self.budget} over both sources")
        self.tokenizer = tokenizer
        if self.training_mode == "staged":
            self.tokenizer.requires_grad_(False)
        self.split_policy = build_split_policy(config, self.variant, self._train_dataset, self.item_counts, uncertainty)
        # generator (transformer | t5) and history encoding (pooled | tokens): docs/design.md, "Generator options"
        self.generator = build_generator(config, tokenizer, self.max_seq_length)
        # ours, not in the paper (results/cpu/Amazon_Beauty/analysis/token_fit.md): a free embedding per
        # item added to its code embeddings in the history, the only item-specific parameters
        self.history_id_embedding = None
        if config["history_item_embedding"]:
            self.history_id_embedding = torch.nn.Embedding(self.n_items, self.generator.hidden_size, padding_idx=0)
            torch.nn.init.zeros_(self.history_id_embedding.weight)  # start from the paper's model
        # ours: output-side item scores (item_head_tied: by the history's per-item embeddings, as SASRec ties them)
        self.item_head = build_item_head(config, self.n_items, self.generator.hidden_size, self.item_counts, tokenizer,
                                         self.history_id_embedding, self._code_vectors)
        self.to(self.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """A model built without stages (RecBole's ``load_data_and_model``) takes its tokenizer from the checkpoint."""
        if self.tokenizer is None:
            self._build(ItemTokenizer.from_state_dict(state_dict, "tokenizer."), None)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ splits and histories
    def split_probs(self) -> torch.Tensor:
        """``p_i(s)`` for every item, ``[N, L+1]`` (one-hot for the fixed-split variants)."""
        return self.split_policy.probs()

    def item_splits(self) -> torch.Tensor:
        """Inference split (collaborative tokens) of every item."""
        return self.split_policy.inference_splits()

    def inference_paths(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every real item's path under its inference split, and the item ids."""
        items = torch.arange(1, self.n_items, device=self.tokenizer.paths.device)
        return self.tokenizer.encode(items, self.item_splits()[items]), items

    def _code_table(self, probs: torch.Tensor):
        """Every item's routed code embeddings as the history encoding lays them out (§4.3)."""
        cf_mask, sem_mask = level_masks(probs, self.budget, straight_through=True)
        return self.generator.item_table(self.tokenizer.level_tokens(COLLABORATIVE),
                                         self.tokenizer.level_tokens(SEMANTIC), cf_mask, sem_mask)

    def _code_vectors(self) -> torch.Tensor:
        """``[N, d]``: every item's code embeddings summed under the current splits, the history's item vector
        without the item's own embedding (``item_head_features: codes``)."""
        table = self._code_table(self.split_probs())
        return table if isinstance(table, torch.Tensor) else table.tokens.sum(1)

    def _item_vectors(self, probs: torch.Tensor) -> torch.Tensor:
        """History representation of every item: Σ of its routed code embeddings (§4.3), plus its
        own free embedding when ``history_item_embedding`` is on."""
        vectors = self._code_table(probs)
        if self.history_id_embedding is not None:
            vectors = vectors + self.history_id_embedding.weight
        return vectors

    def forward(self, item_seq, item_seq_len, probs=None):
        """Encoded histories (memory ``[B, S, d]`` and padding mask) under split probabilities ``probs``."""
        probs = self.split_probs() if probs is None else probs
        return self.generator.encode_history(self._item_vectors(probs), item_seq, item_seq_len)

    # ------------------------------------------------------------------ RecBole API
    def calculate_loss(self, interaction):
        """``λ_ARG L_ARG`` over the policy's target splits, plus the policy's own terms (§4.3–4.5).

        Only the target's ``L + 1`` decoder steps differ between splits (SPEC §1), so every split a
        policy asks for shares one encoded history.
        """
        target = interaction[self.POS_ITEM_ID]
        plan = self.split_policy.plan(target)
        memory, pad = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], plan.history_probs)
        nll = self.generator.sequence_nll(memory, pad, self.tokenizer.paths[plan.splits, target.unsqueeze(1)])
        loss = self.arg_weight * (plan.weights * nll).sum(-1).mean()
        loss = self.split_policy.add_loss(loss, plan, nll, target)
        loss = self.item_head.add_loss(loss, memory, pad, target)
        if self.training_mode == "joint":
            items = torch.unique(target)
            loss = loss + self.tokenizer.loss(items[items > 0])
            self.joint_steps += 1
            if int(self.joint_steps) % self.recode_every == 0 and not self.tokenizer.recode():
                self.logger.warning("joint mode: a collision group outgrew the disambiguation vocabulary; codes not updated")
        return loss

    def full_sort_predict(self, interaction):
        item_seq, batch = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ].shape[0]
        memory, pad = self.forward(item_seq, interaction[self.ITEM_SEQ_LEN])
        f = lambda prefix: self.generator.decode_log_probs(memory, pad, prefix)  # noqa: E731
        if self.decode_mode == "exact":
            paths, items = self.inference_paths()
            scores = exact_item_scores(f, paths, batch, item_chunk=int(max(1, 65536 // max(batch, 1))))
            out = torch.full((batch, self.n_items), float("-inf"), device=scores.device)
            out[:, items] = scores
            return self.item_head.rescore(out, memory, pad)
        trie = self.tokenizer.trie(self.item_splits())
        step = lambda prefix: self.generator.next_token_log_probs(memory, pad, prefix)  # noqa: E731  (last position only)
        ids, scores = constrained_beam_search(step, trie, batch, self.beam_size, device=item_seq.device)
        ids, scores = self.item_head.rescore_beam(ids, scores, memory, pad, lambda items: self._path_log_probs(memory, pad, items))
        return scatter_item_scores(ids, scores, self.n_items)

    def _path_log_probs(self, memory, pad, items: torch.Tensor) -> torch.Tensor:
        """``log p(path of item | history)`` under the inference splits, for items ``[B, M]`` (ids >= 1)."""
        return -self.generator.sequence_nll(memory, pad, self.tokenizer.encode(items, self.item_splits()[items]))

    def predict(self, interaction):
        """Sequence log-probability of the given item (for RecBole's sampled evaluation)."""
        memory, pad = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item = interaction[self.ITEM_ID]
        scores = self._path_log_probs(memory, pad, item.unsqueeze(1))  # [B, 1]
        return self.item_head.rescore(scores, memory, pad, item.unsqueeze(1)).squeeze(1)
