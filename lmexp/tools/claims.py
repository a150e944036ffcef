"""`lmexp reproduce <claim>`: a claim's arms x seeds as one sweep, its verdict, and how many seeds
it needs.

`claim.arms` is either a list of overrides of one key (`[model.positions=learned,
model.positions=rotary]`: the sweep is `model.positions=learned,rotary`) or a mapping of arm name
→ overrides of any keys, group choices included (`{adamw: [optimizer=adamw, optimizer.lr=1e-3],
sgd: [optimizer=sgd, optimizer.lr=0.1]}`). An arm of a mapping becomes a config of its own,
`<sweep dir>/arms/arm/<name>.yaml`, and the sweep is `+arm=adamw,sgd` with that folder on Hydra's
search path: the jobs record which arm they ran (`+arm=sgd`), and rows, W&B group and `lmexp
compare` work as for one key.

The verdict (lmexp.tools.stats.judge) comes with the smallest difference the claim could have
detected (power 0.8 at its n, alpha and measured spread); `--plan` runs a pilot of a few seeds and
estimates how many seeds each arm needs to detect the difference the pilot saw. Each claim leaves
claim.json and claim.png (every seed's value per arm, the means with their 95% intervals, the
baseline's mean) in its sweep directory, and the comparison as a W&B run in the sweep's group.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from lmexp.config import validate
from lmexp.config_folders import compose, is_group, searchpath_override
from lmexp.errors import ConfigError
from lmexp.runs.record import SUMMARY, RunRecord
from lmexp.tools.reproduce import new_run_dir

ARM_GROUP = "arm"  # the config group of a mapping's arms: `+arm=<name>`


@dataclass
class ClaimArms:
    key: str  # the override that names a run's arm in its record: the arms' one key, or `arm`
    overrides: dict[str, list[str]]  # arm label (its value of `key`) → the overrides it makes
    baseline: str  # the baseline arm's label

    def sweep(self) -> str:
        """The override that sweeps the arms."""
        return f"{'+' if self.key == ARM_GROUP else ''}{self.key}={','.join(self.overrides)}"


def claim_arms(name: str, claim: DictConfig) -> ClaimArms:
    if claim.direction not in ("lower", "higher"):
        raise ConfigError(f"{name}: claim.direction must be lower or higher, got {claim.direction}")
    if isinstance(claim.arms, DictConfig):
        return _named_arms(name, claim)
    arms = [str(arm) for arm in claim.arms]
    keys = {arm.partition("=")[0] for arm in arms}
    if len(arms) < 2 or len(keys) != 1 or not all("=" in arm for arm in arms) or "," in "".join(arms):
        raise ConfigError(f"{name}: claim.arms must be two or more overrides of one key, each one value "
                          f"(e.g. [model.positions=learned, model.positions=rotary]), or a mapping of arm name "
                          f"to overrides; got {arms}")
    if claim.baseline not in arms:
        raise ConfigError(f"{name}: claim.baseline={claim.baseline} is not one of claim.arms {arms}")
    key = keys.pop()
    return ClaimArms(key, {arm.partition("=")[2]: [arm] for arm in arms}, str(claim.baseline).partition("=")[2])


def _named_arms(name: str, claim: DictConfig) -> ClaimArms:
    arms = {}
    for label, overrides in claim.arms.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(label)):
            raise ConfigError(f"{name}: claim.arms.{label}: an arm's name is letters, digits, _ . - (a file name)")
        if not isinstance(overrides, ListConfig) or not overrides or not all(isinstance(o, str) for o in overrides):
            raise ConfigError(f"{name}: claim.arms.{label} must be a list of overrides "
                              f"(e.g. [optimizer=sgd, optimizer.lr=0.1]); got {overrides}")
        arms[str(label)] = list(overrides)
    if len(arms) < 2:
        raise ConfigError(f"{name}: claim.arms needs two or more arms; got {', '.join(arms) or 'none'}")
    if claim.baseline not in arms:
        raise ConfigError(f"{name}: claim.baseline={claim.baseline} is not one of the arms {', '.join(arms)}")
    return ClaimArms(ARM_GROUP, arms, str(claim.baseline))


def arm_config(name: str, label: str, overrides: list[str], user_dirs: list[Path]) -> str:
    """A mapping's arm as a config file (`# @package _global_`): group choices as defaults-list
    overrides, values as keys; what only a command line can do (sweeps, deletions) is refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(f"{name}: claim.arms.{label}: {str(err).splitlines()[0]}") from None
    defaults, values = [], OmegaConf.create()
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override() or override.is_delete() or override.package:
            raise ConfigError(f"{name}: claim.arms.{label}: {text}: an arm sets a value (key=value) or chooses "
                              f"a group option (group=option), one each")
        key = override.key_or_group
        if is_group(key, user_dirs):
            defaults.append({f"{'' if override.is_add() else 'override '}/{key}": override.value()})
        else:
            OmegaConf.update(values, key, override.value(), force_add=True)
    body = {"defaults": defaults} if defaults else {}
    return "# @package _global_\n" + OmegaConf.to_yaml({**body, **OmegaConf.to_container(values)})


