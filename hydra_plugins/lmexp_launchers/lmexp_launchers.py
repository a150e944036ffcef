"""Hydra launchers that survive jobs killed from outside (SIGKILL, the OOM killer, a lost node).

Hydra's joblib and submitit launchers end the whole sweep when one job's process dies without a
result: joblib's loky pool breaks (`TerminatedWorkerError`) and kills the other workers; submitit's
`job.results()` raises. These subclasses (the `_target_` of conf/hydra/launcher/*.yaml) wait for
every job, and for a job that died they write its record (`status: failed`, the signal or the
scheduler's reason; lmexp.runs.sweep.record_dead_job) and give the sweeper the worst value, so the other
jobs complete, the end-of-sweep summary lists it and `resume=true` re-runs only it.

- `JoblibLauncher`: each job runs in a process forked from its joblib worker (which has imported
  the training stack once, so jobs start warm); the worker outlives the job and reports its death.
- `LocalLauncher` / `SlurmLauncher` (submitit): the job's state comes from the process (local) or
  from the scheduler: sacct where the cluster keeps accounting, else `scontrol show job` (a
  cluster without accounting, where every sacct call fails and submitit warns on each poll and
  never learns that a job died). `SlurmLauncher` asks for GPUs only for jobs that use them.

Beside Hydra's `launch` (a batch of jobs, returned when all are done), each launcher has
`submit(overrides, idx)`: one job started now, its JobReturn a Future. lmexp's Optuna sweeper
(hydra_plugins/lmexp_sweeper) keeps n_jobs of them in flight and asks for the next trial as soon as
any one ends, instead of waiting for a batch.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, setup_globals
from hydra_plugins.hydra_joblib_launcher import _core as joblib_core
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as _JoblibLauncher
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf, open_dict
from submitit.slurm.slurm import SlurmInfoWatcher

from lmexp.runs.sweep import record_dead_job

log = logging.getLogger(__name__)


def exit_description(code: int | None) -> str:
    """A process's exit code in words: `killed by SIGKILL` (negative: the signal), `exit code 1`."""
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def job_config(hydra_context, config: DictConfig, overrides: Sequence[str], idx: int) -> tuple[DictConfig, Path]:
    """Job `idx`'s config, as its process composes it, and its run directory."""
    job_cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(job_cfg.hydra.job):
        job_cfg.hydra.job.num = idx
    return job_cfg, Path(job_cfg.hydra.sweep.dir) / str(job_cfg.hydra.sweep.subdir)


def dead_job_return(hydra_context, config: DictConfig, overrides: Sequence[str], idx: int, error: str) -> JobReturn:
    """Record job `idx` as failed (`error`) and return what the sweeper gets for it (the worst value)."""
    job_cfg, run_dir = job_config(hydra_context, config, overrides, idx)
    value = record_dead_job(job_cfg, run_dir, f"job died: {error}")
    return JobReturn(overrides=list(overrides), cfg=job_cfg, hydra_cfg=job_cfg, working_dir=str(run_dir),
                     task_name=job_cfg.hydra.job.name, status=JobStatus.COMPLETED, _return_value=value)


# --- joblib -------------------------------------------------------------------------------------

class JoblibLauncher(_JoblibLauncher):
    _executor = None  # submit's loky pool: hydra.launcher.n_jobs workers, kept for the sweep

    def submit(self, overrides: Sequence[str], idx: int) -> Future:
        """Job `idx` on a free worker of the pool (the same kind of process `launch` uses)."""
        from joblib._parallel_backends import LokyBackend
        from joblib.externals.loky import cpu_count, get_reusable_executor

        if self._executor is None:
            setup_globals()
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            n_jobs = self.joblib.get("n_jobs") or 1
            workers = cpu_count() + 1 + n_jobs if n_jobs < 0 else n_jobs
            # As joblib.Parallel's loky pool: cores/workers threads each, idle workers kept 300 s.
            self._executor = get_reusable_executor(max_workers=workers, timeout=300,
                                                   env=LokyBackend()._prepare_worker_env(workers))
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        return self._executor.submit(run_in_child, idx, list(overrides), self.hydra_context, self.config,
                                     self.task_function, Singleton.get_state())

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed

        setup_globals()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        joblib_cfg = {**self.joblib, "backend": "loky"}  # as Hydra's: the threading backend breaks Hydra
        joblib_core.process_joblib_cfg(joblib_cfg)
        log.info("Joblib.Parallel(n_jobs=%s) is launching %d jobs, each in a process of its own",
                 joblib_cfg.get("n_jobs"), len(job_overrides))
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        state = Singleton.get_state()
        return Parallel(**joblib_cfg)(
            delayed(run_in_child)(initial_job_idx + idx, overrides, self.hydra_context, self.config,
                                  self.task_function, state)
            for idx, overrides in enumerate(job_overrides)
        )


def run_in_child(idx: int, overrides: Sequence[str], hydra_context, config: DictConfig, task_function,
                 singleton_state: dict) -> JobReturn:
    """In a joblib worker: run Hydra's job in a forked child; if the child dies, record it."""
    import pytorch_lightning  # noqa: F401  imported once per worker, inherited by every job it forks

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child_job, args=(send, idx, overrides, hydra_context, config,
                                                     task_function, singleton_state))
    child.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:  # the child died before sending its result
        result = None
    child.join()
    if result is not None:
        return result
    Singleton.set_state(singleton_state)  # this worker's Hydra state, for the job's config (${now:...})
    setup_globals()
    return dead_job_return(hydra_context, config, overrides, idx, exit_description(child.exitcode))


