"""The progress bar: Lightning's rich bar, counting a run bounded by `trainer.max_steps` in
optimizer steps from 0 to max_steps, across epochs and resumes.

Lightning's own bar counts batches per epoch: with max_steps and no max_epochs (lmexp's default)
it titles the bar `Epoch 0/-2`, and after a mid-epoch resume it shows the batch index over the
steps that remain (`270/265`).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    def _by_steps(self) -> bool:
        return self.trainer.max_epochs == -1 and (self.trainer.max_steps or 0) > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._by_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:  # Lightning's hook for the bar's title
        return "Training" if self._by_steps() else super()._get_train_description(current_epoch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # The bar shows `batch_idx + 1`: made the optimizer steps done so far.
        done = trainer.global_step - 1 if self._by_steps() else batch_idx
        super().on_train_batch_end(trainer, pl_module, outputs, batch, done)