def write_arm_configs(name: str, arms: ClaimArms, sweep_dir: Path, user_dirs: list[Path]) -> list[Path]:
    """A mapping's arms as configs in the sweep directory: the search path the sweep needs."""
    if arms.key != ARM_GROUP:
        return []
    folder = sweep_dir / "arms"
    (folder / ARM_GROUP).mkdir(parents=True, exist_ok=True)
    for label, overrides in arms.overrides.items():
        (folder / ARM_GROUP / f"{label}.yaml").write_text(arm_config(name, label, overrides, user_dirs))
    return [folder]


def check_arms(name: str, arms: ClaimArms, overrides: list[str], search: list[Path]) -> None:
    """Every arm of a mapping composes and validates, before the sweep starts."""
    if arms.key != ARM_GROUP:
        return
    for label in arms.overrides:
        try:
            validate(compose([f"experiment={name}", *overrides, f"+{ARM_GROUP}={label}"], search))
        except ConfigError as err:
            raise ConfigError(f"{name}: claim.arms.{label}: {err}") from None
        except Exception as err:  # Hydra's composition errors: a key the config does not have, ...
            raise ConfigError(f"{name}: claim.arms.{label}: {str(err).splitlines()[0]}") from None


def sweep_command(name: str, claim: DictConfig, arms: ClaimArms, overrides: list[str], sweep_dir: Path,
                  resume: bool, search: list[Path]) -> list[str]:
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("claim.")]  # read here, not by the jobs
    args = ["-m", *searchpath_override(search), f"experiment={name}", *overrides, arms.sweep(),
            f"seed={','.join(str(seed) for seed in claim.seeds)}", f"hydra.sweep.dir={sweep_dir}"]
    if claim.get("n_jobs", 1) > 1:  # tiny models: one thread per worker, the cores side by side
        args += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={claim.n_jobs}"]
    return args + (["resume=true"] if resume else [])


