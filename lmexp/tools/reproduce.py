"""`lmexp experiments` and `lmexp reproduce`.

- `lmexp experiments`: the reproductions in experiments/ with their paper, metric and number, and
  the claims with their arms; with `--config-dir DIR` (or LMEXP_CONFIG_PATH) also yours, marked *.
- `lmexp reproduce <experiment> [overrides]`: run it, then PASS/FAIL against the paper's number;
  with `--curve`, also its loss curves against the reference curves stored with it (lmexp.tools.curves).
- `lmexp reproduce <claim> [overrides]`: run the claim's arms x seeds as one sweep, then HOLDS /
  NOT SIGNIFICANT / CONTRADICTED from the same statistics as `lmexp compare --baseline`
  (lmexp.tools.stats); claim.json and claim.png in the sweep directory; exit 0 only when the claim
  holds. `--plan`: a pilot of a few seeds, then how many seeds the claim needs (lmexp.tools.claims).
- `lmexp reproduce <run dir>`: re-run a past run from its saved config into a new run directory
  and compare every metric; name the likely cause when they differ.

Runs go through `python -m lmexp.train` so each reproduction is an ordinary run (or sweep) directory.
Your own experiments and claims (`--config-dir DIR`: DIR/experiment/<name>.yaml) are listed, run and
judged exactly like lmexp's (lmexp.config_folders).
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

from lmexp.config import validate
from lmexp.config_folders import (ENV, compose, find_option, find_options, searchpath_override,
                                   user_config_dirs)
from lmexp.errors import ConfigError
from lmexp.runs.record import SUMMARY, RunRecord, package_versions, version_changes


def experiment_names(user_dirs: list[Path] = ()) -> list[str]:
    return sorted(find_options("experiment", list(user_dirs)))


def compose_experiment(name: str, overrides: list[str], user_dirs: list[Path] = ()) -> DictConfig:
    find_option("experiment", name, list(user_dirs))  # known, and in one folder only
    return compose([f"experiment={name}", *overrides], list(user_dirs))


def new_run_dir(output_root: str, kind: str = "runs") -> Path:
    return Path(output_root) / kind / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{uuid.uuid4().hex[:6]}"


def run_training(args: list[str], run_dir: Path) -> int:
    """One `lmexp-train` process writing into run_dir; its output streams to this terminal."""
    return subprocess.call([sys.executable, "-m", "lmexp.train", *args, f"hydra.run.dir={run_dir}"])


def list_experiments(user_dirs: list[Path]) -> int:
    from lmexp.tools.claims import claim_arms
    from lmexp.tools.tables import print_table as print_fitted

    papers, claims = [], []
    options = find_options("experiment", user_dirs)
    for name, found in options.items():
        cfg = compose_experiment(name, [], user_dirs)
        name = f"{name}*" if found.user else name
        if cfg.get("claim") is not None:
            claim = cfg.claim
            arms = claim_arms(name, claim)
            others = " and ".join(label for label in arms.overrides if label != arms.baseline)
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
    for found in options.values():
        if found.user:
            print(f"{found.name}*: yours, {found.path}")
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


def reproduce_experiment(name: str, overrides: list[str], user_dirs: list[Path], curve: bool = False,
                         record_curve: bool = False) -> int:
    cfg = compose_experiment(name, overrides, user_dirs)
    folder = find_option("experiment", name, user_dirs).path.parent  # curve files are next to the YAML
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
    code = run_training([*searchpath_override(user_dirs), f"experiment={name}", *overrides], run_dir)
    if code != 0 or not (run_dir / SUMMARY).exists():
        raise ConfigError(f"{name}: the run failed (exit {code}); see {run_dir}")
    summary = RunRecord.read(run_dir)
    result = {"experiment": name, "wall_time_s": summary.wall_time_s}
    passed = None
    if paper is not None:
        passed = judge_paper(name, paper, summary, result, run_dir)
    if record_curve:
        record_curves(cfg, run_dir, folder)
    if curve:
        result["curves"] = check_curves(cfg, run_dir, folder)
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


def check_curves(cfg: DictConfig, run_dir: Path, folder: Path) -> list[dict]:
    """Each reference curve of the experiment (its file relative to the experiment's folder) against
    the run's: a table, and the results."""
    from lmexp.tools.curves import check_curve, read_curve, run_curve

    results, rows = [], []
    for ref in cfg.curves:
        metrics = list(ref.metrics)
        checked = check_curve(run_curve(run_dir, metrics), read_curve(folder / ref.file),
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


def record_curves(cfg: DictConfig, run_dir: Path, folder: Path) -> None:
    """Overwrite the curve files lmexp recorded itself (`recorded_by: lmexp`) with this run's curves."""
    from lmexp.tools.curves import run_curve, write_curve

    for ref in cfg.curves:
        if ref.get("recorded_by") == "lmexp":
            summary = RunRecord.read(run_dir)
            comment = (f"recorded by lmexp from {run_dir.name}: git {(summary.git or {}).get('commit')}, "
                       f"torch {(summary.versions or {}).get('torch')}")
            write_curve(run_curve(run_dir, list(ref.metrics)), folder / ref.file, comment)
            print(f"recorded {ref.file}")


def reproduce_run(past: Path, overrides: list[str]) -> int:
    saved = past / ".hydra" / "config.yaml"
    if not saved.is_file() or not (past / SUMMARY).is_file():
        raise ConfigError(f"{past}: not an lmexp run directory (needs .hydra/config.yaml and {SUMMARY})")
    before = RunRecord.read(past)
    for change in version_changes(before.versions, package_versions()):
        print(f"versions differ from the original run: {change}")
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
    versions = version_changes(before.versions, after.versions)
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


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    parser = argparse.ArgumentParser(prog=f"lmexp {command}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                        help=f"a config folder of yours (experiment/<name>.yaml, model/..., as conf/); repeatable; "
                        f"also ${ENV} (folders separated by ':')")
    if command == "reproduce":
        parser.add_argument("target", help="an experiment or claim name (lmexp experiments) or a run directory")
        parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.path=...")
        parser.add_argument("--curve", action="store_true", help="also compare the loss curves with the "
                            "reference curves stored with the experiment")
        parser.add_argument("--record-curve", action="store_true", help="write this run's curves into the "
                            "experiment's curve files recorded by lmexp (recorded_by: lmexp)")
        parser.add_argument("--sweep-dir", help="a claim: run (or finish: resume=true) its sweep in this directory")
        parser.add_argument("--plan", action="store_true", help="a claim: run a pilot of a few seeds (--pilot) "
                            "and estimate how many seeds the claim needs (power 0.8); finish it with --sweep-dir")
        parser.add_argument("--pilot", type=int, default=3, metavar="N", help="seeds of the --plan pilot (default 3)")
    args = parser.parse_intermixed_args(rest)
    try:
        user_dirs = user_config_dirs(args.config_dir)
        if command == "experiments":
            return list_experiments(user_dirs)
        if Path(args.target).is_dir():
            return reproduce_run(Path(args.target), args.overrides)
        cfg = compose_experiment(args.target, args.overrides, user_dirs)
        if cfg.get("claim") is not None:
            from lmexp.tools.claims import reproduce_claim

            return reproduce_claim(args.target, cfg, args.overrides, user_dirs, args.sweep_dir,
                                   pilot=args.pilot if args.plan else None)
        return reproduce_experiment(args.target, args.overrides, user_dirs, args.curve, args.record_curve)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
