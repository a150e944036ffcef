"""`lmexp experiments` and `lmexp reproduce`.

- `lmexp experiments`: the reproductions in experiments/ with their paper, metric and number, and
  the claims with their arms.
- `lmexp reproduce <experiment> [overrides]`: run it, then PASS/FAIL against the paper's number;
  with `--curve`, also its loss curves against the reference curves stored with it (lmexp.tools.curves).
- `lmexp reproduce <claim> [overrides]`: run the claim's arms x seeds as one sweep, then HOLDS /
  NOT SIGNIFICANT / CONTRADICTED from the same statistics as `lmexp compare --baseline`
  (lmexp.tools.stats); claim.json in the sweep directory; exit 0 only when the claim holds.
- `lmexp reproduce <run dir>`: re-run a past run from its saved config into a new run directory
  and compare every metric; name the likely cause when they differ.

Runs go through `python -m lmexp.train` so each reproduction is an ordinary run (or sweep) directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lmexp.config import config_dir, register_resolvers, validate
from lmexp.errors import ConfigError
from lmexp.runs.record import SUMMARY, RunRecord


def experiment_names() -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def compose_experiment(name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    if name not in experiment_names():
        raise ConfigError(f"unknown experiment '{name}'; experiments: {', '.join(experiment_names())}")
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *overrides])


def new_run_dir(output_root: str, kind: str = "runs") -> Path:
    return Path(output_root) / kind / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{uuid.uuid4().hex[:6]}"


def run_training(args: list[str], run_dir: Path) -> int:
    """One `lmexp-train` process writing into run_dir; its output streams to this terminal."""
    return subprocess.call([sys.executable, "-m", "lmexp.train", *args, f"hydra.run.dir={run_dir}"])


def list_experiments() -> int:
    from lmexp.tools.tables import print_table as print_fitted

    papers, claims = [], []
    for name in experiment_names():
        cfg = compose_experiment(name, [])
        if cfg.get("claim") is not None:
            claim = cfg.claim
            others = " and ".join(a for a in claim.arms if a != claim.baseline)
            claims.append([name, f"{claim.metric} {claim.direction} with {others} than with {claim.baseline}",
                           str(len(claim.seeds)), f"{claim.title} ({claim.authors}, {claim.year})"])
        elif cfg.get("paper") is not None:
            paper = cfg.paper
            reported = paper.reported if paper.reported is not None else f"none (reference {paper.get('reference')})"
            papers.append([name, f"{paper.title} ({paper.year})", f"{paper.metric}: {reported}", paper.hardware])
        elif cfg.get("curves") is not None:
            metrics = ", ".join(dict.fromkeys(m for curve in cfg.curves for m in curve.metrics))
            papers.append([name, "reference curve (lmexp reproduce --curve)", f"{metrics} curve", "CPU"])
    print_fitted(["experiment", "paper", "reported", "hardware"], papers, whole={"experiment"},
                 free={"paper", "hardware"}, title="experiments (lmexp reproduce <name> ...)")
    print_fitted(["claim", "expected", "seeds", "source"], claims, whole={"claim", "seeds"}, free={"source"},
                 title="claims (lmexp reproduce <claim> ...)")
    return 0


def verdict(paper: DictConfig, obtained: float) -> tuple[float | None, float | None, bool | None]:
    """(target, tolerance, passed) for an obtained value against the paper block; passed is None
    when there is nothing to compare with yet (no published number and no recorded reference)."""
    target = paper.reported if paper.reported is not None else paper.reference
    if target is None:
        return None, None, None
    tolerance = paper.tolerance * abs(target) if paper.get("relative_tolerance") else paper.tolerance
    if paper.direction == "min":
        return target, tolerance, obtained <= target + tolerance
    return target, tolerance, obtained >= target - tolerance


def reproduce_experiment(name: str, overrides: list[str], curve: bool = False, record_curve: bool = False) -> int:
    cfg = compose_experiment(name, overrides)
    paper = cfg.get("paper")
    if paper is None and not (curve or record_curve):
        raise ConfigError(f"{name} has no paper block; check its reference curve with --curve")
    if paper is not None and paper.get("automated") is False:
        raise ConfigError(f"{name}: {paper.metric} is not produced by one lmexp run ({paper.budget}); "
                          "run the configs by hand as the experiment file explains")
    if paper is not None and paper.get("requires_gpu"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{name} needs {paper.hardware}; no GPU is visible here (budget: {paper.budget})")
    if (curve or record_curve) and not cfg.get("curves"):
        raise ConfigError(f"{name} stores no reference curve (no curves: block)")
    try:
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{err} — {name} needs: {(paper or cfg.curves[0]).data}") from None

    run_dir = new_run_dir(cfg.paths.output_root)
    code = run_training([f"experiment={name}", *overrides], run_dir)
    if code != 0 or not (run_dir / SUMMARY).exists():
        raise ConfigError(f"{name}: the run failed (exit {code}); see {run_dir}")
    summary = RunRecord.read(run_dir)
    result = {"experiment": name, "wall_time_s": summary.wall_time_s}
    passed = None
    if paper is not None:
        passed = judge_paper(name, paper, summary, result, run_dir)
    if record_curve:
        record_curves(cfg, run_dir)
    if curve:
        result["curves"] = check_curves(cfg, run_dir)
        passed = (passed is not False) and all(c["passed"] for ref in result["curves"] for c in ref["metrics"])
    (run_dir / "reproduction.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"run directory: {run_dir}")
    return 1 if passed is False else 0


def judge_paper(name: str, paper: DictConfig, summary: RunRecord, result: dict, run_dir: Path) -> bool | None:
    if paper.get("at") == "best":
        obtained = summary.best["value"]
    else:
        obtained = summary.metrics.get(paper.metric)
    if obtained is None:
        raise ConfigError(f"{name}: the run recorded no {paper.metric}; see {run_dir / SUMMARY}")
    target, tolerance, passed = verdict(paper, obtained)
    result.update({"metric": paper.metric, "at": paper.get("at", "final"), "reported": paper.reported,
                   "target": target, "obtained": obtained, "tolerance": tolerance, "direction": paper.direction,
                   "passed": passed})
    reported = paper.reported if paper.reported is not None else f"reference {target}"
    bound = "-" if tolerance is None else f"{'+' if paper.direction == 'min' else '-'}{tolerance:.4f}"
    outcome = {True: "PASS", False: "FAIL", None: "RECORDED (no number to compare with yet)"}[passed]
    print_table(["metric", "reported", "obtained", "tolerance", "result"],
                [[f"{paper.metric} ({result['at']})", str(reported), f"{obtained:.4f}", bound, outcome]])
    return passed


def curve_path(file: str) -> Path:
    return Path(config_dir()) / "experiment" / file


def check_curves(cfg: DictConfig, run_dir: Path) -> list[dict]:
    """Each reference curve of the experiment against the run's: a table, and the results."""
    from lmexp.tools.curves import check_curve, read_curve, run_curve

    results, rows = [], []
    for ref in cfg.curves:
        metrics = list(ref.metrics)
        checked = check_curve(run_curve(run_dir, metrics), read_curve(curve_path(ref.file)),
                              {m: float(ref.tolerance[m]) for m in metrics})
        results.append({"name": ref.name, "file": ref.file, "metrics": checked})
        for c in checked:
            first = c["first_outside"]
            where = "-" if first is None else (f"step {first['step']}: {_fmt(first['run'])} vs "
                                               f"{_fmt(first['reference'])}")
            rows.append([ref.name, c["metric"], str(c["points"]), f"±{c['tolerance']:g}", f"{c['max_deviation']:.4f}",
                         where, "PASS" if c["passed"] else "FAIL"])
    from lmexp.tools.tables import print_table as print_fitted

    print_fitted(["reference", "metric", "points", "band", "max |Δ|", "first step outside", "result"], rows,
                 whole={"metric", "points", "band", "max |Δ|", "result"}, free={"reference"},
                 title="loss curves against the reference curves")
    return results


