"""What every token-prediction objective shares: the loss and metric inputs over labelled positions.

An objective owns how a batch is formed (`collate`), the loss and the metrics; it knows
nothing of Lightning or of the model's internals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from lmexp.errors import ConfigError
from lmexp.metrics import lm_metrics

IGNORE = -100  # label of positions that are not predicted (PyTorch's cross_entropy default)


class TokenObjective:
    """Base of causal and masked LM: logits [B, T, V] against labels [B, T] (IGNORE = skip)."""

    name: str
    attention: str  # the kind of model the objective needs: "causal" or "bidirectional"
    extra_tokens: int = 0  # tokens per packed row beyond block_size (causal LM needs one for the shift)

    def __init__(self, tokenizer, attention: str, monitor: str = "val/perplexity", monitor_mode: str = "min") -> None:
        if attention != self.attention:
            raise ConfigError(f"objective.attention must be {self.attention} for objective={self.name}, got {attention}")
        self.vocab_size = len(tokenizer)
        self.monitor = monitor
        self.monitor_mode = monitor_mode

    def prepare_batch(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Per-step work on the device, after the loader (e.g. random masking). Default: none."""
        return batch

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE)

    def predicted(self, logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [N, V] and targets [N] of the predicted positions only."""
        labels = batch["labels"].flatten()
        keep = labels != IGNORE
        if keep.all():  # every position is predicted (causal LM): a view, not a copy of [N, V] logits
            return logits.flatten(0, 1).float(), labels
        return logits.flatten(0, 1)[keep].float(), labels[keep]

    def metrics(self, num_classes: int) -> MetricCollection:
        """Metrics over `num_classes` = the model's output width (may exceed the tokenizer's)."""
        return lm_metrics(num_classes)

    def tokens_in(self, batch: dict) -> int:
        return batch["input_ids"].numel()
