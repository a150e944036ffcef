"""The run record (summary.json): what a run did, and everything needed to run it again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SUMMARY = "summary.json"
# Keys that say where a run writes or how fast it computes (impl: speed-only settings), not what it
# computes: left out of the config hash.
NOT_RESULT_AFFECTING = ("paths", "logger", "callbacks", "impl", "ckpt_path", "tags", "task_name",
                        "allow_config_change", "trust_checkpoint", "checkpoint",  # how a run resumes and saves
                        "resume", "fail_fast")  # the last two: lmexp.sweep.SWEEP_SWITCHES


def config_hash(cfg: DictConfig) -> str:
    resolved = OmegaConf.to_container(cfg, resolve=False)
    for key in NOT_RESULT_AFFECTING:
        resolved.pop(key, None)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the lmexp checkout (None outside a git checkout)."""
    repo = Path(__file__).resolve().parent.parent
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def package_versions() -> dict[str, str | None]:
    names = ["lmexp", "torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics",
             "datasets", "tokenizers", "transformers", "wandb"]
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import platform
    versions["python"] = platform.python_version()
    return versions


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write atomically, so a reader never sees half a record."""
    path = Path(run_dir) / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / SUMMARY).read_text())
