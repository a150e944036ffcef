"""Config helpers that must stay light: no torch, Lightning or transformers imports here, so a
bad config is reported in well under a second, before the heavy stack loads."""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from lmexp.console import quiet_third_party
from lmexp.data.files import resolve_files
from lmexp.errors import ConfigError, ExpectedFailure
from lmexp.schema import (BYTE_ALPHABET, CHECKPOINT, DATA, IMPL, NODE_GROUPS, PATHS, SPECIAL_TOKENS, SPLIT, TARGETS,
                          TRAIN, Schema, check_config, is_int, unknown_key)

# A launcher's worker process (joblib) imports this module when it receives the job function, and
# composes each job's config before running it: the filters must be in place from the import on.
quiet_third_party()

CLASSIFICATION = "lmexp.objectives.classification.SequenceClassification"
WIKITEXT = "lmexp.data.sources.WikiText"


def config_dir() -> str:
    """conf/ inside the installed wheel, else the checkout's top-level conf/ (editable install)."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf")


def register_resolvers() -> None:
    # Cached per config; Hydra copies the cache to every sweep job, so all jobs share one sweep dir.
    OmegaConf.register_new_resolver("lmexp_unique", lambda: uuid.uuid4().hex[:6], use_cache=True, replace=True)


def hydra_runtime() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_group(runtime: DictConfig | None) -> str | None:
    """The sweep's id (its directory name) for a multirun job, else None."""
    from hydra.types import RunMode

    if runtime is None or runtime.mode != RunMode.MULTIRUN:
        return None
    return Path(runtime.sweep.dir).name


def hydra_entry_point(config_name: str, job: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """A console script (lmexp-train, lmexp-eval): Hydra composes conf/<config_name>.yaml with the
    command line and calls `job`; an expected failure is one line on stderr and exit status 1 (its
    traceback is in the run's log file)."""
    import hydra

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    @functools.wraps(job)  # Hydra names the job (and its log file, train.log) after job's module
    def hydra_main(cfg: DictConfig) -> Any:
        try:
            return job(cfg)
        except ExpectedFailure as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    def main() -> None:
        # A full disk must cost one line, not a "--- Logging error ---" traceback per log call.
        logging.raiseExceptions = False
        register_resolvers()
        with one_line_mistakes():
            if {"--help", "-h"} & set(sys.argv[1:]):
                print_help(hydra_main)
            else:
                hydra_main()

    return main


# Where a node without a _target_ takes its keys from, by its place in the config.
PLACES = {"data": DATA, "data.split": SPLIT, "paths": PATHS, "checkpoint": CHECKPOINT, "impl": IMPL}


def composition_mistake(err: BaseException) -> str | None:
    """One line for the composition errors a newcomer makes, naming the key or option and the closest
    valid ones: an unknown key (`trainer.max_step=20`) or group option (`tokenizer=wordpeice`).
    None for any other error. Hydra's own report of these takes up to 19 lines and advises
    `+key=...` even for a key nothing would read."""
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        near = difflib.get_close_matches(option, err.options, n=3, cutoff=0.5)
        line = f"{group}={option}: no such option"
        if near:
            line += f"; did you mean {' or '.join(f'{group}={n}' for n in near)}?"
        line += f" ({group}: {', '.join(err.options)})"
        parent = re.match(r"In '([^']+)':", str(err))
        if parent and parent.group(1) not in ("train", "eval", "hydra/config"):
            line += f", in the defaults of {parent.group(1)}"
        return line
    cause = err.__cause__
    typed = re.search(r"use \+(\S+)", str(err))
    if (isinstance(err, ConfigCompositionException) and str(err).startswith("Could not override")
            and isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(cause.parent_node, DictConfig)
            and cause.full_key and typed):
        return unknown_override(cause.full_key, cause.parent_node, typed.group(1))
    return None


def unknown_override(path: str, node: DictConfig, typed: str) -> str:
    """An override of a key the composed node lacks. A key lmexp reads there (the node's schema)
    is set with `+`; a misspelling gets the closest key; a `+` to add a key is suggested only for
    nodes lmexp does not check (a plug-in's, a group of named entries such as callbacks)."""
    where, _, key = path.rpartition(".")
    target = node.get("_target_") if "_target_" in node else None
    schema = TARGETS.get(target) if target else PLACES.get(where)
    if schema is not None and key in schema.keys:
        return f"{path} is not set in this config; add it with +{typed}"
    own_keys = (
        (target is not None and target not in TARGETS)  # a plug-in's node: its constructor checks it
        or (schema is not None and schema.open)  # passed on to a library (a transformers config)
        or where in NODE_GROUPS  # named entries: +callbacks.<name>={...} adds one
        or (where == "data" and OmegaConf.select(node, "source._target_") not in TARGETS)  # a plug-in source's keys
    )
    line = unknown_key(path, set(node.keys()) | set(schema.keys if schema else ()))
    return line + (f" (to add a key of your own: +{typed})" if own_keys else "")


@contextlib.contextmanager
def one_line_mistakes() -> Iterator[None]:
    """While an entry point runs, Hydra's report of a composition error becomes one line
    (`composition_mistake`); every other error is reported by Hydra as before. Hydra has no hook for
    these errors, so its reporter (hydra._internal.utils.run_and_report) is wrapped."""
    from hydra._internal import utils

    report = utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except Exception as err:
                line = composition_mistake(err)
                if line is None:
                    raise
                print(f"error: {line}", file=sys.stderr)
                sys.exit(1)
        return report(guarded)

    utils.run_and_report = run_and_report
    try:
        yield
    finally:
        utils.run_and_report = report


def print_help(hydra_main: Callable[[], Any]) -> None:
    """Hydra's --help without folders of config files that sit inside a group's folder as if they were
    groups (`experiment/claims`: the claims' shared setting, which claim experiments include)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            hydra_main()
        except SystemExit as exit:
            code = exit.code
        else:
            code = 0
    groups = set(re.findall(r"^([\w/]+): ", out.getvalue(), flags=re.M))
    kept = [line for line in out.getvalue().splitlines()
            if not ((group := re.match(r"^(\w+)/[\w/]+: ", line)) and group.group(1) in groups)]
    print("\n".join(kept))
    sys.exit(code)


def choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for a config group (`gpt_tiny`), or the group's target when unknown."""
    chosen = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}")
    if chosen is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            chosen = HydraConfig.get().runtime.choices.get(group)
        except ValueError:  # compose API without the hydra config
            chosen = None
    return chosen or str(OmegaConf.select(cfg, f"{group}._target_", default=group)).rsplit(".", 1)[-1]


