"""Every shipped config composes, says what each key is, and instantiates against its targets; bad input
is one clear line naming the key, before anything runs."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from conftest import SHARED_DATA, SMALL_MODEL, TINY, cli, expect_config_error, read_summary
from lmexp.config import config_dir

CONF = Path(config_dir())


def test_eval_config_composes(make_cfg):
    cfg = make_cfg(["ckpt_path=x.ckpt"], config_name="eval")
    assert cfg.ckpt_path == "x.ckpt" and cfg.splits == ["validation", "test"]


def test_unknown_group_option_lists_the_valid_ones(make_cfg):
    with pytest.raises(MissingConfigException) as err:
        make_cfg(["model=gpt_huge"])
    assert "gpt_tiny" in str(err.value) and "bert_tiny" in str(err.value)


def test_unknown_key_is_refused(make_cfg):
    with pytest.raises(ConfigCompositionException, match="optimizer.learning_rate"):
        make_cfg(["optimizer.learning_rate=0.1"])


def run_expecting(make_cfg, tmp_path, overrides: list[str], *fragments: str) -> None:
    expect_config_error(make_cfg, overrides, *fragments)
    summary = tmp_path / "run" / "summary.json"
    assert not summary.exists() or read_summary(tmp_path / "run")["status"] != "completed"


def test_missing_required_value(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["data=text_files"], "data.train_files", "missing")


def test_data_file_not_found(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["data=text_files", f"data.train_files={tmp_path}/nope/*.txt"],
                  "data.train_files", "no file matches")


def test_data_file_empty(make_cfg, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    run_expecting(make_cfg, tmp_path, ["data=text_files", f"data.train_files={tmp_path}/empty.txt"],
                  "data.train_files", "no text")


def test_model_that_cannot_serve_the_objective(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["objective=masked_lm", "model=gpt_tiny"], "model=", "causal", "bidirectional")
    run_expecting(make_cfg, tmp_path, ["model=hf_bert"], "causal")


def test_tokenizer_vocab_larger_than_model(make_cfg, tmp_path, small_corpus):
    run_expecting(make_cfg, tmp_path, [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt",
                                       "tokenizer=byte", "model.vocab_size=100"],
                  "model.vocab_size=100", "262")


def test_block_size_larger_than_context(make_cfg, tmp_path):
    run_expecting(make_cfg, tmp_path, ["data.block_size=512", "model.max_seq_len=256"],
                  "data.block_size=512", "model.max_seq_len=256")


def test_bad_model_shape_is_one_line(make_cfg, tmp_path, small_corpus):
    run_expecting(make_cfg, tmp_path, [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt",
                                       "tokenizer=byte", "model.d_model=30", "model.n_heads=4"], "model.n_heads=4 must divide model.d_model=30")


def test_unreadable_and_missing_checkpoint(make_cfg, tmp_path, small_corpus):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    base = [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "tokenizer=byte",
            *SMALL_MODEL["native"]]
    run_expecting(make_cfg, tmp_path, [*base, f"ckpt_path={corrupt}"], f"ckpt_path={corrupt}", "not a readable checkpoint")
    run_expecting(make_cfg, tmp_path, [*base, f"ckpt_path={tmp_path}/missing.ckpt"], "no such file")
    run_expecting(make_cfg, tmp_path, [*base, "ckpt_path=last"], "ckpt_path=last")


def test_cli_config_error_is_one_line_without_traceback(tmp_path):
    result = cli("objective=masked_lm", "model=gpt_tiny", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "masked_lm" in errors[0]


def test_cli_unknown_option_and_key(tmp_path):
    result = cli("model=gpt_huge", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "gpt_tiny" in result.stderr and "bert_tiny" in result.stderr
    result = cli("trainer.max_stepz=3", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr and "max_stepz" in result.stderr


def test_cli_main_job_runs_and_prints_the_table(tmp_path):
    """The README's main command, shortened by debug=fast and a slice of the embedded corpus."""
    result = cli("debug=fast", "data.source.max_files=30", "tokenizer=byte", "callbacks=minimal",
                 "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("final metrics", "perplexity", "run directory:"):
        assert line in result.stdout
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1 and read_summary(runs[0])["status"] == "completed"
    assert (runs[0] / ".hydra" / "overrides.yaml").is_file()
    assert str(runs[0].name) in result.stdout.replace("\n", "")


# --- Shipped YAML explains itself ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def shipped_yaml() -> list[Path]:
    """Every YAML under conf/ and experiments/ (conf/experiment is a link to experiments/: not walked twice)."""
    files = []
    for top in ("conf", "experiments"):
        for folder, _, names in os.walk(ROOT / top):  # os.walk does not follow links
            files += [Path(folder) / name for name in names if name.endswith(".yaml")]
    return sorted(files)


def comment_start(line: str) -> int | None:
    """Where the line's comment starts (a `#` at the line's start or after a blank, outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote and not (quote == '"' and line[i - 1] == "\\"):  # \" inside "..." goes on
                quote = None
        elif c in "\"'" and (i == 0 or line[i - 1] in " \t:[{,-"):
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return None


def yaml_keys(text: str) -> list[tuple[int, str, tuple[int, ...]]]:
    """(line, key, line numbers of its earlier siblings) for every key of the file's block
    mappings; keys of flow mappings ({a: 1}) and the entries of `defaults` are left out."""
    import yaml

    keys = []

    def walk(node) -> None:
        if isinstance(node, yaml.MappingNode) and not node.flow_style:
            siblings: list[int] = []
            for key, value in node.value:
                keys.append((key.start_mark.line, key.value, tuple(siblings)))
                siblings.append(key.start_mark.line)
                if key.value != "defaults":
                    walk(value)
        elif isinstance(node, yaml.SequenceNode) and not node.flow_style:
            for item in node.value:
                walk(item)

    for document in yaml.compose_all(text):
        walk(document)
    return keys


def uncommented_keys(text: str) -> list[str]:
    """`line N: key` for each key without a comment. The rule:

    - a key is explained by a comment at the end of its own line, or by a comment line directly
      above it (no blank line between): the comment above a mapping explains its first key only;
    - a comment line above a short run of closely related keys explains the run: up to 3 sibling
      keys that follow, each on the line directly after the one before (one-line values, no blank
      and no comment line between), share the first key's comment (e.g. `resume` and `fail_fast`);
    - the entries of a `defaults` list share the comment of `defaults`; keys inside a flow mapping
      ({train: train, ...}) share the comment of their line;
    - `_target_` needs none: its value, the class or function built, says what the node is.
    """
    lines = text.split("\n")
    full_comment = [line.strip().startswith("#") for line in lines]
    trailing = [comment_start(line) is not None for line in lines]
    explained_above: set[int] = set()  # lines of keys with a comment line directly above them
    missing = []
    for line, key, siblings in yaml_keys(text):
        if line > 0 and full_comment[line - 1]:
            explained_above.add(line)
        run = [*siblings, line]  # consecutive one-line siblings before this key, nearest last
        k = len(run) - 1
        while k > 0 and run[k - 1] == run[k] - 1:
            k -= 1
        led = k < len(run) - 1 and run[k] in explained_above and len(run) - 1 - k <= 3
        if key == "_target_" or trailing[line] or line in explained_above or led:
            continue
        missing.append(f"line {line + 1}: {key}")
    return missing


@pytest.mark.parametrize("path", shipped_yaml(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_key_has_a_comment(path):
    """Every key of every shipped YAML says what it is (unit, choices): see `uncommented_keys` for the rule."""
    missing = uncommented_keys(path.read_text())
    assert not missing, f"{path.relative_to(ROOT)}: keys without a comment: {', '.join(missing)}"


def test_comment_rule():
    text = ("# a header\n_target_: x.Y\na: 1\nb: 2  # b\n# block of two\nc: 1\nd: 2\n\ne: 3\n"
            "f:\n  g: 1  # g\n  h: {i: 1}  # flow\n# four\nj: 1\nk: 1\nl: 1\nm: 1\nn: 1\n"
            "defaults:  # groups\n  - model: gpt_tiny\ns: 'a # not a comment'\nt: \"x\" # t\n")
    assert uncommented_keys(text) == ["line 9: e", "line 10: f", "line 18: n", "line 21: s"]


# --- Every option instantiates against its `_target_` ----------------------------------------

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# Nodes without a `_target_` that lmexp builds one object from: their keys are that class's arguments.
IMPLICIT_TARGETS = {"impl": "lmexp.impl.Impl", "data.split": "lmexp.data.sources.SplitSpec",
                    "checkpoint": "lmexp.checkpointing.KeepLastCheckpoint"}
# What the code passes besides a node's keys (lmexp.build, the data modules, LMModule): positional
# arguments of the call, and keyword names. Optimizer and scheduler nodes are `_partial_`: called later.
SUPPLIED = {
    "model": (0, {"vocab_size"}),  # build_model: the tokenizer's size (pad_token_id only if the node has it)
    "data": (0, {"seed", "collate"}),  # a data module of its own (data/modular_addition)
    "tokenizer": (0, {"texts"}),  # the train split's texts, for the kinds that train
    "optimizer": (1, set()),  # the parameter groups; `fused` from impl where the optimizer takes it
    "scheduler": (1, {"total_steps"}),  # the optimizer
    "trainer": (0, {"logger", "callbacks", "plugins"}),
    "logger.wandb": (0, {"settings"}),  # lmexp.wandb_logging.build_wandb_logger
}
# Keys lmexp reads around the call rather than passing them on.
READ_AROUND = {"model": ("init_from", "freeze_backbone"), "logger.wandb": ("init_timeout",)}
# Options that hold no `_target_` node (anything else without one is a typo such as `_targt_`).
NO_TARGET = {"model/from_run", "callbacks/none", "logger/none", "paths/default", "hydra/sweeper/pruner/none"}
# Shrunk for the real instantiation (the signature check sees the same keys): 17M-85M parameters otherwise.
SHRINK = {"model/gpt_small": SMALL_MODEL["native"], "model/bert_base": SMALL_MODEL["native"],
          "model/seed_encoder": SMALL_MODEL["seed_encoder"], "model/bag_of_ngrams": SMALL_MODEL["ngrams"]}
# Overrides an option needs on top of test_schema's `fitting` to be built here (files to read).
BUILDABLE = {"data/labelled_files": [f"data.train_files={SHARED_DATA}/sst2/dev.tsv", "data.text_columns=[sentence]"]}
# Groups whose options are also built for real here (the others' nodes belong to these groups).
BUILT = ("model", "data", "tokenizer", "objective", "optimizer", "scheduler", "trainer", "logger", "callbacks",
         "impl", "hydra")


def option_cases() -> list[tuple[str, str]]:
    """(group, option) for every option file under conf/: each folder is a group (hydra/launcher
    too); experiment options are paths below conf/experiment (claims/shakespeare_char)."""
    cases = []
    for folder, _, names in os.walk(CONF, followlinks=True):
        group = Path(folder).relative_to(CONF).as_posix()
        if group == "." or group.startswith("experiment/"):
            continue
        if group == "experiment":
            cases += [(group, p.relative_to(CONF / group).with_suffix("").as_posix())
                      for p in sorted((CONF / group).rglob("*.yaml"))]
        else:
            cases += [(group, name[:-5]) for name in sorted(names) if name.endswith(".yaml")]
    return sorted(cases) + [("", "train")]  # "": the primary config itself (its `checkpoint` node)


def compose_option(tmp_path: Path, group: str, option: str) -> tuple:
    """The train config with this option chosen (and what makes it fit), Hydra's own config included."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lmexp.config import register_resolvers
    from test_schema import fitting

    name = f"{group}/{option}"
    overrides = [] if group == "" or (group, option) == ("hydra", "default") else [f"{group}={option}"]
    overrides += fitting(group, option) + BUILDABLE.get(name, []) + SHRINK.get(name, [])
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            f"paths.output_root={tmp_path}", f"paths.output_dir={tmp_path / 'run'}",
            f"paths.cache_dir={tmp_path / 'cache'}", *overrides])
    return cfg, OmegaConf.to_container(cfg, resolve=False)


