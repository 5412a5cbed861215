r"""SOLID: Semantic Codebook Learning for Dynamic Recommendation Models (Lv et al., ACM MM 2024).

A RecBole ``SequentialRecommender`` (pointwise, BCE on the positive and sampled negatives).
Stages run in the constructor on the *training split* RecBole hands to the model; the
expensive ones are cached on disk (:mod:`recbole_flexcode.embeddings.cache`):

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

import logging
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_flexcode.config import config_value
from recbole_flexcode.embeddings.cache import ArrayCache, cache_key
from recbole_flexcode.embeddings.stages import collaborative_stage, text_stage
from recbole_flexcode.model.dynamic import (
    DynamicLayerGenerator,
    SequenceEncoder,
    StaticLayers,
    TargetTower,
    apply_dynamic_layers,
)
from recbole_flexcode.tokenizer.dual import standardize
from recbole_flexcode.tokenizer.rqvae import RQVAE

__all__ = ["SOLID", "SemanticMetacodeNet", "semantic_ids_from_codes"]




def _rng_devices(device) -> list:
    """CUDA devices whose RNG a stage may advance (restored by ``fork_rng``)."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


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


class SemanticMetacodeNet(nn.Module):
    """The dynamic model of Semantic Metacode Learning: SOLID's primary model and DUET generator
    on semantic-ID sequences; ``sem_embedding.weight[1:]`` is the metacode after training."""

    def __init__(self, n_semantic: int, max_len: int, hidden_size: int, encoder_kwargs: dict, generator_kwargs: dict, n_dynamic_layers: int = 2):
        super().__init__()
        d = hidden_size
        self.sem_embedding = nn.Embedding(n_semantic + 1, d, padding_idx=0)
        self.encoder = SequenceEncoder(max_len, d, **encoder_kwargs)
        self.target_tower = TargetTower(d)
        self.generator = DynamicLayerGenerator(d, [d] * (n_dynamic_layers + 1), **generator_kwargs)

    def forward(self, sem_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T]`` of targets ``[B, T]`` (semantic IDs) after history ``sem_seq``."""
        emb = self.sem_embedding(sem_seq)
        h = self.encoder(emb, sem_seq, lengths)
        weights, biases = self.generator(emb, lengths)
        u = apply_dynamic_layers(h, weights, biases)
        return (self.target_tower(self.sem_embedding(targets)) * u.unsqueeze(1)).sum(-1)


class SOLID(SequentialRecommender):
    """SOLID (see module docstring). Hyperparameters: ``properties/model/SOLID.yaml``."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.logger = logging.getLogger(__name__)
        self.stage_timings: dict[str, float] = {}
        self.dynamic = bool(config_value(config, "dynamic", True))
        self.use_semantics = bool(config_value(config, "use_semantics", True)) and self.dynamic
        if not self.dynamic and bool(config_value(config, "use_semantics", True)):
            self.logger.info("SOLID: dynamic=False -> static layers; the semantic modules are not built")
        self.variant = "SOLID" if self.use_semantics else ("DUET" if self.dynamic else "static")
        self.LABEL = config["LABEL_FIELD"]
        self.show_progress = bool(config_value(config, "show_progress", False))
        self.cache_dir = os.path.join(config_value(config, "cache_dir", "cache"), config["dataset"])
        self.seed = int(config_value(config, "seed", 2020))
        device = config["device"]

        d = self.hidden_size = int(config_value(config, "hidden_size", 32))
        self.n_dynamic_layers = int(config_value(config, "n_dynamic_layers", 2))
        self.clip_threshold = float(config_value(config, "clip_threshold", 0.01))
        self.con_weight = float(config_value(config, "con_weight", 0.1)) if self.use_semantics else 0.0
        self.freeze_codebook = bool(config_value(config, "freeze_codebook", True))
        self.initializer_range = float(config_value(config, "initializer_range", 0.02))
        self.encoder_kwargs = dict(
            n_layers=int(config_value(config, "n_layers", 1)), n_heads=int(config_value(config, "n_heads", 4)),
            inner_size=int(config_value(config, "inner_size", 4 * d)),
            hidden_dropout_prob=float(config_value(config, "hidden_dropout_prob", 0.0)),
            attn_dropout_prob=float(config_value(config, "attn_dropout_prob", 0.0)),
            hidden_act=str(config_value(config, "hidden_act", "relu")), layer_norm_eps=float(config_value(config, "layer_norm_eps", 1e-12)),
        )
        self.generator_kwargs = dict(
            hidden_size=int(config_value(config, "generator_hidden_size", d)), z_size=int(config_value(config, "z_size", d)),
            train_projections=bool(config_value(config, "train_generator_projections", True)),
        )
        dims = [d] * (self.n_dynamic_layers + 1)

        # -- stages 1-3: semantic IDs (SPG); 4: semantic metacode (SML)
        self.n_semantic = 0
        self.semantic_stats: dict = {}
        self.metacode_history: list[float] = []
        if self.use_semantics:
            item_sem, self.n_semantic = self._semantic_ids(config, dataset)
            self.register_buffer("item_sem", torch.as_tensor(item_sem, dtype=torch.long))
            t = time.time()
            with torch.random.fork_rng(devices=_rng_devices(device)):
                metacode, metacode_init, self.metacode_history = self._pretrain_metacode(config, dataset)
            self.stage_timings["metacode"] = time.time() - t
            self.register_buffer("metacode", metacode)
            self.register_buffer("metacode_init", metacode_init, persistent=False)

        # -- primary model
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.encoder = SequenceEncoder(self.max_seq_length, d, **self.encoder_kwargs)
        self.target_tower = TargetTower(d)
        if not self.dynamic:
            self.static_layers = StaticLayers(dims)
        self.apply(self._init_weights)  # SASRec-style init of the static parts (before the generators)
        if self.dynamic:
            self.item_generator = DynamicLayerGenerator(d, dims, **self.generator_kwargs)
        if self.use_semantics:
            self.sem_generator = DynamicLayerGenerator(d, dims, **self.generator_kwargs)
            self.code_decoder = nn.Sequential(nn.Linear(d, 2 * d), nn.LeakyReLU(), nn.Linear(2 * d, d))
            # codebook = semantic-ID embedding table of both the semantic trunk and SCL; row 0 = padding
            self.codebook = nn.Embedding(self.n_semantic + 1, d, padding_idx=0)
            with torch.no_grad():
                self.codebook.weight.zero_()
                self.codebook.weight[1:] = self.metacode
            self.codebook.weight.requires_grad_(not self.freeze_codebook)
        self.to(device)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ------------------------------------------------------------------ stages (constructor)
    def _semantic_ids(self, config, dataset) -> tuple[np.ndarray, int]:
        """Stages 1-3: text + collaborative embeddings -> RQ-VAE -> semantic ID per item."""
        device = config["device"]
        t = time.time()
        text_emb, _ = text_stage(config, dataset, self.cache_dir, self.show_progress, self.logger)
        parts = []
        if text_emb.shape[1]:
            parts.append(standardize(text_emb[1:]))
        else:
            self.logger.warning(
                "SOLID: no item text (text_fields=%s); semantic IDs from collaborative embeddings only",
                config_value(config, "text_fields", []),
            )
        self.stage_timings["text_embeddings"] = time.time() - t

        t = time.time()
        cf = collaborative_stage(config, dataset, self.cache_dir, self.show_progress, self.logger)
        parts.append(standardize(cf["embeddings"][1:]))
        self.stage_timings["collaborative_embeddings"] = time.time() - t

        t = time.time()
        x = torch.cat(parts, dim=1)
        codebook_size = int(config_value(config, "semantic_vocab", 64))
        rq_kwargs = dict(
            in_dim=int(x.shape[1]), code_dim=int(config_value(config, "code_dim", 32)), n_levels=int(config_value(config, "semantic_levels", 1)),
            codebook_size=codebook_size, hidden_dims=[int(h) for h in config_value(config, "rqvae_hidden_sizes", [256, 128])],
            beta=float(config_value(config, "rqvae_beta", 0.25)),
        )
        fit_kwargs = dict(
            epochs=int(config_value(config, "rqvae_epochs", 200)), batch_size=int(config_value(config, "rqvae_batch_size", 1024)),
            lr=float(config_value(config, "rqvae_learning_rate", 1e-3)), seed=self.seed,
        )
        self.tokenizer = self._fit_tokenizer(x, rq_kwargs, fit_kwargs, device)
        self.tokenizer.requires_grad_(False)  # fitted once; not trained with the recommender
        codes = self.tokenizer.encode(x).cpu().numpy()
        sem, n_semantic = semantic_ids_from_codes(codes, codebook_size)
        item_sem = np.concatenate([[0], sem])
        sizes = np.bincount(sem, minlength=n_semantic + 1)[1:]
        self.semantic_codes = codes
        self.semantic_stats = {
            "n_semantic_ids": n_semantic,
            "items_per_id_mean": float(sizes.mean()),
            "items_per_id_max": int(sizes.max()),
            "sources": (["text"] if len(parts) == 2 else []) + ["collaborative"],
            "rqvae": self.tokenizer.level_stats(x),
        }
        self.logger.info("SOLID: %d items -> %d semantic IDs (max %d items per ID)", len(sem), n_semantic, int(sizes.max()))
        self.stage_timings["tokenizer"] = time.time() - t
        return item_sem, n_semantic

    def _fit_tokenizer(self, x, rq_kwargs, fit_kwargs, device) -> RQVAE:
        """Fit (or load from the cache) the RQ-VAE; key = inputs + every setting."""
        key = cache_key(stage="solid_rqvae", x=x.numpy(), rq=rq_kwargs, fit=fit_kwargs)
        directory = os.path.join(self.cache_dir, f"solid-rqvae-{key}")
        if os.path.isfile(os.path.join(directory, "rqvae.safetensors")):
            self.logger.info("SOLID tokenizer: cache hit %s", directory)
            return RQVAE.load(directory, map_location=device)
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(fit_kwargs["seed"])
            tok = RQVAE(**rq_kwargs).to(device)
        self.logger.info("SOLID tokenizer: fitting RQ-VAE on %d items (%s)", len(x), fit_kwargs)
        tok.fit(x, show_progress=self.show_progress, logger=self.logger, **fit_kwargs)
        tok.save(directory)
        tok.eval()
        return tok

    def _pretrain_metacode(self, config, dataset):
        """Stage 4 (SML): train :class:`SemanticMetacodeNet` on semantic sequences; return
        ``(metacode [V, d], its initial value [V, d], loss per epoch)`` (cached)."""
        device = config["device"]
        inter = dataset.inter_feat
        seqs, lens, targets = inter[self.ITEM_SEQ], inter[self.ITEM_SEQ_LEN], inter[self.ITEM_ID]
        settings = dict(
            d=self.hidden_size, n_dynamic_layers=self.n_dynamic_layers, encoder=self.encoder_kwargs, generator=self.generator_kwargs,
            epochs=int(config_value(config, "metacode_epochs", 3)), lr=float(config_value(config, "metacode_learning_rate", 1e-3)),
            batch_size=int(config_value(config, "metacode_batch_size", 1024)), neg=int(config_value(config, "metacode_neg_samples", 1)),
        )
        key = cache_key(stage="solid_metacode", item_sem=self.item_sem.numpy(), seqs=seqs.numpy(), lens=lens.numpy(),
                        targets=targets.numpy(), settings=settings, seed=self.seed)
        cache = ArrayCache(self.cache_dir)
        hit = cache.load("solid_metacode", key)
        if hit is not None:
            self.logger.info("SOLID metacode: cache hit %s", cache.path("solid_metacode", key))
            return torch.as_tensor(hit["metacode"]), torch.as_tensor(hit["init"]), hit["history"].tolist()

        torch.manual_seed(self.seed)
        net = SemanticMetacodeNet(self.n_semantic, self.max_seq_length, self.hidden_size, self.encoder_kwargs,
                                  self.generator_kwargs, self.n_dynamic_layers)
        for part in (net.sem_embedding, net.encoder, net.target_tower):  # as the primary model's static parts
            part.apply(self._init_weights)
        init = net.sem_embedding.weight.detach()[1:].clone()
        net.to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=settings["lr"])
        item_sem = self.item_sem.to(device)
        n, bs, n_neg = len(targets), settings["batch_size"], settings["neg"]
        history = []
        for epoch in range(settings["epochs"]):
            perm = torch.randperm(n)
            total = 0.0
            for start in range(0, n, bs):
                idx = perm[start:start + bs]
                seq = item_sem[seqs[idx].to(device)]
                pos = item_sem[targets[idx].to(device)].unsqueeze(1)
                neg = item_sem[torch.randint(1, self.n_items, (len(idx), n_neg), device=device)]
                logits = net(seq, lens[idx].to(device), torch.cat([pos, neg], 1))
                labels = torch.zeros_like(logits)
                labels[:, 0] = 1.0
                # a negative in the positive's semantic ID would be a contradictory label: drop it
                weight = torch.cat([torch.ones_like(pos, dtype=logits.dtype), (neg != pos).to(logits.dtype)], 1)
                loss = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weight).sum() / weight.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / max(n, 1))
            self.logger.info("SOLID metacode: epoch %d/%d loss %.4f", epoch + 1, settings["epochs"], history[-1])
        metacode = net.sem_embedding.weight.detach()[1:].cpu().clone()
        cache.save("solid_metacode", key, {"metacode": metacode.numpy(), "init": init.numpy(), "history": np.asarray(history, dtype=np.float64)},
                   meta={"settings": settings})
        return metacode, init, history

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

    # ------------------------------------------------------------------ reporting
    @torch.no_grad()
    def report(self) -> dict:
        """Variant, semantic-ID statistics, metacode pre-training losses, stage timings."""
        out = {
            "variant": self.variant,
            "dynamic": self.dynamic,
            "use_semantics": self.use_semantics,
            "stage_timings_s": dict(self.stage_timings),
        }
        if self.use_semantics:
            out.update(
                clip_threshold=self.clip_threshold,
                con_weight=self.con_weight,
                freeze_codebook=self.freeze_codebook,
                semantic_ids=self.semantic_stats,
                metacode_loss=list(self.metacode_history),
                codebook_equals_metacode=bool(torch.equal(self.codebook.weight[1:].cpu(), self.metacode.cpu())),
            )
        return out
