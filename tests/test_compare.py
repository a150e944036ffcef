"""`lmexp compare`: seeds pooled as mean ± std (checked against a direct computation), sorting,
CSV/Markdown/PNG output, --source wandb agreeing with the records, and one-line errors."""

from __future__ import annotations

import csv
import json
import shutil
import statistics

import pytest

from lmexp.tools.cli import main as lmexp
from conftest import read_summary


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


def by_lr_and_seed(sweep_dir, metric):
    """Direct computation: {lr as recorded: {seed: value}} from the records."""
    values: dict[str, dict[int, float]] = {}
    for record in (read_summary(d) for d in sorted(sweep_dir.iterdir()) if (d / "summary.json").exists()):
        lr = next(o.split("=")[1] for o in record["overrides"] if o.startswith("optimizer.lr="))
        values.setdefault(lr, {})[record["seed"]] = record["metrics"][metric]
    return values


def test_baseline_differences_match_scipy(tiny_sweep, tmp_path, capsys):
    from scipy import stats

    _, sweep_dir = tiny_sweep
    out, table, plot = tmp_path / "cmp.json", tmp_path / "cmp.csv", tmp_path / "cmp.png"
    # 3e-3 as typed; Hydra recorded it as 0.003: the same number matches.
    assert lmexp(["compare", str(sweep_dir), "--baseline", "optimizer.lr=3e-3", "--json", str(out),
                  "--csv", str(table), "--plot", str(plot)]) == 0
    result = json.loads(out.read_text())
    assert result["baseline"] == "optimizer.lr=0.003" and result["alpha"] == 0.05
    direct = by_lr_and_seed(sweep_dir, "val/perplexity")
    [entry] = [e for e in result["rows"] if e["group"] == "optimizer.lr=0.01" and e["metric"] == "val/perplexity"]
    a = [direct["0.01"][s] for s in (1, 2)]
    b = [direct["0.003"][s] for s in (1, 2)]
    t = stats.ttest_rel(a, b)
    low, high = t.confidence_interval(0.95)
    assert entry["test"] == "paired t" and entry["n"] == 2 and sorted(entry["seeds"]) == [1, 2]
    assert entry["diff"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert entry["p"] == pytest.approx(t.pvalue) and (entry["ci_low"], entry["ci_high"]) == pytest.approx((low, high))
    assert entry["lower_is_better"] is True
    assert entry["result"] == ("n.s." if t.pvalue >= 0.05 else "better" if entry["diff"] < 0 else "worse")
    first = result["rows"][0]
    assert first["baseline"] and first["result"] == "baseline" and first["p"] is None
    rows = read_csv(table)
    assert len(rows) == len(result["rows"]) and float(rows[len(rows) // 2]["mean"]) == result["rows"][len(rows) // 2]["mean"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = capsys.readouterr().out
    assert "baseline: optimizer.lr=0.003" in shown and "vs baseline optimizer.lr=0.003 (paired t" in shown

    assert lmexp(["compare", str(sweep_dir), "--baseline", "optimizer.lr=1", "--json", str(out)]) == 1
    assert "--baseline optimizer.lr=1: no configuration match" in capsys.readouterr().err
    assert lmexp(["compare", str(sweep_dir), "--json", str(out)]) == 1
    assert "name the baseline" in capsys.readouterr().err


def test_baseline_markdown(tiny_sweep, capsys):
    _, sweep_dir = tiny_sweep
    assert lmexp(["compare", str(sweep_dir), "--baseline", "0.003", "--metric", "val/loss", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| group | metric | n | mean ± std | Δ vs baseline | 95% CI | p | d | test | result |"
    assert lines[2].startswith("| optimizer.lr=0.003 | val/loss | 2 |") and lines[2].endswith("| - | baseline |")
    assert lines[3].startswith("| optimizer.lr=0.01 | val/loss | 2 |") and "| paired t |" in lines[3]


def test_tables_keep_names_and_numbers_whole_at_80_columns(tiny_sweep, capsys, monkeypatch):
    from lmexp.tools.reproduce import experiment_names

    monkeypatch.setenv("COLUMNS", "80")
    _, sweep_dir = tiny_sweep
    for args in (["compare", str(sweep_dir)], ["compare", str(sweep_dir), "--baseline", "optimizer.lr=0.003"],
                 ["experiments"]):
        assert lmexp(args) == 0
        out = capsys.readouterr().out
        assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80, out
        if args[0] == "experiments":
            for name in experiment_names():
                assert name in out
        else:
            for word in ("optimizer.lr", "0.003", "val/perplexity", "test/perplexity"):
                assert word in out
    records = {d.name: read_summary(d) for d in sweep_dir.iterdir() if (d / "summary.json").exists()}
    assert lmexp(["compare", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    for record in records.values():  # every mean is printed whole: 4 significant digits
        assert f"{record['metrics']['val/acc']:.4g}"[:4] in out


def test_wandb_run_config_and_summary_are_made_for_comparing(tiny_sweep):
    from lmexp.wandb_offline import find_offline_runs, read_offline_run

    _, sweep_dir = tiny_sweep
    job = sweep_dir / "0"
    [path] = find_offline_runs(job / "wandb")
    run = read_offline_run(path)
    record = read_summary(job)

    def keys(node, prefix=""):
        for key, value in node.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from keys(value, f"{prefix}{key}.")

    names = set(keys(run.config))
    assert not any(k.rsplit(".", 1)[-1] in ("_target_", "_partial_") for k in names)
    assert "paths" not in run.config and "hydra" not in run.config
    assert not any(k.endswith(("default_root_dir", "dirpath", "save_dir")) for k in names)
    assert run.config["overrides"]["optimizer.lr"] == "0.01" and run.config["overrides"]["seed"] == "1"
    assert run.config["optimizer"]["lr"] == 0.01 and run.config["model"]["d_model"] == 32
    for metric, value in record["metrics"].items():
        assert run.summary[metric] == value


def test_compare_logs_the_comparison_as_a_wandb_run(tiny_sweep, tmp_path, capsys):
    from lmexp.wandb_offline import find_offline_runs, read_offline_run

    _, sweep_src = tiny_sweep
    sweep_dir = shutil.copytree(sweep_src, tmp_path / sweep_src.name)
    out = tmp_path / "cmp.json"
    assert lmexp(["compare", str(sweep_dir), "--baseline", "optimizer.lr=0.003", "--wandb", "--json", str(out)]) == 0
    assert "comparison logged to W&B" in capsys.readouterr().out
    [path] = find_offline_runs(sweep_dir / "wandb")
    run = read_offline_run(path)
    job = read_offline_run(find_offline_runs(sweep_dir / "0" / "wandb")[0])
    assert run.job_type == "compare" and run.group == job.group == sweep_dir.name and run.exit_code == 0
    assert run.config["baseline"] == "optimizer.lr=0.003"
    entries = json.loads(out.read_text())["rows"]
    [entry] = [e for e in entries if e["group"] == "optimizer.lr=0.01" and e["metric"] == "val/perplexity"]
    assert run.summary["optimizer.lr=0.01/val/perplexity/p"] == pytest.approx(entry["p"])
    assert run.summary["optimizer.lr=0.01/val/perplexity/ci_low"] == pytest.approx(entry["ci_low"])
    [logged] = [step for step in run.history if "comparison" in step]
    assert logged["plot"]["_type"] == "image-file"
    table = json.loads((path / "files" / logged["comparison"]["path"]).read_text())
    assert table["columns"][:3] == ["group", "metric", "n"] and len(table["data"]) == len(entries)
    row = next(r for r in table["data"] if r[0] == "optimizer.lr=0.01" and r[1] == "val/perplexity")
    assert row[table["columns"].index("p")] == pytest.approx(entry["p"])


def test_baseline_matches_a_value_written_another_way():
    from pathlib import Path

    from lmexp.runs.record import RunRecord
    from lmexp.tools.baseline import find_baseline
    from lmexp.tools.rows import Row

    def row(value):
        run = RunRecord(Path("r"), status="completed", overrides=[f"model.tie_embeddings={value}"], seed=1)
        return Row({"model.tie_embeddings": value}, "completed", None, [run])

    rows = [row("False"), row("True")]  # as Hydra records the values of a sweep
    assert find_baseline(rows, "model.tie_embeddings=false") is rows[0]
    assert find_baseline(rows, "true") is rows[1]
    numbers = [Row({"optimizer.lr": v}, "completed", None, []) for v in ("0.001", "1e-2")]
    assert find_baseline(numbers, "optimizer.lr=1e-3") is numbers[0]
    assert find_baseline(numbers, "optimizer.lr=0.01") is numbers[1]
