"""The LightningModule: glue between a model, an objective, an optimizer and a schedule."""

from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn

from lmexp.optim import param_groups


class LMModule(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        objective: Any,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        scheduler: Callable[..., Any] | None = None,
        decay_embeddings: bool = False,
        extra_checkpoint_state: dict | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.decay_embeddings = decay_embeddings
        # Saved into every checkpoint (resolved config, tokenizer dir, W&B run id, ...).
        self.extra_checkpoint_state = extra_checkpoint_state or {}
        self.val_metrics = objective.metrics(model.vocab_size).clone(prefix="val/")
        self.test_metrics = objective.metrics(model.vocab_size).clone(prefix="test/")

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch["input_ids"], batch.get("attention_mask"))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.objective.loss(self(batch), batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def _evaluate(self, batch: dict, metrics, stage: str) -> None:
        logits = self(batch)
        metrics.update(*self.objective.predicted(logits, batch))
        self.log_dict(metrics, prog_bar=stage == "val")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(param_groups(self.model, self.decay_embeddings))
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lmexp"] = dict(self.extra_checkpoint_state)
