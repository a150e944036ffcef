"""Turn a composed config into the objects of a run: objective, data, model (`build_parts`, shared by
training and evaluation), loggers, callbacks and trainer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lmexp.config import attention_mismatch, choice, unlabelled_data
from lmexp.data.datamodule import LMDataModule, TokenizedDataModule
from lmexp.errors import ConfigError, ExpectedFailure, cannot_write
from lmexp.models import check_model, check_outputs
from lmexp.module import LMModule
from lmexp.objectives.base import Objective, check_loss, check_objective

# conf/model/from_run.yaml's own keys (see lmexp.runs.init_from), not arguments of the model.
FROM_RUN_KEYS = ("init_from", "freeze_backbone")


def instantiate_or_explain(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """`instantiate`, with a constructor's complaint turned into a one-line error naming the key."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        if str(err).startswith("Error locating target"):  # a class of your own that does not import
            raise ConfigError(f"{key}: cannot import {node.get('_target_')} ({str(cause).strip().splitlines()[-1]}); "
                              f"is its package installed, or on PYTHONPATH?") from None
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"{key}: {message}") from None


@dataclass
class RunParts:
    """What a run trains or evaluates, built in the order each part needs the others."""

    objective: Objective
    datamodule: TokenizedDataModule  # prepared: the data tokenized (or loaded from the cache)
    model: nn.Module  # for a labelled objective, with its head


def build_parts(cfg: DictConfig, tokenizer_cfg: DictConfig | dict | None = None, labels: list | None = None,
                pretrained: Any = None) -> RunParts:
    """The objective (from its config alone), the data module that takes its collator, then, once
    the data is tokenized, the objective bound to the tokenizer and the model. Shared by training
    and evaluation. `tokenizer_cfg`: a tokenizer other than cfg.tokenizer (a checkpoint's);
    `labels`: a fixed label list (a checkpoint's); `pretrained`: a PretrainedRun whose tokenizer
    and weights the run starts from (model=from_run)."""
    objective = build_objective(cfg)
    mismatch = attention_mismatch(cfg, stated_attention(cfg.model), objective.attention)
    if mismatch:  # known before the data is prepared, so say it now
        raise ConfigError(mismatch)
    if pretrained is not None:
        tokenizer_cfg = pretrained.tokenizer_config(cfg.paths.cache_dir)
    datamodule = build_datamodule(cfg, objective, tokenizer_cfg, labels)
    try:
        datamodule.prepare()
    except InstantiationException as err:  # the tokenizer, built inside preparation: its one-line error
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise
    except (OSError, UnicodeDecodeError) as err:  # a file that vanished, is unreadable or is not text
        raise data_failure(cfg.paths.get("cache_dir"), err) from err
    objective.bind(datamodule.tokenizer, datamodule.labels, datamodule.label_counts)
    model = build_model(cfg, datamodule.tokenizer, objective)
    if pretrained is not None:
        pretrained.load_weights(model)
    parts = RunParts(objective, datamodule, model)
    check_by_doing(cfg, parts)
    return parts


def check_by_doing(cfg: DictConfig, parts: RunParts, rows: int = 2) -> None:
    """The model and objective contracts checked on real data before anything trains: one forward
    and one loss on the first `rows` rows of the validation (else test) split, without gradient,
    dropout, or any draw from the random streams a run uses."""
    import torch

    split = next((s for s in ("validation", "test") if parts.datamodule.has_split(s)), None)
    if split is None:
        return
    loader = parts.datamodule.val_dataloader() if split == "validation" else parts.datamodule.test_dataloader()
    if not hasattr(loader.dataset, "__getitem__") or len(loader.dataset) == 0:
        return
    dataset, indices = loader.dataset, list(range(min(rows, len(loader.dataset))))
    # As the loader fetches: a batched __getitems__ where the dataset has one, then its collate_fn.
    items = dataset.__getitems__(indices) if hasattr(dataset, "__getitems__") else [dataset[i] for i in indices]
    batch = (loader.collate_fn or torch.utils.data.default_collate)(items)
    model, training = parts.model, parts.model.training
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        batch = parts.objective.prepare_batch(batch, torch.Generator().manual_seed(0))
        model.eval()
        try:
            output = check_outputs(model, batch["input_ids"], batch.get("attention_mask"), cfg.model._target_,
                                   parts.objective.labelled)
        finally:
            model.train(training)
        check_loss(parts.objective, cfg.objective._target_, output, batch)


