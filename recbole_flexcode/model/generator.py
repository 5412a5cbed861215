"""The autoregressive semantic-ID generator (FlexCode §4.4, ARG).

An encoder-decoder Transformer in the spirit of TIGER (Rajput et al. 2023):

* the **encoder** reads the user's history, by default one vector per item, each the sum of the
  item's (masked) collaborative and semantic token embeddings — the "combined codes" ``C_≤t``
  (``history_encoding: tokens``: every item's path tokens as positions, :mod:`recbole_flexcode.model.history`);
* the **decoder** generates the next item's token path ``(c_{t+1,1} .. c_{t+1,L}, disamb)``
  autoregressively, attending to the encoded history:
  ``p(c_{t+1,k} | C_≤t, c_{t+1,<k})``.

:meth:`SemanticIDGenerator.decode_log_probs` returns log-probabilities for *all* positions of a
batch of candidate prefixes at once; the same function drives training (teacher forcing),
constrained beam search and exact scoring (:mod:`recbole_flexcode.model.generation`).

Generators are one config switch (``generator``; docs/design.md, "Generator options"):
``transformer`` is :class:`SemanticIDGenerator` (``torch.nn.Transformer`` layers), ``t5`` is
:class:`~recbole_flexcode.model.t5_generator.T5SemanticIDGenerator` (T5 stacks from ``transformers``,
built from config, randomly initialised). Both expose what FlexCode and the analysis use:
``item_table``, ``encode_history -> (memory, pad)``, ``decode_log_probs``, ``sequence_nll``,
``hidden_size`` and ``token_embedding``. :func:`build_generator` builds the configured one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_flexcode.config_check import ConfigError
from recbole_flexcode.model.generation import shared_prefix_tree, tree_nll
from recbole_flexcode.model.history import HISTORY_ENCODINGS, build_history
from recbole_flexcode.tokenizer.codebooks import SEMANTIC

GENERATORS = ("transformer", "t5")


def packed_causal_mask(m: int, per: int, device) -> torch.Tensor:
    """``[m·per, m·per]``, True = may not attend: another of the ``m`` packed candidates, or a later token of its own."""
    block = torch.arange(m * per, device=device) // per
    idx = torch.arange(m * per, device=device)
    return (block.unsqueeze(1) != block.unsqueeze(0)) | (idx.unsqueeze(0) > idx.unsqueeze(1))


class PathGenerator(nn.Module):
    """What both generators share: the history table (:mod:`~recbole_flexcode.model.history`) and ``L_ARG``.

    A subclass sets ``token_embedding``, ``history`` and ``hidden_size`` and implements
    ``encode_history`` and ``decode_log_probs``.
    """

    def item_table(self, cf_tokens, sem_tokens, cf_mask, sem_mask):
        """Representation of every item from its masked codes (FlexCode §4.3), read by :meth:`encode_history`:
        ``[N, d]`` (pooled) or a :class:`~recbole_flexcode.model.history.TokenTable` (tokens)."""
        return self.history.table(self.token_embedding, cf_tokens, sem_tokens, cf_mask, sem_mask)

    def sequence_nll(self, memory, pad, paths: torch.Tensor) -> torch.Tensor:
        """``L_ARG`` per candidate: ``−Σ_k log p(path_k | history, path_<k)`` for paths ``[B, M, T]`` → ``[B, M]``."""
        log_probs = self.decode_log_probs(memory, pad, paths[..., :-1])
        return -log_probs.gather(-1, paths.unsqueeze(-1)).squeeze(-1).sum(-1)

    def next_token_log_probs(self, memory, pad, prefix: torch.Tensor) -> torch.Tensor:
        """``[B, M, V]``: ``log p(token_k | history, prefix)`` for prefixes ``[B, M, k]`` (beam search's step)."""
        return self.decode_log_probs(memory, pad, prefix)[..., -1, :]


class SemanticIDGenerator(PathGenerator):
    """Encoder over history items, decoder over the next item's tokens.

    Args:
        vocab_size: size of the shared token vocabulary (:class:`~recbole_flexcode.tokenizer.vocab.TokenLayout`).
        path_length: tokens per item path ``T = L + 1``.
        max_seq_length: longest history.
        hidden_size, n_heads, inner_size: Transformer width, heads and feed-forward width.
        n_encoder_layers, n_decoder_layers: depth of each side.
        dropout: dropout in embeddings and Transformer layers.
        history_encoding: ``pooled`` (one position per history item) | ``tokens`` (its path tokens).
        path_source: the item tokenizer, for the disambiguation token of ``tokens`` histories.
    """

    def __init__(
        self,
        vocab_size: int,
        path_length: int,
        max_seq_length: int,
        hidden_size: int = 64,
        n_heads: int = 2,
        inner_size: int = 256,
        n_encoder_layers: int = 2,
        n_decoder_layers: int = 2,
        dropout: float = 0.2,
        history_encoding: str = "pooled",
        path_source=None,
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.path_length = path_length
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.history_position = nn.Embedding(max_seq_length, hidden_size)
        self.decoder_position = nn.Embedding(path_length, hidden_size)
        self.history_norm = nn.LayerNorm(hidden_size)
        self.decoder_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        enc_layer = nn.TransformerEncoderLayer(
            hidden_size, n_heads, inner_size, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(enc_layer, n_encoder_layers, enable_nested_tensor=False)
        dec_layer = nn.TransformerDecoderLayer(
            hidden_size, n_heads, inner_size, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(dec_layer, n_decoder_layers)
        self.final_norm = nn.LayerNorm(hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)
        # pooled: no parameters, so the default model's weights, names and random draws are unchanged
        self.history = build_history(history_encoding, path_length, hidden_size, path_source)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def encode_history(self, item_vectors, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """Encode histories ``[B, S]`` (left-aligned, 0 = padding) into memory ``[B, S', d]`` and its padding mask
        (``S' = S`` pooled, ``S·T`` tokens); ``item_vectors`` is :meth:`item_table`'s output."""
        # recency (distance from the most recent item) matters more than absolute position
        x, pad = self.history.inputs(item_vectors, item_seq, item_seq_len, self.history_position)
        x = self.dropout(self.history_norm(x))
        memory = self.encoder(x, src_key_padding_mask=pad)
        return memory, pad

    def decode_log_probs(self, memory, pad, prefix: torch.Tensor, max_tokens: int = 128) -> torch.Tensor:
        """Log-probabilities of every path position given the tokens before it.

        The ``M`` candidate prefixes of a user are packed into one decoder sequence with a
        block-diagonal causal mask, so the cross-attention keys and values of the user's
        history are computed once per user instead of once per candidate (the split
        candidates of training and the beams of decoding share the same history).

        Args:
            memory, pad: :meth:`encode_history` outputs for ``B`` users.
            prefix: ``[B, M, k]`` candidate prefixes (``k < T``), ``M`` per user.
            max_tokens: longest packed sequence; larger ``M`` is processed in chunks.

        Returns:
            ``[B, M, k+1, V]``: entry ``j`` is ``log p(token_j | history, prefix_<j)``.
        """
        return self._decode(memory, pad, prefix, max_tokens, last_only=False)

    def _decode(self, memory, pad, prefix: torch.Tensor, max_tokens: int, last_only: bool) -> torch.Tensor:
        """:meth:`decode_log_probs`; ``last_only``: the last position of each candidate only, ``[B, M, 1, V]``."""
        batch, m, k = prefix.shape
        per = k + 1
        chunk = max(1, max_tokens // per)
        if m > chunk:
            parts = [self._decode(memory, pad, prefix[:, i : i + chunk], max_tokens, last_only) for i in range(0, m, chunk)]
            return torch.cat(parts, dim=1)
        bos = torch.zeros(batch, m, 1, dtype=torch.long, device=prefix.device)
        tokens = torch.cat([bos, prefix], dim=2)
        x = self.token_embedding(tokens) + self.decoder_position.weight[:per]
        x = self.dropout(self.decoder_norm(x.reshape(batch, m * per, -1)))
        mask = packed_causal_mask(m, per, prefix.device)
        h = self.decoder(x, memory, tgt_mask=mask, memory_key_padding_mask=pad)
        if last_only:  # speed: beam search reads the last position only; the output layer and softmax
            h, per = h[:, per - 1 :: per], 1  # over V are most of a decoding step (docs/design.md, "Speed")
        logits = self.output(self.final_norm(h))
        return F.log_softmax(logits, dim=-1).reshape(batch, m, per, -1)

    # ---- speed (docs/design.md, "Speed on a 2-core CPU"): same values as the packed layout, less work
    def next_token_log_probs(self, memory, pad, prefix: torch.Tensor) -> torch.Tensor:
        return self._decode(memory, pad, prefix, 128, last_only=True)[..., 0, :]

    def sequence_nll(self, memory, pad, paths: torch.Tensor) -> torch.Tensor:
        """As :meth:`PathGenerator.sequence_nll`; candidates that share a prefix in every row (the budget
        splits of a target) share its decoder positions (:func:`~recbole_flexcode.model.generation.shared_prefix_tree`)."""
        tree = shared_prefix_tree(paths) if paths.shape[1] > 1 else None
        if tree is None or tree.n_nodes > 128:
            return super().sequence_nll(memory, pad, paths)
        rows = torch.arange(paths.shape[0], device=paths.device).unsqueeze(1)
        prev = (tree.depth - 1).clamp_min(0)
        tokens = torch.where(tree.depth > 0, paths[rows, tree.rep, prev], 0)  # [B, n]: BOS at depth 0
        x = self.token_embedding(tokens) + self.decoder_position.weight[tree.depth]
        x = self.dropout(self.decoder_norm(x))
        h = self.decoder(x, memory, tgt_mask=tree.blocked, memory_key_padding_mask=pad)
        return tree_nll(self.output(self.final_norm(h)).float(), tree, paths)  # float: under bf16 autocast too


# ---------------------------------------------------------------------------------- building


def codebook_projection(vectors: torch.Tensor, width: int, seed: int = 0) -> torch.Tensor:
    """``[c, width]`` map of code vectors ``[n, c]`` to the model width: an isometry (random orthonormal
    rows, fixed seed) when ``width >= c``, else the top-``width`` right singular vectors (the least-squares
    best rank-``width`` reconstruction of the vectors)."""
    c = vectors.shape[1]
    if width >= c:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(width, c, generator=gen, dtype=torch.float64))
        return q.t().to(vectors.dtype)
    _, _, vh = torch.linalg.svd(vectors.double(), full_matrices=False)
    return vh[:width].t().to(vectors.dtype)


@torch.no_grad()
def init_token_embeddings_from_codebooks(embedding: nn.Embedding, tokenizer, seed: int = 0) -> None:
    """Overwrite the code tokens' rows of ``embedding`` with the tokenizer's projected code vectors.

    Per source, all levels' vectors go through one :func:`codebook_projection` and one scale, chosen
    so their root-mean-square entry equals the standard deviation of the embedding's random
    initialisation: relative geometry within a source is kept (a pooled history item starts as the
    projection of its quantised latent ``Σ_l e_l``), both sources enter at the model's scale.
    BOS and disambiguation tokens keep their random rows.
    """
    layout, target = tokenizer.layout, float(embedding.weight.std())
    for name, vectors in tokenizer.code_vectors().items():
        levels, k, c = vectors.shape
        flat = vectors.detach().reshape(levels * k, c).float().cpu()
        proj = flat @ codebook_projection(flat, embedding.embedding_dim, seed)
        proj = proj * (target / proj.pow(2).mean().sqrt().clamp_min(1e-12))
        offset = layout.sem_offset if name == SEMANTIC else layout.cf_offset
        embedding.weight[offset: offset + levels * k] = proj.to(embedding.weight)


def build_generator(config, tokenizer, max_seq_length: int) -> PathGenerator:
    """The generator of ``config`` (``generator``, ``history_encoding``, sizes, ``init_token_embeddings_from_codebooks``)
    over ``tokenizer``'s vocabulary. Keys a config lacks (an older checkpoint's) take their defaults."""
    kind = config["generator"] or "transformer"
    history = config["history_encoding"] or "pooled"
    if kind not in GENERATORS:
        raise ConfigError(f"generator: unknown value '{kind}' (choose from {', '.join(GENERATORS)})")
    if history not in HISTORY_ENCODINGS:
        raise ConfigError(f"history_encoding: unknown value '{history}' (choose from {', '.join(HISTORY_ENCODINGS)})")
    sizes = dict(
        hidden_size=int(config["hidden_size"]), n_heads=int(config["n_heads"]), inner_size=int(config["inner_size"]),
        n_encoder_layers=int(config["n_encoder_layers"]), n_decoder_layers=int(config["n_decoder_layers"]),
        dropout=float(config["dropout_prob"]), history_encoding=history, path_source=tokenizer,
    )
    if kind == "transformer":
        generator = SemanticIDGenerator(tokenizer.vocab_size, tokenizer.path_length, max_seq_length, **sizes)
    else:
        from recbole_flexcode.model.t5_generator import T5SemanticIDGenerator  # transformers is imported only here

        head = config["head_size"]
        generator = T5SemanticIDGenerator(tokenizer.vocab_size, tokenizer.path_length, max_seq_length, **sizes,
                                          head_size=None if head is None else int(head))
    if config["init_token_embeddings_from_codebooks"]:
        init_token_embeddings_from_codebooks(generator.token_embedding, tokenizer)
    return generator
