"""`lmexp compare PATH [PATH ...]`: runs and sweeps side by side.

Reads each run's record (summary.json) below the given run directories, sweep directories or
globs. One row per configuration — the overrides that differ between the runs — with the runs
that differ only by `seed` pooled as mean ± sample std over n; sorted by the optimized metric;
runs that did not complete are rows of their own, with their error. `--source wandb` takes the
numbers from each run's offline W&B run instead and reports where they disagree with the record.
`--baseline KEY=VALUE` compares every configuration with one of them: per metric, the difference
of the means with its 95% confidence interval, p-value and effect size (lmexp.tools.stats: paired t
over seeds where the seeds match, Welch's t otherwise); `--wandb` logs that comparison as a W&B
run of its own in the sweep's group.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import OmegaConf

from lmexp.errors import ConfigError
from lmexp.runs.record import METRIC_ORDER, SUMMARY, RunRecord
from lmexp.wandb_logging import finish_wandb

STAGES = ("val", "test")


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
        return ", ".join(f"{k}={_shown(v)}" for k, v in self.config.items()) or "all runs"


def main(argv: list[str]) -> int:
    args = parse_args(argv[1:])
    try:
        runs = [RunRecord.read(run_dir) for run_dir in find_run_dirs(args.paths)]
        metrics = args.metric or default_metrics(runs)
        mismatches: list[str] = []
        if args.source == "wandb":
            runs, mismatches = from_wandb(runs, metrics)
        keys = compared_keys(runs, args.group_by)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    lower = lower_is_better(metrics[0], runs)
    rows = make_rows(runs, keys, metrics[0], lower)
    if args.baseline:
        try:
            return baseline_main(args, runs, rows, metrics, mismatches)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if args.json or args.wandb:
        print("error: --json and --wandb report a --baseline comparison; name the baseline", file=sys.stderr)
        return 1
    title = f"{len(runs)} runs, sorted by {metrics[0]} ({'lower' if lower else 'higher'} is better)"
    if args.markdown:
        print(markdown_table(rows, keys, metrics))
    else:
        print_table(rows, keys, metrics, title)
    if args.csv:
        write_csv(rows, keys, metrics, args.csv)
    if args.plot:
        plot(rows, keys, metrics[0], args.plot)
    for mismatch in mismatches:
        print(f"mismatch: {mismatch}", file=sys.stderr)
    if args.source == "wandb" and not mismatches:
        print(f"W&B agrees with the records of all {len(runs)} runs")
    return 1 if mismatches else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lmexp compare", description=__doc__.split("\n\n")[1])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run directories, sweep directories or globs")
    parser.add_argument("--metric", action="append", help="a metric to show (repeatable); the first one sorts "
                        "and is plotted (default: the optimized metric, its test/ value, the other val/ metrics)")
    parser.add_argument("--group-by", type=lambda s: s.split(","), metavar="KEY[,KEY]",
                        help="override keys that make a row (default: every override that varies, except seed)")
    parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    parser.add_argument("--plot", metavar="FILE", help="metric vs the swept hyperparameter, and validation curves")
    parser.add_argument("--source", choices=("records", "wandb"), default="records",
                        help="read the numbers from summary.json (default) or from the offline W&B runs")
    parser.add_argument("--baseline", metavar="KEY=VALUE", help="compare every configuration with this one "
                        "(an override as typed, e.g. model.tie_embeddings=false, or just its value): difference "
                        "of the means, 95%% CI, p-value, effect size")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of --baseline (default 0.05)")
    parser.add_argument("--json", metavar="FILE", help="also write the --baseline comparison as JSON")
    parser.add_argument("--wandb", action="store_true", help="log the --baseline comparison (table, plot) as an "
                        "offline W&B run (job_type compare) in the sweep's group")
    return parser.parse_args(argv)


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
    shown = [optimized] if optimized else []
    shown += [m for m in (f"test/{metric_name}",) if m in names and m != optimized] + val
    if not shown:
        raise ConfigError("the runs record no val/ metrics; name one with --metric")
    return shown


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


def cell(row: Row, metric: str) -> str:
    mean, std = row.stats(metric)
    if mean is None:
        return "-"
    return f"{mean:.4g}±{std:.2g}" if std is not None else f"{mean:.4g}"


def _shown(value: str | None) -> str:
    return "-" if value is None else value  # "-": the run kept the config's default


def _table(rows: list[Row], keys: list[str], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    header = [*keys, "n", "status", *metrics]
    body = [[*(_shown(row.config.get(k)) for k in keys), str(len(row.runs)), row.status, *(cell(row, m) for m in metrics)]
            for row in rows]
    return header, body


def print_table(rows: list[Row], keys: list[str], metrics: list[str], title: str) -> None:
    """A rich table; the errors of the runs that failed follow it, one line each (too long for a cell)."""
    from rich.console import Console

    from lmexp.tools.tables import print_table as print_fitted

    header, body = _table(rows, keys, metrics)
    styles = [{"completed": None, "pruned": "yellow"}.get(row.status, "red") for row in rows]
    # Too wide for the terminal: several tables, each with the configuration and some of the metrics.
    print_fitted(header, body, whole=set(header), right={"n", *metrics}, title=title, row_styles=styles,
                 repeat=len(keys) + 2)
    console = Console()
    for row in rows:
        if row.error:
            console.print(f"{row.status}: {row.runs[0].run_dir}: {row.error}", soft_wrap=True, markup=False)


def markdown_table(rows: list[Row], keys: list[str], metrics: list[str]) -> str:
    header, body = _table(rows, keys, metrics)
    if any(row.error for row in rows):
        header = [*header, "error"]
        body = [[*values, row.error or ""] for values, row in zip(body, rows)]
    lines = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(v.replace("|", "\\|") for v in line) + " |" for line in lines)


def write_csv(rows: list[Row], keys: list[str], metrics: list[str], path: str) -> None:
    """Full precision: mean and std columns per metric, and the run directories of each row."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n", "status", "error",
                         *(f"{m} {stat}" for m in metrics for stat in ("mean", "std")), "run_dirs"])
        for row in rows:
            stats = [("" if v is None else repr(v)) for m in metrics for v in row.stats(m)]
            writer.writerow([*(row.config.get(k) for k in keys), len(row.runs), row.status, row.error or "",
                             *stats, ";".join(str(run.run_dir) for run in row.runs)])


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


