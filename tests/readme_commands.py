"""The shell commands of README.md, as a newcomer would type them, and what is needed to run them here.

`readme_commands()` reads every code block of README.md and returns each lmexp command in it
(`lmexp-train`, `lmexp-eval`, `lmexp <command>`, `python -m lmexp...`; continuation lines joined,
comments dropped, `cd`/`export` before it and variables the text defines (`S="..."`) applied), with
the lines the README says it prints (`$ command` followed by its output). `Standins` turns the
placeholders (`<run>`, `...`, `/data/wikitext-2`, files such as `corpus.jsonl`) into real paths.
`compose_command` composes a command's config through Hydra's compose API, and `needs` says what a
command needs that a test machine may lack (the network, a GPU, a SLURM cluster). Used by
tests/test_readme.py (composed in the default suite, run in the slow one).
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PROGRAMS = {"lmexp-train": ["train"], "lmexp-eval": ["eval"], "lmexp": []}
MODULES = {"lmexp.train": "lmexp-train", "lmexp.evaluate": "lmexp-eval", "lmexp.tools.cli": "lmexp"}
LOCAL_BUILDERS = ("json", "csv", "text", "parquet")


@dataclass
class Command:
    text: str  # as written in the README, continuation lines joined
    section: str  # the README section (## heading) it is in
    program: str  # lmexp-train | lmexp-eval | lmexp
    args: list[str]  # after the program, variables expanded
    cwd: str | None = None  # relative to the project root (a `cd` before it)
    env: dict[str, str] = field(default_factory=dict)  # `export`s before it
    output: list[str] = field(default_factory=list)  # the lines the README shows it printing

    @property
    def id(self) -> str:
        return re.sub(r"\s+", " ", self.text)[:90]

    @property
    def subcommand(self) -> str:
        """train | eval | the `lmexp` command (compare, reproduce, ...)."""
        if self.program != "lmexp":
            return PROGRAMS[self.program][0]
        return self.args[0] if self.args else ""

    @property
    def hydra_args(self) -> list[str] | None:
        """The Hydra command line of a train or eval command (`lmexp train`/`lmexp eval` included)."""
        if self.program != "lmexp":
            return self.args
        return self.args[1:] if self.subcommand in ("train", "eval") else None


def _variables(text: str) -> dict[str, str]:
    """Shell variables the README's prose defines inline: (`S="..."`)."""
    return dict(re.findall(r'`(\w+)="([^"]*)"`', text))


def _expand(token: str, variables: dict[str, str]) -> list[str]:
    """$NAME / ${NAME} of the README's own variables; a variable holding several words splits (like an
    unquoted shell variable); $PWD and other environment variables stay for the runner."""
    whole = re.fullmatch(r"\$\{?(\w+)\}?", token)
    if whole and whole.group(1) in variables:
        return shlex.split(variables[whole.group(1)])
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), token)]


def readme_commands(text: str | None = None) -> list[Command]:
    text = README.read_text() if text is None else text
    variables = _variables(text)
    commands: list[Command] = []
    section, in_block, pending = "", False, ""
    cwd, env = None, {}
    for raw in text.splitlines():
        if raw.startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            if raw.startswith("## "):  # a `cd` or `export` holds for the rest of its section
                section, cwd, env = raw[3:].strip(), None, {}
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = line.removeprefix("$ ")
        line = re.sub(r"<([^<>]*)>", lambda m: "<" + m.group(1).replace(" ", "_") + ">", line)  # <run dir>: one word
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # not shell (a table, a tree)
            continue
        for segment in _segments(tokens):
            if segment[0] == "cd" and len(segment) == 2:
                cwd = segment[1]
            elif segment[0] == "export":
                env.update(dict(item.split("=", 1) for item in segment[1:] if "=" in item))
            if segment[:2] == ["python", "-m"] and len(segment) > 2 and segment[2] in MODULES:
                segment = [MODULES[segment[2]], *segment[3:]]
            if segment[0] in PROGRAMS:
                args = [word for token in segment[1:] for word in _expand(token, variables)]
                commands.append(Command(line.split("#")[0].strip(), section, segment[0], args, cwd, dict(env)))
    _attach_outputs(text, commands)
    return commands


def _segments(tokens: list[str]) -> list[list[str]]:
    segments, current = [], []
    for token in tokens:
        if token in ("&&", ";", "||"):
            if current:
                segments.append(current)
            current = []
        else:
            current.append(token)
    return [*segments, current] if current else segments


