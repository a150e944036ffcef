"""Reading a trained run back: a run directory or a checkpoint → model, tokenizer and training config.

Every checkpoint carries its resolved training config and its tokenizer files, so a `.ckpt` alone
is enough; the run directory around it adds the record (summary.json) when it is there.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lmexp.config import resolve_checkpoint
from lmexp.errors import ConfigError


RUN_HELP = "a run directory (its checkpoints/last.ckpt), a .ckpt file, or 'last' (the newest run under outputs/)"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run to read, and the opt-in for checkpoints that are not plain data (commands that read a run)."""
    parser.add_argument("run", help=RUN_HELP)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="also load a checkpoint that needs Python objects beyond tensors, numbers, strings "
                             "and containers (only for files you trust: loading it may run code)")


def load_lmexp_checkpoint(path: str, key: str = "ckpt_path", trust: bool = False) -> dict:
    """A checkpoint written by lmexp training; anything else is a one-line error."""
    from lmexp.checkpointing import read_checkpoint

    checkpoint = read_checkpoint(path, key, trust)
    state = checkpoint.get("lmexp")
    if not state or "config" not in state:
        raise ConfigError(f"{key}={path}: not an lmexp checkpoint (no lmexp config inside)")
    return checkpoint


@dataclass
class Run:
    model: Any  # torch.nn.Module in eval mode, on the CPU, with the checkpoint's weights
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    config: DictConfig  # the resolved training config
    checkpoint_path: str
    objective: str  # the objective's name: causal_lm, masked_lm, classification

    @property
    def run_dir(self) -> Path | None:
        """The run directory the checkpoint sits in (`<run>/checkpoints/x.ckpt`), if it does."""
        directory = Path(self.checkpoint_path).resolve().parent
        return directory.parent if directory.name == "checkpoints" else None


def load_run(path: str, trust: bool = False) -> Run:
    """Load a run directory (its last.ckpt), a .ckpt file, or `last` (the newest run under outputs/);
    `trust`: also a checkpoint that needs Python objects beyond tensors and containers (may run code)."""
    if path != "last" and not os.path.exists(path):
        raise ConfigError(f"{path}: no such file or run directory")
    from lmexp import build

    # The same default as paths.output_root, so `last` finds what lmexp-train wrote.
    ckpt_path = resolve_checkpoint(path, os.environ.get("LMEXP_OUTPUT_ROOT", "outputs"))
    checkpoint = load_lmexp_checkpoint(ckpt_path, trust=trust)
    state = checkpoint["lmexp"]
    config = OmegaConf.create(state["config"])
    # The tokenizer is read into memory, so its files need not outlive this call.
    with tempfile.TemporaryDirectory() as directory:
        tokenizer = build.restore_tokenizer(state["tokenizer_files"], Path(directory))
    labels = state.get("labels")
    # Only a classifier has labels; their train counts weight the loss, which nothing here computes.
    extra = {} if labels is None else {"labels": labels, "label_counts": [1] * len(labels)}
    objective = build.instantiate_or_explain(config.objective, "objective", tokenizer=tokenizer, **extra)
    model = build.build_model(config, tokenizer, objective)
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights)
    return Run(model.eval(), tokenizer, config, ckpt_path, objective.name)
