"""Checkpoints that survive kills and interruptions.

- `AtomicCheckpointIO` writes each checkpoint to a temporary file and renames it into place, so a
  kill during a save leaves the previous checkpoint whole, never a truncated one.
- `SaveOnInterrupt` turns Ctrl-C into Lightning's SIGTERM handling (stop at the end of the
  current step, not in the middle of it) and saves `last.ckpt` there, for SIGTERM too (SLURM
  preemption): the run can be resumed with `ckpt_path=last`.
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


class SaveOnInterrupt(pl.Callback):
    def __init__(self) -> None:
        self._previous_sigint = None

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

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        checkpoint = trainer.checkpoint_callback
        if isinstance(exception, SIGTERMException) and checkpoint is not None and checkpoint.dirpath:
            # Raised between steps, so the state is consistent.
            trainer.save_checkpoint(os.path.join(checkpoint.dirpath, "last.ckpt"))
