"""Parameter groups and learning-rate schedules (stepped once per optimizer step)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def param_groups(model: nn.Module, decay_embeddings: bool = False) -> list[dict]:
    """Two groups: weight decay on matrices of Linear-like layers; none on biases, norms and
    (unless `decay_embeddings`, as nanoGPT does) embeddings — decaying those only hurts."""
    embedding_params = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    decay, no_decay, seen = [], [], set()
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        is_embedding = id(param) in embedding_params
        if param.dim() >= 2 and (decay_embeddings or not is_embedding):
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [{"params": decay, "name": "decay"}, {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]


def _warmup_then(decay, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return decay(step)
    return factor


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_lr_ratio: float = 0.1) -> LambdaLR:
    """Linear warmup, then cosine decay from the base lr to `min_lr_ratio` × base at total_steps."""
    def decay(step: int) -> float:
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + 0.5 * (1 - min_lr_ratio) * (1 + math.cos(math.pi * progress))
    return LambdaLR(optimizer, _warmup_then(decay, warmup_steps))


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup, then linear decay to `min_lr_ratio` × base at total_steps."""
    def decay(step: int) -> float:
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1.0 - (1.0 - min_lr_ratio) * progress
    return LambdaLR(optimizer, _warmup_then(decay, warmup_steps))


def constant_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Linear warmup, then the base lr."""
    return LambdaLR(optimizer, _warmup_then(lambda step: 1.0, warmup_steps))
