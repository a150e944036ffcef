"""A tiny causal language model: token embedding → GRU → linear head.

What lmexp needs of a model (lmexp/models/__init__.py): built from keyword arguments, taking
`vocab_size` (lmexp passes the tokenizer's size); attributes `vocab_size`, `max_seq_len`,
`attention`; `forward(input_ids, attention_mask) -> logits [B, T, vocab_size]`; and, only under
objective=classification, `encode(...) -> [B, T, hidden_size]` and `hidden_size`.
"""

from __future__ import annotations

import torch
from torch import nn

from lmexp.errors import ConfigError
from lmexp.models import check_seq_len


class TinyGRU(nn.Module):
    """A GRU reads left to right (position t sees tokens 0..t only), so it is a causal model. It takes
    `attention` only so that its config can state it: lmexp then checks the model against the
    objective before anything loads."""

    def __init__(self, vocab_size: int, hidden_size: int = 64, num_layers: int = 1, max_seq_len: int = 1024,
                 dropout: float = 0.0, attention: str = "causal") -> None:
        super().__init__()
        if attention != "causal":
            raise ConfigError(f"model.attention={attention}: TinyGRU reads left to right, so it is causal only")
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1, got {hidden_size} and {num_layers}")
        self.attention = attention
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len  # no position embedding, so only a check (lmexp compares data.block_size)
        self.hidden_size = hidden_size
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.rnn = nn.GRU(hidden_size, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_seq_len(input_ids, self.max_seq_len)
        x = self.drop(self.embed(input_ids))
        if attention_mask is not None:  # padding (0) contributes nothing
            x = x * attention_mask.unsqueeze(-1).to(x.dtype)
        out, _ = self.rnn(x)
        return self.drop(out)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encode(input_ids, attention_mask))