def record_curves(cfg: DictConfig, run_dir: Path) -> None:
    """Overwrite the curve files lmexp recorded itself (`recorded_by: lmexp`) with this run's curves."""
    from lmexp.tools.curves import run_curve, write_curve

    for ref in cfg.curves:
        if ref.get("recorded_by") == "lmexp":
            summary = RunRecord.read(run_dir)
            comment = (f"recorded by lmexp from {run_dir.name}: git {(summary.git or {}).get('commit')}, "
                       f"torch {(summary.versions or {}).get('torch')}")
            write_curve(run_curve(run_dir, list(ref.metrics)), curve_path(ref.file), comment)
            print(f"recorded {ref.file}")


def reproduce_run(past: Path, overrides: list[str]) -> int:
    saved = past / ".hydra" / "config.yaml"
    if not saved.is_file() or not (past / SUMMARY).is_file():
        raise ConfigError(f"{past}: not an lmexp run directory (needs .hydra/config.yaml and {SUMMARY})")
    before = RunRecord.read(past)
    output_root = OmegaConf.load(saved).paths.output_root
    run_dir = new_run_dir(output_root)
    code = run_training(["--config-dir", str(saved.parent), "--config-name", "config", *overrides], run_dir)
    if code != 0 or not (run_dir / SUMMARY).exists():
        raise ConfigError(f"re-run of {past} failed (exit {code}); see {run_dir}")
    after = RunRecord.read(run_dir)
    names = sorted(set(before.metrics) | set(after.metrics))
    rows = []
    for metric in names:
        old, new = before.metrics.get(metric), after.metrics.get(metric)
        same = old == new
        diff = "-" if old is None or new is None else f"{new - old:+.3g}"
        rows.append([metric, _fmt(old), _fmt(new), diff, "identical" if same else "DIFFERS"])
    print_table(["metric", "original", "re-run", "difference", ""], rows)
    print(f"run directory: {run_dir}")
    if all(row[-1] == "identical" for row in rows):
        print("reproduced: every metric is identical")
        return 0
    for cause in likely_causes(before, after, OmegaConf.load(saved)):
        print(f"likely cause: {cause}")
    return 1