def plot(rows: list[Row], keys: list[str], metric: str, path: str) -> None:
    """Left: the metric against the first swept numeric key (mean ± std, one line per value of
    the other keys). Right: the validation curve of every run, from its csv/metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    completed = [row for row in rows if row.status == "completed" and row.stats(metric)[0] is not None]
    numeric = [k for k in keys if completed and all(_is_number(row.config.get(k)) for row in completed)]
    x_key = numeric[0] if numeric else None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if x_key:
        lines: dict[str, list[Row]] = {}
        for row in completed:
            rest = ", ".join(f"{k}={_shown(v)}" for k, v in row.config.items() if k != x_key)
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


def _is_number(value: str | None) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _curve(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return [], []
    with open(path) as f:
        points = [(int(row["step"]), float(row[metric])) for row in csv.DictReader(f) if row.get(metric)]
    return [p[0] for p in points], [p[1] for p in points]


# --- --baseline: differences with confidence intervals, p-values, effect sizes --------------------


def baseline_main(args: argparse.Namespace, runs: list[RunRecord], rows: list[Row], metrics: list[str],
                  mismatches: list[str]) -> int:
    base = find_baseline(rows, args.baseline)
    entries = baseline_entries(rows, base, metrics, {m: lower_is_better(m, runs) for m in metrics}, args.alpha)
    if args.markdown:
        print(baseline_markdown(entries))
    else:
        print_baseline(entries, base, args.alpha)
    if args.csv:
        write_baseline_csv(entries, args.csv)
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": base.label(), "alpha": args.alpha, "confidence": CONFIDENCE,
                                               "rows": entries}, indent=2) + "\n")
    if args.plot:
        plot_baseline(entries, metrics[0], args.plot)
    if args.wandb:
        path = log_comparison(runs, entries, metrics[0], title=f"compare vs {base.label()}",
                              config={"baseline": base.label(), "alpha": args.alpha, "metrics": metrics})
        print(f"comparison logged to W&B: {path}")
    for mismatch in mismatches:
        print(f"mismatch: {mismatch}", file=sys.stderr)
    return 1 if mismatches else 0


CONFIDENCE = 0.95


def find_baseline(rows: list[Row], spec: str) -> Row:
    """The completed row named by `KEY=VALUE` (or by a VALUE of any key): the value as recorded, else
    the same number or boolean written another way (1e-3 for 0.001, false for False)."""
    key, _, value = spec.rpartition("=")
    completed = [row for row in rows if row.status == "completed"]

    def matching(same) -> list[Row]:
        return [row for row in completed
                if any(same(v, value) for k, v in row.config.items() if not key or k == key.lstrip("+~"))]

    found = matching(lambda a, b: a == b) or matching(lambda a, b: a is not None and _typed(a) == _typed(b))
    if len(found) != 1:
        shown = "; ".join(row.label() for row in completed) or "none"
        what = "no configuration" if not found else f"{len(found)} configurations"
        raise ConfigError(f"--baseline {spec}: {what} match (the completed configurations: {shown})")
    return found[0]


def _typed(value: str) -> tuple:
    """An override value as what it means: Hydra records `false` as `False` and `1e-3` as `0.001`."""
    if value.lower() in ("true", "false"):
        return ("bool", value.lower() == "true")
    return ("number", float(value)) if _is_number(value) else ("text", value)


def seed_values(row: Row, metric: str) -> dict:
    """The row's values of a metric keyed by seed (by position when seeds are missing or repeat,
    which makes the comparison unpaired)."""
    runs = [run for run in row.runs if metric in run.metrics]
    seeds = [run.seed for run in runs]
    keys = seeds if None not in seeds and len(set(seeds)) == len(seeds) else [("run", i) for i in range(len(runs))]
    return {k: run.metrics[metric] for k, run in zip(keys, runs)}


def baseline_entries(rows: list[Row], base: Row, metrics: list[str], lower: dict[str, bool], alpha: float) -> list[dict]:
    """One entry per completed configuration and metric, the baseline's first."""
    from lmexp.tools.stats import compare_groups

    ordered = [base, *(row for row in rows if row is not base and row.status == "completed")]
    entries = []
    for row in ordered:
        for metric in metrics:
            values, reference = seed_values(row, metric), seed_values(base, metric)
            if not values or not reference:
                continue
            comparison = compare_groups(values, reference, lower[metric], CONFIDENCE)
            entry = {"group": row.label(), "config": row.config, "metric": metric, "baseline": row is base,
                     **comparison.as_dict(), "result": "baseline" if row is base else comparison.outcome(alpha),
                     "seeds": [k if isinstance(k, int) else None for k in values], "values": list(values.values()),
                     "run_dirs": [str(run.run_dir) for run in row.runs]}
            if row is base:
                entry.update(diff=None, ci_low=None, ci_high=None, p=None, effect_size=None, test=None)
            entries.append(entry)
    return entries