def data_failure(cache_dir: str | None, err: OSError | UnicodeDecodeError) -> ExpectedFailure:
    """The one line for a failure while preparing the data: a write refused in the cache folder (a
    full disk, a read-only folder; datasets' own cache included) is a CannotWrite, the rest a read."""
    if isinstance(err, OSError) and cache_dir:
        filename = str(err.filename or "")
        in_cache = bool(filename) and Path(filename).resolve().is_relative_to(Path(cache_dir).resolve())
        refused = cannot_write(filename if in_cache else cache_dir, "the preprocessed data", err)
        if refused is not None and (in_cache or getattr(err, "errno", None) not in (1, 13)):
            return refused
    return ConfigError(f"data: cannot read the data ({type(err).__name__}: {err})")


def stated_attention(model: DictConfig) -> str | None:
    """The attention kind a model class states as a class attribute (a plug-in's may), if any."""
    try:
        stated = getattr(get_class(model._target_), "attention", None) if "_target_" in model else None
    except Exception:  # not importable or not a class: instantiating it says why
        return None
    return stated if isinstance(stated, str) else None


def build_objective(cfg: DictConfig) -> Objective:
    objective = instantiate_or_explain(cfg.objective, "objective")
    check_objective(objective, cfg.objective._target_)
    return objective


def build_datamodule(cfg: DictConfig, objective: Objective, tokenizer_cfg: DictConfig | dict | None = None,
                     labels: list | None = None) -> TokenizedDataModule:
    """Packed blocks for a token objective, labelled examples for a labelled one (`labels`: a fixed
    label list, e.g. a checkpoint's; None: the train split's); or a data module of its own (`_target_`)."""
    unlabelled = unlabelled_data(cfg, objective.labelled, cfg.data)
    if unlabelled:
        raise ConfigError(unlabelled)
    if "_target_" in cfg.data:  # a data module of its own (e.g. generated algorithmic tasks)
        return instantiate_or_explain(cfg.data, "data", seed=cfg.get("seed", 0), collate=objective.collate)
    common = dict(
        source=instantiate_or_explain(cfg.data.source, "data"),
        tokenizer=tokenizer_cfg if tokenizer_cfg is not None else cfg.tokenizer,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.get("eval_batch_size"),
        num_workers=cfg.data.get("num_workers", 0),
        num_proc=cfg.data.get("num_proc"),
        cache_dir=cfg.paths.get("cache_dir"),
        collate=objective.collate,
        seed=cfg.get("seed", 0),
    )
    if objective.labelled:
        # Imported here: it needs `datasets` (with pandas and pyarrow, seconds of start-up) that a
        # language-model run on the token store never uses.
        from lmexp.data.classification import ClassificationDataModule

        return ClassificationDataModule(max_length=cfg.data.max_length,
                                        max_train_examples=cfg.data.get("max_train_examples"), labels=labels, **common)
    return LMDataModule(block_size=cfg.data.block_size + objective.extra_tokens,
                        sampling=cfg.data.get("sampling", "packed"), shard_chars=cfg.data.get("shard_chars"), **common)


def build_model(cfg: DictConfig, tokenizer, objective: Objective) -> nn.Module:
    """The model of cfg.model, sized to the tokenizer, with the objective's head (if it has one)."""
    vocab = len(tokenizer)
    wanted = cfg.model.get("vocab_size")
    if wanted is not None and wanted < vocab:
        raise ConfigError(
            f"model.vocab_size={wanted} is smaller than the tokenizer's vocabulary ({vocab} tokens, "
            f"tokenizer={choice(cfg, 'tokenizer')}); set model.vocab_size=null or >= {vocab}"
        )
    kwargs: dict[str, Any] = {"vocab_size": wanted or vocab}
    if "pad_token_id" in cfg.model and cfg.model.pad_token_id is None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    node = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k not in FROM_RUN_KEYS])
    model = instantiate_or_explain(node, "model", **kwargs)
    check_model(model, cfg.model._target_, needs_encode=objective.labelled)
    mismatch = attention_mismatch(cfg, model.attention, objective.attention)
    if mismatch:
        raise ConfigError(mismatch)
    try:
        return objective.wrap_model(model, cfg.model.get("freeze_backbone", False))
    except ValueError as err:
        raise ConfigError(f"objective.pooling={objective.pooling}: {err} (model={choice(cfg, 'model')})") from None