def likely_causes(before: RunRecord, after: RunRecord, cfg: DictConfig) -> list[str]:
    causes = []
    old, new = before.versions or {}, after.versions or {}
    versions = [f"{k} {old.get(k)} → {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if versions:
        causes.append("package versions differ: " + ", ".join(versions))
    if before.git != after.git:
        causes.append(f"code differs: git {before.git} → {after.git}")
    if before.data_fingerprint != after.data_fingerprint:
        causes.append(f"data differs: fingerprint {before.data_fingerprint} → {after.data_fingerprint}")
    if not OmegaConf.select(cfg, "trainer.deterministic"):
        causes.append("trainer.deterministic was false: nondeterministic kernels (GPU) may change results")
    return causes or ["nothing recorded differs: nondeterminism in the hardware or the thread count"]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def claim_arms(name: str, claim: DictConfig) -> tuple[str, list[str]]:
    """The key the arms set and its value in each arm (one sweep: `key=v1,v2 seed=...`)."""
    arms = [str(arm) for arm in claim.arms]
    keys = {arm.partition("=")[0] for arm in arms}
    if len(arms) < 2 or len(keys) != 1 or not all("=" in arm for arm in arms) or "," in "".join(arms):
        raise ConfigError(f"{name}: claim.arms must be two or more overrides of one key, each one value "
                          f"(e.g. [model.positions=learned, model.positions=rotary]); got {arms}")
    if claim.baseline not in arms:
        raise ConfigError(f"{name}: claim.baseline={claim.baseline} is not one of claim.arms {arms}")
    if claim.direction not in ("lower", "higher"):
        raise ConfigError(f"{name}: claim.direction must be lower or higher, got {claim.direction}")
    return keys.pop(), [arm.partition("=")[2] for arm in arms]


def sweep_command(name: str, claim: DictConfig, overrides: list[str], sweep_dir: Path, resume: bool) -> list[str]:
    key, values = claim_arms(name, claim)
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("claim.")]  # read here, not by the jobs
    args = ["-m", f"experiment={name}", *overrides, f"{key}={','.join(values)}",
            f"seed={','.join(str(seed) for seed in claim.seeds)}", f"hydra.sweep.dir={sweep_dir}"]
    if claim.get("n_jobs", 1) > 1:  # tiny models: one thread per worker, the cores side by side
        args += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={claim.n_jobs}"]
    return args + (["resume=true"] if resume else [])


def judge_sweep(name: str, claim: DictConfig, sweep_dir: Path) -> dict:
    """The claim's verdict from the sweep's records, by lmexp compare's --baseline code."""
    from lmexp.tools.baseline import baseline_entries, find_baseline
    from lmexp.tools.rows import find_run_dirs, lower_is_better, make_rows
    from lmexp.tools.stats import judge

    key, _ = claim_arms(name, claim)
    runs = [RunRecord.read(d) for d in find_run_dirs([str(sweep_dir)])]
    lower = lower_is_better(claim.metric, runs)
    rows = make_rows(runs, [key], claim.metric, lower)
    base = find_baseline(rows, str(claim.baseline))
    entries = baseline_entries(rows, base, [claim.metric], {claim.metric: lower}, claim.alpha)
    others = [entry for entry in entries if not entry["baseline"]]
    return {"claim": name, "statement": claim.statement, "title": claim.title, "authors": claim.authors,
            "year": claim.year, "url": claim.get("url"), "metric": claim.metric, "direction": claim.direction,
            "baseline": str(claim.baseline), "alpha": claim.alpha, "seeds": list(claim.seeds),
            "verdict": judge(others, expect_lower=claim.direction == "lower", alpha=claim.alpha),
            "runs": {"completed": sum(run.status == "completed" for run in runs), "total": len(runs)},
            "sweep_dir": str(sweep_dir), "comparison": entries, "_runs": runs}


