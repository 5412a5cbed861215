"""SOLID's Semantic Metacode Learning (SML) stage: a dynamic model pre-trained on semantic-ID sequences.

Lv et al., ACM MM 2024, §3 (SML): before the recommender trains, a copy of SOLID's dynamic model
learns semantic-level click prediction on the training split with every item replaced by its
semantic ID; its semantic-ID embedding table, the *metacode*, initialises SOLID's codebook.
Run by :mod:`recbole_flexcode.pipeline` after the item tokenizer, cached like every stage.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_flexcode.embeddings.cache import ArrayCache, cache_key
from recbole_flexcode.model.dynamic import DynamicLayerGenerator, SequenceEncoder, TargetTower, apply_dynamic_layers


def solid_network_settings(config) -> dict:
    """Sizes shared by SOLID's primary model and its metacode network, from ``properties/model/SOLID.yaml``."""
    d = int(config["hidden_size"])
    return {
        "d": d,
        "n_dynamic_layers": int(config["n_dynamic_layers"]),
        "initializer_range": float(config["initializer_range"]),
        "encoder": dict(
            n_layers=int(config["n_layers"]), n_heads=int(config["n_heads"]), inner_size=int(config["inner_size"]),
            hidden_dropout_prob=float(config["hidden_dropout_prob"]), attn_dropout_prob=float(config["attn_dropout_prob"]),
            hidden_act=str(config["hidden_act"]), layer_norm_eps=float(config["layer_norm_eps"]),
        ),
        # ~ in the YAML: the generator's GRU and z are as wide as the model
        "generator": dict(
            hidden_size=int(config["generator_hidden_size"] or d), z_size=int(config["z_size"] or d),
            train_projections=bool(config["train_generator_projections"]),
        ),
    }


def init_weights(module: nn.Module, std: float) -> None:
    """SASRec-style initialisation (normal embeddings and linear weights, zero biases, unit LayerNorm)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


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


def metacode_stage(config, dataset, item_sem: np.ndarray, n_semantic: int, cache_dir, logger) -> dict:
    """Train :class:`SemanticMetacodeNet` on the training split's semantic sequences (cached).

    Returns ``{'metacode' [V, d], 'init' [V, d] (its value before training), 'history' (loss per epoch)}``.
    """
    device = config["device"]
    net_settings = solid_network_settings(config)
    d, std = net_settings["d"], net_settings["initializer_range"]
    seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    inter = dataset.inter_feat
    seqs, lens, targets = inter[seq_field], inter[config["ITEM_LIST_LENGTH_FIELD"]], inter[config["ITEM_ID_FIELD"]]
    settings = dict(
        d=d, n_dynamic_layers=net_settings["n_dynamic_layers"], encoder=net_settings["encoder"],
        generator=net_settings["generator"], epochs=int(config["metacode_epochs"]), lr=float(config["metacode_learning_rate"]),
        batch_size=int(config["metacode_batch_size"]), neg=int(config["metacode_neg_samples"]),
    )
    seed = int(config["seed"])
    key = cache_key(stage="solid_metacode", item_sem=np.asarray(item_sem, dtype=np.int64), seqs=seqs.numpy(), lens=lens.numpy(),
                    targets=targets.numpy(), settings=settings, seed=seed)
    cache = ArrayCache(cache_dir) if cache_dir else None
    hit = cache.load("solid_metacode", key) if cache is not None else None
    if hit is not None:
        logger.info("SOLID metacode: cache hit %s", cache.path("solid_metacode", key))
        return {"metacode": torch.as_tensor(hit["metacode"]), "init": torch.as_tensor(hit["init"]), "history": hit["history"].tolist()}

    torch.manual_seed(seed)
    n_items = dataset.item_num
    net = SemanticMetacodeNet(n_semantic, int(config["MAX_ITEM_LIST_LENGTH"]), d, settings["encoder"], settings["generator"],
                              settings["n_dynamic_layers"])
    for part in (net.sem_embedding, net.encoder, net.target_tower):  # as the primary model's static parts
        part.apply(lambda m: init_weights(m, std))
    init = net.sem_embedding.weight.detach()[1:].clone()
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=settings["lr"])
    sem = torch.as_tensor(np.asarray(item_sem), dtype=torch.long).to(device)
    n, bs, n_neg = len(targets), settings["batch_size"], settings["neg"]
    history = []
    for epoch in range(settings["epochs"]):
        perm = torch.randperm(n)
        total = 0.0
        for start in range(0, n, bs):
            idx = perm[start:start + bs]
            seq = sem[seqs[idx].to(device)]
            pos = sem[targets[idx].to(device)].unsqueeze(1)
            neg = sem[torch.randint(1, n_items, (len(idx), n_neg), device=device)]
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
        logger.info("SOLID metacode: epoch %d/%d loss %.4f", epoch + 1, settings["epochs"], history[-1])
    metacode = net.sem_embedding.weight.detach()[1:].cpu().clone()
    if cache is not None:
        cache.save("solid_metacode", key, {"metacode": metacode.numpy(), "init": init.numpy(), "history": np.asarray(history, dtype=np.float64)},
                   meta={"settings": settings})
    return {"metacode": metacode, "init": init, "history": history}