def judge_sweep(name: str, claim: DictConfig, arms: ClaimArms, sweep_dir: Path) -> dict:
    """The claim's verdict from the sweep's records, by lmexp compare's --baseline code, with the
    smallest difference each arm's comparison could detect."""
    from lmexp.tools.baseline import baseline_entries, find_baseline
    from lmexp.tools.rows import find_run_dirs, lower_is_better, make_rows
    from lmexp.tools.stats import POWER, detectable_difference, judge

    runs = [RunRecord.read(d) for d in find_run_dirs([str(sweep_dir)])]
    lower = lower_is_better(claim.metric, runs)
    rows = make_rows(runs, [arms.key], claim.metric, lower)
    base = find_baseline(rows, f"{arms.key}={arms.baseline}")
    entries = baseline_entries(rows, base, [claim.metric], {claim.metric: lower}, claim.alpha)
    others = [entry for entry in entries if not entry["baseline"]]
    level = claim.alpha / max(1, len(others))  # Bonferroni, as judge
    for entry in entries:
        entry["detectable_diff"] = None if entry["baseline"] else detectable_difference(entry["se"], entry["df"], level)
    return {"claim": name, "statement": claim.statement, "title": claim.title, "authors": claim.authors,
            "year": claim.year, "url": claim.get("url"), "metric": claim.metric, "direction": claim.direction,
            "arm_key": arms.key, "arms": arms.overrides, "baseline": arms.baseline, "alpha": claim.alpha,
            "seeds": list(claim.seeds), "power": POWER,
            "verdict": judge(others, expect_lower=claim.direction == "lower", alpha=claim.alpha),
            "runs": {"completed": sum(run.status == "completed" for run in runs), "total": len(runs)},
            "sweep_dir": str(sweep_dir), "comparison": entries, "_runs": runs}


def reproduce_claim(name: str, cfg: DictConfig, overrides: list[str], user_dirs: list[Path], sweep_dir: str | None,
                    pilot: int | None = None) -> int:
    """Run (or finish) the claim's sweep and judge it; with `pilot`, only its first seeds, then a plan."""
    claim = cfg.claim
    try:
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{err} — {name} needs: {claim.data}") from None
    if pilot is not None:
        if not 2 <= pilot <= len(claim.seeds):
            raise ConfigError(f"--pilot {pilot}: a pilot needs 2 to {len(claim.seeds)} of the claim's seeds")
        claim = OmegaConf.merge(claim, {"seeds": list(claim.seeds)[:pilot]})
    arms = claim_arms(name, claim)
    resume = sweep_dir is not None
    sweep = Path(sweep_dir) if resume else new_run_dir(cfg.paths.output_root, "multiruns")
    search = [*user_dirs, *write_arm_configs(name, arms, sweep, user_dirs)]
    check_arms(name, arms, overrides, search)
    args = sweep_command(name, claim, arms, overrides, sweep, resume, search)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "lmexp.train", *args])
    wall = round(time.perf_counter() - start, 1)
    if not sweep.is_dir() or not list(sweep.rglob(SUMMARY)):
        raise ConfigError(f"{name}: the sweep wrote no run records (exit {code}); see {sweep}")
    result = judge_sweep(name, claim, arms, sweep)
    runs = result.pop("_runs")
    result.update(wall_time_s=wall, sweep_exit_code=code, command=["lmexp-train", *args])
    print_claim(result)
    if pilot is not None:
        return plan(result, cfg.claim, sweep, name)
    (sweep / "claim.json").write_text(json.dumps(result, indent=2) + "\n")
    picture = sweep / "claim.png"
    from lmexp.tools.plots import plot_baseline

    plot_baseline(result["comparison"], claim.metric, str(picture),
                  title=f"{name}: {result['verdict']} ({claim.metric} {claim.direction} than {arms.baseline})")
    print(f"claim report: {sweep / 'claim.json'}, {picture}")
    if OmegaConf.select(cfg, "logger.wandb") is not None:
        from lmexp.tools.wandb_runs import log_comparison

        path = log_comparison(runs, result["comparison"], claim.metric, title=f"{name}: {result['verdict']}",
                              config={k: v for k, v in result.items() if k != "comparison"},
                              summary={"verdict": result["verdict"]}, picture=picture,
                              attach=[sweep / "claim.json"])
        print(f"comparison logged to W&B: {path}")
    return 0 if result["verdict"] == "HOLDS" else 1


