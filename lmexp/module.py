"""The LightningModule: glue between a model, an objective, an optimizer and a schedule."""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from lmexp.errors import TrainingDiverged
from lmexp.impl import Impl
from lmexp.optim import param_groups

EVAL_SEED = 1234


def numpy_rng_state() -> tuple:
    """NumPy's RNG state with its key array as a tensor: loadable by torch.load(weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


class LMModule(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        objective: Any,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        scheduler: Callable[..., Any] | None = None,
        decay_embeddings: bool = False,
        extra_checkpoint_state: dict | None = None,
        train_metrics: bool = False,
        impl: Any = None,
    ) -> None:
        super().__init__()
        self.model = model
        # Speed-only settings (conf/impl/): compile, fused optimizer, threads, peak FLOP/s for MFU.
        self.impl = impl if isinstance(impl, Impl) else Impl.from_config(impl)
        # The compiled model, kept out of the module tree so checkpoints hold the eager names only.
        self.__dict__["_train_model"] = None
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.decay_embeddings = decay_embeddings
        # Saved into every checkpoint (resolved config, tokenizer dir, W&B run id, ...).
        self.extra_checkpoint_state = extra_checkpoint_state or {}
        # The model's output width: its vocabulary, or a classifier's number of classes.
        outputs = getattr(model, "num_classes", None) or model.vocab_size
        self.val_metrics = objective.metrics(outputs).clone(prefix="val/")
        self.test_metrics = objective.metrics(outputs).clone(prefix="test/")
        self._eval_generator: torch.Generator | None = None
        # Per-batch training metrics (e.g. train/acc for grokking); off by default, they cost time.
        self.train_metrics = objective.metrics(outputs).clone(prefix="train/") if train_metrics else None

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch["input_ids"], batch.get("attention_mask"))

    def setup(self, stage: str) -> None:
        self.impl.apply_process_settings()
        if stage == "fit" and self._train_model is None:
            self.__dict__["_train_model"] = self.impl.compiled(self.model, self.trainer.strategy.root_device)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Evaluation draws its randomness (MLM masks) from its own seeded generator, so every
        # validation pass is scored on the same masks and training's random stream is untouched.
        generator = None if self.trainer.training else self._eval_generator
        return self.objective.prepare_batch(batch, generator)

    def _reset_eval_generator(self) -> None:
        self._eval_generator = torch.Generator(device=self.device).manual_seed(EVAL_SEED)

    def on_validation_epoch_start(self) -> None:
        self._reset_eval_generator()

    def on_test_epoch_start(self) -> None:
        self._reset_eval_generator()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        model = self.model if self._train_model is None else self._train_model
        logits = model(batch["input_ids"], batch.get("attention_mask"))
        loss = self.objective.loss(logits, batch)
        # On CPU this is a plain comparison; on a GPU one sync per step, which a step's logging
        # (the progress bar's loss) needs anyway.
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at step {self.global_step}; the last checkpoint before it is kept"
            )
        if not self._writes_train_logs():
            return loss
        if self.train_metrics is None:
            self.log("train/loss", loss, prog_bar=True)
        else:  # this batch's values of every metric, train/loss among them
            self.train_metrics(*self.objective.predicted(logits.detach(), batch))
            self.log_dict(self.train_metrics, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def _writes_train_logs(self) -> bool:
        """Whether this step's training values reach the loggers: every trainer.log_every_n_steps
        steps, as Lightning writes them, plus the last step of training or of an epoch (the run
        record's train/ metrics). Logging only then records the same values and skips Lightning's
        per-call logging work, about a tenth of a small model's step."""
        trainer = self.trainer
        step = self.global_step + 1  # the step being taken
        every = trainer.log_every_n_steps
        return bool((every and step % every == 0) or step == trainer.max_steps or trainer.is_last_batch
                    or trainer.should_stop or trainer.fast_dev_run)

    def _evaluate(self, batch: dict, metrics, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits, target = self.objective.predicted(self(batch), batch)
        metrics.update(logits, target)
        self.log_dict(metrics, prog_bar=stage == "val")
        return logits, target  # for callbacks (the confusion matrix)

    def validation_step(self, batch: dict, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._evaluate(batch, self.test_metrics, "test")

    def configure_optimizers(self) -> Any:
        amp_clipping = "mixed" in str(self.trainer.precision) and bool(self.trainer.gradient_clip_val)
        optimizer = self.optimizer_factory(param_groups(self.model, self.decay_embeddings),
                                           **self.impl.optimizer_kwargs(self.optimizer_factory, amp_clipping))
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lmexp"] = dict(self.extra_checkpoint_state)
        # A run resumed from its final checkpoint trains no step: its record takes these.
        checkpoint["lmexp"]["last_train_metrics"] = last_train_metrics(self.trainer)
        # Random streams (dropout, masking) continue exactly where they were after a resume.
        checkpoint["lmexp_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": numpy_rng_state(),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("lmexp_rng")
        if rng is None:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        kind, keys, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(rng["python"])


# Logged every step for the progress bar and throughput plots; not results.
NOT_RECORDED = ("train/lr", "train/tokens_per_s", "train/flops_per_s", "train/mfu")


def last_train_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The last training step's loss (and its acc, f1, ... with train_metrics=true)."""
    return {name: float(value) for name, value in trainer.callback_metrics.items()
            if name.startswith("train/") and name not in NOT_RECORDED}


def score_splits(trainer: pl.Trainer, module: LMModule, datamodule: pl.LightningDataModule,
                 splits: list[str]) -> dict[str, float]:
    """The metrics over each split ("validation" → val/..., "test" → test/...), as far as the
    trainer's limit_val_batches / limit_test_batches let it go."""
    metrics: dict[str, float] = {}
    for split in splits:
        run = trainer.validate if split == "validation" else trainer.test
        for result in run(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})
    return metrics