def reproduce_claim(name: str, cfg: DictConfig, overrides: list[str], sweep_dir: str | None) -> int:
    claim = cfg.claim
    try:
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{err} — {name} needs: {claim.data}") from None
    resume = sweep_dir is not None
    sweep = Path(sweep_dir) if resume else new_run_dir(cfg.paths.output_root, "multiruns")
    args = sweep_command(name, claim, overrides, sweep, resume)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "lmexp.train", *args])
    wall = round(time.perf_counter() - start, 1)
    if not sweep.is_dir() or not list(sweep.rglob(SUMMARY)):
        raise ConfigError(f"{name}: the sweep wrote no run records (exit {code}); see {sweep}")
    result = judge_sweep(name, claim, sweep)
    runs = result.pop("_runs")
    result.update(wall_time_s=wall, sweep_exit_code=code, command=["lmexp-train", *args])
    (sweep / "claim.json").write_text(json.dumps(result, indent=2) + "\n")
    print_claim(result)
    if OmegaConf.select(cfg, "logger.wandb") is not None:
        from lmexp.tools.wandb_runs import log_comparison

        path = log_comparison(runs, result["comparison"], claim.metric, title=f"{name}: {result['verdict']}",
                              config={k: v for k, v in result.items() if k != "comparison"},
                              summary={"verdict": result["verdict"]})
        print(f"comparison logged to W&B: {path}")
    return 0 if result["verdict"] == "HOLDS" else 1


def print_claim(result: dict) -> None:
    from lmexp.tools.render import interval, mean_std, number
    from lmexp.tools.tables import print_table as print_fitted

    key = result["baseline"].partition("=")[0]
    entries = result["comparison"]
    rows = [[e["config"].get(key) or "-", mean_std(e), str(e["n"]),
             "baseline" if e["baseline"] else f"{number(e['diff'], '+.3g')} {interval(e)}", number(e["p"], ".2g"),
             number(e["effect_size"], ".2f")] for e in entries]
    tests = {e["test"] for e in entries if not e["baseline"]}
    print_fitted([key, result["metric"], "n", "Δ [95% CI]", "p", "d"], rows, whole={key, "n", "p", "d"},
                 right={result["metric"], "n", "Δ [95% CI]", "p", "d"},
                 title=f"{result['claim']}: {result['statement']} ({', '.join(sorted(tests))})")
    runs = result["runs"]
    print(f"{result['verdict']}: {result['statement']} ({result['title']}, {result['year']}) — "
          f"{result['metric']} {result['direction']} than with {result['baseline']}, alpha {result['alpha']}; "
          f"{runs['completed']}/{runs['total']} runs completed in {result['wall_time_s']} s")
    print(f"sweep directory: {result['sweep_dir']} (claim.json)")


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    try:
        if command == "experiments":
            return list_experiments()
        parser = argparse.ArgumentParser(prog="lmexp reproduce", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("target", help="an experiment or claim name (lmexp experiments) or a run directory")
        parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.path=...")
        parser.add_argument("--curve", action="store_true", help="also compare the loss curves with the "
                            "reference curves stored with the experiment")
        parser.add_argument("--record-curve", action="store_true", help="write this run's curves into the "
                            "experiment's curve files recorded by lmexp (recorded_by: lmexp)")
        parser.add_argument("--sweep-dir", help="a claim: run (or finish: resume=true) its sweep in this directory")
        args = parser.parse_intermixed_args(rest)
        if Path(args.target).is_dir():
            return reproduce_run(Path(args.target), args.overrides)
        cfg = compose_experiment(args.target, args.overrides)
        if cfg.get("claim") is not None:
            return reproduce_claim(args.target, cfg, args.overrides, args.sweep_dir)
        return reproduce_experiment(args.target, args.overrides, args.curve, args.record_curve)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