def option_roots(group: str, option: str, plain: dict) -> dict:
    """The part of the composed config an option fills: its group's node, or for `_global_` options
    (experiments, debug, hparams_search) and the primary config, the whole config; Hydra's own node
    only where the option is about it."""
    if group == "":
        return {k: v for k, v in plain.items() if k != "hydra"}
    path = CONF / group / f"{option}.yaml"
    text = path.read_text()
    if "# @package _global_" not in text:
        node = plain
        for part in group.split("/"):
            node = node[part]
        return {group.replace("/", "."): node}
    return {k: v for k, v in plain.items() if k != "hydra" or "/hydra/" in text or "\nhydra:" in text}


def target_nodes(node, path: str = ""):
    """(path, node) for every node with a `_target_`, and for the IMPLICIT_TARGETS nodes."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        elif path in IMPLICIT_TARGETS:
            yield path, {**node, "_target_": IMPLICIT_TARGETS[path]}
        for key, value in node.items():
            yield from target_nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from target_nodes(value, f"{path}[{i}]")


def _forwarded_to(target, node: dict):
    """Where a target that takes **kwargs sends them: a callable whose signature must take the keys,
    or a check function; None when lmexp does not know (then its own __init__ chain is followed)."""
    import pytorch_lightning.loggers as loggers
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    from hydra_plugins.hydra_submitit_launcher import config as submitit_config
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher

    from lmexp.models.hf import MODEL_TYPES, HFModel

    if target is HFModel:  # the transformers config of model_type (which stores any key: checked by name)
        def check(extra: dict) -> None:
            import transformers

            HFModel._check_config_kwargs(getattr(transformers, MODEL_TYPES[node["model_type"]][0]), extra)
        return check
    if target is loggers.WandbLogger:
        import wandb

        return wandb.init
    if target is loggers.TensorBoardLogger:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    if f"{target.__module__}.{target.__qualname__}" == "hydra_plugins.lmexp_sweeper.optuna_sweeper.OptunaSweeper":
        from hydra_plugins.lmexp_sweeper._search import OptunaSearch  # the light plugin hands its keys on

        def check(extra: dict) -> None:
            named = set(inspect.signature(OptunaSearch).parameters) - {"unknown"}
            if set(extra) - named:
                raise ValueError(f"OptunaSearch takes no argument {', '.join(sorted(set(extra) - named))}")
        return check
    # Hydra's schema of a launcher's keys. By name: Hydra's plugin scan may import a plugin module
    # twice, so a subclass's base need not be the class object imported here.
    bases = {f"{k.__module__}.{k.__qualname__}" for k in getattr(target, "__mro__", ())}
    for launcher, schema in ((JoblibLauncher, JobLibLauncherConf),
                             (submitit_launcher.SlurmLauncher, submitit_config.SlurmQueueConf),
                             (submitit_launcher.LocalLauncher, submitit_config.LocalQueueConf)):
        if f"{launcher.__module__}.{launcher.__qualname__}" in bases:
            return schema
    return None


def _init_chain(cls: type) -> tuple[set[str], bool]:
    """Keyword names a class takes, following **kwargs up its __init__s (CausalLM(predict, **common) →
    TokenObjective(attention, monitor, monitor_mode)); open: the chain ends in **kwargs (object's)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names, False
    return names, True


def check_signature(path: str, node: dict) -> None:
    """The node's keys, plus what the code passes, bind to its `_target_`'s signature (`_partial_`:
    bind_partial, then the later call); keys a **kwargs takes are checked where they are passed on."""
    from hydra.utils import get_object

    where = f"{path}: {node['_target_']}"
    target = get_object(node["_target_"])
    positional, supplied = SUPPLIED.get(path, (0, set()))
    keys = {k: None for k in node if k not in HYDRA_KEYS and k not in READ_AROUND.get(path, ())}
    call = {**keys, **dict.fromkeys(supplied)}
    signature = inspect.signature(target)
    try:
        if node.get("_partial_"):
            signature.bind_partial(**keys)
        signature.bind(*[None] * positional, **call)
    except TypeError as err:
        raise AssertionError(f"{where}: the node's keys do not fit its signature: {err}") from None
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    extra = {k: v for k, v in call.items() if k not in signature.parameters}
    if not extra:
        return
    forward = _forwarded_to(target, node)
    if forward is None:
        names, open_ = _init_chain(target) if isinstance(target, type) else (set(), True)
        unknown = sorted(set(extra) - names)
        assert not unknown or open_, f"{where} takes no argument {', '.join(unknown)}"
        assert not open_, f"{where} passes {sorted(extra)} on through **kwargs: say where in _forwarded_to"
    elif getattr(forward, "__name__", "") == "check":
        try:
            forward(extra)
        except ValueError as err:
            raise AssertionError(f"{where}: {err}") from None
    else:
        parameters = inspect.signature(forward).parameters
        try:
            inspect.signature(forward).bind_partial(**extra)
        except TypeError as err:
            raise AssertionError(f"{where} passes {sorted(extra)} to {forward.__qualname__}: {err}") from None
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        assert not takes_any or set(extra) <= set(parameters), f"{where}: {forward.__qualname__} takes any key"


SAMPLE_TEXTS = ["First Citizen:\nBefore we proceed any further, hear me speak.",
                "All:\nSpeak, speak.", "First Citizen:\nYou are all resolved rather to die than to famish?"]


def build_option(group: str, cfg, tmp_path: Path) -> None:
    """Instantiate the group's nodes for real, as lmexp does at build time, where that is cheap and offline."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch import nn

    if group == "model" and "_target_" in cfg.model:
        kwargs = {"vocab_size": cfg.model.get("vocab_size") or 300}
        if "pad_token_id" in cfg.model and cfg.model.pad_token_id is None:
            kwargs["pad_token_id"] = 0
        node = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k not in READ_AROUND["model"]])
        model = instantiate(node, **kwargs)
        ids = torch.randint(0, kwargs["vocab_size"], (1, 8))
        assert model(ids).shape[-1] >= kwargs["vocab_size"]
    elif group == "data":
        if "_target_" in cfg.data:
            instantiate(cfg.data, seed=0, collate=list)
        else:
            instantiate(cfg.data.source)
    elif group == "tokenizer":
        tokenizer = instantiate(cfg.tokenizer, texts=SAMPLE_TEXTS)
        assert tokenizer.decode(tokenizer.encode("Speak, speak.")).strip() != ""
    elif group == "objective":
        from lmexp.objectives.base import check_objective

        check_objective(instantiate(cfg.objective), cfg.objective._target_)
    elif group in ("optimizer", "scheduler"):
        from lmexp.impl import Impl
        from lmexp.optim import param_groups

        model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4))
        factory = instantiate(cfg.optimizer)
        optimizer = factory(param_groups(model), **Impl.from_config(cfg.impl).optimizer_kwargs(factory))
        model(torch.tensor([1, 2])).sum().backward()
        optimizer.step()
        if group == "scheduler":
            scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=10)
            for _ in range(3):
                optimizer.step()
                scheduler.step()
    elif group == "trainer":
        instantiate(cfg.trainer, logger=False, callbacks=[], plugins=[])
    elif group == "logger":
        from lmexp.wandb_logging import build_wandb_logger

        for key, node in cfg.logger.items():
            if node is not None and key == "wandb":
                build_wandb_logger(cfg, node, tmp_path / "run", None, None, None)
            elif node is not None:
                instantiate(node)
    elif group == "callbacks":
        for node in cfg.callbacks.values():
            if node is not None:
                instantiate(node)
    elif group == "impl":
        from lmexp.impl import Impl

        Impl.from_config(cfg.impl)
    elif group == "hydra":
        for node in cfg.hydra.callbacks.values():
            instantiate(node)


def bind_only(group: str, cfg) -> str | None:
    """Why an option is checked against the signatures only (None: it is also built)."""
    import torch

    if group not in BUILT:  # experiments, debug, hparams_search, launchers: nodes of the groups above
        return "its nodes belong to groups whose own options are built"
    if group == "tokenizer" and cfg.tokenizer.kind == "pretrained":
        return "downloads a tokenizer from the hub"
    if group == "model" and cfg.model.get("pretrained"):
        return "downloads the pretrained weights"
    if group == "trainer" and cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return "no GPU here"
    return None


@pytest.mark.parametrize("group, option", option_cases(), ids=lambda v: v or "primary")
def test_every_option_instantiates_against_its_target(tmp_path, group, option):
    """Every `_target_` node of every option takes the option's keys (and what the code adds at build
    time), so a key the code no longer accepts, or a misspelled one, fails here; options that are
    cheap and offline to build are also instantiated for real."""
    from lmexp.schema import NODE_GROUPS, TARGET_GROUPS

    cfg, plain = compose_option(tmp_path, group, option)
    nodes = [node for root, tree in option_roots(group, option, plain).items() for node in target_nodes(tree, root)]
    assert nodes or f"{group}/{option}" in NO_TARGET, f"{group}/{option}: no _target_ node (a misspelled _target_?)"
    # A misspelled `_target_` among several nodes: every node of these groups is built from its target.
    chosen = plain["hydra"]["runtime"]["choices"]
    untargeted = [f"{g}.{k}" for g in NODE_GROUPS for k, v in (plain.get(g) or {}).items() if v is not None
                  and "_target_" not in v] + [g for g in TARGET_GROUPS if "_target_" not in plain[g]
                                              and f"{g}/{chosen[g]}" not in NO_TARGET]
    assert not untargeted, f"{group}/{option}: nodes without a _target_: {', '.join(untargeted)}"
    for path, node in nodes:
        check_signature(path, node)
    if bind_only(group, cfg) is None:
        build_option(group, cfg, tmp_path)


# A newcomer's mistakes and the one line each gets (lmexp.config.composition_mistake, schema).
MISTAKES = [
    (["trainer.max_step=20"], "unknown key trainer.max_step; did you mean trainer.max_steps?"),
    (["tokenizer=wordpeice"], "tokenizer=wordpeice: no such option; did you mean tokenizer=wordpiece? "
                              "(tokenizer: bpe, byte, char, pretrained, wordpiece)"),
    (["model=gpt2"], "model=gpt2: no such option; did you mean model=hf_gpt2 or model=gpt_tiny? (model: "),
    (["trainer.max_steps=twenty"], "trainer.max_steps='twenty': expected -1 or an integer >= 1"),
    (["hydra/launcher=jobib"], "hydra/launcher=jobib: no such option; did you mean hydra/launcher=joblib?"),
    (["impl.thread=2"], "unknown key impl.thread; did you mean impl.threads?"),
    # A key lmexp reads there but the config does not list: `+` is the way, and it is said so.
    (["trainer.num_nodes=2"], "trainer.num_nodes is not set in this config; add it with +trainer.num_nodes=2"),
    # Nodes lmexp does not check key by key: a key of one's own stays possible with `+`.
    (["model=hf_gpt2", "model.n_layers=2"],
     "unknown key model.n_layers; did you mean model.n_layer? (to add a key of your own: +model.n_layers=2)"),
    (["callbacks.mine=1"], "unknown key callbacks.mine (callbacks has: model_checkpoint, progress_bar, throughput) "
                           "(to add a key of your own: +callbacks.mine=1)"),
]


@pytest.mark.parametrize("argv, line", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_mistake_is_one_line_naming_the_key_and_the_closest_choices(argv, line, monkeypatch, capsys, tmp_path,
                                                                      fresh_hydra):
    from lmexp.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lmexp-train", *argv])
    with pytest.raises(SystemExit) as exit:
        main()
    err = capsys.readouterr().err
    assert exit.value.code == 1
    assert err.count("\n") == 1 and err.startswith(f"error: {line}"), err
    assert "+trainer.max_step" not in err and "Config search path" not in err


def test_help_lists_only_the_groups_one_picks_from(monkeypatch, capsys, fresh_hydra):
    from lmexp.train import main

    monkeypatch.setattr("sys.argv", ["lmexp-train", "--help"])
    with pytest.raises(SystemExit) as exit:
        main()
    out = capsys.readouterr().out
    assert exit.value.code == 0 and "experiment: " in out and "tokenizer: bpe" in out
    assert "experiment/claims" not in out  # the claims' shared setting, not a group
