"""The confusion matrix of a classification run's validation and test passes.

Written to the run directory as `confusion_val.csv` / `confusion_test.csv` (rows: true label,
columns: predicted label; overwritten by each pass, so the files hold the last one) and logged
to W&B as a table when the W&B logger is active.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

CORNER = "true \\ predicted"


class ConfusionMatrix(pl.Callback):
    """Counts the argmax predictions of `validation_step`/`test_step` outputs (logits, target)."""

    def __init__(self, labels: list, run_dir: str | Path) -> None:
        self.labels = [str(label) for label in labels]
        self.run_dir = Path(run_dir)
        self.matrix = MulticlassConfusionMatrix(len(labels))

    def _start(self, pl_module: pl.LightningModule) -> None:
        self.matrix = self.matrix.to(pl_module.device)
        self.matrix.reset()

    def _update(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> None:
        logits, target = outputs
        self.matrix.update(logits.argmax(dim=-1), target)

    def _write(self, trainer: pl.Trainer, stage: str) -> None:
        counts = self.matrix.compute().tolist()  # summed over DDP ranks
        if not trainer.is_global_zero:
            return
        rows = [[label, *row] for label, row in zip(self.labels, counts)]
        with open(self.run_dir / f"confusion_{stage}.csv", "w", newline="") as f:
            csv.writer(f).writerows([[CORNER, *self.labels], *rows])
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_table(key=f"{stage}/confusion", columns=[CORNER, *self.labels], data=rows, step=trainer.global_step)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, "val")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "test")
