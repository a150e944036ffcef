"""The run record (summary.json): what a run did, and everything needed to run it again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from importlib import metadata
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SUMMARY = "summary.json"
METRIC_ORDER = ("loss", "perplexity", "acc", "f1", "precision", "recall", "mcc")  # as tables list them
# Keys that say where a run writes or how fast it computes (impl: speed-only settings), not what it
# computes: left out of the config hash.
NOT_RESULT_AFFECTING = ("paths", "logger", "callbacks", "impl", "ckpt_path", "tags",
                        "task_name",  # gone from train.yaml; older records still have it
                        "allow_config_change", "trust_checkpoint", "checkpoint",  # how a run resumes and saves
                        "resume", "fail_fast", "optuna_trial")  # the last three: lmexp.runs.sweep.SWEEP_SWITCHES


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


def version_changes(recorded: dict | None, installed: dict | None) -> list[str]:
    """One line per package whose version differs, `torch 2.13.0 → 2.12.1` (recorded → installed)."""
    old, new = recorded or {}, installed or {}
    return [f"{name} {old.get(name)} → {new.get(name)}" for name in sorted(set(old) | set(new))
            if old.get(name) != new.get(name)]


@dataclass
class RunRecord:
    """One run's summary.json, for every kind of run: a training run (lmexp-train, each sweep job)
    and an evaluation (lmexp-eval). A sweep job's record says `running` while it runs; a job that
    fails before training starts, or is killed, gets a `failed` record with its error."""

    run_dir: Path
    task: str = "train"  # train | eval
    status: str = "running"  # running | completed | pruned | failed | interrupted
    error: str | None = None  # one line: the message of an expected failure, else "ExceptionType: message"
    metrics: dict[str, float] = field(default_factory=dict)  # final whole-split val/ and test/, last train/
    optimized_metric: str | None = None  # what a sweeper optimizes (train.yaml's optimized_metric)
    overrides: list[str] = field(default_factory=list)  # as typed on the command line (sweep switches left out)
    seed: int | None = None
    config_hash: str | None = None  # of the result-affecting config (config_hash below)
    data_fingerprint: str | None = None
    git: dict | None = None
    versions: dict | None = None
    checkpoint: str | None = None  # eval: the checkpoint evaluated
    resumed_from: str | None = None  # train: the checkpoint continued from
    changed_keys: list[str] | None = None  # ... and the keys that differ from its config
    num_parameters: int | None = None
    preprocessing: dict | None = None  # {"cache_hit": bool, "seconds": float}
    test_split: str | None = None  # classification: where the test examples came from
    pruned: dict | None = None  # {"step", "metric", "value"}: where the study's pruner stopped the run
    best: dict | None = None  # {"metric", "value", "checkpoint"} of the monitored best checkpoint
    wandb: dict | None = None  # {"mode", "run_id", "dir"}
    wall_time_s: float | None = None
    global_step: int | None = None
    tokens_per_s: float | None = None
    flops_per_s: float | None = None
    mfu: float | None = None
    pid: int | None = None  # a running sweep job's process, so a launcher can tell it died
    host: str | None = None

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunRecord":
        data = json.loads((Path(run_dir) / SUMMARY).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "run_dir": Path(run_dir)})

    def write(self) -> Path:
        """Atomically, so a reader never sees half a record."""
        path = Path(self.run_dir) / SUMMARY
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path

    @property
    def wandb_id(self) -> str | None:
        return (self.wandb or {}).get("run_id")

    def override_values(self) -> dict[str, str]:
        """`["optimizer.lr=0.001", "logger=csv"]` → `{"optimizer.lr": "0.001"}`: the result-affecting
        overrides, key → value as typed."""
        values = {}
        for override in self.overrides:
            key, _, value = override.partition("=")
            key = key.lstrip("+~")
            if key.split(".")[0] not in NOT_RESULT_AFFECTING:
                values[key] = value
        return values


def record_status(run_dir: str | Path) -> str | None:
    """The status of the run's record, None when it has none."""
    return RunRecord.read(run_dir).status if (Path(run_dir) / SUMMARY).is_file() else None


def print_results(record: RunRecord) -> None:
    """The final metrics as a table, then steps, time, throughput and the run directory."""
    from rich.console import Console
    from rich.table import Table

    metrics = record.metrics
    stages = [s for s in ("val", "test") if any(k.startswith(f"{s}/") for k in metrics)]
    names = [m for m in METRIC_ORDER if any(f"{s}/{m}" in metrics for s in stages)]
    table = Table(title="final metrics")
    table.add_column("metric")
    for stage in stages:
        table.add_column(stage, justify="right")
    for name in names:
        cells = [metrics.get(f"{s}/{name}") for s in stages]
        table.add_row(name, *("-" if v is None else f"{v:.4f}" for v in cells))
    console = Console()
    if record.pruned:  # stopped by the study's pruner: no final scoring
        pruned = record.pruned
        console.print(f"pruned at step {pruned['step']}: {pruned['metric']} = {pruned['value']:.4f}")
    else:
        console.print(table)
    tps = record.tokens_per_s
    done = "evaluated" if record.task == "eval" else f"{record.global_step} steps"  # eval runs no step
    console.print(f"{done} in {record.wall_time_s:.1f}s" + (f", {tps:,.0f} tokens/s" if tps else ""))
    console.print(f"run directory: {record.run_dir}", soft_wrap=True)
