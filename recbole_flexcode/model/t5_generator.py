"""A T5 encoder-decoder generator over semantic IDs (config ``generator: t5``; docs/design.md, "Generator options").

The generator of TIGER, GRID and ActionPiece (SPEC §6) is a T5 encoder-decoder. This one is built
from ``transformers``' T5 stacks (``T5Config`` + ``T5Stack``: pre-norm RMSNorm blocks, bucketed
relative position bias in self-attention, ReLU feed-forward), from config and randomly
initialised — nothing is downloaded. Around the two stacks it has the same interface as
:class:`~recbole_flexcode.model.generator.SemanticIDGenerator`, so FlexCode, decoding and the
analysis use either unchanged:

* our own token embedding (one table for history and decoder inputs, so FlexCode's item table and
  ``init_token_embeddings_from_codebooks`` see one matrix) and an untied output layer;
* the history (:mod:`recbole_flexcode.model.history`) enters the encoder as ``inputs_embeds``,
  with the recency embedding on top of T5's relative positions (relative positions give order,
  not "how far from the latest item" once histories have different lengths);
* a user's candidate prefixes are packed into one decoder sequence with a block-diagonal causal
  mask, as in the Transformer generator. T5's relative bias only depends on the distance between
  two positions of the same candidate, which packing leaves unchanged, so packed and separate
  decoding agree (tests/test_generators.py).

Sizes: ``d_model = hidden_size``, ``num_heads = n_heads``, ``d_kv = head_size`` (default
``hidden_size / n_heads``), ``d_ff = inner_size``, ``num_layers = n_encoder_layers``,
``num_decoder_layers = n_decoder_layers``, ``dropout_rate = dropout``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers import T5Config
from transformers.models.t5.modeling_t5 import T5Stack

from recbole_flexcode.model.generator import PathGenerator, packed_causal_mask
from recbole_flexcode.model.history import build_history


def _stack(config: T5Config, decoder: bool) -> T5Stack:
    cfg = copy.deepcopy(config)
    cfg.is_decoder, cfg.use_cache = decoder, False
    if decoder:
        cfg.num_layers = config.num_decoder_layers
    stack = T5Stack(cfg)
    stack.embed_tokens = None  # inputs come as embeddings: no second vocabulary table
    return stack


class T5SemanticIDGenerator(PathGenerator):
    """T5 encoder over the history, T5 decoder over the next item's path (see module docstring).

    Args: as :class:`~recbole_flexcode.model.generator.SemanticIDGenerator`, plus ``head_size``
    (T5's ``d_kv``; ``None``: ``hidden_size // n_heads``) and ``feed_forward`` (T5's
    ``feed_forward_proj``: ``relu``, T5 v1.0 and TIGER, or ``gated-gelu``, T5 v1.1).
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
        head_size: int | None = None,
        feed_forward: str = "relu",
    ):
        super().__init__()
        if head_size is None:
            if hidden_size % n_heads:
                raise ValueError(f"hidden_size ({hidden_size}) must be divisible by n_heads ({n_heads}), or give head_size")
            head_size = hidden_size // n_heads
        self.hidden_size = hidden_size
        self.path_length = path_length
        self.config = T5Config(
            vocab_size=vocab_size, d_model=hidden_size, d_kv=head_size, d_ff=inner_size, num_layers=n_encoder_layers,
            num_decoder_layers=n_decoder_layers, num_heads=n_heads, dropout_rate=dropout,
            feed_forward_proj=feed_forward, use_cache=False, decoder_start_token_id=0, pad_token_id=0,
        )
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.history_position = nn.Embedding(max_seq_length, hidden_size)
        self.history = build_history(history_encoding, path_length, hidden_size, path_source)
        self.encoder = _stack(self.config, decoder=False)  # T5's own initialisation (factor 1)
        self.decoder = _stack(self.config, decoder=True)
        self.output = nn.Linear(hidden_size, vocab_size, bias=False)
        # T5 scale: unit-variance input embeddings (as T5's shared table); the untied output layer at
        # std d^-1/2, i.e. the initial logits of T5's tied head with its d^-1/2 rescaling
        for emb in (self.token_embedding, self.history_position, *self.history.modules()):
            if isinstance(emb, nn.Embedding):
                nn.init.normal_(emb.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.output.weight, mean=0.0, std=hidden_size ** -0.5)

    def encode_history(self, item_vectors, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """Encode histories ``[B, S]`` (left-aligned, 0 = padding) into memory ``[B, S', d]`` and its padding mask."""
        x, pad = self.history.inputs(item_vectors, item_seq, item_seq_len, self.history_position)
        memory = self.encoder(inputs_embeds=x, attention_mask=(~pad).long()).last_hidden_state
        return memory, pad

    def decode_log_probs(self, memory, pad, prefix: torch.Tensor, max_tokens: int = 128) -> torch.Tensor:
        """``[B, M, k+1, V]``: entry ``j`` is ``log p(token_j | history, prefix_<j)`` for prefixes ``[B, M, k]``
        (packed per user, ``max_tokens`` decoder positions at a time; see the Transformer generator)."""
        batch, m, k = prefix.shape
        per = k + 1
        chunk = max(1, max_tokens // per)
        if m > chunk:
            parts = [self.decode_log_probs(memory, pad, prefix[:, i : i + chunk], max_tokens) for i in range(0, m, chunk)]
            return torch.cat(parts, dim=1)
        bos = torch.zeros(batch, m, 1, dtype=torch.long, device=prefix.device)
        x = self.token_embedding(torch.cat([bos, prefix], dim=2)).reshape(batch, m * per, -1)
        # an additive 4D mask: transformers passes a 4D mask through as it is, to eager and sdpa attention alike
        blocked = packed_causal_mask(m, per, prefix.device)
        mask = torch.zeros(1, 1, m * per, m * per, dtype=x.dtype, device=x.device)
        mask = mask.masked_fill(blocked, torch.finfo(x.dtype).min)
        h = self.decoder(inputs_embeds=x, attention_mask=mask, encoder_hidden_states=memory,
                         encoder_attention_mask=(~pad).long()).last_hidden_state
        return F.log_softmax(self.output(h), dim=-1).reshape(batch, m, per, -1)
