"""The README cannot drift from the code: every lmexp command in its code blocks is composed and
validated here (default suite, in-process, through Hydra's compose API and lmexp's validate), and
the slow test runs each of them, shortened, and checks what the README says it prints and leaves.
A command added to the README is picked up by itself (tests/readme_commands.py reads the README)."""

from __future__ import annotations

import re

import pytest
from omegaconf import DictConfig, open_dict

from lmexp.config import composition_mistake, validate
from lmexp.errors import ConfigError
from lmexp.schema import EVAL, TRAIN
from lmexp.tools.cli import COMMANDS
from readme_commands import ROOT, Standins, compose_command, git_shared_data, needs, readme_commands

ALL = readme_commands()
# `lmexp` commands whose arguments are not a config (a run, a sweep, a prompt): checked by running them.
NOT_CONFIGS = {"compare", "experiments", "generate", "fill-mask", "export"}


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


def test_the_readme_has_commands_in_every_section_that_shows_them():
    sections = {c.section for c in ALL}
    assert len(ALL) >= 40, [c.text for c in ALL]
    assert {"Examples", "Sweeps", "Fine-tuning", "Errors"} <= sections, sections


@pytest.mark.parametrize("command", ALL, ids=[c.id for c in ALL])
def test_readme_command_composes_and_validates(command, standins, monkeypatch):
    monkeypatch.chdir(standins.root if command.cwd is None else ROOT / command.cwd)
    how = check_config(command, standins)
    assert how
