"""Sequence classification: one label per example, predicted from a pooled representation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from lmexp.errors import ConfigError
from lmexp.metrics import classification_metrics
from lmexp.models.classifier import Classifier
from lmexp.objectives.base import Objective


def class_weight_tensor(class_weights: str | Sequence[float] | None, label_counts: Sequence[int]) -> torch.Tensor | None:
    """None (plain cross-entropy), "balanced" (n / (classes × count): every class weighs the same
    in total, as scikit-learn's "balanced"), or one weight per label in label order."""
    if class_weights is None:
        return None
    counts = torch.tensor(label_counts, dtype=torch.float)
    if class_weights == "balanced":
        return counts.sum() / (len(counts) * counts.clamp(min=1))
    if isinstance(class_weights, str) or len(class_weights) != len(counts):
        raise ConfigError(
            f"objective.class_weights must be null, balanced, or a list of {len(counts)} weights "
            f"(one per label, in label order); got {class_weights}"
        )
    return torch.tensor(list(class_weights), dtype=torch.float)


class SequenceClassification(Objective):
    """Cross-entropy over example labels, optionally class-weighted; metrics acc, f1 (binary for
    two classes, macro otherwise), precision, recall, mcc.

    Serves causal decoders and bidirectional encoders alike. `pooling` and `head_dropout` describe
    the head `wrap_model` puts on the model (lmexp.models.classifier.Classifier): `auto` pools the
    mean of an encoder's states and the last real token of a decoder's.
    """

    name = "classification"
    attention = "any"
    labelled = True

    def __init__(
        self,
        attention: str = "any",
        monitor: str = "val/acc",
        monitor_mode: str = "max",
        pooling: str = "auto",
        head_dropout: float = 0.1,
        class_weights: str | Sequence[float] | None = None,
    ) -> None:
        super().__init__(attention, monitor, monitor_mode)
        self.pooling = pooling
        self.head_dropout = head_dropout
        self.class_weights_spec = class_weights
        self.labels: list = []
        self.class_weights: torch.Tensor | None = None

    def bind(self, tokenizer, labels: list | None = None, label_counts: list[int] | None = None) -> None:
        labels = list(labels or [])
        if len(labels) < 2:
            raise ConfigError(f"data: classification needs at least two labels in the train split, found {labels}")
        super().bind(tokenizer)
        self.labels = labels
        self.pad_token_id = tokenizer.pad_token_id
        self.class_weights = class_weight_tensor(self.class_weights_spec, label_counts or [1] * len(labels))

    def wrap_model(self, model: nn.Module, freeze_backbone: bool = False) -> nn.Module:
        return Classifier(model, len(self.labels), self.pooling, self.head_dropout, freeze_backbone)

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        """Pad each batch to its longest example (right padding, so a decoder's real tokens never
        attend to padding); attention_mask is 1 on real tokens."""
        longest = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"], dtype=torch.long)
            attention_mask[row, :n] = 1
        labels = torch.tensor([e["label"] for e in examples], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits.float(), batch["labels"], weight=weight)

    def predicted(self, logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, C] and labels [B]: every example is predicted."""
        return logits.float(), batch["labels"]

    def metrics(self, num_classes: int) -> MetricCollection:
        return classification_metrics(num_classes)
