"""Which checkpoint a run resumes, and whether it belongs to this configuration.

A run's *identity* is its result-affecting config: model, tokenizer, data, objective, optimizer,
scheduler and seed. Everything else is *continuation* (max_steps, loggers, callbacks, paths,
speed-only settings) and may change on resume. `ckpt_path=last` takes the newest run of the same
identity (as stored in each checkpoint); a checkpoint of another identity is refused, naming the
keys that differ, unless `allow_config_change=true`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmexp.errors import ConfigError

IDENTITY = ("seed", "model", "tokenizer", "data", "objective", "optimizer", "scheduler", "decay_embeddings")
# Inside the identity groups: settings that change speed or where files go, not results.
NOT_IDENTITY = ("data.num_workers", "data.num_proc", "data.shard_chars", "data.eval_batch_size", "data.source.cache_dir")
CONSENT = "allow_config_change=true"

log = logging.getLogger("lmexp")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"model.d_model": 128, ...}; lists are values."""
    if not isinstance(node, dict):
        return {prefix.rstrip("."): node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def identity(plain: dict) -> dict[str, Any]:
    flat = flatten({key: plain.get(key) for key in IDENTITY})
    return {k: v for k, v in flat.items() if not any(k == n or k.startswith(f"{n}.") for n in NOT_IDENTITY)}


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def changed_keys(before: dict, after: dict) -> list[str]:
    """Every key a resumed run changed, leaving out where each run writes (paths, run-dir-relative values)."""
    old_dir, new_dir = str((before.get("paths") or {}).get("output_dir")), str((after.get("paths") or {}).get("output_dir"))
    a, b = flatten(before), flatten(after)

    def moved(key: str) -> bool:
        return isinstance(a.get(key), str) and isinstance(b.get(key), str) and \
            a[key].replace(old_dir, "<run>") == b[key].replace(new_dir, "<run>")

    return [k for k in differing(a, b) if not k.startswith(("paths.", "ckpt_path")) and not moved(k)]


def find_last(output_root: str, plain: dict, config_of: Callable[[str], dict | None]) -> str:
    """The newest last.ckpt under output_root whose run has this identity; `config_of(path)`: the
    resolved config stored in a checkpoint (None: not a readable lmexp checkpoint)."""
    found = sorted(glob.glob(os.path.join(output_root, "**", "checkpoints", "last.ckpt"), recursive=True),
                   key=os.path.getmtime, reverse=True)
    if not found:
        raise ConfigError(f"ckpt_path=last: no checkpoints/last.ckpt under {output_root}")
    wanted = identity(plain)
    newest_diff = None
    for ckpt in found:
        config = config_of(ckpt)
        if config is None:
            continue
        diff = differing(identity(config), wanted)
        if not diff:
            return ckpt
        newest_diff = newest_diff or (ckpt, diff)
    if newest_diff is None:
        raise ConfigError(f"ckpt_path=last: no lmexp run directory with a checkpoint under {output_root}")
    ckpt, diff = newest_diff
    raise ConfigError(
        f"ckpt_path=last: no run under {output_root} has this configuration; the newest, "
        f"{Path(ckpt).parent.parent}, differs in {_keys(diff)} (resume it with ckpt_path=<its dir> {CONSENT})"
    )


def check_identity(checkpoint_config: dict, plain: dict, ckpt_path: str, allow: bool) -> None:
    diff = differing(identity(checkpoint_config), identity(plain))
    if diff and not allow:
        raise ConfigError(f"ckpt_path={ckpt_path}: the checkpoint was trained with another configuration "
                          f"({_keys(diff)} differ); add {CONSENT} to resume it anyway")


def _keys(keys: list[str], most: int = 6) -> str:
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def checkpoint_to_resume(cfg: Any, current: dict) -> tuple[str | None, dict | None, list[str] | None]:
    """The checkpoint this run continues from (`ckpt_path`: `last` for the newest run of this identity,
    a run directory or a file), read safely, and the keys of `current` (the resolved config) that
    differ from its config; all None for a fresh run."""
    if not cfg.get("ckpt_path"):
        return None, None, None
    from lmexp.checkpointing import read_checkpoint, stored_config
    from lmexp.runs.load import resolve_checkpoint

    if cfg.ckpt_path == "last":
        ckpt_path = find_last(cfg.paths.output_root, current, stored_config)
        log.info("resuming %s: the newest run with this configuration", Path(ckpt_path).parent.parent)
    else:
        ckpt_path = resolve_checkpoint(cfg.ckpt_path, cfg.paths.output_root)
    checkpoint = read_checkpoint(ckpt_path, trust=cfg.trust_checkpoint)
    before = (checkpoint.get("lmexp") or {}).get("config") or {}
    check_identity(before, current, ckpt_path, cfg.allow_config_change)
    return ckpt_path, checkpoint, changed_keys(before, current)


def recorded_versions(checkpoint: dict, ckpt_path: str) -> dict | None:
    """The package versions a checkpoint was made with: stored in it, or (older checkpoints) in the
    record of the run it belongs to."""
    from lmexp.runs.record import SUMMARY, RunRecord

    versions = (checkpoint.get("lmexp") or {}).get("versions")
    run_dir = Path(ckpt_path).parent.parent
    if versions is None and (run_dir / SUMMARY).is_file():
        versions = RunRecord.read(run_dir).versions
    return versions