def plan(result: dict, claim: DictConfig, sweep: Path, name: str) -> int:
    """From a pilot's comparisons: per arm, the seeds needed to detect the pilot's difference with
    power 0.8 (Bonferroni alpha), and the difference the claim's own seeds could detect."""
    from lmexp.tools.render import number
    from lmexp.tools.stats import POWER, detectable_difference, projected_spread, seeds_needed
    from lmexp.tools.tables import print_table as print_fitted

    others = [e for e in result["comparison"] if not e["baseline"]]
    level = claim.alpha / max(1, len(others))
    planned = len(claim.seeds)
    arms, rows = [], []
    for entry in others:
        spread = projected_spread(entry, planned)
        detectable = None if spread is None else detectable_difference(float(spread[0]), float(spread[1]), level)
        needed = seeds_needed(entry, entry["diff"], level)
        arms.append({"arm": entry["config"].get(result["arm_key"]), "pilot_n": entry["n"], "pilot_diff": entry["diff"],
                     "test": entry["test"], "seeds_needed": needed, "claim_seeds": planned,
                     "detectable_diff_with_claim_seeds": detectable})
        rows.append([str(arms[-1]["arm"]), number(entry["diff"], "+.3g"), str(entry["n"]),
                     "more than 10000" if needed is None else str(needed), number(detectable, ".3g")])
    print_fitted([result["arm_key"], "pilot Δ", "pilot n", f"seeds for power {POWER:g}",
                  f"detectable Δ with {planned} seeds"], rows, whole={"pilot n", result["arm_key"]},
                 right={"pilot Δ", "pilot n", f"seeds for power {POWER:g}", f"detectable Δ with {planned} seeds"},
                 title=f"{name}: seeds needed (alpha {level:g} per arm)")
    most = max((a["seeds_needed"] or 10_001 for a in arms), default=planned)
    report = {"claim": name, "alpha_per_arm": level, "power": POWER, "pilot_sweep_dir": str(sweep), "arms": arms}
    (sweep / "plan.json").write_text(json.dumps(report, indent=2) + "\n")
    needs = "more than 10000" if most > 10_000 else str(most)
    print(f"plan: {needs} seeds per arm to detect the pilot's difference with power {POWER:g} (the claim runs "
          f"{planned}); an estimate, as the pilot's difference is itself uncertain. The pilot's runs count: "
          f"finish with --sweep-dir {sweep} (and claim.seeds=[...] to change the seeds). {sweep / 'plan.json'}")
    return 0


def print_claim(result: dict) -> None:
    from lmexp.tools.render import interval, mean_std, number
    from lmexp.tools.tables import print_table as print_fitted

    key = result["arm_key"]
    entries = result["comparison"]
    detectable = f"detectable Δ ({result['power']:g})"
    rows = [[e["config"].get(key) or "-", mean_std(e), str(e["n"]),
             "baseline" if e["baseline"] else f"{number(e['diff'], '+.3g')} {interval(e)}", number(e["p"], ".2g"),
             number(e["effect_size"], ".2f"), number(e["detectable_diff"], ".3g")] for e in entries]
    tests = {e["test"] for e in entries if not e["baseline"]}
    print_fitted([key, result["metric"], "n", "Δ [95% CI]", "p", "d", detectable], rows, whole={key, "n", "p", "d"},
                 right={result["metric"], "n", "Δ [95% CI]", "p", "d", detectable},
                 title=f"{result['claim']}: {result['statement']} ({', '.join(sorted(tests))})")
    if key == ARM_GROUP:
        for label, overrides in result["arms"].items():
            print(f"arm {label}: {' '.join(overrides)}")
    runs = result["runs"]
    print(f"{result['verdict']}: {result['statement']} ({result['title']}, {result['year']}) — "
          f"{result['metric']} {result['direction']} than with {key}={result['baseline']}, alpha {result['alpha']}; "
          f"{runs['completed']}/{runs['total']} runs completed in {result['wall_time_s']} s")
    print(f"smallest difference this claim could detect (power {result['power']:g}, its n, alpha and spread): "
          + ", ".join(f"{e['group']} {number(e['detectable_diff'], '.3g')}" for e in entries if not e["baseline"]))
    print(f"sweep directory: {result['sweep_dir']}")
