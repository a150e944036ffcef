"""`lmexp experiments` and `lmexp reproduce`.

- `lmexp experiments`: the reproductions in experiments/ with their paper, metric and number.
- `lmexp reproduce <experiment> [overrides]`: run it, then PASS/FAIL against the paper's number.
- `lmexp reproduce <run dir>`: re-run a past run from its saved config into a new run directory
  and compare every metric; name the likely cause when they differ.

Runs go through `python -m lmexp.train` so each reproduction is an ordinary run directory.
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
from lmexp.records import SUMMARY, read_summary


def experiment_names() -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def compose_experiment(name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    if name not in experiment_names():
        raise ConfigError(f"unknown experiment '{name}'; experiments: {', '.join(experiment_names())}")
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *overrides])


def new_run_dir(output_root: str) -> Path:
    return Path(output_root) / "runs" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{uuid.uuid4().hex[:6]}"


def run_training(args: list[str], run_dir: Path) -> int:
    """One `lmexp-train` process writing into run_dir; its output streams to this terminal."""
    return subprocess.call([sys.executable, "-m", "lmexp.train", *args, f"hydra.run.dir={run_dir}"])


def list_experiments() -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="experiments (lmexp reproduce <name> ...)")
    for column in ("experiment", "paper", "metric", "reported", "hardware"):
        table.add_column(column)
    for name in experiment_names():
        paper = compose_experiment(name, []).paper
        reported = paper.reported if paper.reported is not None else f"none (reference: {paper.get('reference')})"
        table.add_row(name, f"{paper.title} ({paper.year})", paper.metric, str(reported), paper.hardware)
    Console().print(table)
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


def reproduce_experiment(name: str, overrides: list[str]) -> int:
    cfg = compose_experiment(name, overrides)
    paper = cfg.paper
    if paper.get("automated") is False:
        raise ConfigError(f"{name}: {paper.metric} is not produced by one lmexp run ({paper.budget}); "
                          "run the configs by hand as the experiment file explains")
    if paper.get("requires_gpu"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{name} needs {paper.hardware}; no GPU is visible here (budget: {paper.budget})")
    try:
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{err} — {name} needs: {paper.data}") from None

    run_dir = new_run_dir(cfg.paths.output_root)
    code = run_training([f"experiment={name}", *overrides], run_dir)
    if code != 0 or not (run_dir / SUMMARY).exists():
        raise ConfigError(f"{name}: the run failed (exit {code}); see {run_dir}")
    summary = read_summary(run_dir)
    if paper.get("at") == "best":
        obtained = summary["best"]["value"]
    else:
        obtained = summary["metrics"].get(paper.metric)
    if obtained is None:
        raise ConfigError(f"{name}: the run recorded no {paper.metric}; see {run_dir / SUMMARY}")
    target, tolerance, passed = verdict(paper, obtained)
    result = {"experiment": name, "metric": paper.metric, "at": paper.get("at", "final"),
              "reported": paper.reported, "target": target, "obtained": obtained, "tolerance": tolerance,
              "direction": paper.direction, "passed": passed, "wall_time_s": summary["wall_time_s"]}
    (run_dir / "reproduction.json").write_text(json.dumps(result, indent=2) + "\n")
    reported = paper.reported if paper.reported is not None else f"reference {target}"
    bound = "-" if tolerance is None else f"{'+' if paper.direction == 'min' else '-'}{tolerance:.4f}"
    outcome = {True: "PASS", False: "FAIL", None: "RECORDED (no number to compare with yet)"}[passed]
    print_table(["metric", "reported", "obtained", "tolerance", "result"],
                [[f"{paper.metric} ({result['at']})", str(reported), f"{obtained:.4f}", bound, outcome]])
    print(f"run directory: {run_dir}")
    return 1 if passed is False else 0


def reproduce_run(past: Path, overrides: list[str]) -> int:
    saved = past / ".hydra" / "config.yaml"
    if not saved.is_file() or not (past / SUMMARY).is_file():
        raise ConfigError(f"{past}: not an lmexp run directory (needs .hydra/config.yaml and {SUMMARY})")
    before = read_summary(past)
    output_root = OmegaConf.load(saved).paths.output_root
    run_dir = new_run_dir(output_root)
    code = run_training(["--config-dir", str(saved.parent), "--config-name", "config", *overrides], run_dir)
    if code != 0 or not (run_dir / SUMMARY).exists():
        raise ConfigError(f"re-run of {past} failed (exit {code}); see {run_dir}")
    after = read_summary(run_dir)
    names = sorted(set(before["metrics"]) | set(after["metrics"]))
    rows = []
    for metric in names:
        old, new = before["metrics"].get(metric), after["metrics"].get(metric)
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


def likely_causes(before: dict, after: dict, cfg: DictConfig) -> list[str]:
    causes = []
    versions = [f"{k} {before['versions'].get(k)} → {after['versions'].get(k)}"
                for k in sorted(set(before["versions"]) | set(after["versions"]))
                if before["versions"].get(k) != after["versions"].get(k)]
    if versions:
        causes.append("package versions differ: " + ", ".join(versions))
    if before.get("git") != after.get("git"):
        causes.append(f"code differs: git {before.get('git')} → {after.get('git')}")
    if before.get("data_fingerprint") != after.get("data_fingerprint"):
        causes.append(f"data differs: fingerprint {before.get('data_fingerprint')} → {after.get('data_fingerprint')}")
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


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    try:
        if command == "experiments":
            return list_experiments()
        parser = argparse.ArgumentParser(prog="lmexp reproduce", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("target", help="an experiment name (lmexp experiments) or a run directory")
        parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.path=...")
        args = parser.parse_args(rest)
        if Path(args.target).is_dir():
            return reproduce_run(Path(args.target), args.overrides)
        return reproduce_experiment(args.target, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
