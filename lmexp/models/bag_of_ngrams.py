"""fastText-style bag of n-grams (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification").

Position t's hidden state is its token's embedding plus one hashed embedding per n-gram
(n = 2..ngrams) ending at t. Mean-pooled over a text, that is fastText's sentence vector: a
strong, fast baseline for short-text classification, where a transformer trained from scratch
memorises a few thousand examples. It sees only tokens at or before t, so it is also a valid
causal LM (a neural n-gram model).
"""

import torch
from torch import nn

from lmexp.models import check_seq_len

HASH_MULTIPLIER = 1_000_003  # odd and large: consecutive token ids spread over the buckets


def ngram_buckets(input_ids: torch.Tensor, n: int, buckets: int,
                  attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] token ids → [B, T] bucket of the n-gram ending at each position; -1 where there is
    none (t < n - 1, or the n-gram touches padding)."""
    B, T = input_ids.shape
    hashed = torch.full((B, T), -1, dtype=torch.long, device=input_ids.device)
    if T < n:
        return hashed
    # Rolling polynomial hash of input_ids[t-n+1 .. t], reduced mod `buckets` after each token so
    # the running value stays far from int64 overflow.
    value = torch.zeros(B, T - n + 1, dtype=torch.long, device=input_ids.device)
    real = torch.ones(B, T - n + 1, dtype=torch.bool, device=input_ids.device)
    for offset in range(n):
        window = slice(offset, T - n + 1 + offset)
        value = (value * HASH_MULTIPLIER + input_ids[:, window]) % buckets
        if attention_mask is not None:
            real &= attention_mask[:, window].bool()
    hashed[:, n - 1:] = torch.where(real, value, -1)
    return hashed


class BagOfNgrams(nn.Module):
    """`encode` → [B, T, d_model] (token + n-gram embeddings); `forward` → next-token logits."""

    # A bag is read as a whole: classification averages it (fastText), not its last position.
    default_pooling = "mean"

    def __init__(self, vocab_size: int, max_seq_len: int, attention: str = "causal", d_model: int = 64,
                 ngrams: int = 2, buckets: int = 2**18, dropout: float = 0.0) -> None:
        super().__init__()
        if attention != "causal":
            raise ValueError("a bag of n-grams sees only the tokens up to each position: attention must be causal")
        if ngrams < 1:
            raise ValueError(f"ngrams must be >= 1 (1 = unigrams only), got {ngrams}")
        self.vocab_size, self.max_seq_len, self.attention, self.hidden_size = vocab_size, max_seq_len, attention, d_model
        self.ngrams, self.buckets = ngrams, buckets
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        # One table shared by every n > 1, as fastText does (-bucket); None for unigrams only.
        self.ngram_emb = nn.Embedding(buckets, d_model) if ngrams > 1 else None
        self.dropout = nn.Dropout(dropout)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        for weight in self.parameters():
            nn.init.normal_(weight, std=d_model ** -0.5)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_seq_len(input_ids, self.max_seq_len)
        x = self.tok_emb(input_ids)
        for n in range(2, self.ngrams + 1):
            bucket = ngram_buckets(input_ids, n, self.buckets, attention_mask)
            present = (bucket >= 0).unsqueeze(-1).to(x.dtype)
            x = x + self.ngram_emb(bucket.clamp(min=0)) * present
        return self.dropout(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(self.encode(input_ids, attention_mask))
