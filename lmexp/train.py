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
from lmexp.config_folders import check_choices_unique
from lmexp.console import quiet_third_party
from lmexp.errors import ConfigError, ExpectedFailure, cannot_write
from lmexp.runs.record import (SUMMARY, RunRecord, config_hash, git_info, package_versions, print_results,
                               version_changes)
from lmexp.runs.sweep import job_overrides, run_job
from lmexp.wandb_logging import finish_wandb, import_before_torch

log = logging.getLogger("lmexp")


def train(cfg: DictConfig) -> float:
    """Train, validate and test one configuration; write summary.json; return the optimized metric."""
    record = RunRecord(Path(cfg.paths.output_dir), optimized_metric=OmegaConf.select(cfg, "optimized_metric"),
                       overrides=job_overrides(), seed=cfg.get("seed"), config_hash=config_hash(cfg),
                       git=git_info(), versions=package_versions())
    try:
        record.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise (cannot_write(record.run_dir.parent, f"the run directory {record.run_dir.name}", err) or err) from err
    is_main = True  # every rank runs this function under DDP; only rank 0 writes (known once Lightning loads)
    trainer = None
    start = time.perf_counter()
    try:
        check_choices_unique(hydra_runtime())
        validate(cfg)
        import_before_torch(cfg)
        import pytorch_lightning as pl  # heavy imports only after the config is known to be sound
        from pytorch_lightning.utilities import rank_zero_only

        from lmexp import build, module, wandb_logging
        from lmexp.callbacks.pruning import mark_pruned_wandb_run, pruned_at
        from lmexp.runs import init_from, resume

        is_main = rank_zero_only.rank == 0
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        # model=from_run: the architecture, the tokenizer and (once built) the weights of an earlier run.
        pretrained = init_from.adopt(cfg) if cfg.model.get("init_from") else None
        record.resumed_from, checkpoint, record.changed_keys = resume.checkpoint_to_resume(cfg, resolved(cfg))
        if checkpoint is not None:
            for change in version_changes(resume.recorded_versions(checkpoint, record.resumed_from), record.versions):
                log.warning("resuming a checkpoint made with other package versions: %s", change)
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
            cfg, parts, record.run_dir / "tokenizer" if is_main else None, record.wandb, record.versions))
        trainer.fit(lm_module, datamodule=parts.datamodule, ckpt_path=record.resumed_from, weights_only=not cfg.trust_checkpoint)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        record.metrics = module.last_train_metrics(trainer) or (checkpoint or {}).get("lmexp", {}).get(
            "last_train_metrics", {})  # resumed after its last step: the checkpoint's
        record.pruned = pruned_at(trainer)  # an Optuna pruner stopped it: a result, not worth a final scoring
        if record.pruned is None:
            # The recorded validation metrics cover the split as the test does (the whole split unless
            # trainer.limit_test_batches says otherwise), not the subset used for periodic validation.
            trainer.limit_val_batches = trainer.limit_test_batches
            splits = ["validation"] + (["test"] if cfg.get("test", True) and parts.datamodule.has_split("test") else [])
            record.metrics.update(module.score_splits(trainer, lm_module, parts.datamodule, splits))
        describe_training(record, trainer)
        if is_main:
            wandb_logging.log_summary(record.metrics)  # the final whole-split metrics
            mark_pruned_wandb_run(record.pruned)
        record.status = "completed" if record.pruned is None else "pruned"
    except BaseException as err:
        record.status = "interrupted" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "failed"
        refused = cannot_write(record.run_dir, "the run's files", err) if isinstance(err, OSError) else None
        failure = refused or err
        record.error = str(failure) if isinstance(failure, ExpectedFailure) else f"{type(err).__name__}: {err}"
        if type(err).__name__ == "SIGTERMException":  # Lightning's, at the end of the step SIGTERM came in
            record.error = stopped_by_sigterm(record.run_dir, trainer.global_step if trainer else 0)
        if isinstance(failure, ExpectedFailure):
            log_traceback(err, record.run_dir)
        if refused is not None:  # a full disk (CSV, logs, ...) is the machine's fault: one line, like bad input
            raise refused from err
        raise
    finally:
        record.wall_time_s = round(time.perf_counter() - start, 3)
        finish_wandb(record.status in ("completed", "pruned"))
        if is_main:
            write_record(record)
    if is_main:
        print_results(record)
    value = record.metrics.get(cfg.optimized_metric)
    return float("nan") if value is None else value


def write_record(record: RunRecord) -> None:
    """summary.json, or one line on stderr when the disk refuses it (the run's own error, if any,
    is already on its way: a second traceback would only hide it)."""
    try:
        record.write()
    except OSError as err:
        refused = cannot_write(record.run_dir, f"the run record {SUMMARY}", err)
        if refused is None:
            raise
        print(f"error: {refused}", file=sys.stderr)


def stopped_by_sigterm(run_dir: Path, step: int) -> str:
    """What a run stopped by SIGTERM (scancel, preemption, a time limit) records, and how to go on."""
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return f"stopped by SIGTERM at step {step} (scancel, preemption or a time limit); no checkpoint was saved"
    return (f"stopped by SIGTERM at step {step} (scancel, preemption or a time limit); last.ckpt saved: continue "
            f"with ckpt_path={run_dir} (a sweep job: the sweep's command with resume=true)")


def describe_parts(record: RunRecord, parts, is_main: bool) -> None:
    """Into the record: the data and the model; into the run directory: the tokenizer (and a
    classifier's labels), so the run can be read back without its checkpoint's copies."""
    from lmexp.models import num_parameters

    datamodule = parts.datamodule
    record.data_fingerprint = datamodule.fingerprint
    record.preprocessing = {"cache_hit": datamodule.cache_hit, "seconds": round(datamodule.preprocess_s, 3),
                            **datamodule.preprocessing_info}
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
        try:
            with open(run_dir / "train.log", "a") as f:
                f.write(logging.Formatter().format(record) + "\n")
        except OSError:
            pass  # a full or read-only disk: the terminal's line is all there can be


def _job(cfg: DictConfig) -> float:
    quiet_third_party()  # also in the processes a launcher starts for sweep jobs (joblib, SLURM)
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
