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

The pieces, one module each: lmexp.tools.rows (records grouped into rows), lmexp.tools.baseline
(the comparison with a baseline), lmexp.tools.render (tables, Markdown, CSV), lmexp.tools.plots,
lmexp.tools.wandb_runs (the W&B source and the comparison's W&B run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmexp.errors import ConfigError
from lmexp.runs.record import RunRecord
from lmexp.tools.baseline import CONFIDENCE, baseline_entries, find_baseline
from lmexp.tools.plots import plot, plot_baseline
from lmexp.tools.render import (baseline_markdown, markdown_table, print_baseline, print_table, write_baseline_csv,
                                write_csv)
from lmexp.tools.rows import Row, compared_keys, default_metrics, find_run_dirs, lower_is_better, make_rows
from lmexp.tools.wandb_runs import from_wandb, log_comparison


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
