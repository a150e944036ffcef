"""Language models with one shared contract, so objectives and heads never care which is chosen.

Every model is an ``nn.Module`` built from keyword arguments (Hydra ``_target_``) that takes
``vocab_size``, ``max_seq_len`` and ``attention`` ("causal" or "bidirectional"), exposes those
three plus ``hidden_size`` as attributes, and provides

- ``forward(input_ids [B,T], attention_mask [B,T] | None) -> logits [B,T,vocab_size]``
- ``encode(input_ids [B,T], attention_mask [B,T] | None) -> hidden states [B,T,hidden_size]``

where ``attention_mask`` is 1 for real tokens and 0 for padding. A model may name the pooling a
classifier should use by default (``default_pooling``, e.g. "mean" for a bag of n-grams).
Model modules are imported only when chosen (``lmexp.models.hf`` pulls in transformers, which
takes seconds).
"""

import torch

ATTENTION_TYPES = ("causal", "bidirectional")


def check_choice(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name}={value!r}; valid values: {', '.join(valid)}")


def check_seq_len(input_ids: torch.Tensor, max_seq_len: int) -> None:
    # Fail with a readable message instead of an index error deep inside a position embedding.
    if input_ids.shape[1] > max_seq_len:
        raise ValueError(f"sequence length {input_ids.shape[1]} exceeds model.max_seq_len={max_seq_len}")
