"""Every configuration against a baseline configuration: per metric, the difference of the means
with its confidence interval, p-value and effect size (lmexp.tools.stats), as entries that the
tables, plots, JSON and W&B of `lmexp compare --baseline` and `lmexp reproduce <claim>` show."""

from __future__ import annotations

from lmexp.errors import ConfigError
from lmexp.tools.rows import Row, is_number

CONFIDENCE = 0.95

# The columns of an entry that tables (CSV, W&B) carry.
BASELINE_COLUMNS = ["group", "metric", "n", "mean", "std", "diff", "ci_low", "ci_high", "p", "effect_size", "test",
                    "result"]


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
    return ("number", float(value)) if is_number(value) else ("text", value)


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
                entry.update(diff=None, ci_low=None, ci_high=None, p=None, effect_size=None, test=None, se=None,
                             df=None, boot_low=None, boot_high=None)
            entries.append(entry)
    return entries
