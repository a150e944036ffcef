"""The objective contract, which lmexp's module, build and data code rely on, and what the token
objectives (causal and masked LM) share.

An objective owns how a batch is formed (`collate`), its per-step device work (`prepare_batch`),
the loss and the metrics; it knows nothing of Lightning or of the model's internals. It is built
from its config alone (conf/objective/*.yaml, `_target_`), before the data module, which takes its
collator; once the data is tokenized, `bind` gives it the tokenizer (and, for labelled data, the
labels and their train counts). An objective of your own may subclass `Objective` or just provide
what it lists; `check_objective` says in one line what is missing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from lmexp.errors import ConfigError
from lmexp.metrics import lm_metrics

IGNORE = -100  # label of positions that are not predicted (PyTorch's cross_entropy default)
ATTENTIONS = ("causal", "bidirectional", "any")  # "any": the objective serves both kinds of model
METHODS = ("bind", "collate", "prepare_batch", "loss", "predicted", "metrics", "wrap_model")
ATTRIBUTES = ("name", "attention", "labelled", "extra_tokens", "monitor", "monitor_mode")


class Objective:
    """The contract. Attributes:

    - `name`: what the run is (causal_lm, masked_lm, classification, ...): W&B job type, tool checks;
    - `attention`: the kind of model it needs, "causal", "bidirectional" or "any";
    - `labelled`: True for labelled examples (a classification data module), False for packed token blocks;
    - `extra_tokens`: tokens per packed row beyond data.block_size (causal LM: one, for the shift);
    - `monitor`, `monitor_mode`: the metric a best checkpoint / early stop watches, and min or max.

    Methods: `bind(tokenizer, labels, label_counts)`, `collate(rows) -> batch`,
    `prepare_batch(batch, generator) -> batch`, `loss(logits, batch)`, `predicted(logits, batch) ->
    (logits [N, C], targets [N])`, `metrics(num_classes) -> MetricCollection`, `wrap_model(model,
    freeze_backbone) -> model` (classification puts a head on; the others return the model).
    """

    name: str
    attention: str
    labelled: bool = False
    extra_tokens: int = 0

    def __init__(self, attention: str, monitor: str = "val/loss", monitor_mode: str = "min") -> None:
        if attention != self.attention:
            raise ConfigError(f"objective.attention must be {self.attention} for objective={self.name}, got {attention}")
        self.monitor = monitor
        self.monitor_mode = monitor_mode

    def bind(self, tokenizer, labels: list | None = None, label_counts: list[int] | None = None) -> None:
        """Called once the data is tokenized, before training (default: nothing to take from it)."""

    def collate(self, rows) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prepare_batch(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Per-step work on the device, after the loader (e.g. random masking). Default: none."""
        return batch

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def predicted(self, logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def metrics(self, num_classes: int) -> MetricCollection:
        raise NotImplementedError

    def wrap_model(self, model: nn.Module, freeze_backbone: bool = False) -> nn.Module:
        if freeze_backbone:
            raise ConfigError(f"model.freeze_backbone=true trains only a classification head: "
                              f"objective={self.name} has none (use objective=classification)")
        return model


def check_objective(objective: object, target: str) -> None:
    """One line naming what an objective (a plug-in's, say) lacks of the contract."""
    missing = [f"method {m}" for m in METHODS if not callable(getattr(objective, m, None))]
    missing += [f"attribute {a}" for a in ATTRIBUTES if not hasattr(objective, a)]
    if missing:
        raise ConfigError(f"objective: {target} lacks {', '.join(missing)} (see lmexp.objectives.base.Objective)")
    if objective.attention not in ATTENTIONS:
        raise ConfigError(f"objective: {target}.attention={objective.attention!r}; expected one of {', '.join(ATTENTIONS)}")


def check_loss(objective: Objective, target: str, output: torch.Tensor, batch: dict) -> None:
    """The objective's loss once on the model's output for real rows (no gradient): a finite scalar."""
    try:
        loss = objective.loss(output, batch)
    except Exception as err:  # the traceback goes to the run's log (raise ... from)
        message = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise ConfigError(f"objective: {target}.loss failed on the model's output {list(output.shape)}: "
                          f"{type(err).__name__}: {message}") from err
    contract = "expected a scalar tensor (shape []), floating (see lmexp.objectives.base.Objective)"
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(f"objective: {target}.loss returned a {type(loss).__name__}; {contract}")
    if loss.dim() != 0 or not loss.is_floating_point():
        dtype = str(loss.dtype).removeprefix("torch.")
        raise ConfigError(f"objective: {target}.loss returned a {dtype} tensor {list(loss.shape)}; {contract}")
    if not torch.isfinite(loss):
        raise ConfigError(f"objective: {target}.loss returned {loss.item()} on the untrained model's output; "
                          f"expected a finite loss")


class TokenObjective(Objective):
    """Base of causal and masked LM: logits [B, T, V] against labels [B, T] (IGNORE = skip)."""

    def __init__(self, attention: str, monitor: str = "val/perplexity", monitor_mode: str = "min") -> None:
        super().__init__(attention, monitor, monitor_mode)

    def bind(self, tokenizer, labels: list | None = None, label_counts: list[int] | None = None) -> None:
        super().bind(tokenizer)
        self.vocab_size = len(tokenizer)

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