def missing_keys(cfg: DictConfig) -> list[str]:
    """Keys still set to ??? (OmegaConf's own missing_keys trips over interpolations to them)."""
    found: list[str] = []

    def walk(node, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if value == "???":
                found.append(f"{prefix}{key}")
            walk(value, f"{prefix}{key}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return sorted(found)


def resolved(cfg: DictConfig) -> dict:
    """The config as plain data with interpolations resolved; a value that cannot be resolved here
    (e.g. `${hydra:...}` outside a Hydra run) is left out rather than failing the check."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # omegaconf raises several types; resolve key by key instead
        pass

    def walk(node):
        out = {} if isinstance(node, DictConfig) else []
        keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
        for key in keys:
            try:
                value = node[key]
            except Exception:
                continue
            value = walk(value) if isinstance(value, (DictConfig, ListConfig)) else value
            if isinstance(out, dict):
                out[key] = value
            else:
                out.append(value)
        return out

    return walk(cfg)


def validate(cfg: DictConfig, top: Schema = TRAIN) -> None:
    """Every check that needs no heavy import: the schema of each node (lmexp.schema), the fit of the
    pieces to each other, and the files they name. Raises one ConfigError naming every bad key."""
    missing = missing_keys(cfg)
    if missing:
        key = missing[0]
        raise ConfigError(f"missing required value: {key} (set it on the command line: {key}=...)")
    plain = resolved(cfg)
    problems = check_config(plain, top)
    if problems:  # the fit checks below assume well-typed values
        raise ConfigError("; ".join(problems))
    problems = fit_problems(cfg, plain) + file_problems(plain)
    if problems:
        raise ConfigError("; ".join(problems))


def attention_mismatch(cfg: DictConfig, model_attention: str | None, needed: str | None) -> str | None:
    """The error for a model of one attention kind under an objective that needs the other
    (checked on the config here, and on the built objects for a plug-in's, which may not say)."""
    # "any": the objective serves both kinds (classification).
    if not needed or needed == "any" or not model_attention or needed == model_attention:
        return None
    kind = {"causal": "a causal decoder", "bidirectional": "a bidirectional encoder"}
    return (f"model={choice(cfg, 'model')} is {kind.get(model_attention, model_attention)} and cannot serve "
            f"objective={choice(cfg, 'objective')}, which needs {kind.get(needed, needed)} "
            f"(pick another model, or set model.attention={needed} for a native model)")


def unlabelled_data(cfg: DictConfig, labelled_objective: bool, data: dict) -> str | None:
    """The error for an objective that needs labelled examples given plain text (labelled data
    configs have max_length; a data module of its own, `_target_`, is trusted)."""
    if not labelled_objective or "_target_" in data or "max_length" in data:
        return None
    return (f"objective={choice(cfg, 'objective')} needs labelled data (data=sst2, trec or labelled_files); "
            f"data={choice(cfg, 'data')} is unlabelled text")


def fit_problems(cfg: DictConfig, plain: dict) -> list[str]:
    """Values that are fine alone but not together."""
    problems = []
    model, objective, tokenizer = plain.get("model") or {}, plain.get("objective") or {}, plain.get("tokenizer") or {}
    data = plain.get("data") or {}

    mismatch = attention_mismatch(cfg, model.get("attention"), objective.get("attention"))
    if mismatch:
        problems.append(mismatch)
    for width, heads in (("d_model", "n_heads"), ("hidden_size", "num_attention_heads"), ("n_embd", "n_head"),
                         ("num_attention_heads", "num_key_value_heads")):
        if is_int(model.get(width)) and is_int(model.get(heads)) and model[heads] > 0 and model[width] % model[heads]:
            problems.append(f"model.{heads}={model[heads]} must divide model.{width}={model[width]}")

    context = model.get("max_seq_len")
    for key in ("block_size", "max_length"):
        length = data.get(key)
        if length is not None and context is not None and length > context:
            problems.append(f"data.{key}={length} is larger than the model's context model.max_seq_len={context}")
    unlabelled = unlabelled_data(cfg, objective.get("_target_") == CLASSIFICATION, data)
    if unlabelled:
        problems.append(unlabelled)

    kind, size = tokenizer.get("kind"), tokenizer.get("vocab_size")
    if kind in ("bpe", "wordpiece") and size is None:
        problems.append(f"tokenizer.vocab_size=null: tokenizer={kind} needs a vocabulary size")
    smallest = {"byte": SPECIAL_TOKENS + BYTE_ALPHABET, "bpe": SPECIAL_TOKENS + BYTE_ALPHABET,
                "wordpiece": SPECIAL_TOKENS + 1}.get(kind)
    if smallest and kind != "byte" and size is not None and size < smallest:
        problems.append(f"tokenizer.vocab_size={size}: tokenizer={kind} needs at least {smallest} "
                        f"({SPECIAL_TOKENS} special tokens" + (f" + {BYTE_ALPHABET} bytes)" if kind == "bpe" else " + 1)"))
    least = smallest if kind == "byte" else size if kind == "bpe" else None
    wanted = model.get("vocab_size")
    if wanted is not None and least is not None and wanted < least and not model.get("init_from"):
        problems.append(f"model.vocab_size={wanted} is smaller than tokenizer={kind}'s vocabulary ({least} tokens); "
                        f"set model.vocab_size=null or >= {least}")
    if kind == "pretrained" and not tokenizer.get("name_or_path"):
        problems.append("tokenizer.name_or_path: tokenizer=pretrained needs a local directory or a hub name")

    if (objective.get("mask_replace_prob") or 0) + (objective.get("random_replace_prob") or 0) > 1:
        problems.append(f"objective.mask_replace_prob={objective['mask_replace_prob']} + objective.random_replace_prob="
                        f"{objective['random_replace_prob']} must be <= 1")
    split = data.get("split") or {}
    held_out = (split.get("val_fraction") or 0) + (split.get("test_fraction") or 0)
    if held_out >= 1:
        problems.append(f"data.split: val_fraction + test_fraction = {held_out} must be < 1")

    if plain.get("resume") and sweep_group(hydra_runtime()) is None:
        problems.append(
            "resume=true re-runs the unfinished jobs of a sweep (lmexp-train -m ... hydra.sweep.dir=<sweep dir> "
            "resume=true); to continue a single run use ckpt_path=last or ckpt_path=<run dir>"
        )
    return problems


def file_problems(plain: dict) -> list[str]:
    """Files and directories the config names that do not exist (globs must match a file)."""
    problems = []
    ckpt = plain.get("ckpt_path")
    if ckpt not in (None, "last") and not os.path.exists(ckpt):
        problems.append(f"ckpt_path={ckpt}: no such file or run directory")
    init_from = (plain.get("model") or {}).get("init_from")
    if init_from and not os.path.exists(init_from):
        problems.append(f"model.init_from={init_from}: no such run directory or checkpoint file")
    data = plain.get("data") or {}
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    for key in ("train_files", "val_files", "test_files"):
        if source.get(key) and source.get("_target_") != WIKITEXT:  # WikiText's are names inside data.path
            try:
                resolve_files(source[key], f"data.{key}")
            except ConfigError as err:
                problems.append(str(err))
    if source.get("_target_") == WIKITEXT and source.get("path") and not os.path.isdir(source["path"]):
        problems.append(f"data.path={source['path']}: not a directory (expected wiki.*.tokens files in it)")
    name = (plain.get("tokenizer") or {}).get("name_or_path")
    if name and _looks_local(name) and not os.path.isdir(name):
        problems.append(f"tokenizer.name_or_path={name}: no such directory")
    for key in ("path", "hub"):
        value = source.get(key)
        if source.get("_target_") != WIKITEXT and isinstance(value, str) and _looks_local(value) and not os.path.exists(value):
            problems.append(f"data.{key}={value}: no such file or directory")
    return problems


def _looks_local(name: str) -> bool:
    """A path rather than a hub id (`gpt2`, `user/name`)."""
    return name.startswith(("/", "./", "../", "~")) or os.path.exists(name) or name.count("/") > 1
