"""Multirun sweeps (`lmexp-train -m ...`): the job context, what a sweep job does around training,
and the report at the end.

A sweep job never stops its sweep: a failure is recorded in the job's summary.json (its W&B run
is closed as failed by `train`), and the sweeper gets the worst possible value of the optimized
metric, a float (lmexp's Optuna sweeper reads the record instead and tells the study FAIL).
A job marks its record `running` (with its pid and host) when it starts; a job killed from outside
(SIGKILL, the OOM killer, a lost node) never gets further, and the launcher (hydra_plugins/lmexp_launchers) then
records it as failed with the signal or the scheduler's reason (`record_dead_job`).
A job whose record says `interrupted` (SIGTERM: SLURM preemption, requeue, time limit) and that left
`checkpoints/last.ckpt` continues from it when it runs again (a requeued SLURM job, `resume=true`).
`resume=true` skips the jobs whose record says completed; `fail_fast=true` leaves the jobs after
the first failure unrun. `SweepReport`, a Hydra callback (conf/hydra/default.yaml), prints one line
at the end and makes the command exit 1 when any job did not complete.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig

from lmexp.runs.record import SUMMARY, RunRecord, config_hash, record_status
from lmexp.config import hydra_runtime
from lmexp.errors import ConfigError, ExpectedFailure

log = logging.getLogger("lmexp")

# Switches that steer the sweep machinery, not the job (optuna_trial: set by the Optuna sweeper):
# left out of the job's recorded overrides (and of its config hash, lmexp.runs.record.NOT_RESULT_AFFECTING).
SWEEP_SWITCHES = ("resume", "fail_fast", "optuna_trial")
# Written into the sweep directory by a job that fails under fail_fast; the jobs after it see it
# and do not run. A file works the same for every launcher (one process, joblib workers, SLURM).
STOP_FILE = "fail_fast.stop"


def job_overrides(task: list[str] | None = None) -> list[str]:
    """The job's command-line overrides (`task`, else the running job's), without the switches that
    steer the sweep itself."""
    if task is None:
        runtime = hydra_runtime()
        task = [] if runtime is None else runtime.overrides.task
    return [o for o in task if o.split("=", 1)[0].lstrip("+~") not in SWEEP_SWITCHES]


def run_job(cfg: DictConfig, task: Callable[[DictConfig], float]) -> float:
    """Run one sweep job with `task` (lmexp.train.train); return the value for the sweeper."""
    runtime = hydra_runtime()
    job = runtime.job.num
    run_dir = Path(cfg.paths.output_dir)
    sweep_dir = Path(runtime.sweep.dir)
    worst = worst_value(cfg)

    if cfg.resume:
        done = completed_record(run_dir, cfg)
        if done is not None:
            log.info("job %d: completed in an earlier run of this sweep, skipped (resume=true)", job)
            return _sweeper_value(done.metrics.get(cfg.optimized_metric), worst)
    last = interrupted_checkpoint(run_dir, cfg)
    if last is not None:
        log.info("job %d: interrupted earlier, continuing from %s", job, last)
        cfg.ckpt_path = str(last)
    if cfg.fail_fast and (sweep_dir / STOP_FILE).exists():
        (run_dir / SUMMARY).unlink(missing_ok=True)  # an earlier, unfinished try of this job
        log.warning("job %d: not run, an earlier job failed (fail_fast=true)", job)
        return worst
    run_dir.mkdir(parents=True, exist_ok=True)
    RunRecord(run_dir, optimized_metric=cfg.optimized_metric, overrides=job_overrides(), seed=cfg.get("seed"),
              pid=os.getpid(), host=socket.gethostname()).write()

    try:
        check_ranks(cfg.trainer, runtime.launcher._target_)
        if runtime.launcher._target_.endswith("JoblibLauncher"):
            pin_gpu(job)
        value = task(cfg)
    except Exception as err:  # recorded; the sweep goes on (KeyboardInterrupt still stops it)
        error = str(err) if isinstance(err, ExpectedFailure) else f"{type(err).__name__}: {err}"
        log.error("job %d failed: %s", job, error, exc_info=not isinstance(err, ExpectedFailure))
        if record_status(run_dir) == "running":  # failed before train() wrote its record
            _write_failed(run_dir, cfg.optimized_metric, job_overrides(), error)
        if cfg.fail_fast:
            (sweep_dir / STOP_FILE).write_text(f"job {job}: {error}\n")
        return worst
    return _sweeper_value(value, worst)


def worst_value(cfg: DictConfig) -> float:
    """The value a failed job gives the sweeper: the worst possible one."""
    return math.inf if cfg.objective.monitor_mode == "min" else -math.inf


def _write_failed(run_dir: Path, metric: str, overrides: list[str], error: str) -> None:
    RunRecord(run_dir, status="failed", error=error, optimized_metric=metric, overrides=overrides).write()


def record_dead_job(cfg: DictConfig, run_dir: Path, error: str) -> float:
    """Launcher side, for a job whose process died without a result (killed from outside): record it
    as failed unless it got to write its own end (interrupted, failed); the value for the sweeper."""
    if record_status(run_dir) in (None, "running"):
        log.error("job %s failed: %s", run_dir.name, error)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_failed(run_dir, cfg.optimized_metric, job_overrides(list(cfg.hydra.overrides.task)), error)
    return worst_value(cfg)


def interrupted_checkpoint(run_dir: Path, cfg: DictConfig) -> Path | None:
    """`last.ckpt` of an earlier try of this job that was interrupted (SIGTERM) with this very config."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if record_status(run_dir) != "interrupted" or not last.is_file():
        return None
    if RunRecord.read(run_dir).config_hash != config_hash(cfg):
        log.warning("%s: the interrupted record is for another config; running the job afresh", run_dir)
        return None
    return last


