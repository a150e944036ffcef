"""Finding and reading a trained run back: a run directory, a checkpoint or `last` → its checkpoint
file; → model, tokenizer and training config (for generate, fill-mask and export).

Every checkpoint carries its resolved training config and its tokenizer files, so a `.ckpt` alone
is enough; the run directory around it adds the record (summary.json) when it is there.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lmexp.errors import ConfigError

RUN_HELP = "a run directory (its checkpoints/last.ckpt), a .ckpt file, or 'last' (the newest run under outputs/)"


def resolve_checkpoint(ckpt_path: str | None, output_root: str, key: str = "ckpt_path") -> str | None:
    """`last` → the newest last.ckpt of any run under output_root; a run dir → its last.ckpt."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        found = glob.glob(os.path.join(output_root, "**", "checkpoints", "last.ckpt"), recursive=True)
        if not found:
            raise ConfigError(f"{key}=last: no checkpoints/last.ckpt under {output_root}")
        return max(found, key=os.path.getmtime)
    if os.path.isdir(ckpt_path):
        last = os.path.join(ckpt_path, "checkpoints", "last.ckpt")
        if not os.path.isfile(last):
            raise ConfigError(f"{key}={ckpt_path}: not an lmexp run directory (no checkpoints/last.ckpt)")
        return last
    if not os.path.isfile(ckpt_path):
        raise ConfigError(f"{key}={ckpt_path}: no such run directory or checkpoint file")
    return ckpt_path


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run to read, and the opt-in for checkpoints that are not plain data (commands that read a run)."""
    parser.add_argument("run", help=RUN_HELP)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="also load a checkpoint that needs Python objects beyond tensors, numbers, strings "
                             "and containers (only for files you trust: loading it may run code)")


@dataclass
class TrainedRun:
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


def load_trained_run(path: str, trust: bool = False) -> TrainedRun:
    """Load a run directory (its last.ckpt), a .ckpt file, or `last` (the newest run under outputs/);
    `trust`: also a checkpoint that needs Python objects beyond tensors and containers (may run code)."""
    from hydra.utils import instantiate

    from lmexp import build
    from lmexp.checkpointing import load_lmexp_checkpoint, model_weights, restore_tokenizer

    # The same default as paths.output_root, so `last` finds what lmexp-train wrote.
    ckpt_path = resolve_checkpoint(path, os.environ.get("LMEXP_OUTPUT_ROOT", "outputs"), key="run")
    checkpoint = load_lmexp_checkpoint(ckpt_path, key="run", trust=trust)
    state = checkpoint["lmexp"]
    config = OmegaConf.create(state["config"])
    # The tokenizer is read into memory, so its files need not outlive this call.
    with tempfile.TemporaryDirectory() as directory:
        tokenizer = instantiate(restore_tokenizer(state["tokenizer_files"], Path(directory)))
    objective = build.build_objective(config)
    objective.bind(tokenizer, state.get("labels"))  # only a classifier has labels
    model = build.build_model(config, tokenizer, objective)
    model.load_state_dict(model_weights(checkpoint))
    return TrainedRun(model.eval(), tokenizer, config, ckpt_path, objective.name)
