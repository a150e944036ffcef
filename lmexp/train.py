"""lmexp-train: compose → validate → build → fit → test → record.

`train(cfg)` is the whole job and can be called in-process with a config from Hydra's compose
API; `main()` is the console script (`lmexp-train`, `python -m lmexp.train`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lmexp.config import hydra_entry_point, hydra_runtime, resolved, sweep_group, validate
from lmexp.errors import ConfigError, ExpectedFailure
from lmexp.runs.record import RunRecord, config_hash, git_info, package_versions, print_results
from lmexp.runs.sweep import job_overrides, run_job
from lmexp.wandb_logging import finish_wandb, import_before_torch

log = logging.getLogger("lmexp")


def train(cfg: DictConfig) -> float:
    """Train, validate and test one configuration; write summary.json; return the optimized metric."""
    record = RunRecord(Path(cfg.paths.output_dir), optimized_metric=OmegaConf.select(cfg, "optimized_metric"),
                       overrides=job_overrides(), seed=cfg.get("seed"), config_hash=config_hash(cfg),
                       git=git_info(), versions=package_versions())
    record.run_dir.mkdir(parents=True, exist_ok=True)
    is_main = True  # every rank runs this function under DDP; only rank 0 writes (known once Lightning loads)
    start = time.perf_counter()
    try:
        validate(cfg)
        import_before_torch(cfg)
        import pytorch_lightning as pl  # heavy imports only after the config is known to be sound
        from pytorch_lightning.utilities import rank_zero_only

        from lmexp import build, module, wandb_logging
        from lmexp.runs import init_from, resume

        is_main = rank_zero_only.rank == 0
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        # model=from_run: the architecture, the tokenizer and (once built) the weights of an earlier run.
        pretrained = init_from.adopt(cfg) if cfg.model.get("init_from") else None
        record.resumed_from, checkpoint, record.changed_keys = resume.checkpoint_to_resume(cfg, resolved(cfg))
        parts = build.build_parts(cfg, pretrained=pretrained)
        if not parts.datamodule.has_split("train"):
            raise ConfigError("data.train_files=null: training needs training data (set data.train_files)")
        describe_parts(record, parts, is_main)

        group = sweep_group(hydra_runtime())
        loggers = build.build_loggers(cfg, record.run_dir, wandb_id=(checkpoint or {}).get("lmexp", {}).get("wandb_run_id"),
                                      group=group, name="-".join(record.overrides) if group else None)
        if is_main:
            record.wandb = wandb_logging.start_run(loggers, cfg, record.overrides)
        trainer = build.build_trainer(cfg, loggers, build.build_callbacks(cfg, parts, record.run_dir))
        lm_module = build.build_module(cfg, parts, checkpoint_state=build.checkpoint_state(
            cfg, parts, record.run_dir / "tokenizer" if is_main else None, record.wandb))
        trainer.fit(lm_module, datamodule=parts.datamodule, ckpt_path=record.resumed_from, weights_only=not cfg.trust_checkpoint)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        record.metrics = module.last_train_metrics(trainer)
        # The recorded validation metrics cover the split as the test does (the whole split unless
        # trainer.limit_test_batches says otherwise), not the subset used for periodic validation.
        trainer.limit_val_batches = trainer.limit_test_batches
        splits = ["validation"] + (["test"] if cfg.get("test", True) and parts.datamodule.has_split("test") else [])
        record.metrics.update(module.score_splits(trainer, lm_module, parts.datamodule, splits))
        describe_training(record, trainer)
        if is_main:
            wandb_logging.log_summary(record.metrics)  # the final whole-split metrics
        record.status = "completed"
    except BaseException as err:
        record.status = "interrupted" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "failed"
        record.error = str(err) if isinstance(err, ExpectedFailure) else f"{type(err).__name__}: {err}"
        if isinstance(err, ExpectedFailure):
            log_traceback(err, record.run_dir)
        raise
    finally:
        record.wall_time_s = round(time.perf_counter() - start, 3)
        finish_wandb(record.status == "completed")
        if is_main:
            record.write()
    if is_main:
        print_results(record)
    value = record.metrics.get(cfg.optimized_metric)
    return float("nan") if value is None else value


def describe_parts(record: RunRecord, parts, is_main: bool) -> None:
    """Into the record: the data and the model; into the run directory: the tokenizer (and a
    classifier's labels), so the run can be read back without its checkpoint's copies."""
    from lmexp.models import num_parameters

    datamodule = parts.datamodule
    record.data_fingerprint = datamodule.fingerprint
    record.preprocessing = {"cache_hit": datamodule.cache_hit, "seconds": round(datamodule.preprocess_s, 3)}
    record.num_parameters = num_parameters(parts.model)
    log.info("model: %s, %s parameters", type(parts.model).__name__, f"{record.num_parameters:,}")
    if datamodule.labels is not None:
        record.test_split = datamodule.split_origins.get("test")
    if is_main:
        datamodule.tokenizer.save_pretrained(record.run_dir / "tokenizer")
        if datamodule.labels is not None:
            (record.run_dir / "labels.json").write_text(json.dumps(datamodule.labels, indent=1) + "\n")


def describe_training(record: RunRecord, trainer) -> None:
    """Into the record: steps, the monitored best checkpoint, and throughput (TokenThroughput's averages)."""
    record.global_step = trainer.global_step
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:
        record.best = {"metric": best.monitor, "value": float(best.best_model_score), "checkpoint": best.best_model_path}
    throughput = next((cb for cb in trainer.callbacks if hasattr(cb, "tokens_per_s")), None)
    if throughput is not None:
        record.tokens_per_s, record.flops_per_s, record.mfu = throughput.tokens_per_s, throughput.flops_per_s, throughput.mfu


def log_traceback(err: BaseException, run_dir: Path) -> None:
    """An expected failure's traceback, for whoever wants it, into the run's log file only (the
    terminal gets one line): Hydra's job log (<run dir>/train.log), else that file directly."""
    record = logging.LogRecord("lmexp", logging.ERROR, __file__, 0, "%s", (str(err),),
                               (type(err), err, err.__traceback__))
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == run_dir.resolve()]
    for handler in handlers:
        handler.handle(record)
    if not handlers:
        with open(run_dir / "train.log", "a") as f:
            f.write(logging.Formatter().format(record) + "\n")


def _job(cfg: DictConfig) -> float:
    try:
        if sweep_group(hydra_runtime()) is not None:  # a -m sweep job: a failure is recorded, the sweep goes on
            return run_job(cfg, train)
        return train(cfg)
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code not in (None, 0):
            raise
        print(f"interrupted: resume with ckpt_path={cfg.paths.output_dir}", file=sys.stderr)
        sys.exit(130)


main = hydra_entry_point("train", _job)

if __name__ == "__main__":
    main()
