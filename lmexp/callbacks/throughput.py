"""Throughput (tokens/s, FLOP/s, MFU) and per-step wall times: callbacks for the run record and benchmarks."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


log = logging.getLogger(__name__)


class TokenThroughput(pl.Callback):
    """Logs `train/tokens_per_s` (input tokens over wall time, every log interval), `train/flops_per_s`
    and `train/mfu` (lmexp.flops: 6N + 12 L d T per token, against one device's peak times the world
    size), and keeps the whole-run averages in `tokens_per_s`, `flops_per_s` and `mfu` for the run record.

    The peak is `impl.peak_flops` when set, else a known GPU's data-sheet peak, else on CPU a measured
    fp32 matmul rate (lmexp.flops.cpu_peak_flops); `peak_flops` may also be given here. A run that
    computes faster than the measured CPU peak raises it (the peak is at least what a run reached).
    """

    def __init__(self, peak_flops: float | None = None) -> None:
        self.peak_flops = peak_flops
        self.tokens = 0
        self.seconds = 0.0
        self.flops = 0.0
        self.world_size = 1
        self._window_tokens = 0
        self._window_flops = 0.0
        self._window_start = None
        self._step_start = None
        self._model = None
        self._flops_per_token: dict[int, int] = {}  # by sequence length
        self._measured_cpu_peak = False

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None

    @property
    def flops_per_s(self) -> float | None:
        return self.flops / self.seconds if self.seconds > 0 else None

    @property
    def mfu(self) -> float | None:
        if self.flops_per_s is None or not self.peak_flops:
            return None
        return self.flops_per_s / (self.peak_flops * self.world_size)

    def on_fit_start(self, trainer, pl_module) -> None:
        from lmexp import flops

        self._model = pl_module.model
        self.world_size = trainer.world_size
        if self.peak_flops is None:
            self.peak_flops = getattr(getattr(pl_module, "impl", None), "peak_flops", None)
        if self.peak_flops is None:
            self.peak_flops = flops.peak_flops(pl_module.device, str(trainer.precision),
                                               torch.get_float32_matmul_precision())
            self._measured_cpu_peak = pl_module.device.type == "cpu"

    def on_train_end(self, trainer, pl_module) -> None:
        from lmexp import flops

        achieved = self.flops_per_s and self.flops_per_s / self.world_size
        if self._measured_cpu_peak and achieved and achieved > self.peak_flops:
            old, self.peak_flops = self.peak_flops, flops.raise_cpu_peak(achieved)
            log.warning("this run computed %.1f GFLOP/s per device, above the measured CPU peak of %.1f GFLOP/s; "
                        "the peak is now %.1f GFLOP/s (set impl.peak_flops to fix it)",
                        achieved / 1e9, old / 1e9, self.peak_flops / 1e9)

    def _batch_flops(self, batch) -> float:
        from lmexp import flops

        ids = batch["input_ids"]
        seq_len = ids.shape[-1]
        if seq_len not in self._flops_per_token:
            self._flops_per_token[seq_len] = flops.flops_per_token(self._model, seq_len)
        return float(self._flops_per_token[seq_len] * ids.numel())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_start = time.perf_counter()
        if self._window_start is None:
            self._window_start = self._step_start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        tokens = batch["input_ids"].numel() * trainer.world_size
        step_flops = self._batch_flops(batch) * trainer.world_size
        self.tokens += tokens
        self.flops += step_flops
        self.seconds += now - self._step_start
        self._window_tokens += tokens
        self._window_flops += step_flops
        if trainer.global_step % trainer.log_every_n_steps == 0:
            seconds = now - self._window_start
            values = {"train/tokens_per_s": self._window_tokens / seconds,
                      "train/flops_per_s": self._window_flops / seconds}
            if self.peak_flops:
                values["train/mfu"] = values["train/flops_per_s"] / (self.peak_flops * self.world_size)
            pl_module.log_dict(values)
            self._window_tokens, self._window_flops, self._window_start = 0, 0.0, None


class StepTimes(pl.Callback):
    """Writes the wall time between consecutive optimizer-step ends to `path` (one JSON line per step:
    step, seconds, validated, end), the way nanoGPT's train.py times its iterations; `validated` marks the
    intervals that include a validation run (benchmarks/nanogpt_side_by_side.py leaves them out); `end`
    is the step's end on the wall clock (time.time(): benchmarks/startup.py times the first batch by it)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._last = None
        self._validated = False
        self._rows: list[str] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validated = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self._rows.append(json.dumps({"step": trainer.global_step, "seconds": now - self._last,
                                      "validated": self._validated, "end": time.time()}))
        self._last, self._validated = now, False

    def on_train_end(self, trainer, pl_module) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(row + "\n" for row in self._rows))
