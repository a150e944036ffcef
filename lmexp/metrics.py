"""Token-level language-model metrics and sequence-classification metrics as torchmetrics objects.

Every metric here takes ``update(logits [N, C], target [N])``, so each family fits in one
``MetricCollection``. For language modelling the N rows are only the predicted positions: the
caller drops ``label == -100`` positions before calling ``update``.

All states are sums, so each metric is exact over a whole split (token-weighted, never a mean of
batch means) and syncs under DDP with ``dist_reduce_fx="sum"``.

Speed: ``lm_metrics`` computes the per-token cross-entropy and the argmax once per batch and hands
them to every token metric (``nll=``, ``preds=``): over a [N, V] batch of logits those two passes
are the metrics' whole cost, and four metrics each doing their own took ~half as long as the
model's forward pass at V = 4096.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.wrappers import LambdaInputTransformer


def token_nll(logits: Tensor, target: Tensor) -> Tensor:
    # float32 because bf16 logits lose too much precision in the log-sum-exp.
    return F.cross_entropy(logits.float(), target, reduction="none")


class TokenNLL(MeanMetric):
    """Mean negative log-likelihood per token over everything seen since the last reset."""

    def update(self, logits: Tensor, target: Tensor, nll: Tensor | None = None,  # type: ignore[override]
               preds: Tensor | None = None) -> None:
        # One value per token with weight 1: the running mean is then sum(CE) / n_tokens.
        super().update(token_nll(logits, target) if nll is None else nll)


class TokenPerplexity(TokenNLL):
    """exp(token-weighted mean NLL) over the whole split.

    Not torchmetrics' ``Perplexity``: it takes log(softmax(...)), which overflows to inf for tokens
    whose probability underflows in float32; cross-entropy on logits does not.
    """

    def compute(self) -> Tensor:
        return super().compute().exp()


class TokenAccuracy(Metric):
    """Micro top-1 accuracy: correct tokens / all tokens (two scalar counters, one argmax per update)."""

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor, nll: Tensor | None = None, preds: Tensor | None = None) -> None:
        preds = logits.argmax(dim=-1) if preds is None else preds
        self.correct += (preds == target).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return self.correct / self.total


class TokenMacroF1(Metric):
    """Macro F1 over the classes that occur in the targets or the predictions of the split.

    Classes absent from both have no F1 and are left out of the average. The state is three
    length-V count vectors; torchmetrics' ``MulticlassF1Score`` builds a V x V confusion matrix,
    which at GPT-2's V = 50257 is ~20 GB. With nothing seen yet, ``compute`` returns nan.
    """

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor, nll: Tensor | None = None, preds: Tensor | None = None) -> None:
        preds = logits.argmax(dim=-1) if preds is None else preds
        hit = preds == target
        self.tp += torch.bincount(target[hit], minlength=self.num_classes)
        self.fp += torch.bincount(preds[~hit], minlength=self.num_classes)
        self.fn += torch.bincount(target[~hit], minlength=self.num_classes)

    def compute(self) -> Tensor:
        # F1 = 2tp / (2tp + fp + fn); the denominator is > 0 exactly for the classes that occur.
        denominator = 2 * self.tp + self.fp + self.fn
        present = denominator > 0
        return (2 * self.tp[present] / denominator[present]).mean()


class TokenMetrics(MetricCollection):
    """The token metrics of one stage; `update` computes the cross-entropy and the argmax once."""

    def update(self, logits: Tensor, target: Tensor) -> None:  # type: ignore[override]
        nll, preds = token_nll(logits, target), logits.argmax(dim=-1)
        for metric in self.values(copy_state=False):
            metric.update(logits, target, nll=nll, preds=preds)


def lm_metrics(num_classes: int) -> MetricCollection:
    """Token metrics for a vocabulary of ``num_classes``: keys loss, perplexity, acc, f1."""
    return TokenMetrics(
        {
            "loss": TokenNLL(),
            "perplexity": TokenPerplexity(),
            "acc": TokenAccuracy(num_classes),
            "f1": TokenMacroF1(num_classes),
        },
        compute_groups=False,  # sharing is done in update
    )


def _positive_class_prob(logits: Tensor) -> Tensor:
    # Binary metrics threshold a probability at 0.5, which is the same decision as argmax over
    # two logits. A named function rather than a lambda so the collection stays picklable.
    return logits.softmax(dim=-1)[:, 1]


def classification_metrics(num_classes: int) -> MetricCollection:
    """Sequence-classification metrics: keys acc, f1, precision, recall, mcc.

    ``update(logits [N, C], target [N])``. Two classes use the binary metrics (positive class 1);
    more use macro averages, except accuracy, which stays plain (micro) accuracy, because macro
    accuracy is the same number as macro recall.
    """
    if num_classes == 2:
        binary = {
            "acc": BinaryAccuracy(),
            "f1": BinaryF1Score(),
            "precision": BinaryPrecision(),
            "recall": BinaryRecall(),
            "mcc": BinaryMatthewsCorrCoef(),
        }
        return MetricCollection(
            {
                name: LambdaInputTransformer(metric, transform_pred=_positive_class_prob)
                for name, metric in binary.items()
            }
        )
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "mcc": MulticlassMatthewsCorrCoef(num_classes),
        }
    )
