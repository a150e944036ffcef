"""A sweep job's side of Optuna pruning (DESIGN.md §9: pruning is a trial's own decision, the
study's record): after every validation the job reports its monitored metric to its trial in the
study's storage and asks the study's pruner whether to stop. When told to, training ends as it
does at max_steps (last.ckpt is saved), and `lmexp.train` records `status: pruned`."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger("lmexp")


class OptunaPruning(pl.Callback):
    """`storage`, `study_name`, `trial_number`: the trial (lmexp.runs.study); `pruner`: the
    sweeper's pruner (a config node with `_target_`, or null: report only, never stop); `monitor`:
    the metric reported (optimized_metric)."""

    def __init__(self, storage: str, study_name: str, trial_number: int, monitor: str,
                 pruner: Any = None) -> None:
        self.storage, self.study_name, self.trial_number = storage, study_name, trial_number
        self.monitor = monitor
        self.pruner = pruner
        self.pruned: dict | None = None  # {"step", "metric", "value"} once the pruner said stop
        self._trial = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lmexp.runs.study import job_trial

        if trainer.is_global_zero:
            pruner = instantiate(self.pruner) if isinstance(self.pruner, (dict, DictConfig)) else self.pruner
            self._trial = job_trial(self.storage, self.study_name, self.trial_number, pruner)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":  # not the final scoring's validate()
            return
        pruned = None
        if self._trial is not None:  # rank 0 asks
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                step = trainer.global_step
                self._trial.report(float(value), step)
                if self._trial.should_prune():
                    pruned = {"step": step, "metric": self.monitor, "value": float(value)}
                    log.info("trial %d pruned at step %d: %s = %.4g", self.trial_number, step, self.monitor, float(value))
        pruned = trainer.strategy.broadcast(pruned)  # every rank follows rank 0 (and skips the final scoring with it)
        if pruned is not None:
            self.pruned = pruned
            trainer.should_stop = True


def pruned_at(trainer: pl.Trainer) -> dict | None:
    """Where the pruner stopped this training ({"step", "metric", "value"}), None if it did not."""
    return next((cb.pruned for cb in trainer.callbacks if isinstance(cb, OptunaPruning) and cb.pruned), None)


def sweep_pruning(cfg: DictConfig, sweeper: DictConfig | None) -> OptunaPruning | None:
    """The callback of a job that lmexp's Optuna sweeper launched (it sets `optuna_trial` and, in
    hydra.sweeper, the storage and study name every job reaches), else None."""
    if cfg.get("optuna_trial") is None or sweeper is None:
        return None
    return OptunaPruning(storage=sweeper.storage, study_name=sweeper.study_name, trial_number=int(cfg.optuna_trial),
                         monitor=cfg.optimized_metric, pruner=sweeper.get("pruner"))


def mark_pruned_wandb_run(pruned: dict | None) -> None:
    """A pruned run's W&B run: tagged `pruned`, with the step and value in its summary."""
    import sys

    wandb = sys.modules.get("wandb")
    if pruned is None or wandb is None or wandb.run is None:
        return
    wandb.run.tags = (*wandb.run.tags, "pruned")
    wandb.run.summary.update({"pruned/step": pruned["step"], f"pruned/{pruned['metric']}": pruned["value"]})
