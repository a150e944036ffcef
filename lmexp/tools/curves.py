"""Loss curves against reference curves, point by point within a tolerance band.

A curve file is a CSV: a `step` column (optimizer updates done) and one column per metric
(`val/loss`, `train/loss`); an empty cell is no point. A run's curve comes from its
csv/metrics.csv, where Lightning writes the index of the last batch: step = that index + 1, so a
validation after 250 updates is step 250, as nanoGPT counts. The final whole-split validation
(logged one index later) is not a point of the curve.

An experiment lists its reference curves under `curves:` — file (relative to experiments/),
metrics, and the band (`tolerance`: the largest |run − reference| allowed, per metric). Every
reference point must have a run point at the same step inside the band; the check names the
first step that leaves it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

Curve = dict[str, dict[int, float]]  # metric → step → value


def read_curve(path: str | Path) -> Curve:
    with open(path) as f:
        rows = list(csv.DictReader(row for row in f if not row.startswith("#")))
    metrics = [name for name in (rows[0] if rows else {}) if name != "step"]
    return {m: {int(row["step"]): float(row[m]) for row in rows if row.get(m)} for m in metrics}


def run_curve(run_dir: str | Path, metrics: list[str]) -> Curve:
    with open(Path(run_dir) / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    last = max((int(row["step"]) for row in rows if row.get("train/loss")), default=-1) + 1  # updates done
    curve: Curve = {m: {} for m in metrics}
    for row in rows:
        step = int(row["step"]) + 1
        for metric in metrics:
            if row.get(metric) and step <= last:
                curve[metric][step] = float(row[metric])
    return curve


def write_curve(curve: Curve, path: str | Path, comment: str) -> None:
    steps = sorted({step for points in curve.values() for step in points})
    with open(path, "w", newline="") as f:
        f.write(f"# {comment}\n")
        writer = csv.writer(f)
        writer.writerow(["step", *curve])
        for step in steps:
            writer.writerow([step, *(repr(points[step]) if step in points else "" for points in curve.values())])


def check_curve(run: Curve, reference: Curve, tolerance: dict[str, float]) -> list[dict]:
    """Per metric: points compared, the largest deviation, and the first step outside the band
    (a reference step the run has no value for counts as outside)."""
    results = []
    for metric, points in reference.items():
        if metric not in tolerance:
            continue
        band, first, worst = tolerance[metric], None, 0.0
        for step in sorted(points):
            value = run.get(metric, {}).get(step)
            deviation = math.inf if value is None or not math.isfinite(value) else abs(value - points[step])
            worst = max(worst, deviation)
            if deviation > band and first is None:
                first = {"step": step, "reference": points[step], "run": value}
        results.append({"metric": metric, "points": len(points), "tolerance": band, "max_deviation": worst,
                        "first_outside": first, "passed": first is None})
    return results
