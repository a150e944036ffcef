"""Deliberately wrong plug-ins: each breaks one contract, and lmexp says so in one line, as it
does for its own models and objectives (tests/test_plugins.py)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from lmexp_plugin_example.model import TinyGRU
from lmexp_plugin_example.objective import SmoothedLM


class NoContextGRU(TinyGRU):
    """Forgets to say its context length: no `max_seq_len` attribute."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        del self.max_seq_len


class PeekingGRU(TinyGRU):
    """Claims to read the whole sequence at once (an encoder), whatever its config says: it cannot
    serve causal LM. lmexp sees it on the built model."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attention = "bidirectional"


class NoLossObjective:
    """Everything an objective needs but `loss` (and not a subclass of lmexp's Objective)."""

    name = "no_loss"
    attention = "causal"
    labelled = False
    extra_tokens = 1

    def __init__(self, monitor: str = "val/perplexity", monitor_mode: str = "min", **ignored) -> None:
        self.monitor, self.monitor_mode = monitor, monitor_mode

    def bind(self, tokenizer, labels=None, label_counts=None) -> None:
        self.tokenizer = tokenizer

    def collate(self, rows):
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}

    def prepare_batch(self, batch, generator=None):
        return batch

    def predicted(self, logits, batch):
        return logits.flatten(0, 1).float(), batch["labels"].flatten()

    def metrics(self, num_classes):
        from lmexp.metrics import lm_metrics

        return lm_metrics(num_classes)

    def wrap_model(self, model, freeze_backbone=False):
        return model


class NoForwardGRU(TinyGRU):
    """Has `encode` but forgets `forward`: nn.Module's own raises NotImplementedError. lmexp runs the
    model once on real rows before training and says so in one line."""

    forward = nn.Module.forward


class HiddenStatesGRU(TinyGRU):
    """Returns the GRU's hidden states [B, T, hidden_size] where logits [B, T, vocab_size] are due
    (the head forgotten): caught by the same forward on real rows."""

    def forward(self, input_ids, attention_mask=None):
        return self.encode(input_ids, attention_mask)


class PerTokenLoss(SmoothedLM):
    """Returns the loss of every position ([B*T], reduction="none") instead of their mean: not a
    scalar, so Lightning could not backpropagate it."""

    def loss(self, logits, batch):
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), reduction="none")
