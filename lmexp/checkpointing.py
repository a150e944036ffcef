"""Checkpoints that survive kills and interruptions.

- `AtomicCheckpointIO` writes each checkpoint to a temporary file and renames it into place, so a
  kill during a save leaves the previous checkpoint whole, never a truncated one.
- `KeepLastCheckpoint` keeps `last.ckpt` at the newest step: it turns Ctrl-C into Lightning's
  SIGTERM handling (stop at the end of the current step, not in the middle of it) and saves
  `last.ckpt` there, for SIGTERM too (SLURM preemption), so the run can be resumed with
  `ckpt_path=last`; and it saves it when training ends between validations (max_steps not a
  multiple of val_check_interval), so `last.ckpt` never lags behind the trained model.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        tmp = f"{path}.tmp"
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def save_last(trainer: pl.Trainer) -> None:
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.dirpath:
        trainer.save_checkpoint(os.path.join(checkpoint.dirpath, "last.ckpt"))


class KeepLastCheckpoint(pl.Callback):
    def __init__(self) -> None:
        self._previous_sigint = None
        self._saved_step = -1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._sigint_to_sigterm)

    def _sigint_to_sigterm(self, signum, frame) -> None:
        # A second Ctrl-C interrupts at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGTERM)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._saved_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._saved_step:
            save_last(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if isinstance(exception, SIGTERMException):
            save_last(trainer)  # raised between steps, so the state is consistent
