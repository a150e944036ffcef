"""The README cannot drift from the code: every lmexp command in its code blocks is composed and
validated here (default suite, in-process, through Hydra's compose API and lmexp's validate), and
the slow test runs each of them, shortened, and checks what the README says it prints and leaves.
A command added to the README is picked up by itself (tests/readme_commands.py reads the README)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from lmexp.config import composition_mistake, validate
from lmexp.errors import ConfigError
from lmexp.schema import EVAL, TRAIN
from lmexp.tools.cli import COMMANDS
from readme_commands import ROOT, Standins, compose_command, git_shared_data, needs, readme_commands

ALL = readme_commands()
README_TEXT = (ROOT / "README.md").read_text()
# `lmexp` commands whose arguments are not a config (a run, a sweep, a prompt): checked by running them.
NOT_CONFIGS = {"compare", "experiments", "generate", "fill-mask", "export", "rate"}


def users_own_folder(command) -> str | None:
    """A config folder of the reader's own that the command names (`--config-dir DIR`,
    `hydra.searchpath=[file://DIR]`) and that this machine lacks, e.g. ~/my_paper/configs."""
    import os

    args = command.args
    folders = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config-dir"]
    folders += re.findall(r"file://([^,\]]+)", " ".join(a for a in args if a.startswith("hydra.searchpath=")))
    base = ROOT / command.cwd if command.cwd else ROOT
    missing = [f for f in folders if not (base / os.path.expandvars(os.path.expanduser(f))).is_dir()]
    return missing[0] if missing else None


def expected_error(command) -> re.Pattern | None:
    """The `error: ...` line the README shows for a command, as a pattern (`(...)`: any text)."""
    lines = [line for line in command.output if line.startswith("error: ")]
    if not lines:
        return None
    return re.compile(re.escape(lines[0][len("error: "):]).replace(re.escape("(...)"), r"\(.*\)"))


def without_hydra(cfg: DictConfig) -> DictConfig:
    """The job's config as lmexp-train sees it (Hydra's own node is not the job's)."""
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    return job


def check_config(command, standins: Standins) -> str:
    """Compose and validate one README command; return how it was checked: composed, or why not."""
    if command.program == "lmexp" and command.subcommand not in COMMANDS:
        pytest.fail(f"README ({command.section}): `lmexp {command.subcommand}` is not an lmexp command "
                    f"(lmexp.tools.cli knows {', '.join(COMMANDS)})")
    if command.subcommand in NOT_CONFIGS or (command.subcommand == "reproduce" and "<" in command.text):
        return "a command without a config of its own (run by the slow test)"
    if users_own_folder(command):
        return f"needs the reader's own config folder ({users_own_folder(command)})"
    args = standins.apply(command)
    wanted = expected_error(command)
    try:
        cfg = compose_command(command, args, standins.root)
        validate(without_hydra(cfg), EVAL if command.subcommand == "eval" else TRAIN)
    except Exception as err:
        line = composition_mistake(err) or (str(err) if isinstance(err, ConfigError) else None)
        if line is None:
            raise
        if wanted is None:
            pytest.fail(f"README ({command.section}): `{command.text}` fails: {line}")
        assert wanted.fullmatch(line), f"README shows `error: {wanted.pattern}`; lmexp says `error: {line}`"
        return "composed (the error the README shows)"
    if wanted is not None:  # a plug-in's error shows once it is built: the slow test runs it
        return "composed (its error shows at build: run by the slow test)"
    reason = needs(cfg, command)
    return f"composed (running needs {reason})" if reason else "composed"


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Standins:
    return Standins(tmp_path_factory.mktemp("readme"), git_shared_data())


def test_one_version_in_the_package_its_records_and_the_readme():
    import tomllib

    import lmexp
    from lmexp.runs.record import package_versions

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    newest = re.search(r"^## Changes\n\n- \*\*([\w.]+)\*\*", README_TEXT, flags=re.M)
    assert newest and newest.group(1) == version == lmexp.__version__ == package_versions()["lmexp"], (
        version, lmexp.__version__, newest and newest.group(1))


def test_the_readme_has_commands_in_every_section_that_shows_them():
    sections = {c.section for c in ALL}
    assert len(ALL) >= 40, [c.text for c in ALL]
    assert {"Examples", "Sweeps", "Fine-tuning", "Errors"} <= sections, sections


@pytest.mark.parametrize("command", ALL, ids=[c.id for c in ALL])
def test_readme_command_composes_and_validates(command, standins, monkeypatch, fresh_hydra):
    monkeypatch.chdir(standins.root if command.cwd is None else ROOT / command.cwd)
    how = check_config(command, standins)
    assert how


# Added to every train-like command of the slow run: a few steps, small evaluations.
SHORT = ["trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2"]


