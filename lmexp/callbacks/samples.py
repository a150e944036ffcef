"""Text samples from the model being trained, at validation time."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn

from lmexp.errors import ConfigError
from lmexp.models.sampling import prompt_ids, sample


class SampleText(pl.Callback):
    """Every `every_n_validations` validation runs of training, continues each prompt with the model
    being trained; appends the samples to `path` (one JSON line each) and, with a W&B logger, logs
    every sample so far as the table `samples`.

    Sampling draws from its own generators (one per prompt, as `lmexp generate` seeds them), seeded
    afresh each time: training's random stream is untouched, and the samples of two steps differ
    only because the model does.
    """

    def __init__(self, prompts: list[str], path: str, every_n_validations: int = 1, max_new_tokens: int = 64,
                 temperature: float = 0.8, top_k: int | None = 50, top_p: float | None = None, seed: int = 0) -> None:
        self.prompts = list(prompts)
        self.path = Path(path)
        self.every_n_validations = every_n_validations
        self.sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p}
        self.seed = seed
        self.validations = 0
        self.rows: list[list] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if pl_module.objective.name != "causal_lm":
            raise ConfigError(f"callbacks.samples: sampling text needs objective=causal_lm, not {pl_module.objective.name}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self.validations += 1
        if self.validations % self.every_n_validations or not trainer.is_global_zero:
            return
        tokenizer, model, step = trainer.datamodule.tokenizer, pl_module.model, trainer.global_step
        was_training = model.training
        model.eval()
        samples = sample(model, [prompt_ids(tokenizer, prompt) for prompt in self.prompts], seed=self.seed,
                         **self.sampling)
        rows = [[step, prompt, tokenizer.decode(new)] for prompt, new in zip(self.prompts, samples)]
        model.train(was_training)
        with self.path.open("a") as f:
            f.writelines(json.dumps({"step": s, "prompt": p, "sample": text}) + "\n" for s, p, text in rows)
        self.rows += rows
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text("samples", columns=["step", "prompt", "sample"], data=self.rows, step=step)
