"""A run's W&B logging: what lmexp puts into W&B, made for comparing runs, and a logger that never
blocks or breaks a run.

- `run_config`: the run's config as W&B shows it — resolved, without Hydra's `_target_`/`_partial_`
  plumbing and without the keys that only say where this run writes (they differ on every run,
  so W&B's "diff only" view would flag them and hide the real differences); plus `overrides`, the
  swept and overridden keys as typed on the command line.
- `log_summary`: the final whole-split metrics into the run summary (W&B's summary is otherwise
  the last logged value, which for val/ is whatever validation ran last).
- `build_wandb_logger`: the logger, which falls back to offline rather than block or break a run;
  `finish_wandb` closes the run whatever happened.
(A comparison's own W&B run: lmexp.tools.wandb_runs.log_comparison.)
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PLUMBING = ("_target_", "_partial_", "_recursive_", "_convert_")
# Keys that name this run's own directories, at any depth (trainer.default_root_dir,
# callbacks.*.dirpath, logger.*.save_dir, ...); `paths` and `hydra` at the top.
PER_RUN_KEYS = ("dirpath", "default_root_dir", "save_dir", "output_dir", "log_dir", "root_dir")
PER_RUN_SECTIONS = ("paths", "hydra", "ckpt_path")


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in PLUMBING and k not in PER_RUN_KEYS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def run_config(cfg: DictConfig, overrides: list[str]) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in PER_RUN_SECTIONS:
        config.pop(key, None)
    config = _strip(config)
    config["overrides"] = {o.partition("=")[0].lstrip("+~"): o.partition("=")[2] for o in overrides
                           if not o.startswith(("hydra.", "paths."))}
    return config


def import_before_torch(cfg: DictConfig) -> None:
    """When the run logs to W&B, import wandb and the launch module its run start imports, before
    torch and Lightning. W&B's pydantic models look up each class's module with inspect.getmodule,
    which walks sys.modules: with torch, Lightning and inductor loaded that costs about 1 s more."""
    if (cfg.get("logger") or {}).get("wandb") is not None:
        importlib.import_module("wandb.sdk.launch.inputs.internal")


def log_summary(metrics: dict[str, float]) -> None:
    """The final metrics of the record into the current W&B run's summary (if one is open)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.summary.update(metrics)


def start_run(loggers: list, cfg: DictConfig, overrides: list[str]) -> dict | None:
    """Log the run's config (made for comparing, `run_config`) to its W&B run, if it has one;
    return what the run record keeps of it: mode, run id and directory."""
    logger = next((lg for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
    if logger is None:
        return None
    logger.log_hyperparams(run_config(cfg, overrides))
    experiment = logger.experiment
    mode = "offline" if experiment.settings.mode in ("offline", "dryrun") else experiment.settings.mode
    return {"mode": mode, "run_id": experiment.id, "dir": experiment.dir}


def finish_wandb(success: bool) -> None:
    """Close the W&B run whatever happened, so the next job in this process gets its own run."""
    wandb = sys.modules.get("wandb")  # never imported just to close nothing
    if wandb is None or wandb.run is None:
        return
    offline = wandb.run.settings.mode in ("offline", "dryrun")
    run_dir = Path(wandb.run.dir).parent  # <...>/offline-run-<time>-<id>/files → the run's directory
    wandb.finish(exit_code=0 if success else 1)
    if offline:  # so the run can be read back (or synced) as soon as this returns
        from lmexp.wandb_offline import wait_until_written

        wait_until_written(run_dir)


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
        logger = WandbLogger(offline=offline, settings=settings, **options)
        # Lightning passes anonymous=None to wandb.init, and wandb 0.31 warns on every run that the
        # setting has no effect; lmexp never sets it.
        logger._wandb_init.pop("anonymous", None)
        return logger

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