def _attach_outputs(text: str, commands: list[Command]) -> None:
    """Each `$ command`'s following lines in its block (up to the next `$ `): what it prints."""
    by_text = {c.text: c for c in commands}
    current, in_block = None, False
    for raw in text.splitlines():
        if raw.startswith("```"):
            in_block, current = not in_block, None
        elif in_block and raw.startswith("$ "):
            line = re.sub(r"<([^<>]*)>", lambda m: "<" + m.group(1).replace(" ", "_") + ">", raw[2:])
            current = by_text.get(line.split("#")[0].strip())
        elif in_block and current is not None and raw.strip():
            current.output.append(raw.strip())


def git_shared_data() -> Path:
    """../shared/data beside the project's main checkout (a git worktree's lives elsewhere)."""
    common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return Path(common).parent.parent / "shared" / "data" if common else ROOT.parent / "shared" / "data"


class Standins:
    """Real paths for a command's placeholders, in a folder of its own (`root`, the commands' cwd):
    the files the README's examples name (corpus/*.txt, valid.txt, corpus.jsonl, train.csv, dev.csv),
    a run and a sweep for `<run>`/`<sweep>`, the shared data for `../shared/data` and `/data/...`."""

    def __init__(self, root: Path, shared_data: Path, runs: dict[str, Path] | None = None) -> None:
        self.root, self.shared_data = root, shared_data
        self.runs = runs or {}
        text = (shared_data / "tinyshakespeare" / "input.txt").read_text()[:60_000]
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        (root / "corpus").mkdir(parents=True, exist_ok=True)
        for i in range(8):
            (root / "corpus" / f"part{i}.txt").write_text("\n\n".join(paragraphs[i::10]))
        (root / "valid.txt").write_text("\n\n".join(paragraphs[8::10]))
        with open(root / "corpus.jsonl", "w") as f:
            for p in paragraphs:
                f.write(json.dumps({"body": p}) + "\n")
        for name, rows in (("train.csv", paragraphs[:300]), ("dev.csv", paragraphs[300:360])):
            with open(root / name, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["premise", "hypothesis", "gold"])
                for i, p in enumerate(rows):
                    lines = p.splitlines() + [""]
                    writer.writerow([lines[0], lines[1] or lines[0], "yes" if i % 2 else "no"])
        wikitext = shared_data / "wikitext2"
        self.wikitext = wikitext if wikitext.is_dir() else root / "wikitext2"
        self.wikitext.mkdir(exist_ok=True)

    def run_dir(self, placeholder: str, subcommand: str) -> Path:
        """`<run>`, `<pretraining run>`: a run made earlier (by the slow test) or a stand-in run dir
        with (empty) checkpoints, enough for the config checks."""
        if placeholder in self.runs:
            return self.runs[placeholder]
        kind = {"fill-mask": "masked", "generate": "causal", "export": "causal"}.get(subcommand, "any")
        if kind in self.runs:
            return self.runs[kind]
        if "any" in self.runs:
            return self.runs["any"]
        fake = self.root / "outputs" / "runs" / "standin"
        (fake / "checkpoints").mkdir(parents=True, exist_ok=True)
        for name in ("last.ckpt", "best.ckpt"):
            (fake / "checkpoints" / name).touch()
        return fake

    def sweep_dir(self) -> Path:
        if "sweep" in self.runs:
            return self.runs["sweep"]
        fake = self.root / "outputs" / "multiruns" / "standin"
        fake.mkdir(parents=True, exist_ok=True)
        return fake

    def apply(self, command: Command) -> list[str]:
        """The command's arguments with every placeholder replaced."""
        out = []
        data = next((a.split("=", 1)[1] for a in command.args if a.startswith("data=")), None)
        for arg in command.args:
            if arg == "...":
                continue  # "and so on"
            arg = arg.replace("../shared/data", str(self.shared_data))
            arg = re.sub(r"(?:outputs/runs/)?<([^>]*run[^>]*)>(/checkpoints/[\w.]+)?",
                         lambda m: str(self.run_dir(m.group(1), command.subcommand)) + (m.group(2) or ""), arg)
            arg = re.sub(r"(outputs/multiruns/)?<sweep>", str(self.sweep_dir()), arg)
            if arg.startswith("data.path="):
                value = arg.split("=", 1)[1]
                if value == "..." or (value.startswith("/data/") and not Path(value).exists()):
                    if data in ("wikitext2", "wikitext103"):
                        arg = f"data.path={self.wikitext}"
                    elif data == "tinyshakespeare" or data is None:
                        arg = f"data.path={self.shared_data / 'tinyshakespeare'}"
            out.append(arg.replace("$PWD", str(ROOT / (command.cwd or ""))))
        return out


