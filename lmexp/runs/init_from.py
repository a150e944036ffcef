"""`model=from_run model.init_from=<run dir or .ckpt>`: start from the model of an earlier lmexp run.

The architecture comes from that run's saved config, the weights from its checkpoint, and the
tokenizer from the files stored in it. With objective=classification that model becomes the
backbone of a classifier whose head starts fresh; with an LM objective training just continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from lmexp.build import FROM_RUN_KEYS
from lmexp.checkpointing import load_lmexp_checkpoint, model_weights, restore_tokenizer
from lmexp.config import validate
from lmexp.data.cache import cache_key
from lmexp.errors import ConfigError
from lmexp.models.classifier import Classifier
from lmexp.runs.load import resolve_checkpoint

@dataclass
class PretrainedRun:
    init_from: str  # as the user gave it, for messages
    model: dict  # the run's resolved model config
    tokenizer_files: dict[str, str]
    weights: dict[str, torch.Tensor]  # the run's model state dict

    def tokenizer_config(self, cache_dir: str) -> dict:
        """A `pretrained` tokenizer config for the run's tokenizer, written under a directory named
        by its content, so every run that uses it shares one preprocessing cache entry."""
        return restore_tokenizer(self.tokenizer_files, Path(cache_dir) / "tokenizers" / cache_key(self.tokenizer_files))

    def load_weights(self, model: nn.Module) -> None:
        """Copy the run's weights into the model (a Classifier's backbone): every parameter must
        be there with the same shape, and nothing else."""
        target = model.backbone if isinstance(model, Classifier) else model
        own = target.state_dict()
        for name, tensor in own.items():
            if name not in self.weights:
                raise ConfigError(f"model.init_from={self.init_from}: the checkpoint has no parameter {name}")
            if self.weights[name].shape != tensor.shape:
                raise ConfigError(
                    f"model.init_from={self.init_from}: parameter {name} has shape {list(self.weights[name].shape)} "
                    f"in the checkpoint but {list(tensor.shape)} in the model"
                )
        extra = sorted(set(self.weights) - set(own))
        if extra:
            raise ConfigError(f"model.init_from={self.init_from}: the model has no parameter {extra[0]} of the checkpoint")
        target.load_state_dict(self.weights)


def adopt(cfg: DictConfig) -> PretrainedRun:
    """Read the run named by cfg.model.init_from and make its model config this run's cfg.model
    (keeping init_from and freeze_backbone); the result must fit the objective and the data."""
    init_from = str(cfg.model.init_from)
    path = resolve_checkpoint(init_from, cfg.paths.output_root, key="model.init_from")
    checkpoint = load_lmexp_checkpoint(path, key="model.init_from", trust=cfg.get("trust_checkpoint", False))
    state = checkpoint["lmexp"]
    run = PretrainedRun(init_from, state["config"]["model"], state["tokenizer_files"], model_weights(checkpoint))
    with open_dict(cfg):
        cfg.model = {**run.model, **{key: cfg.model.get(key) for key in FROM_RUN_KEYS}}
    validate(cfg)
    return run
