"""A Lightning callback of its own: counts the training batches and writes them out at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl


class StepCounter(pl.Callback):
    """Writes {"batches": training batches seen, "global_step": optimizer steps} to `path` when
    training ends."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"batches": self.batches, "global_step": trainer.global_step}) + "\n")