def sweep_free(args: list[str]) -> tuple[list[str], bool, list[str]]:
    """A Hydra command line as one job: flags dealt with (`-m`, `--config-dir`), each swept key at its
    first value, a sweeper's search space (Optuna's interval, tag) left to the sweeper. Returns the
    overrides, whether it is a sweep, and the flags it could not turn into overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides, multirun, unknown = [], False, []
    words = iter(args)
    for word in words:
        if word in ("-m", "--multirun"):
            multirun = True
        elif word in ("--config-dir", "-cd"):
            overrides.append(f"hydra.searchpath=[file://{Path(next(words)).resolve()}]")
        elif word.startswith("-"):
            unknown.append(word)
        else:
            overrides.append(word)
    parser = OverridesParser.create()
    single = []
    for text, override in zip(overrides, parser.parse_overrides(overrides)):
        if override.is_sweep_override():
            try:
                first = next(iter(override.sweep_string_iterator()))
            except Exception:  # a sweeper's own search space (interval, tag): the sweeper reads it
                continue
            single.append(f"{override.get_key_element()}={first}")
        else:
            single.append(text)
    return single, multirun, unknown


def compose_command(command: Command, args: list[str], root: Path) -> DictConfig:
    """The config of a train or eval command (or of `lmexp reproduce <experiment> ...`), composed
    by Hydra's compose API from lmexp's configs, with the Hydra config; writing under root/outputs
    (as a run started in root would: the compose API has no run directory of its own)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from lmexp.config import config_dir, register_resolvers

    register_resolvers()
    if command.subcommand == "reproduce":
        config_name, overrides = "train", [f"experiment={args[1]}", *[a for a in args[2:] if "=" in a and not a.startswith("-")]]
    else:
        config_name = "eval" if command.subcommand == "eval" else "train"
        hydra_args = args if command.program != "lmexp" else args[1:]
        overrides, _, unknown = sweep_free(hydra_args)
        if unknown:
            raise ValueError(f"flags the README's command uses that the test cannot turn into overrides: {unknown}")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        paths = [f"paths.output_root={root / 'outputs'}", f"paths.output_dir={root / 'outputs' / 'composed'}"]
        cfg = compose(config_name, overrides=[*paths, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as in a run: messages name the chosen options (model=gpt_tiny)
    return cfg


def needs(cfg: DictConfig | None, command: Command) -> str | None:
    """What the command needs beyond this machine: a GPU, the network, a cluster, a database."""
    from omegaconf import OmegaConf

    def get(key: str):
        return OmegaConf.select(cfg, key, default=None) if cfg is not None else None

    if any(a.startswith("hydra.sweeper.storage=postgresql") for a in command.args):
        return "a PostgreSQL server (scripts/postgres-up.sh)"
    if "Slurm" in str(get("hydra.launcher._target_")):
        return "a SLURM cluster (scripts/slurm-up.sh)"
    if str(get("trainer.accelerator")) in ("gpu", "cuda"):
        return "a GPU"
    source = get("data.source._target_") or ""
    folder = get("data.source.path")
    if source.endswith("WikiText") and folder and get("data.source.train_files") and not (
            Path(str(folder)) / str(get("data.source.train_files"))).exists():
        return f"the full data set ({get('data.source.train_files')} is not in {folder} here)"
    if source.endswith("HubDataset") and get("data.source.path") not in LOCAL_BUILDERS:
        return "the network (a data set from the Hugging Face hub)"
    if source.endswith("WikiText") and get("data.source.path") is None:
        return "the network (WikiText from the hub)"
    if source.endswith("LabelledFiles") and get("data.source.hub"):
        return "the network (a data set from the Hugging Face hub)"
    name = get("tokenizer.name_or_path")
    if get("tokenizer.kind") == "pretrained" and name and not Path(str(name)).exists():
        return "the network (a tokenizer from the Hugging Face hub)"
    pretrained = get("model.pretrained")
    if pretrained and not Path(str(pretrained)).exists():
        return "the network (weights from the Hugging Face hub)"
    return None