def shortened(command, args: list[str], cfg: DictConfig | None) -> list[str]:
    """The command's arguments with the slow run's shortening overrides (steps, evaluation batches,
    trials; the default corpus cut to a few files)."""
    from omegaconf import OmegaConf

    if expected_error(command) is not None:
        return args  # the README shows its error: run as written
    if command.subcommand == "train" or (command.subcommand == "reproduce" and "=" in " ".join(args)):
        extra = list(SHORT)
        if any(a.startswith("ckpt_path=") for a in args):
            extra[0] = "trainer.max_steps=12"  # past the run it continues
        if cfg is not None and str(OmegaConf.select(cfg, "data.source._target_")).endswith("PythonStdlib"):
            extra.append("data.source.max_files=40")
        if cfg is not None and OmegaConf.select(cfg, "hydra.sweeper.n_trials") is not None:
            extra.append("hydra.sweeper.n_trials=2")
        return [*args, *extra]
    if command.subcommand == "eval":
        return [*args, "limit_batches=2"]
    if command.subcommand == "generate":
        return [a if a != "200" else "20" for a in args]
    return args


def run_problems(command, proc, standins: Standins) -> list[str]:
    """What the README says the command prints and leaves, checked against what it did."""
    out = proc.stdout + proc.stderr
    wanted = expected_error(command)
    if wanted is not None:
        last = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        if proc.returncode != 1 or not last or not wanted.fullmatch(last[-1][len("error: "):]):
            return [f"expected `error: {wanted.pattern}`, got exit {proc.returncode}: {out[-800:]}"]
        return []
    if command.subcommand == "reproduce" and proc.returncode == 1 and re.search(
            r"FAIL|NOT SIGNIFICANT|CONTRADICTED|differ|run directory:", out):
        return []  # a shortened (or nondeterministic) re-run cannot match; it ran and said how it compares
    if proc.returncode != 0:
        return [f"exit {proc.returncode}: {out[-1500:]}"]
    problems = []
    if command.subcommand in ("train", "eval") and "-m" not in command.args:
        found = re.findall(r"run directory: (\S+)", proc.stdout)
        if "final metrics" not in proc.stdout or not found:
            return [f"no final metrics table or run directory line: {out[-800:]}"]
        run = Path(found[-1])
        if command.subcommand == "train":
            validated = json.loads((run / "summary.json").read_text()).get("best") is not None
            promised = ["summary.json", "checkpoints/last.ckpt", "tokenizer"] + (["checkpoints/best.ckpt"] if validated else [])
            missing = [p for p in promised if not (run / p).exists()]
            problems += [f"{run}: no {p} (README: What a run prints and leaves)" for p in missing]
            problems += [f"{run}: {p.name} (a second copy of a checkpoint)" for p in (run / "checkpoints").glob("*-v*.ckpt")]
            standins.runs["any"] = run
            target = (run / ".hydra" / "config.yaml").read_text()
            for kind, name in (("masked", "MaskedLM"), ("causal", "CausalLM")):
                if f"objective.causal.{name}" in target or f"objective.masked.{name}" in target:
                    standins.runs[kind] = run
        elif re.search(r"\d+ steps in", proc.stdout):
            problems.append("lmexp-eval reports training steps it did not run")
    if "-m" in command.args:
        if not re.search(r"\d+ jobs?: \d+ completed", out):
            problems.append(f"no end-of-sweep line: {out[-800:]}")
        sweeps = sorted((Path(os.environ.get("LMEXP_OUTPUT_ROOT", "outputs")) / "multiruns").glob("*"),
                        key=lambda p: p.stat().st_mtime)
        if sweeps:
            standins.runs["sweep"] = sweeps[-1]
    if "Traceback" in out:
        problems.append(f"a traceback: {out[-1500:]}")
    return problems


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, capsys, fresh_hydra):
    """Runs every README command as a subprocess, shortened (SHORT), from a folder holding the
    files the examples name; commands that need what this machine lacks are listed with the reason.
    Prints the counts: composed / run / needs network, GPU or a service."""
    standins = Standins(tmp_path / "work", git_shared_data())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "LMEXP_OUTPUT_ROOT": str(standins.root / "outputs"), "LMEXP_CACHE_DIR": str(tmp_path / "cache")}
    os.environ["LMEXP_OUTPUT_ROOT"] = env["LMEXP_OUTPUT_ROOT"]
    ran, needed, failed = [], [], {}
    for command in ALL:
        cwd = standins.root if command.cwd is None else ROOT / command.cwd
        args = standins.apply(command)
        cfg = None
        if command.subcommand in ("train", "eval") or (command.subcommand == "reproduce" and "<" not in command.text):
            try:
                cfg = compose_command(command, args, standins.root)
            except Exception:  # the README shows this error: running it checks the line
                cfg = None
        reason = needs(cfg, command)
        if reason:
            needed.append(f"{command.text}  [needs {reason}]")
            continue
        program = {"lmexp-train": "lmexp.train", "lmexp-eval": "lmexp.evaluate", "lmexp": "lmexp.tools.cli"}[command.program]
        run_env = {**env, **{k: v.replace("$PWD", str(cwd)) for k, v in command.env.items()}}
        proc = subprocess.run([sys.executable, "-m", program, *shortened(command, args, cfg)], cwd=cwd, env=run_env,
                              capture_output=True, text=True, timeout=1200)
        problems = run_problems(command, proc, standins)
        (failed.__setitem__(command.text, problems) if problems else ran.append(command.text))
    with capsys.disabled():
        print(f"\nREADME commands: {len(ALL)}; run: {len(ran)}; not run here: {len(needed)}; failed: {len(failed)}")
        for line in needed:
            print("  not run:", line)
        for text, problems in failed.items():
            print("  FAILED:", text, "\n    ", "\n     ".join(problems))
    assert not failed, list(failed)
