"""Turn a composed config into the objects of a run. Shared by training and evaluation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lmexp.config import choice
from lmexp.data.classification import ClassificationDataModule
from lmexp.data.datamodule import LMDataModule
from lmexp.errors import ConfigError
from lmexp.models.classifier import Classifier
from lmexp.objectives.classification import SequenceClassification

log = logging.getLogger(__name__)

# conf/model/from_run.yaml's own keys (see lmexp.init_from), not arguments of the model.
FROM_RUN_KEYS = ("init_from", "freeze_backbone")


def instantiate_or_explain(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """`instantiate`, with a constructor's complaint turned into a one-line error naming the key."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"{key}: {message}") from None


def is_classification(cfg: DictConfig) -> bool:
    return issubclass(get_class(cfg.objective._target_), SequenceClassification)


def build_datamodule(cfg: DictConfig, tokenizer_cfg: DictConfig | dict | None = None,
                     labels: list | None = None) -> LMDataModule | ClassificationDataModule:
    """Packed blocks for the LM objectives, labelled examples for classification (`labels`:
    a fixed label list, e.g. a checkpoint's; None: the train split's)."""
    classification = is_classification(cfg)
    if classification and "max_length" not in cfg.data:
        raise ConfigError(
            f"objective=classification needs labelled data (data=sst2, trec or labelled_files); "
            f"data={choice(cfg, 'data')} is unlabelled text"
        )
    if "_target_" in cfg.data:  # a data module of its own (e.g. generated algorithmic tasks)
        return instantiate_or_explain(cfg.data, "data", seed=cfg.get("seed", 0))
    common = dict(
        source=instantiate_or_explain(cfg.data.source, "data"),
        tokenizer=tokenizer_cfg if tokenizer_cfg is not None else cfg.tokenizer,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.get("eval_batch_size"),
        num_workers=cfg.data.get("num_workers", 0),
        num_proc=cfg.data.get("num_proc"),
        cache_dir=cfg.paths.get("cache_dir"),
        seed=cfg.get("seed", 0),
    )
    if classification:
        return ClassificationDataModule(max_length=cfg.data.max_length,
                                        max_train_examples=cfg.data.get("max_train_examples"), labels=labels, **common)
    extra = get_class(cfg.objective._target_).extra_tokens
    return LMDataModule(block_size=cfg.data.block_size + extra, sampling=cfg.data.get("sampling", "packed"), **common)


def build_objective(cfg: DictConfig, datamodule: LMDataModule | ClassificationDataModule) -> Any:
    """The objective, after `datamodule.prepare()`; classification also gets the labels and their train counts."""
    extra = {}
    if isinstance(datamodule, ClassificationDataModule):
        extra = {"labels": datamodule.labels, "label_counts": datamodule.label_counts}
    return instantiate_or_explain(cfg.objective, "objective", tokenizer=datamodule.tokenizer, **extra)


def build_model(cfg: DictConfig, tokenizer, objective: Any = None) -> nn.Module:
    """The model of cfg.model; for a classification objective, inside a Classifier with its head."""
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
    freeze = cfg.model.get("freeze_backbone", False)
    if not isinstance(objective, SequenceClassification):
        if freeze:
            raise ConfigError("model.freeze_backbone=true trains only a classification head: it needs objective=classification")
        return model
    try:
        return Classifier(model, len(objective.labels), objective.pooling, objective.head_dropout, freeze)
    except ValueError as err:
        raise ConfigError(f"objective.pooling={objective.pooling}: {err} (model={choice(cfg, 'model')})") from None


def build_loggers(cfg: DictConfig, run_dir: Path, wandb_id: str | None = None,
                  group: str | None = None, name: str | None = None) -> list:
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        if key == "wandb":
            loggers.append(build_wandb_logger(cfg, node, run_dir, wandb_id, group, name))
        else:
            loggers.append(instantiate_or_explain(node, f"logger.{key}"))
    return loggers


def build_wandb_logger(cfg: DictConfig, node: DictConfig, run_dir: Path, wandb_id: str | None,
                       group: str | None, name: str | None):
    """W&B never blocks or breaks a run: online without credentials, or online with no connection
    within logger.wandb.init_timeout seconds, logs offline instead (one warning)."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    options = OmegaConf.to_container(node, resolve=True)
    options.pop("_target_")
    offline = options.pop("offline", True)
    init_timeout = options.pop("init_timeout", 10)
    if not offline and not os.environ.get("WANDB_API_KEY") and not _wandb_logged_in():
        # Decided before init: online mode without credentials would prompt or fail.
        log.warning("logger.wandb.offline=false but no W&B credentials (WANDB_API_KEY or `wandb login`): logging offline")
        offline = True
    os.environ.setdefault("WANDB_SILENT", "true")
    options["name"] = options.get("name") or name or run_dir.name
    options["group"] = options.get("group") or group
    options["job_type"] = options.get("job_type") or get_class(cfg.objective._target_).name
    options["tags"] = list(options.get("tags") or [])
    if wandb_id:
        options.update(id=wandb_id, resume="allow")
    (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
    # The mode goes into the settings: a Settings object read the environment when made, and wins over it.
    def wandb_logger(offline: bool) -> WandbLogger:
        settings = wandb.Settings(init_timeout=init_timeout, mode="offline" if offline else "online", silent=True)
        return WandbLogger(offline=offline, settings=settings, **options)

    logger = wandb_logger(offline)
    if offline:
        return logger
    try:
        logger.experiment  # connect now, within init_timeout, rather than at the first log call
    except Exception as err:  # wandb raises CommError, UsageError, AuthenticationError, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        log.warning("W&B online logging failed (%s): logging offline", reason)
        if wandb.run is not None:
            wandb.finish(exit_code=1, quiet=True)
        return wandb_logger(offline=True)
    return logger


def _wandb_logged_in() -> bool:
    try:
        import wandb

        return bool(wandb.Api().api_key)
    except Exception:  # no netrc, no settings: not logged in
        return False


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return [
        instantiate_or_explain(node, f"callbacks.{key}")
        for key, node in (cfg.get("callbacks") or {}).items()
        if node is not None
    ]


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list[pl.Callback]) -> pl.Trainer:
    from lmexp.checkpointing import AtomicCheckpointIO, KeepLastCheckpoint

    cadence = OmegaConf.to_container(cfg.checkpoint, resolve=True) if cfg.get("checkpoint") else {}
    return instantiate_or_explain(
        cfg.trainer, "trainer", logger=loggers or False, callbacks=[*callbacks, KeepLastCheckpoint(**cadence)],
        plugins=[AtomicCheckpointIO(trust=cfg.get("trust_checkpoint", False))],
    )


def tokenizer_files(directory: Path) -> dict[str, str]:
    """The saved tokenizer's (small, text) files, stored in checkpoints so one file is enough."""
    return {f.name: f.read_text() for f in sorted(directory.iterdir()) if f.is_file()}


def restore_tokenizer(files: dict[str, str], directory: Path):
    from transformers import AutoTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    for filename, content in files.items():
        # Names come from a checkpoint, i.e. from whoever made it: plain file names only.
        if not isinstance(filename, str) or Path(filename).name != filename or filename in ("", ".", ".."):
            raise ConfigError(f"checkpoint: refused tokenizer file name {filename!r} (not a plain file name)")
        (directory / filename).write_text(content)
    return AutoTokenizer.from_pretrained(str(directory))
