"""The schema of every shipped config node: the type, range or choices of each of its keys.

A node is looked up by its `_target_` (models, objectives, optimizers, callbacks, loggers, ...) or,
for nodes without one, by its place (`data`, `data.split`, `paths`, the top level). `check_config`
walks the composed config and returns every bad value as `key=value: expected ...`, before any heavy
import. Nodes whose `_target_` lmexp does not know (your own plug-ins) are left to their
constructor. Deliberately light: the standard library and omegaconf only.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    """One key: `ok(value)` says whether a (non-null) resolved value is allowed; `allowed` says what is, in words."""

    ok: Callable[[Any], bool]
    allowed: str
    null: bool = False


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _range_words(kind: str, **bounds: float | None) -> str:
    """`an integer >= 1`, `a number > 0 and < 1`: the allowed range in words, from the bounds given."""
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    words = " and ".join(f"{signs[name]} {value}" for name, value in bounds.items() if value is not None)
    return f"{kind} {words}" if words else kind


def integer(lo: int | None = None, hi: int | None = None, null: bool = False) -> Key:
    # lo == hi: one value, e.g. Lightning's -1 for "no limit".
    words = str(lo) if lo is not None and lo == hi else _range_words("an integer", ge=lo, le=hi)
    return Key(lambda v: is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), words, null)


def number(gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
           null: bool = False) -> Key:
    return Key(
        lambda v: _is_number(v) and (gt is None or v > gt) and (ge is None or v >= ge)
        and (lt is None or v < lt) and (le is None or v <= le),
        _range_words("a number", gt=gt, ge=ge, lt=lt, le=le), null,
    )


def choice(*options: Any, null: bool = False) -> Key:
    shown = dict.fromkeys(str(o) for o in options)  # 32 and "32" read the same
    return Key(lambda v: any(v == o and type(v) is type(o) for o in options), "one of " + " | ".join(shown), null)


def boolean(null: bool = False) -> Key:
    return Key(lambda v: isinstance(v, bool), "true or false", null)


def text(null: bool = False) -> Key:
    return Key(lambda v: isinstance(v, str) and v != "", "a non-empty string", null)


def anything(null: bool = True) -> Key:
    return Key(lambda v: True, "anything", null)


def list_of(item: Key, length: int | None = None, null: bool = False) -> Key:
    words = f"a list of {f'{length} ' if length is not None else ''}values, each {item.allowed}"
    return Key(lambda v: isinstance(v, list) and (length is None or len(v) == length)
               and all(x is not None and item.ok(x) for x in v), words, null)


def either(*keys: Key, null: bool = False) -> Key:
    return Key(lambda v: any(k.ok(v) for k in keys), " or ".join(k.allowed for k in keys), null)


@dataclass(frozen=True)
class Schema:
    keys: dict[str, Key]
    # Keys beyond these pass on to the constructor (e.g. a transformers config's own keys).
    open: bool = False


POSITIVE = integer(lo=1)
FRACTION = number(ge=0, le=1)
PROBABILITY = number(ge=0, lt=1)
FILES = either(text(), list_of(text()))
STRING = Key(lambda v: isinstance(v, str), "a string")
# limit_*_batches, overfit_batches: a batch count or a fraction of the split.
BATCHES = either(integer(lo=0), FRACTION, null=True)
ATTENTION = choice("causal", "bidirectional")

# Mirrors lmexp.data.tokenizers (checked there by a test): 6 special tokens, then the 256 byte symbols.
SPECIAL_TOKENS = 6
BYTE_ALPHABET = 256

MODEL_COMMON = {"vocab_size": integer(lo=1, null=True), "max_seq_len": POSITIVE, "attention": ATTENTION,
                # model=from_run's own keys, kept beside the adopted model config (lmexp.runs.init_from).
                "init_from": text(null=True), "freeze_backbone": boolean()}

TARGETS: dict[str, Schema] = {
    # model
    "lmexp.models.transformer.Transformer": Schema({
        **MODEL_COMMON, "d_model": POSITIVE, "n_layers": POSITIVE, "n_heads": POSITIVE,
        "d_ff": integer(lo=1, null=True), "dropout": PROBABILITY, "positions": choice("learned", "rotary"),
        "bias": boolean(), "tie_embeddings": boolean(), "activation": choice("gelu", "relu"), "norm": boolean(),
        "init": choice("gpt2", "fan_in"), "norm_position": choice("pre", "post"),
    }),
    "lmexp.models.transformer.SeedEncoder": Schema({
        **MODEL_COMMON, "d_model": POSITIVE, "n_heads": POSITIVE, "n_layers": POSITIVE, "dropout": PROBABILITY,
    }),
    "lmexp.models.bag_of_ngrams.BagOfNgrams": Schema({
        **MODEL_COMMON, "d_model": POSITIVE, "ngrams": POSITIVE, "buckets": POSITIVE, "dropout": PROBABILITY,
    }),
    "lmexp.models.hf.HFModel": Schema({
        **MODEL_COMMON, "model_type": text(), "pretrained": text(null=True), "pad_token_id": integer(lo=0, null=True),
    }, open=True),
    # tokenizer
    "lmexp.data.tokenizers.build_tokenizer": Schema({
        "kind": choice("byte", "char", "bpe", "wordpiece", "pretrained"), "vocab_size": integer(lo=1, null=True),
        "min_frequency": integer(lo=0), "lowercase": boolean(), "name_or_path": text(null=True),
        "train_bytes": integer(lo=1, null=True),
    }),
    # objective
    "lmexp.objectives.causal.CausalLM": Schema({
        "attention": ATTENTION, "monitor": text(), "monitor_mode": choice("min", "max"),
        "predict": choice("all", "last"),
    }),
    "lmexp.objectives.masked.MaskedLM": Schema({
        "attention": ATTENTION, "monitor": text(), "monitor_mode": choice("min", "max"),
        "mlm_probability": number(gt=0, lt=1), "mask_replace_prob": FRACTION, "random_replace_prob": FRACTION,
    }),
    "lmexp.objectives.classification.SequenceClassification": Schema({
        "attention": choice("any"), "monitor": text(), "monitor_mode": choice("min", "max"),
        "pooling": choice("auto", "cls", "mean", "last"), "head_dropout": PROBABILITY,
        "class_weights": either(choice("balanced"), list_of(number(gt=0)), null=True),
    }),
    # optimizer (torch's own keys; those lmexp does not ship are passed on unchecked)
    "torch.optim.AdamW": Schema({
        "_partial_": boolean(), "lr": number(gt=0), "betas": list_of(PROBABILITY, 2), "eps": number(gt=0),
        "weight_decay": number(ge=0), "amsgrad": boolean(), "maximize": boolean(), "foreach": boolean(null=True),
        "capturable": boolean(), "differentiable": boolean(), "fused": boolean(null=True),
    }),
    "torch.optim.Adam": Schema({
        "_partial_": boolean(), "lr": number(gt=0), "betas": list_of(PROBABILITY, 2), "eps": number(gt=0),
        "weight_decay": number(ge=0), "amsgrad": boolean(), "maximize": boolean(), "foreach": boolean(null=True),
        "capturable": boolean(), "differentiable": boolean(), "fused": boolean(null=True),
        "decoupled_weight_decay": boolean(),
    }),
    "torch.optim.SGD": Schema({
        "_partial_": boolean(), "lr": number(gt=0), "momentum": number(ge=0), "dampening": number(ge=0),
        "weight_decay": number(ge=0), "nesterov": boolean(), "maximize": boolean(), "foreach": boolean(null=True),
        "differentiable": boolean(), "fused": boolean(null=True),
    }),
    # scheduler
    "lmexp.optim.constant_schedule": Schema({"_partial_": boolean(), "warmup_steps": integer(lo=0)}),
    "lmexp.optim.cosine_schedule": Schema({"_partial_": boolean(), "warmup_steps": integer(lo=0),
                                           "min_lr_ratio": FRACTION}),
    "lmexp.optim.linear_schedule": Schema({"_partial_": boolean(), "warmup_steps": integer(lo=0),
                                           "min_lr_ratio": FRACTION}),
    # data sources and generated data
    "lmexp.data.sources.PythonStdlib": Schema({"split": anything(), "max_files": integer(lo=1, null=True)}),
    "lmexp.data.sources.HubDataset": Schema({
        "path": text(), "name": text(null=True), "data_files": anything(), "text_column": text(),
        "splits": anything(), "split": anything(), "cache_dir": text(null=True), "streaming": boolean(),
    }),
    "lmexp.data.sources.TextFiles": Schema({
        # train_files null: evaluation only (lmexp-eval); training says it needs them (lmexp.train)
        "train_files": either(FILES, null=True), "val_files": either(FILES, null=True),
        "test_files": either(FILES, null=True), "document": choice("file", "line"), "split": anything(),
    }),
    "lmexp.data.sources.WikiText": Schema({
        "path": text(null=True), "hub_config": text(), "train_files": text(null=True), "val_files": text(null=True),
        "test_files": text(null=True), "split": anything(),
    }),
    "lmexp.data.labelled.LabelledFiles": Schema({
        "train_files": either(FILES, null=True), "val_files": either(FILES, null=True),
        "test_files": either(FILES, null=True), "hub": text(null=True), "hub_config": text(null=True),
        "hub_splits": anything(), "text_columns": list_of(text()), "label_column": text(), "split": anything(),
        "cache_dir": text(null=True),
    }),
    "lmexp.data.labelled.TrecQuestions": Schema({
        "train_files": FILES, "test_files": either(FILES, null=True), "fine": boolean(), "split": anything(),
    }),
    "lmexp.data.algorithmic.ModularArithmetic": Schema({
        "modulus": integer(lo=2), "operation": choice("add", "subtract", "multiply"),
        "train_fraction": number(gt=0, lt=1), "split_seed": integer(lo=0), "batch_size": integer(lo=1, null=True),
        "eval_batch_size": integer(lo=1, null=True), "block_size": anything(), "num_workers": integer(lo=0),
    }),
    # trainer: every argument of pytorch_lightning.Trainer; the ones set from code are refused in YAML
    "pytorch_lightning.Trainer": Schema({
        "accelerator": choice("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
        "strategy": text(),
        "devices": either(integer(lo=-1, hi=-1), POSITIVE, list_of(integer(lo=0)), text()),  # text: auto, "0,1"
        "num_nodes": POSITIVE,
        "precision": choice(64, 32, 16, "64", "32", "16", "bf16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
                            "32-true", "64-true", "transformer-engine", "transformer-engine-float16", null=True),
        "fast_dev_run": either(boolean(), integer(lo=0)),
        "max_epochs": either(integer(lo=-1, hi=-1), POSITIVE, null=True),
        "min_epochs": integer(lo=0, null=True),
        "max_steps": either(integer(lo=-1, hi=-1), POSITIVE),
        "min_steps": integer(lo=0, null=True),
        "max_time": anything(),  # "DD:HH:MM:SS" or {hours: 2}
        "limit_train_batches": BATCHES, "limit_val_batches": BATCHES, "limit_test_batches": BATCHES,
        "limit_predict_batches": BATCHES, "overfit_batches": BATCHES,
        "val_check_interval": either(POSITIVE, number(gt=0, le=1), text(), null=True),
        "check_val_every_n_epoch": integer(lo=1, null=True),
        "num_sanity_val_steps": integer(lo=-1, null=True),
        "log_every_n_steps": integer(lo=1, null=True),
        "enable_checkpointing": boolean(null=True), "enable_progress_bar": boolean(null=True),
        "enable_model_summary": boolean(null=True),
        "accumulate_grad_batches": POSITIVE,
        "gradient_clip_val": number(ge=0, null=True),
        "gradient_clip_algorithm": choice("norm", "value", null=True),
        "deterministic": either(boolean(), choice("warn"), null=True),
        "benchmark": boolean(null=True), "inference_mode": boolean(), "use_distributed_sampler": boolean(),
        "profiler": choice("simple", "advanced", "pytorch", "xla", null=True),
        "detect_anomaly": boolean(), "barebones": boolean(), "sync_batchnorm": boolean(),
        "reload_dataloaders_every_n_epochs": integer(lo=0),
        "default_root_dir": text(null=True), "enable_autolog_hparams": boolean(), "model_registry": text(null=True),
    }),
    # callbacks
    "pytorch_lightning.callbacks.ModelCheckpoint": Schema({
        "dirpath": text(null=True), "filename": text(null=True), "monitor": text(null=True), "verbose": boolean(),
        "save_last": either(boolean(), choice("link"), null=True), "save_top_k": integer(lo=-1),
        "save_on_exception": boolean(), "save_weights_only": boolean(), "mode": choice("min", "max"),
        "auto_insert_metric_name": boolean(), "every_n_train_steps": integer(lo=0, null=True),
        "every_n_epochs": integer(lo=0, null=True), "save_on_train_epoch_end": boolean(null=True),
        "enable_version_counter": boolean(),
    }),
    "pytorch_lightning.callbacks.EarlyStopping": Schema({
        "monitor": text(), "min_delta": number(ge=0), "patience": integer(lo=0), "verbose": boolean(),
        "mode": choice("min", "max"), "strict": boolean(), "check_finite": boolean(),
        "stopping_threshold": number(null=True), "divergence_threshold": number(null=True),
        "check_on_train_epoch_end": boolean(null=True), "log_rank_zero_only": boolean(),
    }),
    "pytorch_lightning.callbacks.RichProgressBar": Schema({"refresh_rate": integer(lo=0), "leave": boolean(),
                                                           "console_kwargs": anything()}),
    "lmexp.callbacks.StepProgressBar": Schema({"refresh_rate": integer(lo=0), "leave": boolean(),
                                               "console_kwargs": anything()}),
    "pytorch_lightning.callbacks.TQDMProgressBar": Schema({"refresh_rate": integer(lo=0), "process_position": integer(lo=0),
                                                           "leave": boolean()}),
    "lmexp.callbacks.TokenThroughput": Schema({"peak_flops": number(gt=0, null=True)}),
    "lmexp.callbacks.StepTimes": Schema({"path": text()}),
    "lmexp.callbacks.SampleText": Schema({
        "prompts": list_of(STRING), "path": text(),
        "every_n_validations": POSITIVE, "max_new_tokens": POSITIVE, "temperature": number(gt=0),
        "top_k": integer(lo=1, null=True), "top_p": number(gt=0, le=1, null=True), "seed": integer(lo=0),
    }),
    # loggers
    "pytorch_lightning.loggers.CSVLogger": Schema({
        "save_dir": text(), "name": text(null=True), "version": either(integer(lo=0), STRING, null=True),
        "prefix": STRING, "flush_logs_every_n_steps": POSITIVE,
    }),
    "pytorch_lightning.loggers.TensorBoardLogger": Schema({
        "save_dir": text(), "name": text(null=True), "version": either(integer(lo=0), STRING, null=True),
        "log_graph": boolean(), "default_hp_metric": boolean(), "prefix": STRING,
        "sub_dir": text(null=True),
    }, open=True),
    "pytorch_lightning.loggers.WandbLogger": Schema({
        "project": text(null=True), "save_dir": text(), "offline": boolean(), "name": text(null=True),
        "group": text(null=True), "job_type": text(null=True), "tags": list_of(STRING),
        "log_model": either(boolean(), choice("all")), "entity": text(null=True), "notes": text(null=True),
        "init_timeout": number(gt=0), "prefix": STRING,
        "id": text(null=True), "version": text(null=True), "dir": text(null=True),
    }, open=True),
}

# Nodes without a _target_, by their place in the config.
DATA = Schema({
    "source": anything(), "split": anything(),
    "block_size": POSITIVE, "max_length": POSITIVE, "batch_size": POSITIVE, "eval_batch_size": integer(lo=1, null=True),
    "num_workers": integer(lo=0), "num_proc": integer(lo=1, null=True), "shard_chars": integer(lo=1, null=True),
    "sampling": choice("packed", "random_windows"), "max_train_examples": integer(lo=1, null=True),
    # Read by data.source through interpolations, and checked there.
    **{key: anything() for key in ("path", "name", "data_files", "text_column", "splits", "train_files",
                                   "val_files", "test_files", "document", "hub", "hub_config", "hub_splits",
                                   "text_columns", "label_column", "fine", "streaming")},
})
SPLIT = Schema({"val_fraction": PROBABILITY, "test_fraction": PROBABILITY, "by": choice("document", "position"),
                "seed": integer(lo=0)})
PATHS = Schema({"output_root": text(), "output_dir": text(), "cache_dir": text()})
IMPL = Schema({  # speed-only settings (conf/impl, lmexp.impl)
    "compile": boolean(), "compile_mode": choice("default", "reduce-overhead", "max-autotune",
                                                 "max-autotune-no-cudagraphs", null=True),
    "fused_optimizer": boolean(), "threads": integer(lo=1, null=True),
    "matmul_precision": choice("highest", "high", "medium"), "peak_flops": number(gt=0, null=True),
    "keep_freed_memory": boolean(),
})
CHECKPOINT = Schema({"every_n_train_steps": integer(lo=1, null=True), "every_n_minutes": number(gt=0, null=True)})
TRAIN = Schema({
    "task_name": text(),  # removed from train.yaml (it did nothing); older runs' saved configs have it
    "seed": integer(lo=0), "ckpt_path": text(null=True), "optimized_metric": text(),
    "test": boolean(), "decay_embeddings": boolean(), "train_metrics": boolean(),
    "tags": list_of(STRING), "resume": boolean(), "fail_fast": boolean(), "optuna_trial": integer(lo=0, null=True),
    "trust_checkpoint": boolean(), "allow_config_change": boolean(), "checkpoint": anything(),
    # The config groups, checked node by node below; experiment metadata is read by lmexp reproduce.
    **{group: anything() for group in ("data", "tokenizer", "model", "objective", "optimizer", "scheduler",
                                       "trainer", "logger", "callbacks", "paths", "impl", "paper", "claim",
                                       "curves")},
})
EVAL = Schema({
    "ckpt_path": text(), "splits": list_of(choice("train", "validation", "test")),
    "limit_batches": BATCHES, "trust_checkpoint": boolean(), "data": anything(), "paths": anything(),
})


def unknown_key(path: str, known: Iterable[str]) -> str:
    """`unknown key trainer.max_step; did you mean trainer.max_steps?`, or the keys there are."""
    where, _, key = path.rpartition(".")
    known = sorted(k for k in known if k != "_target_")
    near = difflib.get_close_matches(key, known, n=1)
    if near:
        return f"unknown key {path}; did you mean {where + '.' if where else ''}{near[0]}?"
    if len(known) > 12:
        return f"unknown key {path} (none of the {len(known)} keys of {where or 'the config'} is close)"
    return f"unknown key {path} ({where or 'the config'} has: {', '.join(known)})"


def check_node(node: dict, schema: Schema, where: str) -> list[str]:
    """Problems of one resolved node: unknown keys (with the nearest known name) and bad values."""
    problems = []
    for key, value in node.items():
        path = f"{where}.{key}" if where else key
        if key == "_target_":
            continue
        spec = schema.keys.get(key)
        if spec is None:
            if not schema.open:
                problems.append(unknown_key(path, schema.keys))
            continue
        if value is None:
            if not spec.null:
                problems.append(f"{path}=null: expected {spec.allowed}")
        elif not spec.ok(value):
            shown = f"'{value}'" if isinstance(value, str) else value
            problems.append(f"{path}={shown}: expected {spec.allowed}")
    return problems


# The groups whose node is found by its _target_, and those holding several such nodes.
TARGET_GROUPS = ("tokenizer", "model", "objective", "optimizer", "scheduler", "trainer")
NODE_GROUPS = ("logger", "callbacks")


def _by_target(node: dict, where: str) -> list[str]:
    schema = TARGETS.get(node.get("_target_"))
    return check_node(node, schema, where) if schema is not None else []  # a plug-in: its constructor checks


def check_config(cfg: dict, top: Schema) -> list[str]:
    """Every schema problem of a resolved config (a plain dict), in config order."""
    problems = check_node(cfg, top, "")
    for group in TARGET_GROUPS:
        if isinstance(cfg.get(group), dict):
            problems += _by_target(cfg[group], group)
    for group in NODE_GROUPS:
        for key, node in (cfg.get(group) or {}).items():
            if isinstance(node, dict):
                problems += _by_target(node, f"{group}.{key}")
    data = cfg.get("data")
    if isinstance(data, dict):
        if "_target_" in data:
            problems += _by_target(data, "data")
        else:
            # A plug-in's source may read keys of its own at the data level (through interpolations).
            source = data.get("source") if isinstance(data.get("source"), dict) else {}
            known = source.get("_target_") in TARGETS
            problems += check_node(data, DATA if known else Schema(DATA.keys, open=True), "data")
            if isinstance(data.get("split"), dict):
                problems += check_node(data["split"], SPLIT, "data.split")
            if isinstance(data.get("source"), dict):
                problems += _by_target(data["source"], "data.source")
    for key, schema in (("paths", PATHS), ("checkpoint", CHECKPOINT), ("impl", IMPL)):
        if isinstance(cfg.get(key), dict):
            problems += check_node(cfg[key], schema, key)
    return problems
