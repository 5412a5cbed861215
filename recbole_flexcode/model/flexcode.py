r"""FlexCode: dual-codebook semantic IDs with popularity-aware token allocation.

"Semantics Meet Signals: Dual Codebook Representation Learning for Generative
Recommendation" (arXiv 2511.20673), as a RecBole ``SequentialRecommender``.

Stages (run in the constructor on the *training split* RecBole hands to the model; every
expensive one is cached on disk, see :mod:`recbole_flexcode.embeddings.cache`):

1. item text -> sentence-encoder embeddings ``s_i`` (§4.1.1);
2. RecBole SASRec on the training split -> collaborative embeddings ``c_i`` and their
   across-epoch variance (§4.1.2, §4.3 "uncertainty");
3. dual RQ-VAE tokenizer with cross-codebook InfoNCE alignment (§4.1, §4.2) -> code tuples;
4. token paths for every budget split, collisions resolved per split (§4.4);
5. PATA router over the item features (§4.3) and the encoder-decoder generator (§4.4),
   trained by RecBole's trainer on ``λ_ARG L_ARG + λ_lb L_lb + λ_smooth L_smooth``
   (+ ``L_SC + L_CC + λ_align L_align`` in joint mode, §4.5).

``full_sort_predict`` serves RecBole's full-ranking evaluator with trie-constrained beam
search (items outside the beam score ``-inf``) or, in ``exact`` mode, the exact sequence
log-probability of every item.  Variants (``variant``): ``full``, ``semantic_only`` (TIGER
style), ``cf_only``, ``fix`` (static split), ``no_align``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_flexcode.config import config_value
from recbole_flexcode.data.popularity import item_features, popularity_strata
from recbole_flexcode.embeddings.cache import cache_key
from recbole_flexcode.evaluation import capped_interactions
from recbole_flexcode.embeddings.stages import collaborative_stage, text_stage
from recbole_flexcode.model.generation import (
    constrained_beam_search,
    exact_item_scores,
    last_position,
    scatter_item_scores,
)
from recbole_flexcode.model.generator import SemanticIDGenerator
from recbole_flexcode.tokenizer.dual import DualCodebookTokenizer, standardize
from recbole_flexcode.tokenizer.ids import PrefixTrie
from recbole_flexcode.tokenizer.router import (
    PopularityRouter,
    level_masks,
    popularity_smoothness,
    stratified_load_balance,
)
from recbole_flexcode.tokenizer.vocab import all_split_paths

VARIANTS = ("full", "semantic_only", "cf_only", "fix", "no_align")
#: How the router learns (docs/design.md, "router"): ``expected_loss`` (SPEC's reading, router and
#: generator share ``Σ_s p_i(s) L_ARG(i, s)``) or ``decoupled`` (ours: the router compares the
#: splits of a generator trained on all of them, during the warm-up, then is frozen).
ROUTER_MODES = ("expected_loss", "decoupled")
DEFAULT_DECOUPLED_WARMUP_EPOCHS = 5




class FlexCode(SequentialRecommender):
    """FlexCode (see module docstring). Hyperparameters: ``properties/model/FlexCode.yaml``."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.logger = logging.getLogger(__name__)
        self.stage_timings: dict[str, float] = {}
        self.variant = config_value(config, "variant", "full")
        if self.variant not in VARIANTS:
            raise ValueError(f"FlexCode: unknown variant '{self.variant}' (choose from {', '.join(VARIANTS)})")
        self.budget = int(config_value(config, "token_budget", 3))
        if not 1 <= self.budget <= 8:
            raise ValueError("FlexCode: token_budget must be in 1..8")
        self.codebook_size = int(config_value(config, "codebook_size", 256))
        self.training_mode = config_value(config, "training_mode", "staged")
        if self.training_mode not in ("staged", "joint"):
            raise ValueError("FlexCode: training_mode must be 'staged' or 'joint'")
        self.decode_mode = config_value(config, "decode_mode", "beam")
        if self.decode_mode not in ("beam", "exact"):
            raise ValueError("FlexCode: decode_mode must be 'beam' or 'exact'")
        self.beam_size = int(config_value(config, "beam_size", 20))
        if self.beam_size < max(config["topk"]):
            raise ValueError(f"FlexCode: beam_size ({self.beam_size}) must be >= the largest top-k ({max(config['topk'])})")
        self.arg_weight = float(config_value(config, "arg_weight", 1.0))
        self.lb_weight = float(config_value(config, "lb_weight", 0.01))
        self.smooth_weight = float(config_value(config, "smooth_weight", 0.01))
        self.router_mode = config_value(config, "router_mode", "expected_loss")
        if self.router_mode not in ROUTER_MODES:
            raise ValueError(f"FlexCode: router_mode must be one of {', '.join(ROUTER_MODES)}, got '{self.router_mode}'")
        self.router_warmup_steps = self._warmup_steps(config, dataset)
        if self.variant in ("full", "no_align"):
            self.logger.info("router: %s, warm-up %d training steps", self.router_mode, self.router_warmup_steps)
        balance = config_value(config, "router_loss_balance", "stratum")
        if balance not in ("stratum", "plain"):
            raise ValueError(f"FlexCode: router_loss_balance must be 'stratum' or 'plain', got '{balance}'")
        self.router_stratum_balance = balance == "stratum"
        if self.router_mode == "decoupled" and self.variant in ("full", "no_align") and self.router_warmup_steps == 0:
            # the decoupled router learns only during the warm-up: without one it never leaves its uniform start
            raise ValueError("FlexCode: router_mode=decoupled needs a warm-up > 0 (the router learns during the warm-up only)")
        align_on = self.variant in ("full", "fix")
        self.align_weight = float(config_value(config, "align_weight", 0.1)) if align_on else 0.0
        if self.variant in ("full", "no_align"):
            self.fixed_split = None
        elif self.variant == "semantic_only":
            self.fixed_split = 0
        elif self.variant == "cf_only":
            self.fixed_split = self.budget
        else:  # fix: static 50/50; odd budgets give the extra token to the collaborative side
            self.fixed_split = int(config_value(config, "fixed_cf_tokens", math.ceil(self.budget / 2)))
        self.show_progress = bool(config["show_progress"])
        self.cache_dir = os.path.join(config_value(config, "cache_dir", "cache"), config["dataset"])
        device = config["device"]

        # -- stage 1: item text -> sentence embeddings (§4.1.1)
        t = time.time()
        text_emb, _ = text_stage(config, dataset, self.cache_dir, self.show_progress, self.logger)
        if text_emb.shape[1] == 0:
            raise ValueError(f"FlexCode: no item has text in text_fields={config_value(config, 'text_fields', [])}")
        self.stage_timings["text_embeddings"] = time.time() - t

        # -- stage 2: SASRec on the training split -> collaborative embeddings (§4.1.2)
        t = time.time()
        cf = collaborative_stage(config, dataset, self.cache_dir, self.show_progress, self.logger)
        self.stage_timings["collaborative_embeddings"] = time.time() - t

        # -- stage 3: dual codebook tokenizer (§4.1, §4.2)
        t = time.time()
        sem_x = standardize(text_emb[1:])
        cf_x = standardize(cf["embeddings"][1:])
        tok_kwargs = dict(
            sem_dim=sem_x.shape[1], cf_dim=cf_x.shape[1], n_levels=self.budget, codebook_size=self.codebook_size,
            code_dim=int(config_value(config, "code_dim", 64)), hidden_dims=list(config_value(config, "rqvae_hidden_sizes", [256, 128])),
            beta=float(config_value(config, "rqvae_beta", 0.25)), align_weight=self.align_weight,
            align_temperature=float(config_value(config, "align_temperature", 0.1)), proj_dim=int(config_value(config, "align_proj_size", 64)),
        )
        fit_kwargs = dict(
            epochs=int(config_value(config, "rqvae_epochs", 200)), batch_size=int(config_value(config, "rqvae_batch_size", 1024)),
            lr=float(config_value(config, "rqvae_learning_rate", 1e-3)), seed=int(config["seed"]),
        )
        self.tokenizer = self._fit_tokenizer(sem_x, cf_x, tok_kwargs, fit_kwargs)
        self._sem_x, self._cf_x = sem_x, cf_x
        sem_codes, cf_codes = self.tokenizer.encode(sem_x, cf_x)
        self.tokenizer_stats = self.tokenizer.stats(sem_x, cf_x)
        for name, st in self.tokenizer_stats.items():
            usage = ", ".join(f"L{lv['level'] + 1}: {lv['used_codes']}/{self.codebook_size} used, residual {lv['residual_mse']:.4f}" for lv in st["levels"])
            self.logger.info("%s codebook: recon mse %.4f; %s", name, st["recon_mse"], usage)
        if self.training_mode == "staged":
            for p in self.tokenizer.parameters():
                p.requires_grad_(False)
        self.stage_timings["tokenizer"] = time.time() - t

        # -- stage 4: token paths for every split; collisions resolved per split (§4.4)
        pad = torch.zeros(1, self.budget, dtype=torch.long)
        paths, self.layout, self.collision_stats = all_split_paths(
            torch.cat([pad, cf_codes.cpu()]), torch.cat([pad, sem_codes.cpu()]), self.codebook_size,
            min_disamb=int(config_value(config, "min_disamb_tokens", 4)),
        )
        if self.training_mode == "joint":
            # re-encoding during training can grow a collision group: leave the vocabulary headroom
            paths, self.layout, self.collision_stats = all_split_paths(
                torch.cat([pad, cf_codes.cpu()]), torch.cat([pad, sem_codes.cpu()]), self.codebook_size,
                min_disamb=2 * self.layout.n_disamb,
            )
        for st in self.collision_stats:
            self.logger.info(
                "split %d CF + %d semantic tokens: collision rate before resolution %.4f (max group %d)",
                st["split"], self.budget - st["split"], st["collision_rate"], st["max_group_size"],
            )
        self.register_buffer("paths", paths)  # [L+1, N, L+1]
        self.register_buffer("cf_tokens", self.layout.level_tokens(torch.cat([pad, cf_codes.cpu()]), semantic=False))
        self.register_buffer("sem_tokens", self.layout.level_tokens(torch.cat([pad, sem_codes.cpu()]), semantic=True))

        # -- stage 5: router features and generator (§4.3, §4.4)
        feats = item_features(dataset, cf["uncertainty"])
        self.item_counts = feats["counts"]
        self.register_buffer("features", torch.as_tensor(feats["features"]))
        n_strata = int(config_value(config, "lb_strata", 5))
        strata = popularity_strata(feats["counts"], n_strata)
        self.n_strata = n_strata
        self.register_buffer("strata", torch.as_tensor(strata[1:], dtype=torch.long))
        order = np.argsort(feats["counts"][1:], kind="stable") + 1
        self.register_buffer("popularity_order", torch.as_tensor(order, dtype=torch.long))
        self.router = PopularityRouter(
            self.features.shape[1], self.budget, hidden_size=int(config_value(config, "router_hidden_size", 32)),
            temperature=float(config_value(config, "router_temperature", 1.0)),
        )
        self.generator = SemanticIDGenerator(
            self.layout.vocab_size, self.layout.path_length, self.max_seq_length,
            hidden_size=int(config_value(config, "hidden_size", 64)), n_heads=int(config_value(config, "n_heads", 2)),
            inner_size=int(config_value(config, "inner_size", 256)), n_encoder_layers=int(config_value(config, "n_encoder_layers", 2)),
            n_decoder_layers=int(config_value(config, "n_decoder_layers", 2)), dropout=float(config_value(config, "dropout_prob", 0.2)),
        )
        # ours, not in the paper (results/cpu/Amazon_Beauty/analysis/token_fit.md): a free embedding per
        # item added to its code embeddings in the history, the only item-specific parameters
        self.history_item_embedding = bool(config_value(config, "history_item_embedding", False))
        self.history_id_embedding = (
            torch.nn.Embedding(self.n_items, self.generator.hidden_size, padding_idx=0) if self.history_item_embedding else None
        )
        if self.history_id_embedding is not None:
            torch.nn.init.zeros_(self.history_id_embedding.weight)  # start from the paper's model
        self.recode_every = int(config_value(config, "recode_every", 100))
        self._steps = 0
        self._train_steps = 0
        self._trie = None
        self._trie_paths = None
        self.to(device)

    def _warmup_steps(self, config, dataset) -> int:
        """Router warm-up length in training steps: ``router_warmup_steps``, or ``router_warmup_epochs``
        (epochs of this training split at ``train_batch_size``, rounded up); the decoupled router
        defaults to 5 epochs, the expected-loss router to none."""
        steps = int(config_value(config, "router_warmup_steps", 0) or 0)
        epochs = config_value(config, "router_warmup_epochs", None)
        if epochs is None and steps == 0 and self.router_mode == "decoupled":
            epochs = DEFAULT_DECOUPLED_WARMUP_EPOCHS
        if steps < 0 or (epochs is not None and float(epochs) < 0):
            raise ValueError("FlexCode: router_warmup_steps and router_warmup_epochs must be >= 0")
        if epochs is not None and steps:
            raise ValueError("FlexCode: give router_warmup_steps or router_warmup_epochs, not both")
        if epochs is not None:
            per_epoch = math.ceil(len(dataset.inter_feat) / int(config["train_batch_size"]))
            steps = math.ceil(float(epochs) * per_epoch)
        return steps

    # ------------------------------------------------------------------ tokenizer stage
    def _fit_tokenizer(self, sem_x, cf_x, tok_kwargs, fit_kwargs) -> DualCodebookTokenizer:
        """Fit (or load from the cache) the dual tokenizer; key = inputs + every setting."""
        key = cache_key(stage="dual_tokenizer", sem=sem_x.numpy(), cf=cf_x.numpy(), tok=tok_kwargs, fit=fit_kwargs)
        directory = os.path.join(self.cache_dir, f"tokenizer-{key}")
        if os.path.isfile(os.path.join(directory, "tokenizer.safetensors")):
            self.logger.info("tokenizer: cache hit %s", directory)
            return DualCodebookTokenizer.load(directory)
        torch.manual_seed(fit_kwargs["seed"])
        tok = DualCodebookTokenizer(**tok_kwargs)
        self.logger.info("tokenizer: fitting dual RQ-VAE on %d items (%s)", len(sem_x), fit_kwargs)
        tok.fit(sem_x, cf_x, show_progress=self.show_progress, logger=self.logger, **fit_kwargs)
        tok.save(directory)
        self.logger.info("tokenizer: saved to %s", directory)
        return tok

    def _recode(self) -> None:
        """Joint mode: re-encode every item with the current codebooks (targets follow the tokenizer)."""
        sem_codes, cf_codes = self.tokenizer.encode(self._sem_x.to(self.paths.device), self._cf_x.to(self.paths.device))
        pad = torch.zeros(1, self.budget, dtype=torch.long, device=self.paths.device)
        cf_codes, sem_codes = torch.cat([pad, cf_codes]), torch.cat([pad, sem_codes])
        paths, layout, _ = all_split_paths(cf_codes, sem_codes, self.codebook_size, min_disamb=self.layout.n_disamb)
        if layout.n_disamb > self.layout.n_disamb:
            self.logger.warning("joint mode: a collision group outgrew the disambiguation vocabulary; codes not updated")
            return
        # Rebind rather than copy_: this runs inside calculate_loss, before the step's backward,
        # whose graph still holds the old token tensors (embedding lookups save their indices).
        self.paths = paths
        self.cf_tokens = self.layout.level_tokens(cf_codes, semantic=False)
        self.sem_tokens = self.layout.level_tokens(sem_codes, semantic=True)

    # ------------------------------------------------------------------ routing
    def split_probs(self) -> torch.Tensor:
        """``p_i(s)`` for every item, ``[N, L+1]``; one-hot for the fixed-split variants."""
        if self.fixed_split is not None:
            probs = torch.zeros(self.n_items, self.budget + 1, device=self.features.device)
            probs[:, self.fixed_split] = 1.0
            return probs
        return self.router(self.features)

    def item_splits(self) -> torch.Tensor:
        """Inference split (collaborative tokens) of every item."""
        return self.split_probs().argmax(dim=-1)

    def _item_vectors(self, probs):
        """History representation of every item: Σ of its routed code embeddings (§4.3), plus its
        own free embedding when ``history_item_embedding`` is on."""
        cf_mask, sem_mask = level_masks(probs, self.budget, straight_through=True)
        vectors = self.generator.item_table(self.cf_tokens, self.sem_tokens, cf_mask, sem_mask)
        if self.history_id_embedding is not None:
            vectors = vectors + self.history_id_embedding.weight
        return vectors

    def _in_router_warmup(self) -> bool:
        return self.training and self.fixed_split is None and self._train_steps < self.router_warmup_steps

    def _warmup_probs(self) -> torch.Tensor:
        """Router warm-up (ours, docs/design.md "router"): one uniformly drawn split per item.

        Drawn afresh every step and one-hot, so history items are real paths of every split and
        the target loss weights all splits equally.  The router is untouched by this loss: under
        ``expected_loss`` it waits, under ``decoupled`` it learns from the detached split losses.
        """
        splits = torch.randint(0, self.budget + 1, (self.n_items,), device=self.features.device)
        return F.one_hot(splits, self.budget + 1).to(self.features.dtype)

    # ------------------------------------------------------------------ RecBole API
    def forward(self, item_seq, item_seq_len):
        probs = self.split_probs()
        memory, pad = self.generator.encode_history(self._item_vectors(probs), item_seq, item_seq_len)
        return memory, pad, probs

    def calculate_loss(self, interaction):
        """``λ_ARG L_ARG + λ_lb L_lb + λ_smooth L_smooth`` (+ the tokenizer loss in joint mode), §4.3–4.5.

        Routed variants, by ``router_mode`` and phase:

        * ``expected_loss``: ``Σ_s p_i(s) L_ARG(i, s)`` trains generator and router together
          (after the warm-up, if any; during it the router is untouched);
        * ``decoupled``: during the warm-up the generator learns every split equally and the router
          fits the posterior over splits ``softmax_s(−sg[L_ARG(i, s)])`` by cross-entropy, a
          comparison it cannot bias by steering the generator's training; afterwards the router is
          frozen and the generator trains on each item's chosen split only (one decoder pass
          instead of ``L + 1``).
        """
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        warmup = self._in_router_warmup()
        self._train_steps += int(self.training)
        routed = self.fixed_split is None
        decoupled = routed and self.router_mode == "decoupled"
        if warmup or decoupled:
            # decoupled, after the warm-up: the router is frozen, history masks included
            probs = self._warmup_probs() if warmup else self.split_probs().detach()
            memory, pad = self.generator.encode_history(self._item_vectors(probs), item_seq, item_seq_len)
        else:
            memory, pad, probs = self.forward(item_seq, item_seq_len)
        if not routed:
            splits = torch.full((len(target), 1), self.fixed_split, device=target.device)
            weights = torch.ones(len(target), 1, device=target.device)
        elif decoupled and not warmup:
            splits = probs[target].argmax(-1, keepdim=True)  # [B, 1]: the inference split only
            weights = torch.ones(len(target), 1, device=target.device)
        else:
            splits = torch.arange(self.budget + 1, device=target.device).expand(len(target), -1)
            weights = torch.full((len(target), self.budget + 1), 1.0 / (self.budget + 1), device=target.device) if warmup else probs[target]
        # only the target's L+1 decoder steps differ between splits (SPEC §1)
        candidate_paths = self.paths[splits, target.unsqueeze(1)]  # [B, S, T]
        nll = self.generator.sequence_nll(memory, pad, candidate_paths)
        loss = self.arg_weight * (weights * nll).sum(-1).mean()
        router_probs = None
        if decoupled and warmup:
            router_probs = self.router(self.features)
            # cross-entropy to the posterior over splits given the target, softmax_s(−L_ARG(i, s))
            posterior = torch.softmax(-nll.detach(), dim=-1)
            per_row = -(posterior * router_probs[target].clamp_min(1e-12).log()).sum(-1)
            loss = loss + self._stratum_mean(per_row, target)
        elif routed and not (decoupled or warmup):
            router_probs = probs
        if router_probs is not None:
            if self.lb_weight > 0:
                loss = loss + self.lb_weight * stratified_load_balance(router_probs[1:], self.strata, self.n_strata)
            if self.smooth_weight > 0:
                loss = loss + self.smooth_weight * popularity_smoothness(self.router.alpha(router_probs), self.popularity_order)
        if self.training_mode == "joint":
            items = torch.unique(target)
            items = items[items > 0] - 1
            out = self.tokenizer.loss(self._sem_x.to(target.device)[items], self._cf_x.to(target.device)[items])
            loss = loss + out["total"]
            self._steps += 1
            if self._steps % self.recode_every == 0:
                self._recode()
        return loss

    def _stratum_mean(self, values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of per-row ``values`` with every popularity stratum of the targets weighted equally.

        A plain batch mean weights items by how often they are targets, so the few tail targets
        are outvoted in a router that generalises over popularity features (with the synthetic
        split losses of tests/test_flexcode.py the plain mean put 73 of 84 tail items on their
        split, this one 78). ``router_loss_balance: plain`` keeps the batch mean.
        """
        if not self.router_stratum_balance:
            return values.mean()
        stratum = self.strata[target - 1]
        sums = torch.zeros(self.n_strata, device=values.device, dtype=values.dtype).index_add_(0, stratum, values)
        counts = torch.bincount(stratum, minlength=self.n_strata).to(values.dtype)
        present = counts > 0
        return (sums[present] / counts[present]).mean()

    def _inference_paths(self) -> tuple[torch.Tensor, torch.Tensor]:
        splits = self.item_splits()
        items = torch.arange(1, self.n_items, device=self.paths.device)
        return self.paths[splits[items], items], items

    def _get_trie(self) -> PrefixTrie:
        paths, items = self._inference_paths()
        if self._trie is None or self._trie_paths is None or not torch.equal(paths, self._trie_paths):
            self._trie = PrefixTrie(paths, items)
            self._trie_paths = paths
        return self._trie

    def _all_positions_fn(self, memory, pad):
        return lambda prefix: self.generator.decode_log_probs(memory, pad, prefix)

    def full_sort_predict(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        memory, pad, _ = self.forward(item_seq, item_seq_len)
        f = self._all_positions_fn(memory, pad)
        batch = item_seq.shape[0]
        if self.decode_mode == "exact":
            paths, items = self._inference_paths()
            scores = exact_item_scores(f, paths, batch, item_chunk=int(max(1, 65536 // max(batch, 1))))
            out = torch.full((batch, self.n_items), float("-inf"), device=scores.device)
            out[:, items] = scores
            return out
        trie = self._get_trie()
        ids, scores = constrained_beam_search(last_position(f), trie, batch, self.beam_size, device=item_seq.device)
        return scatter_item_scores(ids, scores, self.n_items)

    def predict(self, interaction):
        """Sequence log-probability of the given item (for RecBole's sampled evaluation)."""
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        memory, pad, _ = self.forward(item_seq, item_seq_len)
        paths, _ = self._inference_paths()
        target = paths[interaction[self.ITEM_ID] - 1].unsqueeze(1)  # [B, 1, T]
        return -self.generator.sequence_nll(memory, pad, target).squeeze(1)

    # ------------------------------------------------------------------ reporting
    @torch.no_grad()
    def report(self) -> dict:
        """Tokenizer quality, collisions and the learned allocation (for the run's JSON)."""
        splits = self.item_splits()[1:].cpu().numpy()
        counts = self.item_counts[1:]
        head = counts >= np.quantile(counts, 0.8) if len(counts) else counts.astype(bool)
        return {
            "variant": self.variant,
            "token_budget": self.budget,
            "training_mode": self.training_mode,
            "decode_mode": self.decode_mode,
            "tokenizer": self.tokenizer_stats,
            "collisions": self.collision_stats,
            "disambiguation_tokens": self.layout.n_disamb,
            "stage_timings_s": self.stage_timings,
            "split_histogram": np.bincount(splits, minlength=self.budget + 1).tolist(),
            "mean_cf_tokens_head": float(splits[head].mean()) if head.any() else None,
            "mean_cf_tokens_tail": float(splits[~head].mean()) if (~head).any() else None,
        }

    @torch.no_grad()
    def diagnose(self, data) -> dict | None:
        """Which split does the generator predict best, per popularity stratum of the target?

        For every evaluation row the target's ``L_ARG`` under each of the ``L + 1`` splits (the
        quantity the router's expected loss trades off, §4.3), averaged per ``lb_strata`` stratum.
        Run on validation data; only for the routed variants (fixed splits train one split only).
        """
        if self.fixed_split is not None:
            return None
        was_training = self.training
        self.eval()
        n_splits = self.budget + 1
        sums = torch.zeros(self.n_strata, n_splits, dtype=torch.float64)
        counts = torch.zeros(self.n_strata, dtype=torch.long)
        splits = torch.arange(n_splits, device=self.paths.device)
        for batch in data:
            interaction = batch[0] if isinstance(batch, tuple) else batch
            interaction = interaction.to(self.paths.device)
            target = interaction[self.ITEM_ID]
            memory, pad, _ = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            nll = self.generator.sequence_nll(memory, pad, self.paths[splits][:, target].permute(1, 0, 2))
            stratum = self.strata[target - 1].cpu()
            sums.index_add_(0, stratum, nll.double().cpu())
            counts += torch.bincount(stratum, minlength=self.n_strata)
        self.train(was_training)
        item_strata = self.strata.cpu().numpy()
        item_counts = self.item_counts[1:]
        chosen = self.item_splits()[1:].cpu().numpy()
        rows = []
        for k in range(self.n_strata):
            members = item_counts[item_strata == k]
            mean = (sums[k] / counts[k]).tolist() if counts[k] > 0 else [None] * n_splits
            rows.append({
                "stratum": k,
                "train_count_range": [int(members.min()), int(members.max())] if len(members) else None,
                "n_targets": int(counts[k]),
                "mean_nll_by_split": mean,
                "best_split": int(np.nanargmin(np.array(mean, dtype=float))) if counts[k] > 0 else None,
                "router_split_histogram": np.bincount(chosen[item_strata == k], minlength=n_splits).tolist(),
            })
        return {"what": "mean target L_ARG per split (index = collaborative tokens), validation rows", "strata": rows}

    @staticmethod
    def trie_path_scores(log_probs: torch.Tensor, paths: torch.Tensor, trie: PrefixTrie):
        """Per-position scores of item paths under trie-constrained decoding.

        ``log_probs [B, T, V]`` are the generator's teacher-forced log-probabilities along
        ``paths [B, T]``. Returns ``(nll, above)``, both ``[B, T]``: the gold token's ``−log p``
        renormalised over the tokens the trie allows after the gold prefix (summed over the
        positions, the item's ``−log p`` under constrained decoding; these sum to one over the
        catalogue), and how many allowed tokens score strictly above the gold one.
        """
        nll, above = [], []
        for k, allowed in enumerate(trie.sibling_tokens(paths)):
            lp = log_probs[:, k].gather(1, allowed.clamp(min=0)).masked_fill(allowed < 0, float("-inf"))
            lp = torch.log_softmax(lp, dim=-1)
            gold = lp.gather(1, (allowed == paths[:, k : k + 1]).long().argmax(1, keepdim=True))  # [B, 1]
            nll.append(-gold[:, 0])
            above.append((lp > gold).sum(1))
        return torch.stack(nll, 1), torch.stack(above, 1)

    @torch.no_grad()
    def token_diagnose(self, data, max_rows: int | None = None, topk: int = 10) -> dict:
        """Where along its path is a target lost? Teacher-forced per-position fit (§4.4).

        For every row of ``data`` (up to ``max_rows``), the target's inference path (the router's
        split) is scored token by token given the history and the target's own earlier tokens.
        Per position: the mean ``−log p`` over the whole vocabulary (what ``L_ARG`` trains; the
        positions add up to it), the mean ``−log p`` renormalised over the tokens the trie allows
        there (what constrained decoding chooses among; the positions add up to ``item_nll``,
        the target's ``−log p`` as an item), and how often the gold token is the top-1 and within
        the top-``topk`` of those allowed tokens. Rows are grouped by popularity stratum
        (``lb_strata``) and the target's split, so each position has one source (CF for positions
        ``< split``, then semantic, then the disambiguation token). Run on training rows as well
        as validation rows, it separates a generator that cannot fit the tail (high loss on both)
        from one that fits it but does not generalise.
        """
        was_training = self.training
        self.eval()
        splits = self.item_splits()
        trie = self._get_trie()
        T = self.paths.shape[-1]
        acc = {}  # (stratum, split) -> [rows, sums [5, T]]
        rows = 0
        for interaction in capped_interactions(data, max_rows):
            rows += len(interaction)
            interaction = interaction.to(self.paths.device)
            target = interaction[self.ITEM_ID]
            memory, pad, _ = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            split = splits[target]
            path = self.paths[split, target]  # [B, T]
            log_probs = self.generator.decode_log_probs(memory, pad, path[:, None, :-1])[:, 0]  # [B, T, V]
            free = -log_probs.gather(-1, path.unsqueeze(-1)).squeeze(-1)  # [B, T]
            trie_nll, above = self.trie_path_scores(log_probs, path, trie)
            stats = torch.stack([free, trie_nll, (above == 0).to(free.dtype), (above < topk).to(free.dtype)], 0)
            stats = stats.double().cpu()  # [4, B, T]
            stratum, split = self.strata[target - 1].cpu(), split.cpu()
            for key in torch.unique(torch.stack([stratum, split], 1), dim=0).tolist():
                sel = (stratum == key[0]) & (split == key[1])
                entry = acc.setdefault(tuple(key), [0, torch.zeros(4, T, dtype=torch.float64)])
                entry[0] += int(sel.sum())
                entry[1] += stats[:, sel].sum(1)
        self.train(was_training)
        item_strata = self.strata.cpu().numpy()
        item_counts = self.item_counts[1:]
        groups = []
        for (k, s), (n, sums) in sorted(acc.items()):
            members = item_counts[item_strata == k]
            mean = (sums / n).tolist()
            groups.append({
                "stratum": k, "split": s, "n_rows": n,
                "sources": ["cf"] * s + ["sem"] * (self.budget - s) + ["disamb"],
                "train_count_range": [int(members.min()), int(members.max())] if len(members) else None,
                "mean_nll_by_position": mean[0], "mean_trie_nll_by_position": mean[1],
                "item_nll": float(sum(mean[1])),
                "top1_by_position": mean[2], f"top{topk}_by_position": mean[3],
            })
        by_stratum = []
        for k in range(self.n_strata):
            mine = [g for g in groups if g["stratum"] == k]
            n = sum(g["n_rows"] for g in mine)
            if n:
                by_stratum.append({"stratum": k, "train_count_range": mine[0]["train_count_range"], "n_rows": n,
                                   "item_nll": sum(g["item_nll"] * g["n_rows"] for g in mine) / n})
        return {"what": "teacher-forced fit of the target's inference path, per position "
                        "(top-k among the tokens the trie allows)", "rows": rows, "topk": topk,
                "n_items": int(self.n_items - 1), "groups": groups, "item_nll_by_stratum": by_stratum}

    @torch.no_grad()
    def export_artifacts(self, directory: str) -> list[str]:
        """Per-item popularity and split (CSV) and a plot of the split against popularity."""
        os.makedirs(directory, exist_ok=True)
        probs = self.split_probs()[1:].cpu().numpy()
        splits = probs.argmax(1)
        alpha = (probs * np.arange(self.budget + 1)).sum(1) / self.budget
        counts = self.item_counts[1:]
        csv_path = os.path.join(directory, "item_splits.csv")
        tmp = csv_path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "train_interactions", "cf_tokens", "semantic_tokens", "alpha"])
            for i, (c, s, a) in enumerate(zip(counts, splits, alpha), start=1):
                w.writerow([i, int(c), int(s), int(self.budget - s), f"{a:.4f}"])
        os.replace(tmp, csv_path)
        written = [csv_path]
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
            ax.scatter(np.log1p(counts), alpha, s=4, alpha=0.4, label="expected share α")
            ax.scatter(np.log1p(counts), splits / self.budget, s=4, alpha=0.4, label="inference split n_cf / L")
            ax.set_xlabel("log(1 + training interactions)")
            ax.set_ylabel("collaborative share")
            ax.set_ylim(-0.05, 1.05)  # a saturated router would otherwise get an offset axis
            ax.set_title(f"FlexCode ({self.variant}, L={self.budget}): budget split vs popularity")
            ax.legend(loc="best")
            png = os.path.join(directory, "split_vs_popularity.png")
            fig.tight_layout()
            fig.savefig(png + ".tmp.png", dpi=120)
            plt.close(fig)
            os.replace(png + ".tmp.png", png)
            written.append(png)
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            self.logger.warning("matplotlib missing: no split plot")
        return written
