"""lmexp compare and W&B: the numbers of runs read back from their offline W&B runs (checked
against the records), and a baseline comparison logged as a W&B run of its own."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from lmexp.runs.record import SUMMARY, RunRecord
from lmexp.tools.baseline import BASELINE_COLUMNS
from lmexp.wandb_logging import finish_wandb


def from_wandb(runs: list[RunRecord], metrics: list[str]) -> tuple[list[RunRecord], list[str]]:
    """The runs with status and metrics read from their offline W&B runs, and the disagreements."""
    from lmexp.wandb_offline import find_offline_runs, read_offline_run

    result, mismatches = [], []
    for run in runs:
        paths = [p for p in find_offline_runs(run.run_dir / "wandb") if run.wandb_id and p.name.endswith(run.wandb_id)]
        if not paths:
            if run.wandb_id:
                mismatches.append(f"{run.run_dir}: its W&B run {run.wandb_id} is missing")
            result.append(replace(run, status="no W&B run", metrics={}))
            continue
        wandb_run = read_offline_run(paths[0])
        status = {0: "completed", None: "running"}.get(wandb_run.exit_code, "failed")
        if status == "completed" and "pruned" in wandb_run.tags:  # lmexp.callbacks.pruning marks it so
            status = "pruned"
        if (status == "completed") != (run.status == "completed"):
            mismatches.append(f"{run.run_dir}: status {run.status} in {SUMMARY}, {status} in W&B")
        values = {m: float(v) for m, v in wandb_run.summary.items() if isinstance(v, (int, float))}
        for metric in metrics:
            recorded, logged = run.metrics.get(metric), values.get(metric)
            if recorded != logged:
                mismatches.append(f"{run.run_dir}: {metric} = {recorded} in {SUMMARY}, {logged} in W&B")
        result.append(replace(run, status=status, metrics=values))
    return result, mismatches


def log_comparison(runs, entries: list[dict], metric: str, title: str, config: dict,
                   summary: dict | None = None, picture: Path | None = None, attach: list[Path] = ()) -> Path:
    """Log a --baseline comparison (its entries as a table, the plot: `picture`, or drawn here, and
    the files to `attach`) as an offline W&B run in the group of the runs (the sweep's id), written
    into the sweep directory; return its directory."""
    import wandb

    from lmexp.tools.plots import plot_baseline

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
            plot = picture or Path(tmp) / "comparison.png"
            if picture is None:
                plot_baseline(entries, metric, str(plot))
            run.log({"comparison": table, "plot": wandb.Image(str(plot))})
        for path in attach:
            run.save(str(path), base_path=str(path.parent), policy="now")
        values = {f"{e['group']}/{e['metric']}/{k}": e[k] for e in entries
                  for k in ("mean", "std", "n", "diff", "ci_low", "ci_high", "p", "effect_size", "result")
                  if e[k] is not None}
        run.summary.update({**values, **(summary or {})})
        path = Path(run.dir).parent
    finally:
        finish_wandb(success=True)  # and wait until its file is whole
    return path