def completed_record(run_dir: Path, cfg: DictConfig) -> RunRecord | None:
    """The job's record if it completed with this very config (same config hash), else None."""
    if record_status(run_dir) != "completed":
        return None
    record = RunRecord.read(run_dir)
    if record.config_hash != config_hash(cfg):
        log.warning("%s: the completed record is for another config; running the job again", run_dir)
        return None
    return record


def _sweeper_value(value: float | None, worst: float) -> float:
    return worst if value is None or math.isnan(value) else value


def check_ranks(trainer: DictConfig, launcher: str) -> None:
    """Refuse a job that would have Lightning start its DDP/FSDP ranks by re-running sys.argv.

    Inside a sweep that command is the whole sweep: each extra rank re-launches every job into a
    second sweep directory (DESIGN.md §7). Ranks started by SLURM, or spawned from inside the job,
    are fine.
    """
    strategy = str(trainer.get("strategy") or "auto")
    if launcher.endswith("SlurmLauncher") or "spawn" in strategy or "fork" in strategy:
        return
    devices = trainer.get("devices", "auto")
    if _device_count(devices) > 1:
        raise ConfigError(
            f"trainer.devices={devices} (strategy {strategy}) inside a -m sweep would start its ranks by "
            "re-running the whole sweep; use hydra/launcher=slurm (SLURM starts one process per rank), "
            "trainer.strategy=ddp_spawn, or trainer.devices=1"
        )


def _device_count(devices: Any) -> int:
    if devices in ("auto", -1, "-1"):
        import torch

        return max(torch.cuda.device_count(), 1)  # Lightning's "auto": every GPU, else one CPU process
    if isinstance(devices, (list, ListConfig)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    return int(devices)


def pin_gpu(job: int) -> None:
    """Give each joblib worker its own GPU; side by side, the workers would all take GPU 0.

    A worker keeps the GPU of its first job (CUDA cannot switch devices once initialized), and the
    first jobs land on distinct workers: with n_jobs <= GPUs, every running job has its own GPU.
    """
    import torch

    if torch.cuda.is_initialized():
        return
    count = torch.cuda.device_count()  # read through NVML: does not initialize CUDA
    if count < 2:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(count)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[job % len(ids)]


STATUSES = ("completed", "pruned", "failed", "interrupted", "running", "not run")  # the order of the summary line


def summarize(sweep_dir: Path) -> tuple[str, bool]:
    """`6 jobs: 4 completed, 1 pruned, 1 failed (job 3: <error>)`, and whether every job completed
    or was pruned (an Optuna pruner's stop is a result, not a failure)."""
    jobs = sorted((d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()), key=_job_order)
    counts: Counter[str] = Counter()
    failures = []
    for job_dir in jobs:
        record = RunRecord.read(job_dir) if (job_dir / SUMMARY).is_file() else None
        status = record.status if record else "not run"
        counts[status] += 1
        if status == "failed":
            failures.append(f"job {job_dir.name}: {str(record.error).splitlines()[0]}")
    parts = []
    for status in sorted(counts, key=lambda s: STATUSES.index(s) if s in STATUSES else len(STATUSES)):
        part = f"{counts[status]} {status}"
        if status == "failed":
            part += f" ({'; '.join(failures)})"
        if status == "not run" and (sweep_dir / STOP_FILE).exists():
            part += " (fail_fast)"
        parts.append(part)
    return f"{len(jobs)} jobs: " + ", ".join(parts), set(counts) <= {"completed", "pruned"}


def _job_order(job_dir: Path) -> tuple[int, str]:
    return (int(job_dir.name), "") if job_dir.name.isdigit() else (sys.maxsize, job_dir.name)


PLUGINS = ("hydra_plugins.lmexp_launchers.lmexp_launchers", "hydra_plugins.lmexp_sweeper.optuna_sweeper")


def register_plugin(target: str) -> None:
    """Register lmexp's launcher or sweeper `target` with Hydra. Hydra finds plugins by scanning the
    hydra_plugins package, which misses lmexp's under pip's editable install (`pip install -e`);
    this callback runs before Hydra instantiates the sweeper and the launcher."""
    module, _, name = target.rpartition(".")
    if module in PLUGINS:
        import importlib

        from hydra.core.plugins import Plugins

        Plugins.instance().register(getattr(importlib.import_module(module), name))


class SweepReport(Callback):
    """Hydra callback: the sweep's one-line summary at the end, exit status 1 unless all completed
    (or were pruned)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        register_plugin(config.hydra.launcher.get("_target_", ""))
        register_plugin(config.hydra.sweeper.get("_target_", ""))
        # A resumed sweep starts afresh: the stop left by an earlier run's failure no longer holds.
        (Path(config.hydra.sweep.dir) / STOP_FILE).unlink(missing_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        line, all_completed = summarize(sweep_dir)
        print(line)
        print(f"sweep directory: {sweep_dir}")
        if not all_completed:
            print(f"to re-run the jobs that did not complete: repeat the command with "
                  f"hydra.sweep.dir={sweep_dir} resume=true", file=sys.stderr)
            # Hydra turns a callback's exceptions into warnings; SystemExit is not one and ends the command.
            sys.exit(1)
