"""Language models with one shared contract, so objectives and heads never care which is chosen.

Every model is an ``nn.Module`` built from keyword arguments (Hydra ``_target_``) that takes
``vocab_size``, ``max_seq_len`` and ``attention`` ("causal" or "bidirectional"), exposes those
three plus ``hidden_size`` as attributes, and provides

- ``forward(input_ids [B,T], attention_mask [B,T] | None) -> logits [B,T,vocab_size]``
- ``encode(input_ids [B,T], attention_mask [B,T] | None) -> hidden states [B,T,hidden_size]``

where ``attention_mask`` is 1 for real tokens and 0 for padding. A model may name the pooling a
classifier should use by default (``default_pooling``, e.g. "mean" for a bag of n-grams). A model
of your own (``model._target_: mypkg.MyModel``) follows the same contract; ``check_model`` says in
one line what it lacks.
Model modules are imported only when chosen (``lmexp.models.hf`` pulls in transformers, which
takes seconds).
"""

import torch

from lmexp.errors import ConfigError

ATTENTION_TYPES = ("causal", "bidirectional")


def check_choice(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name}={value!r}; valid values: {', '.join(valid)}")


def check_seq_len(input_ids: torch.Tensor, max_seq_len: int) -> None:
    # Fail with a readable message instead of an index error deep inside a position embedding.
    if input_ids.shape[1] > max_seq_len:
        raise ValueError(f"sequence length {input_ids.shape[1]} exceeds model.max_seq_len={max_seq_len}")


def check_model(model: object, target: str, needs_encode: bool = False) -> None:
    """One line naming what a model (a plug-in's, say) lacks of the contract above; `encode` and
    `hidden_size` only matter under a classification head."""
    needed = ["forward"] + (["encode"] if needs_encode else [])
    missing = [f"method {name}" for name in needed if not callable(getattr(model, name, None))]
    attributes = ["vocab_size", "max_seq_len", "attention"] + (["hidden_size"] if needs_encode else [])
    missing += [f"attribute {name}" for name in attributes if not hasattr(model, name)]
    if missing:
        raise ConfigError(f"model: {target} lacks {', '.join(missing)} (see lmexp.models: the model contract)")
    if model.attention not in ATTENTION_TYPES:
        raise ConfigError(f"model: {target}.attention={model.attention!r}; expected one of {', '.join(ATTENTION_TYPES)}")


def num_parameters(model: torch.nn.Module) -> int:
    # parameters() yields each shared tensor once, so a tied head is not double counted.
    return sum(p.numel() for p in model.parameters())
