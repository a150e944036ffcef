"""Runs grouped into rows: the records below some paths, the override keys that vary between
them, and one row per configuration with its seeds pooled (lmexp compare, lmexp reproduce)."""

from __future__ import annotations

import glob
import statistics
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from lmexp.errors import ConfigError
from lmexp.runs.record import METRIC_ORDER, SUMMARY, RunRecord


@dataclass
class Row:
    config: dict[str, str]  # the row's values of the compared keys
    status: str
    error: str | None
    runs: list[RunRecord]

    def stats(self, metric: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation over the row's runs (no std for a single run)."""
        values = [run.metrics[metric] for run in self.runs if metric in run.metrics]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    def label(self) -> str:
        return ", ".join(f"{k}={shown(v)}" for k, v in self.config.items()) or "all runs"


def shown(value: str | None) -> str:
    return "-" if value is None else value  # "-": the run kept the config's default


def is_number(value: str | None) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def find_run_dirs(patterns: list[str]) -> list[Path]:
    found: dict[Path, None] = {}  # ordered, without duplicates
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise ConfigError(f"{pattern}: no such file or directory")
        run_dirs = sorted(path.parent for match in matches for path in Path(match).rglob(SUMMARY))
        if not run_dirs:
            raise ConfigError(f"{pattern}: no {SUMMARY} in it or below (expected run or sweep directories)")
        found.update(dict.fromkeys(run_dirs))
    return list(found)


def default_metrics(runs: list[RunRecord]) -> list[str]:
    """The optimized metric, its test/ value, and the other val/ metrics."""
    names = {m for run in runs for m in run.metrics}
    optimized = next((run.optimized_metric for run in runs if run.optimized_metric), None)
    metric_name = optimized.split("/", 1)[-1] if optimized else None
    val = sorted((m for m in names if m.startswith("val/") and m != optimized), key=_metric_order)
    shown_metrics = [optimized] if optimized else []
    shown_metrics += [m for m in (f"test/{metric_name}",) if m in names and m != optimized] + val
    if not shown_metrics:
        raise ConfigError("the runs record no val/ metrics; name one with --metric")
    return shown_metrics


def _metric_order(metric: str) -> tuple[int, str]:
    name = metric.split("/", 1)[-1]
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)


def compared_keys(runs: list[RunRecord], group_by: list[str] | None) -> list[str]:
    """The override keys that make a row: the given ones, or every one that varies except seed."""
    keys = list(dict.fromkeys(key for run in runs for key in run.override_values()))
    varying = [key for key in keys if len({run.override_values().get(key) for run in runs}) > 1]
    if group_by is None:
        return [key for key in varying if key != "seed"]
    for key in group_by:
        if key not in keys:
            raise ConfigError(f"--group-by {key}: no run has an override {key} "
                              f"(the overrides that vary: {', '.join(varying) or 'none'})")
    return group_by


def lower_is_better(metric: str, runs: list[RunRecord]) -> bool:
    """The objective's monitor_mode for the metric the runs optimized; otherwise loss and
    perplexity are lower-is-better and every other metric higher-is-better."""
    for run in runs:
        config = run.run_dir / ".hydra" / "config.yaml"
        if run.optimized_metric == metric and config.is_file():
            return OmegaConf.select(OmegaConf.load(config), "objective.monitor_mode", default="min") == "min"
    return metric.split("/", 1)[-1] in ("loss", "perplexity")


def make_rows(runs: list[RunRecord], keys: list[str], metric: str, lower: bool) -> list[Row]:
    """Completed runs grouped by their values of `keys`, best first; then every other run alone."""
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        if run.status == "completed":
            groups.setdefault(tuple(run.override_values().get(k) for k in keys), []).append(run)
    completed = [Row(dict(zip(keys, values)), "completed", None, group) for values, group in groups.items()]

    def rank(row: Row) -> tuple[int, float]:
        mean = row.stats(metric)[0]
        if mean is None:  # the metric was not recorded: last
            return 1, 0.0
        return 0, mean if lower else -mean

    # Then the runs an Optuna pruner stopped (with where and at what value), then the rest.
    others = [Row({k: run.override_values().get(k) for k in keys}, run.status, run.error or pruned_note(run), [run])
              for run in runs if run.status != "completed"]
    return sorted(completed, key=rank) + sorted(others, key=lambda row: row.status != "pruned")


def pruned_note(run: RunRecord) -> str | None:
    if run.status != "pruned" or not run.pruned:
        return None
    pruned = run.pruned
    return f"stopped by the study's pruner at step {pruned['step']}: {pruned['metric']} = {pruned['value']:.4g}"