def build_loggers(cfg: DictConfig, run_dir: Path, wandb_id: str | None = None,
                  group: str | None = None, name: str | None = None) -> list:
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        if key == "wandb":
            from lmexp.wandb_logging import build_wandb_logger

            loggers.append(build_wandb_logger(cfg, node, run_dir, wandb_id, group, name))
        else:
            loggers.append(instantiate_or_explain(node, f"logger.{key}"))
    return loggers


def build_callbacks(cfg: DictConfig, parts: RunParts | None = None, run_dir: Path | None = None) -> list[pl.Callback]:
    """cfg.callbacks; with labelled data also the confusion matrix (written into run_dir); in a job of
    lmexp's Optuna sweeper also the reports to its trial (and its pruner's stop)."""
    from lmexp.callbacks.pruning import sweep_pruning
    from lmexp.config import hydra_runtime

    callbacks = [instantiate_or_explain(node, f"callbacks.{key}")
                 for key, node in (cfg.get("callbacks") or {}).items() if node is not None]
    pruning = sweep_pruning(cfg, (hydra_runtime() or {}).get("sweeper"))
    if pruning is not None:
        callbacks.append(pruning)
    if parts is not None and parts.datamodule.labels is not None:
        from lmexp.callbacks import ConfusionMatrix

        callbacks.append(ConfusionMatrix(parts.datamodule.labels, run_dir))
    return callbacks


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list[pl.Callback]) -> pl.Trainer:
    from lmexp.checkpointing import AtomicCheckpointIO, KeepLastCheckpoint

    cadence = OmegaConf.to_container(cfg.checkpoint, resolve=True) if cfg.get("checkpoint") else {}
    extra = {}
    if cfg.trainer.get("enable_progress_bar") is None and not any(isinstance(c, ProgressBar) for c in callbacks):
        extra["enable_progress_bar"] = False  # callbacks without a bar (minimal, none): Lightning would add its own
    return instantiate_or_explain(
        cfg.trainer, "trainer", logger=loggers or False, callbacks=[*callbacks, KeepLastCheckpoint(**cadence)],
        plugins=[AtomicCheckpointIO(trust=cfg.get("trust_checkpoint", False))], **extra,
    )


def checkpoint_state(cfg: DictConfig, parts: RunParts, tokenizer_dir: Path | None, wandb: dict | None,
                     versions: dict | None = None) -> dict:
    """What every checkpoint carries beside the weights (`checkpoint["lmexp"]`), so that a .ckpt alone
    can be evaluated, sampled, exported or resumed: the resolved config, the tokenizer's files
    (from tokenizer_dir; None on ranks that write nothing), the W&B run id, the data fingerprint,
    a classifier's labels and the package versions it was trained with."""
    from lmexp.checkpointing import tokenizer_files

    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "tokenizer_files": tokenizer_files(tokenizer_dir) if tokenizer_dir is not None else {},
        "wandb_run_id": (wandb or {}).get("run_id"),
        "data_fingerprint": parts.datamodule.fingerprint,
        "labels": parts.datamodule.labels,
        "versions": versions,
    }


def build_module(cfg: DictConfig, parts: RunParts, checkpoint_state: dict | None = None) -> LMModule:
    """The LightningModule: the parts, the optimizer and schedule (partial constructors), and the
    speed-only settings; `checkpoint_state` goes into every checkpoint."""
    return LMModule(
        model=parts.model,
        objective=parts.objective,
        optimizer=instantiate_or_explain(cfg.optimizer, "optimizer"),
        scheduler=instantiate_or_explain(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None,
        decay_embeddings=cfg.get("decay_embeddings", False),
        train_metrics=cfg.get("train_metrics", False),
        impl=cfg.get("impl"),
        extra_checkpoint_state=checkpoint_state,
    )
