"""`lmexp compare`: seeds pooled as mean ± std (checked against a direct computation), sorting,
CSV/Markdown/PNG output, --source wandb agreeing with the records, and one-line errors."""

from __future__ import annotations

import csv
import json
import shutil
import statistics

from lmexp.cli import main as lmexp
from lmexp.records import read_summary


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def by_lr(sweep_dir, metric):
    """Direct computation: the metric's values per learning rate, from the records."""
    values: dict[str, list[float]] = {}
    for record in (read_summary(d) for d in sorted(sweep_dir.iterdir()) if (d / "summary.json").exists()):
        lr = next(o.split("=")[1] for o in record["overrides"] if o.startswith("optimizer.lr="))
        values.setdefault(lr, []).append(record["metrics"][metric])
    return values


def test_seeds_pooled_as_mean_and_std_sorted_best_first(tiny_sweep, tmp_path, capsys):
    _, sweep_dir = tiny_sweep
    out = tmp_path / "table.csv"
    assert lmexp(["compare", str(sweep_dir), "--csv", str(out), "--plot", str(tmp_path / "plot.png")]) == 0
    rows = read_csv(out)
    expected = by_lr(sweep_dir, "val/perplexity")
    assert [row["optimizer.lr"] for row in rows] == sorted(expected, key=lambda lr: statistics.fmean(expected[lr]))
    for row in rows:
        values = expected[row["optimizer.lr"]]
        assert row["n"] == "2" and row["status"] == "completed" and "seed" not in row
        assert float(row["val/perplexity mean"]) == statistics.fmean(values)
        assert float(row["val/perplexity std"]) == statistics.stdev(values)
        assert "test/perplexity mean" in row and "val/acc std" in row
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = capsys.readouterr().out
    assert "4 runs, sorted by val/perplexity (lower is better)" in shown and "±" in shown


def test_group_by_metric_and_markdown(tiny_sweep, capsys):
    _, sweep_dir = tiny_sweep
    assert lmexp(["compare", f"{sweep_dir}/*", "--group-by", "seed", "--metric", "val/acc", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| seed | n | status | val/acc |" and lines[1] == "| --- | --- | --- | --- |"
    accs = [float(line.split("|")[4].split("±")[0]) for line in lines[2:]]
    assert len(accs) == 2 and accs == sorted(accs, reverse=True)  # accuracy: higher is better


def test_wandb_holds_the_same_numbers(tiny_sweep, tmp_path, capsys):
    _, sweep_dir = tiny_sweep
    records, logged = tmp_path / "records.csv", tmp_path / "wandb.csv"
    assert lmexp(["compare", str(sweep_dir), "--csv", str(records)]) == 0
    assert lmexp(["compare", str(sweep_dir), "--csv", str(logged), "--source", "wandb"]) == 0
    assert "W&B agrees with the records of all 4 runs" in capsys.readouterr().out
    assert read_csv(records) == read_csv(logged)


def test_a_record_that_disagrees_with_wandb_is_reported(tiny_sweep, tmp_path, capsys):
    _, sweep_dir = tiny_sweep
    copy = shutil.copytree(sweep_dir, tmp_path / "sweep")
    summary = copy / "0" / "summary.json"
    record = json.loads(summary.read_text())
    record["metrics"]["val/perplexity"] += 1.0
    summary.write_text(json.dumps(record))
    assert lmexp(["compare", str(copy), "--source", "wandb"]) == 1
    [mismatch] = capsys.readouterr().err.splitlines()
    assert mismatch.startswith(f"mismatch: {copy / '0'}: val/perplexity = ")


def test_bad_input_is_one_line(tiny_sweep, tmp_path, capsys):
    _, sweep_dir = tiny_sweep
    assert lmexp(["compare", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere'}: no such file or directory\n"
    assert lmexp(["compare", str(tmp_path)]) == 1
    assert "no summary.json in it or below" in capsys.readouterr().err
    assert lmexp(["compare", str(sweep_dir), "--group-by", "optimizer.beta"]) == 1
    assert capsys.readouterr().err == (
        "error: --group-by optimizer.beta: no run has an override optimizer.beta "
        "(the overrides that vary: optimizer.lr, seed)\n")