def _g(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _interval(entry: dict) -> str:
    return "-" if entry["ci_low"] is None else f"[{entry['ci_low']:+.3g}, {entry['ci_high']:+.3g}]"


def _mean_std(entry: dict) -> str:
    return _g(entry["mean"]) + ("" if entry["std"] is None else f" ± {entry['std']:.2g}")


def print_baseline(entries: list[dict], base: Row, alpha: float) -> None:
    """One table per configuration: metric, mean ± std, n, difference to the baseline, its 95% CI,
    p, effect size and the direction-aware result."""
    from lmexp.tools.tables import print_table as print_fitted

    header = ["metric", "mean ± std", "n", "Δ [95% CI]", "p", "d", "result"]
    for group in dict.fromkeys(entry["group"] for entry in entries):
        mine = [entry for entry in entries if entry["group"] == group]
        first = mine[0]
        if first["baseline"]:
            title = f"baseline: {group}"
        else:
            title = f"{group} vs baseline {base.label()} ({first['test']}; α = {alpha:g})"
        body = [[e["metric"], _mean_std(e), str(e["n"]),
                 "-" if e["baseline"] else f"{_g(e['diff'], '+.3g')} {_interval(e)}", _g(e["p"], ".2g"),
                 _g(e["effect_size"], ".2f"), "-" if e["baseline"] else e["result"]] for e in mine]
        styles = [{"better": "green", "worse": "red"}.get(e["result"]) for e in mine]
        print_fitted(header, body, whole={"metric", "n", "p", "d", "result"},
                     right={"mean ± std", "n", "Δ [95% CI]", "p", "d"}, title=title, row_styles=styles)


BASELINE_COLUMNS = ["group", "metric", "n", "mean", "std", "diff", "ci_low", "ci_high", "p", "effect_size", "test",
                    "result"]


def baseline_markdown(entries: list[dict]) -> str:
    header = ["group", "metric", "n", "mean ± std", "Δ vs baseline", "95% CI", "p", "d", "test", "result"]
    body = [[e["group"], e["metric"], str(e["n"]), _mean_std(e), _g(e["diff"], "+.4g"), _interval(e),
             _g(e["p"], ".3g"), _g(e["effect_size"], ".2f"), e["test"] or "-", e["result"]] for e in entries]
    lines = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(v.replace("|", "\\|") for v in line) + " |" for line in lines)


def write_baseline_csv(entries: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*BASELINE_COLUMNS, "seeds", "values", "run_dirs"])
        for e in entries:
            writer.writerow([*("" if e[c] is None else repr(e[c]) if isinstance(e[c], float) else e[c]
                               for c in BASELINE_COLUMNS),
                             ";".join(str(s) for s in e["seeds"]), ";".join(repr(v) for v in e["values"]),
                             ";".join(e["run_dirs"])])


def plot_baseline(entries: list[dict], metric: str, path: str) -> None:
    """Left: every run's value (one point per seed) and each configuration's mean with its 95%
    t-interval. Right: the difference to the baseline with its 95% confidence interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy import stats

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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_comparison(runs, entries: list[dict], metric: str, title: str, config: dict,
                   summary: dict | None = None) -> Path:
    """Log a --baseline comparison (its entries as a table, the plot) as an offline W&B run in the
    group of the runs (the sweep's id), written into the sweep directory; return its directory."""
    import wandb

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
        finish_wandb(success=True)  # and wait until its file is whole
    return path
