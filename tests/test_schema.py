"""lmexp/schema.py and config.validate: every shipped value passes, bad values fail in one line
naming the key, and the schema stays in step with the constructors it describes."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import SHARED_DATA, cli
from lmexp.config import config_dir, validate
from lmexp.errors import ConfigError
from lmexp.schema import BYTE_ALPHABET, SPECIAL_TOKENS, TARGETS

CONF = Path(config_dir())
def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def fitting(group: str, option: str) -> list[str]:
    """Overrides that make an option fit the rest (an encoder needs masked LM, ...)."""
    if group == "model" and option in ("bert_tiny", "bert_base", "hf_bert", "seed_encoder"):
        return ["objective=masked_lm"]
    if group == "objective" and option == "masked_lm":
        return ["model=bert_tiny"]
    if group == "objective" and option == "classification":
        return ["data=trec", f"data.path={SHARED_DATA / 'trec'}"]
    if group == "data" and option in ("sst2", "trec"):
        return [f"data.path={SHARED_DATA / option}"]
    if group == "data" and option in ("hub",):
        return ["data.path=wikitext"]
    if group == "data" and option in ("tinyshakespeare",):
        return [f"data.path={SHARED_DATA / 'tinyshakespeare'}"]
    if group == "data" and option == "text_files":
        return [f"data.train_files={SHARED_DATA}/tinyshakespeare/input.txt"]
    if group == "data" and option in ("wikitext2", "wikitext103"):
        return [f"data.path={SHARED_DATA / 'wikitext2'}"]
    if group == "tokenizer" and option == "pretrained":
        return ["tokenizer.name_or_path=gpt2"]
    if group == "model" and option == "from_run":
        return []  # needs a real run: covered in test_classification / test_checkpointing
    if group.startswith("hydra/sweeper/"):  # the Optuna sweeper's samplers and pruners
        return ["hydra/sweeper=optuna"]
    return []


CASES = [(g, o) for g in ("model", "data", "tokenizer", "objective", "optimizer", "scheduler", "trainer", "logger",
                          "callbacks", "debug") for o in options(g) if (g, o) != ("model", "from_run")]


@pytest.mark.parametrize("group, option", CASES)
def test_every_shipped_option_passes_validation(make_cfg, group, option):
    validate(make_cfg([f"{group}={option}", *fitting(group, option)]))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_passes_validation(make_cfg, experiment):
    cfg = make_cfg([f"experiment={experiment}"])
    extra = []  # the data a reproduction leaves to the user
    if "path" in cfg.data.keys() and OmegaConf.is_missing(cfg.data, "path"):
        files = str(OmegaConf.to_container(cfg.data, resolve=False).get("train_files"))
        extra.append(f"data.path={SHARED_DATA / ('wikitext2' if 'wiki' in files else 'tinyshakespeare')}")
    validate(make_cfg([f"experiment={experiment}", *extra]))


# Bad values of every kind: a type, a range, a choice, a list shape, an unknown key, a combination.
BAD = [
    (["optimizer.lr=abc"], "optimizer.lr='abc': expected a number > 0"),
    (["optimizer.lr=-1"], "optimizer.lr=-1: expected a number > 0"),
    (["seed=notanint"], "seed='notanint': expected an integer"),
    (["data.batch_size=0"], "data.batch_size=0: expected an integer >= 1"),
    (["data.block_size=0"], "data.block_size=0"),
    (["data.eval_batch_size=-3"], "data.eval_batch_size=-3"),
    (["tokenizer.vocab_size=0"], "tokenizer.vocab_size=0"),
    (["tokenizer.vocab_size=100"], f"needs at least {SPECIAL_TOKENS + BYTE_ALPHABET}"),
    (["scheduler.warmup_steps=-1"], "scheduler.warmup_steps=-1: expected an integer >= 0"),
    (["scheduler.min_lr_ratio=1.5"], "scheduler.min_lr_ratio=1.5"),
    (["model.dropout=1.5"], "model.dropout=1.5"),
    (["model.activation=gelux"], "model.activation='gelux': expected one of gelu | relu"),
    (["model.positions=absolute"], "model.positions='absolute'"),
    (["model.init=xavier"], "model.init='xavier'"),
    (["model.tie_embeddings=maybe"], "model.tie_embeddings='maybe': expected true or false"),
    (["model.n_heads=3"], "model.n_heads=3 must divide model.d_model=128"),
    (["+model.n_head=3"], "unknown key model.n_head; did you mean model.n_heads?"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: expected a list of 2 values"),
    (["optimizer.betas=[0.9,1.5]"], "optimizer.betas=[0.9, 1.5]"),
    (["trainer.precision=17"], "trainer.precision=17"),
    (["trainer.max_steps=-5"], "trainer.max_steps=-5"),
    (["trainer.max_steps=1.5"], "trainer.max_steps=1.5"),
    (["trainer.max_steps=twenty"], "trainer.max_steps='twenty': expected -1 or an integer >= 1"),
    (["trainer.accelerator=tpu2"], "trainer.accelerator='tpu2'"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    (["+trainer.max_step=3"], "unknown key trainer.max_step; did you mean trainer.max_steps?"),
    (["+trainer.foo=3"], "unknown key trainer.foo (none of the 38 keys of trainer is close)"),
    (["+impl.foo=3"], "unknown key impl.foo (impl has: compile, compile_mode, fused_optimizer, keep_freed_memory, matmul_precision, peak_flops, threads)"),
    (["callbacks.model_checkpoint.mode=maximum"], "callbacks.model_checkpoint.mode='maximum'"),
    (["data.split.val_fraction=0.7", "data.split.test_fraction=0.4"], "val_fraction + test_fraction"),
    (["data.split.by=random"], "data.split.by='random'"),
    (["data.sampling=windows"], "data.sampling='windows'"),
    (["objective=masked_lm", "model=bert_tiny", "objective.mlm_probability=1.2"], "objective.mlm_probability=1.2"),
    (["objective=classification", "data=trec", f"data.path={SHARED_DATA / 'trec'}", "objective.pooling=max"],
     "objective.pooling='max'"),
    (["checkpoint.every_n_train_steps=0"], "checkpoint.every_n_train_steps=0"),
    (["logger.wandb.init_timeout=0"], "logger.wandb.init_timeout=0"),
    (["tokenizer=pretrained", "tokenizer.name_or_path=./no/such/tokenizer"], "tokenizer.name_or_path=./no/such/tokenizer"),
    (["data=tinyshakespeare", "data.path=/no/such/dir"], "data.train_files: no file matches"),
    (["ckpt_path=/no/such.ckpt"], "ckpt_path=/no/such.ckpt: no such file"),
]


@pytest.mark.parametrize("overrides, fragment", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_value_is_one_line_naming_key_value_and_what_is_allowed(make_cfg, overrides, fragment):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(overrides))
    assert "\n" not in str(err.value)
    assert fragment in str(err.value)


def test_every_bad_key_is_reported_at_once(make_cfg):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(["optimizer.lr=-1", "data.batch_size=0"]))
    assert "optimizer.lr=-1" in str(err.value) and "data.batch_size=0" in str(err.value)


def test_validation_imports_nothing_heavy():
    code = ("import sys; from hydra import compose, initialize_config_dir; "
            "from lmexp.config import config_dir, register_resolvers, validate; register_resolvers(); "
            "initialize_config_dir(config_dir=config_dir(), version_base='1.3'); "
            "validate(compose('train', overrides=['paths.output_dir=/tmp/x'])); "
            "print(sorted(m for m in ('torch', 'pytorch_lightning', 'datasets', 'transformers', 'wandb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_bad_value_fails_in_one_line_with_a_failed_record(tmp_path):
    result = cli("model=gpt_tiny", "optimizer.lr=-1", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: optimizer.lr=-1: expected a number > 0"]
    assert "Traceback" not in result.stdout + result.stderr
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    record = json.loads((run / "summary.json").read_text())
    assert record["status"] == "failed" and record["error"] == "optimizer.lr=-1: expected a number > 0"
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "summary.json", "train.log"]


def _target(path: str):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


# Constructor arguments lmexp passes from code, not from the config.
FROM_CODE = {"tokenizer", "labels", "label_counts", "texts", "seed", "collate", "params", "optimizer", "total_steps",
             "logger", "callbacks", "plugins", "self", "experiment", "theme", "model_registry", "train_time_interval"}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_schema_matches_the_constructor(target):
    """Every key the schema allows is an argument of its target; for lmexp's own targets, every
    argument is in the schema, so a new argument cannot go unchecked."""
    parameters = inspect.signature(_target(target)).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    schema = TARGETS[target]
    # Keys used by lmexp around the constructor (from_run's, _partial_) rather than passed to it.
    around = {"_partial_", "init_from", "freeze_backbone", "init_timeout", "offline"} | (
        {"block_size", "num_workers"} if target.endswith("ModularArithmetic") else set())
    for key in schema.keys:
        assert key in parameters or key in around or takes_kwargs, f"{target} takes no argument {key}"
    if target.startswith("lmexp."):
        for name, p in parameters.items():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or name in FROM_CODE:
                continue
            assert name in schema.keys, f"{target}({name}) has no schema entry"


def test_tokenizer_sizes_match_the_tokenizers():
    from tokenizers import pre_tokenizers

    from lmexp.data.tokenizers import SPECIAL_TOKENS as specials

    assert (SPECIAL_TOKENS, BYTE_ALPHABET) == (len(specials), len(pre_tokenizers.ByteLevel.alphabet()))


def test_impl_schema_matches_the_impl_settings():
    import dataclasses

    from lmexp.impl import Impl
    from lmexp.schema import IMPL

    assert set(IMPL.keys) == {f.name for f in dataclasses.fields(Impl)}


def test_a_plug_in_source_may_read_data_keys_of_its_own():
    """A source lmexp does not know may take keys at the data level (through interpolations, as
    conf/data/text_files.yaml does); for a known source an unknown data key is still an error."""
    from lmexp.schema import TRAIN, check_config

    def data(target: str) -> dict:
        return {"data": {"source": {"_target_": target, "stories": 5}, "stories": 5, "batch_size": 2, "block_size": 8}}

    assert check_config(data("mypkg.StorySource"), TRAIN) == []
    problems = check_config(data("lmexp.data.sources.PythonStdlib"), TRAIN)
    assert any(p.startswith("unknown key data.stories") for p in problems), problems
