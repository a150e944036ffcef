"""Rows and baseline comparisons as pictures (matplotlib, Agg): a metric against the swept
hyperparameter with the validation curves, and the seeds of each configuration with the
difference to the baseline (lmexp compare --plot)."""

from __future__ import annotations

import csv
from pathlib import Path

from lmexp.tools.baseline import CONFIDENCE
from lmexp.tools.rows import Row, is_number, shown


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows: list[Row], keys: list[str], metric: str, path: str) -> None:
    """Left: the metric against the first swept numeric key (mean ± std, one line per value of
    the other keys). Right: the validation curve of every run, from its csv/metrics.csv."""
    plt = _pyplot()
    completed = [row for row in rows if row.status == "completed" and row.stats(metric)[0] is not None]
    numeric = [k for k in keys if completed and all(is_number(row.config.get(k)) for row in completed)]
    x_key = numeric[0] if numeric else None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if x_key:
        lines: dict[str, list[Row]] = {}
        for row in completed:
            rest = ", ".join(f"{k}={shown(v)}" for k, v in row.config.items() if k != x_key)
            lines.setdefault(rest, []).append(row)
        for label, line in lines.items():
            line.sort(key=lambda row: float(row.config[x_key]))
            means, stds = zip(*(row.stats(metric) for row in line))
            left.errorbar([float(row.config[x_key]) for row in line], means, yerr=[s or 0.0 for s in stds],
                          marker="o", capsize=3, label=label or None)
        xs = [float(row.config[x_key]) for row in completed]
        if min(xs) > 0 and max(xs) >= 10 * min(xs):
            left.set_xscale("log")
    else:  # nothing numeric swept: one point per configuration
        means, stds = zip(*(row.stats(metric) for row in completed)) if completed else ((), ())
        left.errorbar(range(len(completed)), means, yerr=[s or 0.0 for s in stds], fmt="o", capsize=3)
        left.set_xticks(range(len(completed)), [row.label() for row in completed], rotation=20, ha="right",
                        fontsize="small")
    left.set_xlabel(x_key or "configuration")
    left.set_ylabel(f"{metric} (mean ± std)")
    curve = f"val/{metric.split('/', 1)[-1]}"
    for color, row in enumerate(rows):
        for i, run in enumerate(row.runs):
            steps, values = _curve(run.run_dir, curve)
            right.plot(steps, values, color=f"C{color % 10}", alpha=0.8, label=row.label() if i == 0 else None)
    right.set_xlabel("step")
    right.set_ylabel(curve)
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curve(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return [], []
    with open(path) as f:
        points = [(int(row["step"]), float(row[metric])) for row in csv.DictReader(f) if row.get(metric)]
    return [p[0] for p in points], [p[1] for p in points]


def plot_baseline(entries: list[dict], metric: str, path: str, title: str | None = None) -> None:
    """Left: every run's value (one point per seed), each configuration's mean with its 95%
    t-interval, and the baseline's mean as a line. Right: the difference to the baseline with its
    95% confidence interval."""
    import numpy as np
    from scipy import stats

    plt = _pyplot()
    mine = [e for e in entries if e["metric"] == metric]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, e in enumerate(mine):
        values = np.array(e["values"])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        left.scatter(i + jitter, values, s=18, alpha=0.7, color=f"C{i % 10}")
        if len(values) > 1:
            low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
            left.errorbar(i + 0.3, values.mean(), yerr=[[values.mean() - low], [high - values.mean()]], fmt="D",
                          color=f"C{i % 10}", capsize=4)
    base = [e for e in mine if e["baseline"]]
    if base:
        left.axhline(base[0]["mean"], color="grey", linewidth=1, linestyle="--", label="baseline mean")
        left.legend(fontsize="x-small")
    labels = [e["group"] for e in mine]
    left.set_xticks(range(len(mine)), labels, rotation=15, ha="right", fontsize="small")
    left.set_ylabel(f"{metric}: seeds, mean and 95% CI")
    others = [e for e in mine if not e["baseline"]]
    for i, e in enumerate(others):
        yerr = None if e["ci_low"] is None else [[e["diff"] - e["ci_low"]], [e["ci_high"] - e["diff"]]]
        right.errorbar(i, e["diff"], yerr=yerr, fmt="o", capsize=4, color=f"C{(i + 1) % 10}")
    right.axhline(0.0, color="grey", linewidth=1)
    right.set_xticks(range(len(others)), [e["group"] for e in others], rotation=15, ha="right", fontsize="small")
    right.set_ylabel(f"Δ {metric} vs {mine[0]['group'] if mine else 'baseline'} (95% CI)")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
