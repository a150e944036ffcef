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

import hydra
from omegaconf import DictConfig, OmegaConf

from lmexp import records
from lmexp.config import config_dir, register_resolvers, resolve_checkpoint, resolved, validate
from lmexp.console import quiet_third_party
from lmexp.errors import ConfigError, ExpectedFailure
from lmexp.resume import changed_keys, check_identity, find_last
from lmexp.sweep import hydra_runtime, job_overrides, run_job, sweep_group

log = logging.getLogger("lmexp")

METRIC_ORDER = ("loss", "perplexity", "acc", "f1", "precision", "recall", "mcc")


def train(cfg: DictConfig) -> float:
    """Train, validate and test one configuration; write summary.json; return the optimized metric."""
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = job_overrides()
    summary: dict = {
        "status": "running", "error": None, "metrics": {},
        "optimized_metric": OmegaConf.select(cfg, "optimized_metric", default=None), "overrides": overrides,
        "config_hash": records.config_hash(cfg), "data_fingerprint": None,
        "git": records.git_info(), "versions": records.package_versions(), "seed": cfg.get("seed"),
        "run_dir": str(run_dir), "resumed_from": None,
        "wall_time_s": None, "tokens_per_s": None, "wandb": None,
    }
    is_main = True  # every rank runs this function under DDP; only rank 0 writes (known once Lightning loads)
    start = time.perf_counter()
    try:
        validate(cfg)
        import pytorch_lightning as pl  # heavy imports only after the config is known to be sound
        from pytorch_lightning.utilities import rank_zero_only

        from lmexp import build, init_from, wandb_surface
        from lmexp.checkpointing import read_checkpoint, stored_config
        from lmexp.confusion import ConfusionMatrix
        from lmexp.module import LMModule

        is_main = rank_zero_only.rank == 0
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        # model=from_run: the architecture, the tokenizer and (once built) the weights of an earlier run.
        pretrained = init_from.adopt(cfg) if cfg.model.get("init_from") else None
        current = resolved(cfg)  # with the adopted model: what checkpoints store
        ckpt_path = None
        if cfg.get("ckpt_path") == "last":
            ckpt_path = find_last(cfg.paths.output_root, current, stored_config)
            log.info("resuming %s: the newest run with this configuration", Path(ckpt_path).parent.parent)
        elif cfg.get("ckpt_path"):
            ckpt_path = resolve_checkpoint(cfg.ckpt_path, cfg.paths.output_root)
        checkpoint = read_checkpoint(ckpt_path, trust=cfg.trust_checkpoint) if ckpt_path else None
        if checkpoint is not None:
            before = (checkpoint.get("lmexp") or {}).get("config") or {}
            check_identity(before, current, ckpt_path, cfg.allow_config_change)
            summary["resumed_from"], summary["changed_keys"] = ckpt_path, changed_keys(before, current)

        datamodule = build.build_datamodule(cfg, pretrained.tokenizer_config(cfg.paths.cache_dir) if pretrained else None)
        try:
            datamodule.prepare()
        except (OSError, UnicodeDecodeError) as err:  # a file that vanished, is unreadable or is not text
            raise ConfigError(f"data: cannot read the data ({type(err).__name__}: {err})") from err
        summary["data_fingerprint"] = datamodule.fingerprint
        summary["preprocessing"] = {"cache_hit": datamodule.cache_hit, "seconds": round(datamodule.preprocess_s, 3)}
        tokenizer = datamodule.tokenizer
        if is_main:
            tokenizer.save_pretrained(run_dir / "tokenizer")
        objective = build.build_objective(cfg, datamodule)
        datamodule.collate = objective.collate
        model = build.build_model(cfg, tokenizer, objective)
        if pretrained is not None:
            pretrained.load_weights(model)
        summary["num_parameters"] = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        log.info("model: %s, %s parameters", type(model).__name__, f"{summary['num_parameters']:,}")
        labels = getattr(objective, "labels", None)  # classification: the label of each class id
        if labels is not None and is_main:
            (run_dir / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
            summary["test_split"] = datamodule.split_origins.get("test")

        wandb_id = (checkpoint or {}).get("lmexp", {}).get("wandb_run_id")
        loggers = build.build_loggers(
            cfg, run_dir, wandb_id=wandb_id, group=sweep_group(hydra_runtime()),
            name="-".join(overrides) if sweep_group(hydra_runtime()) else None,
        )
        wandb_logger = next((lg for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
        if wandb_logger is not None and is_main:
            wandb_logger.log_hyperparams(wandb_surface.run_config(cfg, overrides))  # made for comparing runs
            experiment = wandb_logger.experiment
            mode = "offline" if experiment.settings.mode in ("offline", "dryrun") else experiment.settings.mode
            summary["wandb"] = {"mode": mode, "run_id": experiment.id, "dir": experiment.dir}

        callbacks = build.build_callbacks(cfg)
        if labels is not None:
            callbacks.append(ConfusionMatrix(labels, run_dir))
        trainer = build.build_trainer(cfg, loggers, callbacks)
        module = LMModule(
            model=model,
            objective=objective,
            optimizer=build.instantiate_or_explain(cfg.optimizer, "optimizer"),
            scheduler=build.instantiate_or_explain(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None,
            decay_embeddings=cfg.get("decay_embeddings", False),
            train_metrics=cfg.get("train_metrics", False),
            impl=cfg.get("impl"),
            extra_checkpoint_state={
                "config": OmegaConf.to_container(cfg, resolve=True),
                "tokenizer_files": build.tokenizer_files(run_dir / "tokenizer") if is_main else {},
                "wandb_run_id": summary["wandb"]["run_id"] if summary["wandb"] else None,
                "data_fingerprint": datamodule.fingerprint,
                "labels": labels,
            },
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=not cfg.trust_checkpoint)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        # The last training step's loss (and its acc, f1, ... with train_metrics=true).
        summary["metrics"] = {
            name: _float(value) for name, value in trainer.callback_metrics.items()
            if name.startswith("train/") and name not in ("train/lr", "train/tokens_per_s", "train/flops_per_s", "train/mfu")
        }
        # The recorded validation metrics cover the split as the test does (the whole split unless
        # trainer.limit_test_batches says otherwise), not the subset used for periodic validation.
        trainer.limit_val_batches = trainer.limit_test_batches
        summary["metrics"].update(_floats(trainer.validate(module, datamodule=datamodule, verbose=False)))
        if cfg.get("test", True) and datamodule.has_split("test"):
            summary["metrics"].update(_floats(trainer.test(module, datamodule=datamodule, verbose=False)))
        best = trainer.checkpoint_callback
        if best is not None and best.best_model_score is not None:
            summary["best"] = {"metric": best.monitor, "value": float(best.best_model_score),
                               "checkpoint": best.best_model_path}
        throughput = next((cb for cb in callbacks if hasattr(cb, "tokens_per_s")), None)
        summary["tokens_per_s"] = throughput.tokens_per_s if throughput else None
        summary["flops_per_s"], summary["mfu"] = (throughput.flops_per_s, throughput.mfu) if throughput else (None, None)
        summary["global_step"] = trainer.global_step
        if wandb_logger is not None and is_main:
            wandb_surface.log_summary(summary["metrics"])  # the final whole-split metrics
        summary["status"] = "completed"
    except BaseException as err:
        interrupted = isinstance(err, (KeyboardInterrupt, SystemExit))
        summary["status"] = "interrupted" if interrupted else "failed"
        summary["error"] = str(err) if isinstance(err, ExpectedFailure) else f"{type(err).__name__}: {err}"
        if isinstance(err, ExpectedFailure):
            log_traceback(err, run_dir)
        raise
    finally:
        summary["wall_time_s"] = round(time.perf_counter() - start, 3)
        _finish_wandb(summary["status"] == "completed")
        if is_main:
            records.write_summary(run_dir, summary)

    if is_main:
        print_results(summary, run_dir)
    value = summary["metrics"].get(cfg.optimized_metric)
    return float("nan") if value is None else value


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


def _float(value) -> float | None:
    return None if value is None else float(value)


def _floats(results: list[dict]) -> dict[str, float]:
    return {k: float(v) for result in results for k, v in result.items()}


def _finish_wandb(success: bool) -> None:
    """Close the W&B run whatever happened, so the next job in this process gets its own run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=0 if success else 1)


def print_results(summary: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = summary["metrics"]
    stages = [s for s in ("val", "test") if any(k.startswith(f"{s}/") for k in metrics)]
    names = [m for m in METRIC_ORDER if any(f"{s}/{m}" in metrics for s in stages)]
    table = Table(title="final metrics")
    table.add_column("metric")
    for stage in stages:
        table.add_column(stage, justify="right")
    for name in names:
        cells = [metrics.get(f"{s}/{name}") for s in stages]
        table.add_row(name, *("-" if v is None else f"{v:.4f}" for v in cells))
    console = Console()
    console.print(table)
    tps = summary.get("tokens_per_s")
    console.print(
        f"{summary['global_step']} steps in {summary['wall_time_s']:.1f}s"
        + (f", {tps:,.0f} tokens/s" if tps else "")
    )
    console.print(f"run directory: {run_dir}", soft_wrap=True)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    try:
        if sweep_group(hydra_runtime()) is not None:  # a -m sweep job: a failure is recorded, the sweep goes on
            return run_job(cfg, train)
        return train(cfg)
    except ExpectedFailure as err:  # one line; the traceback is in the run's log file
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code not in (None, 0):
            raise
        print(f"interrupted: resume with ckpt_path={cfg.paths.output_dir}", file=sys.stderr)
        sys.exit(130)


def main() -> None:
    register_resolvers()
    quiet_third_party()
    _hydra_main()


if __name__ == "__main__":
    main()
