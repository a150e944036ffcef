"""What lmexp puts into W&B, made for comparing runs.

- `run_config`: the run's config as W&B shows it — resolved, without Hydra's `_target_`/`_partial_`
  plumbing and without the keys that only say where this run writes (they differ on every run,
  so W&B's "diff only" view would flag them and hide the real differences); plus `overrides`, the
  swept and overridden keys as typed on the command line.
- `log_summary`: the final whole-split metrics into the run summary (W&B's summary is otherwise
  the last logged value, which for val/ is whatever validation ran last).
- `log_comparison`: a comparison (`lmexp compare --baseline`, `lmexp reproduce <claim>`) as an
  offline W&B run of its own, `job_type: compare`, in the group of the runs it compares.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

PLUMBING = ("_target_", "_partial_", "_recursive_", "_convert_")
# Keys that name this run's own directories, at any depth (trainer.default_root_dir,
# callbacks.*.dirpath, logger.*.save_dir, ...); `paths` and `hydra` at the top.
PER_RUN_KEYS = ("dirpath", "default_root_dir", "save_dir", "output_dir", "log_dir", "root_dir")
PER_RUN_SECTIONS = ("paths", "hydra", "ckpt_path")


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in PLUMBING and k not in PER_RUN_KEYS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def run_config(cfg: DictConfig, overrides: list[str]) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in PER_RUN_SECTIONS:
        config.pop(key, None)
    config = _strip(config)
    config["overrides"] = {o.partition("=")[0].lstrip("+~"): o.partition("=")[2] for o in overrides
                           if not o.startswith(("hydra.", "paths."))}
    return config


def log_summary(metrics: dict[str, float]) -> None:
    """The final metrics of the record into the current W&B run's summary (if one is open)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.summary.update(metrics)


def log_comparison(runs, entries: list[dict], metric: str, title: str, config: dict,
                   summary: dict | None = None) -> Path:
    """Log a --baseline comparison (its entries as a table, the plot) as an offline W&B run in the
    group of the runs (the sweep's id), written into the sweep directory; return its directory."""
    import wandb

    from lmexp.compare import BASELINE_COLUMNS, plot_baseline

    parents = {run.run_dir.parent for run in runs}
    sweep_dir = parents.pop() if len(parents) == 1 else Path(".")
    hydra_cfg = runs[0].run_dir / ".hydra" / "config.yaml"
    project = OmegaConf.select(OmegaConf.load(hydra_cfg), "logger.wandb.project", default="lmexp") \
        if hydra_cfg.is_file() else "lmexp"
    run = wandb.init(mode="offline", project=project or "lmexp", group=sweep_dir.name, job_type="compare",
                     name=title, dir=str(sweep_dir), config=config, settings=wandb.Settings(silent=True))
    try:
        table = wandb.Table(columns=BASELINE_COLUMNS, data=[[e[c] for c in BASELINE_COLUMNS] for e in entries])
        with tempfile.TemporaryDirectory() as tmp:
            plot = Path(tmp) / "comparison.png"
            plot_baseline(entries, metric, str(plot))
            run.log({"comparison": table, "plot": wandb.Image(str(plot))})
        values = {f"{e['group']}/{e['metric']}/{k}": e[k] for e in entries
                  for k in ("mean", "std", "n", "diff", "ci_low", "ci_high", "p", "effect_size", "result")
                  if e[k] is not None}
        run.summary.update({**values, **(summary or {})})
        path = Path(run.dir).parent
    finally:
        run.finish()
    return path
