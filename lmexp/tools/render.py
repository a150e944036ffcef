"""Rows and baseline comparisons as text: terminal tables, Markdown and CSV (lmexp compare)."""

from __future__ import annotations

import csv

from lmexp.tools.baseline import BASELINE_COLUMNS
from lmexp.tools.rows import Row, shown


def cell(row: Row, metric: str) -> str:
    mean, std = row.stats(metric)
    if mean is None:
        return "-"
    return f"{mean:.4g}±{std:.2g}" if std is not None else f"{mean:.4g}"


def _table(rows: list[Row], keys: list[str], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    header = [*keys, "n", "status", *metrics]
    body = [[*(shown(row.config.get(k)) for k in keys), str(len(row.runs)), row.status, *(cell(row, m) for m in metrics)]
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


def markdown(lines: list[list[str]]) -> str:
    """A header row and body rows as a Markdown table."""
    lines = [lines[0], ["---"] * len(lines[0]), *lines[1:]]
    return "\n".join("| " + " | ".join(v.replace("|", "\\|") for v in line) + " |" for line in lines)


def markdown_table(rows: list[Row], keys: list[str], metrics: list[str]) -> str:
    header, body = _table(rows, keys, metrics)
    if any(row.error for row in rows):
        header = [*header, "error"]
        body = [[*values, row.error or ""] for values, row in zip(body, rows)]
    return markdown([header, *body])


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


def number(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def interval(entry: dict) -> str:
    return "-" if entry["ci_low"] is None else f"[{entry['ci_low']:+.3g}, {entry['ci_high']:+.3g}]"


def mean_std(entry: dict) -> str:
    return number(entry["mean"]) + ("" if entry["std"] is None else f" ± {entry['std']:.2g}")


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
        body = [[e["metric"], mean_std(e), str(e["n"]),
                 "-" if e["baseline"] else f"{number(e['diff'], '+.3g')} {interval(e)}", number(e["p"], ".2g"),
                 number(e["effect_size"], ".2f"), "-" if e["baseline"] else e["result"]] for e in mine]
        styles = [{"better": "green", "worse": "red"}.get(e["result"]) for e in mine]
        print_fitted(header, body, whole={"metric", "n", "p", "d", "result"},
                     right={"mean ± std", "n", "Δ [95% CI]", "p", "d"}, title=title, row_styles=styles)


def baseline_markdown(entries: list[dict]) -> str:
    header = ["group", "metric", "n", "mean ± std", "Δ vs baseline", "95% CI", "p", "d", "test", "result"]
    body = [[e["group"], e["metric"], str(e["n"]), mean_std(e), number(e["diff"], "+.4g"), interval(e),
             number(e["p"], ".3g"), number(e["effect_size"], ".2f"), e["test"] or "-", e["result"]] for e in entries]
    return markdown([header, *body])


def write_baseline_csv(entries: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*BASELINE_COLUMNS, "seeds", "values", "run_dirs"])
        for e in entries:
            writer.writerow([*("" if e[c] is None else repr(e[c]) if isinstance(e[c], float) else e[c]
                               for c in BASELINE_COLUMNS),
                             ";".join(str(s) for s in e["seeds"]), ";".join(repr(v) for v in e["values"]),
                             ";".join(e["run_dirs"])])
