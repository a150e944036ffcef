"""Callbacks Lightning does not ship in the form the run record needs."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class TokenThroughput(pl.Callback):
    """Logs `train/tokens_per_s` (input tokens over wall time, every log interval) and keeps the
    whole-run average in `tokens_per_s` for the run record."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self._window_tokens = 0
        self._window_start = None
        self._step_start = None

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_start = time.perf_counter()
        if self._window_start is None:
            self._window_start = self._step_start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        tokens = batch["input_ids"].numel() * trainer.world_size
        self.tokens += tokens
        self.seconds += now - self._step_start
        self._window_tokens += tokens
        if trainer.global_step % trainer.log_every_n_steps == 0:
            pl_module.log("train/tokens_per_s", self._window_tokens / (now - self._window_start))
            self._window_tokens, self._window_start = 0, None
