"""Checkpoints that survive kills and interruptions, and that cannot run code when read.

- `read_checkpoint` is the one way lmexp reads a checkpoint: `torch.load(weights_only=True)`, so
  a file can hold tensors, numbers, strings and plain containers but no code (lmexp writes nothing
  else). A file that needs any other Python object is refused, naming it, unless the user opts in
  with `trust_checkpoint=true`. `AtomicCheckpointIO` reads the same way when Lightning restores.

- `AtomicCheckpointIO` writes each checkpoint to a temporary file and renames it into place, so a
  kill during a save leaves the previous checkpoint whole, never a truncated one.
- `KeepLastCheckpoint` keeps `last.ckpt` at the newest step: it saves it every N optimizer steps
  and/or every T minutes when asked (`checkpoint.every_n_train_steps`, `checkpoint.every_n_minutes`),
  whether or not a validation has run; it turns Ctrl-C into Lightning's
  SIGTERM handling (stop at the end of the current step, not in the middle of it) and saves
  `last.ckpt` there, for SIGTERM too (SLURM preemption), so the run can be resumed with
  `ckpt_path=last`; and it saves it when training ends between validations (max_steps not a
  multiple of val_check_interval), so `last.ckpt` never lags behind the trained model.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lmexp.errors import ConfigError, cannot_write

TRUST_HINT = "if you trust whoever made this file, add trust_checkpoint=true (it may then run code)"


def read_checkpoint(path: str, key: str = "ckpt_path", trust: bool = False) -> dict:
    """Read a whole checkpoint on the CPU; anything unreadable or unsafe is a one-line ConfigError
    naming `key` and the file, never a fresh start."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        wanted = None if trust else _wanted_global(path, err)
        if wanted is None:  # not a pickle that asks for code: just unreadable
            raise ConfigError(f"{key}={path}: not a readable checkpoint ({_first_line(err)})") from None
        raise ConfigError(f"{key}={path}: refused: loading it needs the Python object {wanted}, "
                          f"which could run code (lmexp checkpoints hold only tensors, numbers and strings); "
                          f"{TRUST_HINT}") from None
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise ConfigError(f"{key}={path}: not a readable checkpoint ({_first_line(err)})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{key}={path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def stored_config(path: str) -> dict | None:
    """The resolved training config inside an lmexp checkpoint, without reading its tensors (mmap);
    None for a file that is not a safe, readable lmexp checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable, foreign or unsafe: not a candidate
        return None
    return (checkpoint.get("lmexp") or {}).get("config") if isinstance(checkpoint, dict) else None


def load_lmexp_checkpoint(path: str, key: str = "ckpt_path", trust: bool = False) -> dict:
    """A checkpoint written by lmexp training (it carries its config and tokenizer); anything else
    is a one-line error naming `key`."""
    checkpoint = read_checkpoint(path, key, trust)
    state = checkpoint.get("lmexp")
    if not state or "config" not in state:
        raise ConfigError(f"{key}={path}: not an lmexp checkpoint (no lmexp config inside)")
    return checkpoint


def model_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The model's own state dict: the LightningModule's `model.` entries without the prefix."""
    return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}


def tokenizer_files(directory: Path) -> dict[str, str]:
    """The saved tokenizer's (small, text) files, stored in checkpoints so one file is enough."""
    return {f.name: f.read_text() for f in sorted(directory.iterdir()) if f.is_file()}


def restore_tokenizer(files: dict[str, str], directory: Path) -> dict:
    """Write a checkpoint's tokenizer files into `directory`; return the `pretrained` tokenizer config
    that reads them back."""
    directory.mkdir(parents=True, exist_ok=True)
    for filename, content in files.items():
        # Names come from a checkpoint, i.e. from whoever made it: plain file names only.
        if not isinstance(filename, str) or Path(filename).name != filename or filename in ("", ".", ".."):
            raise ConfigError(f"checkpoint: refused tokenizer file name {filename!r} (not a plain file name)")
        (directory / filename).write_text(content)
    return {"_target_": "lmexp.data.tokenizers.build_tokenizer", "kind": "pretrained", "name_or_path": str(directory)}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:  # torch's own words come after its advice to disable the check
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    return text.splitlines()[0] if text else type(err).__name__


def _wanted_global(path: str, err: Exception) -> str | None:
    """The first global the pickle asks for beyond what weights_only allows, found without running it."""
    try:
        wanted = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not torch's zip format: read the pickle's opcodes (nothing is executed)
        wanted = [name for name in _pickle_globals(path) if not name.startswith(("torch.", "collections.OrderedDict"))]
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return wanted[0] if wanted else found.group(1) if found else None


def _pickle_globals(path: str) -> list[str]:
    """Module.name of every global a plain pickle file imports, from its opcodes."""
    names, strings = [], []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if "UNICODE" in op.name:
                    strings.append(arg)
                elif op.name == "GLOBAL":
                    names.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # not a pickle at all
        return names
    return names


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes through a temporary file; reads (Lightning's restore in fit) like `read_checkpoint`."""

    def __init__(self, trust: bool = False) -> None:
        super().__init__()
        self.trust = trust

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        tmp = f"{path}.tmp"
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
        except BaseException as err:
            Path(tmp).unlink(missing_ok=True)  # free what the failed write took; the previous file stays whole
            refused = isinstance(err, Exception) and cannot_write(Path(path).parent, f"the checkpoint {Path(path).name}", err, _tensor_bytes(checkpoint))
            if not refused:
                raise
            raise refused from err
        os.replace(tmp, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(str(path), trust=self.trust)


def _tensor_bytes(state: Any) -> int:
    """About how many bytes torch.save writes for `state`: its tensors' storage."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_tensor_bytes(v) for v in state)
    return 0


def save_last(trainer: pl.Trainer) -> None:
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.dirpath:
        # weights_only=False (the whole training state) said explicitly: left unset, Lightning logs
        # "`weights_only` was not set" at every save, which reads like a warning about loading.
        trainer.save_checkpoint(os.path.join(checkpoint.dirpath, "last.ckpt"), weights_only=False)


class KeepLastCheckpoint(pl.Callback):
    def __init__(self, every_n_train_steps: int | None = None, every_n_minutes: float | None = None) -> None:
        self.every_n_train_steps = every_n_train_steps
        self.every_n_seconds = every_n_minutes * 60 if every_n_minutes else None
        self._previous_sigint = None
        self._saved_step = -1
        self._saved_at = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        due = bool(self.every_n_train_steps) and trainer.global_step % self.every_n_train_steps == 0
        if self.every_n_seconds is not None:
            # Every rank must take the same decision: saving is collective under DDP.
            due = due or trainer.strategy.broadcast(time.monotonic() - self._saved_at >= self.every_n_seconds)
        if due and trainer.global_step != self._saved_step:
            save_last(trainer)

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

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._saved_step = trainer.global_step
        self._saved_at = time.monotonic()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._saved_step:
            save_last(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if isinstance(exception, SIGTERMException):
            save_last(trainer)  # raised between steps, so the state is consistent
