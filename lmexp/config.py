"""Config helpers that must stay light: no torch, Lightning or transformers imports here, so a
bad config is reported in well under a second, before the heavy stack loads."""

from __future__ import annotations

import glob
import os
import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lmexp.errors import ConfigError
from lmexp.sweep import hydra_runtime, sweep_group


def config_dir() -> str:
    """conf/ inside the installed wheel, else the checkout's top-level conf/ (editable install)."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf")


def register_resolvers() -> None:
    # Cached per config; Hydra copies the cache to every sweep job, so all jobs share one sweep dir.
    OmegaConf.register_new_resolver("lmexp_unique", lambda: uuid.uuid4().hex[:6], use_cache=True, replace=True)


def choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for a config group (`gpt_tiny`), or the group's target when unknown."""
    chosen = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}")
    if chosen is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            chosen = HydraConfig.get().runtime.choices.get(group)
        except ValueError:  # compose API without the hydra config
            chosen = None
    return chosen or str(OmegaConf.select(cfg, f"{group}._target_", default=group)).rsplit(".", 1)[-1]


def missing_keys(cfg: DictConfig) -> list[str]:
    """Keys still set to ??? (OmegaConf's own missing_keys trips over interpolations to them)."""
    found: list[str] = []

    def walk(node, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if value == "???":
                found.append(f"{prefix}{key}")
            walk(value, f"{prefix}{key}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return sorted(found)


def validate(cfg: DictConfig) -> None:
    """Checks that need no heavy import. Raises ConfigError naming the key and what was expected."""
    missing = missing_keys(cfg)
    if missing:
        key = missing[0]
        raise ConfigError(f"missing required value: {key} (set it on the command line: {key}=...)")

    model_attention = cfg.model.get("attention")
    needed = cfg.objective.get("attention")
    # "any": the objective serves both kinds (classification).
    if needed and needed != "any" and model_attention and needed != model_attention:
        kind = {"causal": "a causal decoder", "bidirectional": "a bidirectional encoder"}
        raise ConfigError(
            f"model={choice(cfg, 'model')} is {kind.get(model_attention, model_attention)} and cannot serve "
            f"objective={choice(cfg, 'objective')}, which needs {kind.get(needed, needed)} "
            f"(pick another model, or set model.attention={needed} for a native model)"
        )

    context = cfg.model.get("max_seq_len")
    for key in ("block_size", "max_length"):
        length = cfg.data.get(key)
        if length is not None and context is not None and length > context:
            raise ConfigError(f"data.{key}={length} is larger than the model's context model.max_seq_len={context}")

    if cfg.get("resume") and sweep_group(hydra_runtime()) is None:
        raise ConfigError(
            "resume=true re-runs the unfinished jobs of a sweep (lmexp-train -m ... hydra.sweep.dir=<sweep dir> "
            "resume=true); to continue a single run use ckpt_path=last or ckpt_path=<run dir>"
        )

    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last") and not (os.path.isfile(ckpt) or os.path.isdir(ckpt)):
        raise ConfigError(f"ckpt_path={ckpt}: no such file or run directory")


def resolve_checkpoint(ckpt_path: str | None, output_root: str) -> str | None:
    """`last` → the newest last.ckpt of any run under output_root; a run dir → its last.ckpt."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        found = glob.glob(os.path.join(output_root, "**", "checkpoints", "last.ckpt"), recursive=True)
        if not found:
            raise ConfigError(f"ckpt_path=last: no checkpoints/last.ckpt under {output_root}")
        return max(found, key=os.path.getmtime)
    if os.path.isdir(ckpt_path):
        last = os.path.join(ckpt_path, "checkpoints", "last.ckpt")
        if not os.path.isfile(last):
            raise ConfigError(f"ckpt_path={ckpt_path}: a directory without checkpoints/last.ckpt")
        return last
    return ckpt_path
