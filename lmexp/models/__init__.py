"""Language models with one shared contract, so objectives and heads never care which is chosen.

Every model is an ``nn.Module`` built from keyword arguments (Hydra ``_target_``) that takes
``vocab_size``, ``max_seq_len`` and ``attention`` ("causal" or "bidirectional"), exposes those
three plus ``hidden_size`` as attributes, and provides

- ``forward(input_ids [B,T], attention_mask [B,T] | None) -> logits [B,T,vocab_size]``
- ``encode(input_ids [B,T], attention_mask [B,T] | None) -> hidden states [B,T,hidden_size]``

where ``attention_mask`` is 1 for real tokens and 0 for padding. A causal model's logits at a
position depend only on the tokens up to it (sampling batches prompts right-padded, with no mask);
it may also offer a key/value cache for sampling, ``decoding_cache`` and ``decode`` (as
``Transformer`` does). A model may name the pooling a
classifier should use by default (``default_pooling``, e.g. "mean" for a bag of n-grams). A model
of your own (``model._target_: mypkg.MyModel``) follows the same contract; ``check_model`` says in
one line what it lacks.
Model modules are imported only when chosen (``lmexp.models.hf`` pulls in transformers, which
takes seconds).
"""

import torch
from torch import nn

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


def check_outputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, target: str,
                  labelled: bool) -> torch.Tensor:
    """Run the model once on real rows (the caller turns gradients and dropout off) and check what it
    returns against the contract above: logits [B, T, vocab_size], or under a classification head
    the backbone's `encode` -> [B, T, hidden_size]; floating, finite. Returns what the objective gets."""
    if labelled:
        backbone = getattr(model, "backbone", model)
        hidden = _run(backbone, "encode", target, input_ids, attention_mask)
        _expect(hidden, [*input_ids.shape, backbone.hidden_size], f"{target}.encode", "hidden states [B, T, hidden_size]")
        return _run(model, "forward", target, input_ids, attention_mask)
    logits = _run(model, "forward", target, input_ids, attention_mask)
    _expect(logits, [*input_ids.shape, model.vocab_size], f"{target}.forward", "logits [B, T, vocab_size]")
    return logits


def _run(model: nn.Module, method: str, target: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
    if method == "forward" and type(model).forward is nn.Module.forward:
        raise ConfigError(f"model: {target} has no forward method (nn.Module's raises NotImplementedError); expected "
                          f"forward(input_ids [B, T], attention_mask [B, T] | None) -> logits [B, T, vocab_size] "
                          f"(see lmexp.models: the model contract)")
    try:
        return getattr(model, method)(input_ids, attention_mask)
    except Exception as err:  # the traceback goes to the run's log (raise ... from)
        message = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise ConfigError(f"model: {target}.{method} failed on {input_ids.shape[0]} rows of real data "
                          f"(input_ids {list(input_ids.shape)}): {type(err).__name__}: {message}") from err


def _expect(value, shape: list[int], what: str, expected: str) -> None:
    contract = "(see lmexp.models: the model contract)"
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"model: {what} returned a {type(value).__name__}; expected a tensor, {expected} = {shape} "
                          f"{contract}")
    if list(value.shape) != shape or not value.is_floating_point():
        dtype = str(value.dtype).removeprefix("torch.")
        raise ConfigError(f"model: {what} returned a {dtype} tensor {list(value.shape)}; expected {expected} = {shape}, "
                          f"floating {contract}")
    if not torch.isfinite(value).all():
        raise ConfigError(f"model: {what} returned NaN or inf on {shape[0]} rows of real data (before any training) "
                          f"{contract}")


def num_parameters(model: torch.nn.Module) -> int:
    # parameters() yields each shared tensor once, so a tied head is not double counted.
    return sum(p.numel() for p in model.parameters())
