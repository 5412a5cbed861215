"""The autoregressive semantic-ID generator (FlexCode §4.4, ARG).

An encoder-decoder Transformer in the spirit of TIGER (Rajput et al. 2023):

* the **encoder** reads the user's history, one vector per item, each the sum of the item's
  (masked) collaborative and semantic token embeddings — the "combined codes" ``C_≤t``;
* the **decoder** generates the next item's token path ``(c_{t+1,1} .. c_{t+1,L}, disamb)``
  autoregressively, attending to the encoded history:
  ``p(c_{t+1,k} | C_≤t, c_{t+1,<k})``.

:meth:`SemanticIDGenerator.decode_log_probs` returns log-probabilities for *all* positions of a
batch of candidate prefixes at once; the same function drives training (teacher forcing),
constrained beam search and exact scoring (:mod:`recbole_flexcode.model.generation`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SemanticIDGenerator(nn.Module):
    """Encoder over history items, decoder over the next item's tokens.

    Args:
        vocab_size: size of the shared token vocabulary (:class:`~recbole_flexcode.tokenizer.vocab.TokenLayout`).
        path_length: tokens per item path ``T = L + 1``.
        max_seq_length: longest history.
        hidden_size, n_heads, inner_size: Transformer width, heads and feed-forward width.
        n_encoder_layers, n_decoder_layers: depth of each side.
        dropout: dropout in embeddings and Transformer layers.
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
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def item_table(self, cf_tokens, sem_tokens, cf_mask, sem_mask) -> torch.Tensor:
        """Combined representation of every item (FlexCode §4.3): Σ masked token embeddings, ``[N, d]``."""
        cf = self.token_embedding(cf_tokens) * cf_mask.unsqueeze(-1)
        sem = self.token_embedding(sem_tokens) * sem_mask.unsqueeze(-1)
        return cf.sum(1) + sem.sum(1)

    def encode_history(self, item_vectors: torch.Tensor, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """Encode histories ``[B, S]`` (left-aligned, 0 = padding) into memory ``[B, S, d]`` and its padding mask."""
        batch, length = item_seq.shape
        positions = torch.arange(length, device=item_seq.device).unsqueeze(0)
        pad = positions >= item_seq_len.unsqueeze(1)
        # distance from the most recent item: recency matters more than absolute position
        recency = (item_seq_len.unsqueeze(1) - 1 - positions).clamp_min(0)
        x = item_vectors[item_seq] + self.history_position(recency)
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
        batch, m, k = prefix.shape
        per = k + 1
        chunk = max(1, max_tokens // per)
        if m > chunk:
            parts = [self.decode_log_probs(memory, pad, prefix[:, i : i + chunk], max_tokens) for i in range(0, m, chunk)]
            return torch.cat(parts, dim=1)
        bos = torch.zeros(batch, m, 1, dtype=torch.long, device=prefix.device)
        tokens = torch.cat([bos, prefix], dim=2)
        x = self.token_embedding(tokens) + self.decoder_position.weight[:per]
        x = self.dropout(self.decoder_norm(x.reshape(batch, m * per, -1)))
        block = torch.arange(m * per, device=prefix.device) // per
        idx = torch.arange(m * per, device=prefix.device)
        # True = may not attend: other candidates, or later tokens of the same candidate
        mask = (block.unsqueeze(1) != block.unsqueeze(0)) | (idx.unsqueeze(0) > idx.unsqueeze(1))
        h = self.decoder(x, memory, tgt_mask=mask, memory_key_padding_mask=pad)
        logits = self.output(self.final_norm(h))
        return F.log_softmax(logits, dim=-1).reshape(batch, m, per, -1)

    def sequence_nll(self, memory, pad, paths: torch.Tensor) -> torch.Tensor:
        """``L_ARG`` per candidate: ``−Σ_k log p(path_k | history, path_<k)`` for paths ``[B, M, T]`` → ``[B, M]``."""
        log_probs = self.decode_log_probs(memory, pad, paths[..., :-1])
        return -log_probs.gather(-1, paths.unsqueeze(-1)).squeeze(-1).sum(-1)
