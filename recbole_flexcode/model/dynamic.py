r"""Building blocks of dynamic sequential recommenders (DUET-style generated layers), used by SOLID.

DUET: Lv et al., "A Tuning-Free Device-Cloud Collaborative Parameters Generation Framework for
Efficient Device Model Generalization", WWW 2023: the dynamic backbone SOLID builds on.

* :class:`SequenceEncoder` -- the SASRec-style static part of the primary model: embedding +
  position embedding -> Dense + tanh -> Transformer encoder -> user state ``h`` at the last
  real position (RecBole's :class:`~recbole.model.layers.TransformerEncoder`, causal mask).
* :class:`TargetTower` -- target embedding -> Dense(tanh) -> Dense.
* :class:`DynamicLayerGenerator` -- DUET-style parameter generator: a GRU over a sequence of
  vectors, its state at the last real position -> 2-layer MLP -> ``z``; every dynamic layer
  ``l`` gets ``W_l = reshape(z A_l + a_l)`` and ``b_l = z B_l + b0_l``.
* :func:`apply_dynamic_layers` -- per-sample fully connected layers ``x <- x W_l + b_l`` with
  tanh between layers (none after the last one).

Sequences follow RecBole's layout: left-aligned, padded with item id 0 at the end, so the
last real position of row ``i`` is ``length[i] - 1``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "SequenceEncoder",
    "TargetTower",
    "DynamicLayerGenerator",
    "StaticLayers",
    "apply_dynamic_layers",
    "gather_last",
]


def gather_last(x: Tensor, lengths: Tensor) -> Tensor:
    """``x[i, lengths[i] - 1]`` for ``x`` ``[B, L, d]`` (a length of 0 reads position 0)."""
    idx = (lengths.long() - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, x.shape[-1])
    return x.gather(1, idx).squeeze(1)


def _causal_mask(seq: Tensor) -> Tensor:
    """Left-to-right attention mask with padding, in RecBole's additive form ``[B, 1, L, L]``."""
    keep = (seq != 0).unsqueeze(1).unsqueeze(2)
    keep = torch.tril(keep.expand(-1, -1, seq.size(-1), -1))
    return torch.where(keep, 0.0, -10000.0)


class SequenceEncoder(nn.Module):
    """SASRec-style encoder of an id sequence into a user state ``h`` ``[B, d]``.

    The id embedding table is passed in at call time so one encoder class serves item
    sequences (primary model) and semantic-ID sequences (metacode pre-training).
    """

    def __init__(
        self,
        max_len: int,
        hidden_size: int,
        n_layers: int = 1,
        n_heads: int = 4,
        inner_size: int | None = None,
        hidden_dropout_prob: float = 0.0,
        attn_dropout_prob: float = 0.0,
        hidden_act: str = "relu",
        layer_norm_eps: float = 1e-12,
    ):
        super().__init__()
        from recbole.model.layers import TransformerEncoder

        self.position_embedding = nn.Embedding(max_len, hidden_size)
        self.seq_trans = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(hidden_dropout_prob)
        self.transformer = TransformerEncoder(
            n_layers=n_layers,
            n_heads=n_heads,
            hidden_size=hidden_size,
            inner_size=inner_size or 4 * hidden_size,
            hidden_dropout_prob=hidden_dropout_prob,
            attn_dropout_prob=attn_dropout_prob,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
        )

    def forward(self, seq_emb: Tensor, seq: Tensor, lengths: Tensor) -> Tensor:
        """``seq_emb`` ``[B, L, d]`` (embeddings of ``seq``), ``seq`` ``[B, L]`` ids (0 = pad) -> ``h`` ``[B, d]``."""
        positions = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0).expand_as(seq)
        x = torch.tanh(self.seq_trans(seq_emb + self.position_embedding(positions)))
        x = self.dropout(x)
        out = self.transformer(x, _causal_mask(seq), output_all_encoded_layers=False)[-1]
        return gather_last(out, lengths)


class TargetTower(nn.Module):
    """Target embedding -> Dense(tanh) -> Dense (the primary model's item side)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, hidden_size))

    def forward(self, emb: Tensor) -> Tensor:
        return self.net(emb)


class StaticLayers(nn.Module):
    """The static counterpart of the dynamic layers (the ``dynamic: False`` ablation)."""

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.tanh(x)
        return x


def apply_dynamic_layers(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """Per-sample FC layers: ``x <- x W_l + b_l`` (``W_l`` ``[B, d_in, d_out]``), tanh between layers."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = torch.bmm(x.unsqueeze(1), w).squeeze(1) + b
        if i < len(weights) - 1:
            x = torch.tanh(x)
    return x


class DynamicLayerGenerator(nn.Module):
    """DUET-style generator of the weights of ``len(dims) - 1`` fully connected layers.

    ``z = MLP(GRU(seq)[last])`` (MLP: Linear -> tanh -> Linear); layer ``l`` (``d_in -> d_out``)
    gets ``W_l = reshape(z A_l + a_l, [d_in, d_out])`` and ``b_l = z B_l + b0_l``.

    Args:
        in_size: dimension of the sequence vectors fed to the GRU.
        dims: ``[d_0, d_1, ..., d_n]`` sizes of the generated layers.
        hidden_size: GRU state size.  z_size: size of ``z``.
        train_projections: whether ``A_l, a_l, B_l, b0_l`` are trained (ours) or stay the
            random projections they were initialised to (the authors' code).
    """

    def __init__(
        self,
        in_size: int,
        dims: Sequence[int],
        hidden_size: int,
        z_size: int,
        train_projections: bool = True,
    ):
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.gru = nn.GRU(in_size, hidden_size, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden_size, z_size), nn.Tanh(), nn.Linear(z_size, z_size))
        self.weight_proj = nn.ParameterList()
        self.weight_base = nn.ParameterList()
        self.bias_proj = nn.ParameterList()
        self.bias_base = nn.ParameterList()
        for d_in, d_out in zip(self.dims[:-1], self.dims[1:]):
            # Scaled so that z A has about the variance of a Xavier-initialised d_in x d_out
            # layer when z has unit-scale entries; a_l starts as an ordinary static layer.
            std = 1.0 / math.sqrt(z_size * d_in)
            self.weight_proj.append(nn.Parameter(torch.randn(z_size, d_in * d_out) * std, requires_grad=train_projections))
            self.weight_base.append(nn.Parameter(torch.randn(d_in * d_out) / math.sqrt(d_in), requires_grad=train_projections))
            self.bias_proj.append(nn.Parameter(torch.randn(z_size, d_out) / math.sqrt(z_size) * 0.1, requires_grad=train_projections))
            self.bias_base.append(nn.Parameter(torch.zeros(d_out), requires_grad=train_projections))

    def code(self, seq_vectors: Tensor, lengths: Tensor) -> Tensor:
        """``z`` ``[B, z_size]`` from the sequence ``[B, L, in_size]`` (GRU state at the last real position)."""
        states, _ = self.gru(seq_vectors)
        return self.mlp(gather_last(states, lengths))

    def params_from_code(self, z: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Generated ``([W_l [B, d_in, d_out]], [b_l [B, d_out]])`` from ``z``."""
        weights, biases = [], []
        for l, (d_in, d_out) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            weights.append((z @ self.weight_proj[l] + self.weight_base[l]).view(-1, d_in, d_out))
            biases.append(z @ self.bias_proj[l] + self.bias_base[l])
        return weights, biases

    def forward(self, seq_vectors: Tensor, lengths: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return self.params_from_code(self.code(seq_vectors, lengths))