def _child_job(send, *args: Any) -> None:
    result = joblib_core.execute_job(*args)
    # Structured config nodes pickle their dataclass by reference, and Hydra's plugin scan can import
    # those classes twice (then pickling refuses them): send the configs as plain data.
    result.cfg, result.hydra_cfg = (OmegaConf.create(OmegaConf.to_container(node, resolve=False))
                                    if node is not None else None for node in (result.cfg, result.hydra_cfg))
    send.send(result)
    send.close()


# --- submitit ----------------------------------------------------------------------------------

class _WaitForEveryJob:
    """`launch` of Hydra's submitit launchers, except that a job that dies is recorded, not raised."""

    _submitted = None  # submit's executor and the threads that wait for its jobs

    def executor(self):
        import submitit

        params = dict(self.params)
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=params.pop("submitit_folder"),
                                         **{f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")}
                                         if "max_num_timeout" in params else {})
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.resources(params).items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        return executor

    def submit(self, overrides: Sequence[str], idx: int) -> Future:
        """Job `idx` submitted now (to SLURM: a job of its own); a thread waits for its result."""
        if self._submitted is None:
            self._submitted = (self.executor(), ThreadPoolExecutor(thread_name_prefix="lmexp-job"))
        executor, waiters = self._submitted
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        job = executor.submit(self, list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
        self.watch([job])
        return waiters.submit(self._result, job, list(overrides), idx)

    def __getstate__(self) -> dict:
        # The launcher itself is what a job runs (Hydra's submitit launchers are callables): it
        # travels without the sweep side's executor and threads.
        return {k: v for k, v in self.__dict__.items() if k not in ("_submitted", "_watcher")}

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        executor = self.executor()
        jobs_args = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            jobs_args.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*jobs_args))
        self.watch(jobs)
        return [self._result(job, args[0], args[2]) for job, args in zip(jobs, jobs_args)]

    def resources(self, params: dict) -> dict:
        return params

    def watch(self, jobs: list) -> None:
        pass

    def _result(self, job, overrides: list[str], idx: int) -> JobReturn:
        error = job.exception()  # waits for the job; None when it returned
        if error is None:
            return job.results()[0]
        return dead_job_return(self.hydra_context, self.config, overrides, idx, self.death(job, error))

    def death(self, job, error: Exception) -> str:
        # submitit's local controller does not keep its task's exit code: the signal is not known here.
        return "its process ended without a result (killed from outside)"


class LocalLauncher(_WaitForEveryJob, submitit_launcher.LocalLauncher):
    pass


class SlurmLauncher(_WaitForEveryJob, submitit_launcher.SlurmLauncher):
    def resources(self, params: dict) -> dict:
        """`gpus_per_node: -1` (the preset): trainer.devices GPUs for a GPU job; none for a CPU job
        (trainer.accelerator=cpu, or `auto` on a partition without GPUs, where asking for any makes
        sbatch fail with `Invalid generic resource`)."""
        if params.get("gpus_per_node") == -1:
            trainer = self.config.trainer
            gpus = trainer.accelerator in ("gpu", "cuda") or (
                trainer.accelerator == "auto" and partition_has_gpus(params.get("partition")))
            params = {**params, "gpus_per_node": int(trainer.devices) if gpus else None}
        return params

    _watcher = None  # job states from scontrol (a cluster without accounting), for every job of the sweep

    def watch(self, jobs: list) -> None:
        if self._watcher is None and not accounting_enabled():
            self._watcher = ScontrolWatcher(delay_s=5)
        if self._watcher is not None:
            for job in jobs:
                job.watcher = self._watcher
                self._watcher.register_job(job.job_id)

    def death(self, job, error: Exception) -> str:
        info = job.get_info(mode="cache")
        state = info.get("State") or job.state
        reason = f"SLURM job {job.job_id} ended {state}"
        code, _, sig = info.get("ExitCode", "0:0").partition(":")
        if sig and sig != "0":
            reason += f" ({exit_description(-int(sig))})"
        elif code not in ("", "0"):
            reason += f" (exit code {code})"
        return reason


def partition_has_gpus(partition: str | None) -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%G", *(["-p", partition] if partition else [])],
                         capture_output=True, text=True, timeout=60)
    return "gpu" in out.stdout


def accounting_enabled() -> bool:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
    return "accounting_storage/none" not in out.stdout


class ScontrolWatcher(SlurmInfoWatcher):
    """Job states from `scontrol show job` (a cluster without accounting keeps finished jobs there
    for MinJobAge seconds), in the shape submitit's sacct watcher gives them."""

    def _make_command(self) -> list[str] | None:
        ids = {x.split("_")[0] for x in self._registered - self._finished}
        if not ids:
            return None
        return ["scontrol", "show", "job", "--oneliner", *(ids if len(ids) == 1 else [])]

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        info = {}
        for line in text.splitlines():
            fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
            if "JobId" not in fields:
                continue
            array = fields.get("ArrayJobId")
            key = f"{array}_{fields['ArrayTaskId']}" if array and fields.get("ArrayTaskId", "").isdigit() else fields["JobId"]
            info[key] = {"JobID": key, "State": fields.get("JobState", ""), "ExitCode": fields.get("ExitCode", ""),
                         "Reason": fields.get("Reason", ""), "NodeList": fields.get("NodeList", "")}
        return info
