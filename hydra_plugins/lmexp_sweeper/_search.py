"""lmexp's Optuna sweeper: Optuna 4/5 under Hydra, with pruning and no batches.

hydra-optuna-sweeper pins optuna<3 (SQLAlchemy<2), keeps each trial inside the sweeper (a job
cannot report intermediate values, so nothing can be pruned) and launches trials in batches of
n_jobs (one slow trial holds its batch). This sweeper keeps its config keys (`sampler`,
`direction`, `n_trials`, `n_jobs`, `storage`, `study_name`, `max_failure_rate`, and `params` in
its syntax: `interval(a, b)`, `tag(log, interval(a, b))`, `choice(...)`, `range(...)`) and:

- asks the sampler for a trial whenever one of the n_jobs slots frees (Optuna's ask/tell), and
  starts it at once through the launcher's `submit` (hydra_plugins/lmexp_launchers; a launcher
  without it runs one job at a time);
- keeps the study in a storage every job reaches (the user's RDB, else a journal file in the sweep
  directory) and tells each job its trial (`optuna_trial`, not part of the run's identity): the
  job reports its metric after each validation and stops when `pruner` says so
  (lmexp.callbacks.pruning), recording `status: pruned`;
- tells the study what each job's record says: completed (its value), pruned, failed (FAIL with
  the error, a dead job's too); the search goes on;
- continues a search: trials left RUNNING by a search that was killed are told FAIL (or what
  their record says, if they got that far) and asked again with the same parameters; with
  `resume=true` in the same sweep directory, they and the failed trials run again in their own job
  directories and n_trials counts the trials that finished there.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from lmexp.errors import ConfigError
from lmexp.runs.record import RunRecord, record_status
from lmexp.runs.study import journal_url, open_storage

log = logging.getLogger(__name__)

# What the sweeper keeps on each trial (user attributes): the job that ran it, and who asked for it.
SWEEP_DIR, JOB, SWEEPER, FAIL_REASON = "lmexp_sweep_dir", "lmexp_job", "lmexp_sweeper", "fail_reason"


class OptunaSearch(Sweeper):
    """The sweeper itself (optuna_sweeper.OptunaSweeper is what Hydra sees)."""

    def __init__(self, sampler: Any, direction: Any, n_trials: int, n_jobs: int, storage: str | None,
                 study_name: str | None, params: Any = None, pruner: Any = None, max_failure_rate: float = 1.0,
                 **unknown: Any) -> None:
        self.unknown = sorted(unknown)  # reported by sweep(), where an error is one line
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.direction = direction
        self.n_trials, self.n_jobs = int(n_trials), max(int(n_jobs), 1)
        self.storage, self.study_name = storage, study_name
        self.params = dict(params or {})
        self.max_failure_rate = float(max_failure_rate)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        try:
            return self.search(arguments)
        except ConfigError as err:  # one line, as lmexp-train reports a job's bad config
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    def search(self, arguments: list[str]) -> list[JobReturn]:
        if self.unknown:
            raise ConfigError(f"hydra.sweeper: unknown key(s) {', '.join(self.unknown)}; lmexp's Optuna sweeper "
                              "takes sampler, pruner, direction, n_trials, n_jobs, storage, study_name, params, "
                              "max_failure_rate")
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"hydra.sweeper.direction={self.direction}: expected minimize or maximize (one "
                              "direction: a trial returns one value, optimized_metric)")
        space, fixed = search_space(self.params, arguments)
        study = self.open_study(space)
        retries, finished_here = self.continue_study(study)
        budget = max(self.n_trials - finished_here, 0)
        log.info("Study name: %s\nStorage: %s\nSampler: %s\nPruner: %s\nDirections: ['%s']", study.study_name,
                 self.storage, type(study.sampler).__name__, type(study.pruner).__name__, self.direction)
        submit = getattr(self.launcher, "submit", None)
        if submit is None and self.n_jobs > 1:
            log.warning("hydra.sweeper.n_jobs=%d: the %s runs one job at a time (joblib, submitit_local and "
                        "slurm run them side by side)", self.n_jobs, type(self.launcher).__name__)
        self.next_job = max((int(d.name) for d in self.sweep_dir.glob("*") if d.name.isdigit()), default=-1) + 1
        in_flight: dict[Future, tuple[optuna.trial.Trial, int, list[str]]] = {}
        results, asked, failed, told = [], 0, 0, 0
        while True:
            while len(in_flight) < self.n_jobs and asked < budget and not self.stopped(failed, told):
                trial, job, overrides = self.ask(study, space, fixed, retries)
                asked += 1
                future = submit(overrides, job) if submit else _done(self.launcher.launch([overrides], job)[0])
                in_flight[future] = (trial, job, overrides)
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                trial, job, overrides = in_flight.pop(future)
                state = self.tell(study, trial, job, overrides, future)
                results.append(future.result() if future.exception() is None else None)
                told += 1
                failed += state == TrialState.FAIL
        self.write_best(study)
        return [r for r in results if r is not None]

    # --- the study ------------------------------------------------------------------------------

    def open_study(self, space: dict[str, BaseDistribution]) -> optuna.Study:
        """The study (created, or loaded to continue); every job gets its storage and name (ask)."""
        if self.storage is None:  # in memory for the user: a file in the sweep directory for the jobs
            self.storage = journal_url(self.sweep_dir / "optuna.journal")
            self.study_name = self.study_name or self.sweep_dir.name
        sampler = None
        if self.sampler_cfg:
            grid = _is_grid(self.sampler_cfg) and self.sampler_cfg.get("search_space") is None
            sampler = instantiate(self.sampler_cfg, **({"search_space": grid_of(space)} if grid else {}))
        pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        self.backend = open_storage(self.storage)
        study = optuna.create_study(storage=self.backend, study_name=self.study_name,
                                    sampler=sampler, pruner=pruner, direction=self.direction, load_if_exists=True)
        self.study_name = study.study_name
        return study

    def continue_study(self, study: optuna.Study) -> tuple[list[optuna.trial.FrozenTrial], int]:
        """Trials of a search that was killed while they ran are told what their record says, else
        FAIL; those asked again; with resume=true, this sweep directory's failed trials too. Returns
        the trials to run again in their own job directories, and how many finished here."""
        resume = bool(OmegaConf.select(self.config, "resume", default=False))
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphaned(trial) and self.tell_orphan(study, trial) == TrialState.FAIL and not (resume and self.here(trial)):
                study.enqueue_trial(trial.params, skip_if_exists=False)
        latest: dict[int, optuna.trial.FrozenTrial] = {}  # this sweep directory's jobs: their last trial
        for trial in study.get_trials(deepcopy=False):
            if self.here(trial):
                latest[trial.user_attrs[JOB]] = trial
        if not resume:
            return [], 0
        finished = [t for t in latest.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        retries = sorted((t for t in latest.values() if t.state == TrialState.FAIL), key=lambda t: t.number)
        if finished or retries:
            log.info("resume=true: %d trial(s) of this sweep directory finished, %d to run again",
                     len(finished), len(retries))
        return retries, len(finished)

    def here(self, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.user_attrs.get(SWEEP_DIR) == str(self.sweep_dir) and JOB in trial.user_attrs

    def tell_orphan(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> TrialState:
        """A trial whose search was killed while it ran: what its record says if its job finished
        since, else FAIL (its record too, if it says running)."""
        run_dir = Path(trial.user_attrs.get(SWEEP_DIR, "")) / str(trial.user_attrs.get(JOB, ""))
        status = record_status(run_dir) if JOB in trial.user_attrs else None
        if status in ("completed", "pruned"):
            return self.tell_record(study, trial.number, RunRecord.read(run_dir), None)
        reason = "its search was killed while the trial ran"
        if status == "running":
            record = RunRecord.read(run_dir)
            record.status, record.error = "failed", f"job died: {reason}"
            record.write()
        log.warning("trial %d: %s; told FAIL", trial.number, reason)
        return self.fail(study, trial.number, reason)

    # --- ask and tell ---------------------------------------------------------------------------

    def ask(self, study: optuna.Study, space: dict[str, BaseDistribution], fixed: list[str],
            retries: list[optuna.trial.FrozenTrial]) -> tuple[optuna.trial.Trial, int, list[str]]:
        if retries:  # resume=true: a failed trial of this directory, again, in its own job directory
            again = retries.pop(0)
            study.enqueue_trial(again.params, skip_if_exists=False)
            job = again.user_attrs[JOB]
        else:
            job = None
        trial = study.ask(space)
        if job is None:
            job, self.next_job = self.next_job, self.next_job + 1
        trial.set_user_attr(SWEEP_DIR, str(self.sweep_dir))
        trial.set_user_attr(JOB, job)
        trial.set_user_attr(SWEEPER, f"{socket.gethostname()}:{os.getpid()}")
        overrides = [*fixed, *(f"{key}={override_value(value)}" for key, value in trial.params.items()),
                     f"++optuna_trial={trial.number}",  # the job's trial, in the study it reaches through:
                     f"hydra.sweeper.storage={quoted(self.storage)}", f"hydra.sweeper.study_name={quoted(self.study_name)}"]
        return trial, job, overrides

    def tell(self, study: optuna.Study, trial: optuna.trial.Trial, job: int, overrides: list[str],
             future: Future) -> TrialState:
        error = future.exception()
        ret = future.result() if error is None else None
        if ret is not None and ret.status == JobStatus.FAILED:
            error = ret._return_value
        run_dir = self.run_dir(job, overrides)
        record = RunRecord.read(run_dir) if record_status(run_dir) else None
        if error is not None and (record is None or record.status == "running"):
            return self.fail(study, trial.number, f"{type(error).__name__}: {error}")
        return self.tell_record(study, trial.number, record, ret.return_value if ret and ret.status == JobStatus.COMPLETED else None)

    def tell_record(self, study: optuna.Study, number: int, record: RunRecord | None, value: Any) -> TrialState:
        """Tell trial `number` what its job's record says."""
        if record is None or record.status == "running":
            return self.fail(study, number, "the job ended without a record")
        if record.status == "pruned":
            self._tell(study, number, state=TrialState.PRUNED)
            return TrialState.PRUNED
        if record.status != "completed":
            return self.fail(study, number, f"{record.status}: {record.error}")
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            value = record.metrics.get(record.optimized_metric or "")
        if value is None or not math.isfinite(value):
            return self.fail(study, number, f"no finite value of {record.optimized_metric} in its record")
        self._tell(study, number, values=float(value))
        return TrialState.COMPLETE

    def fail(self, study: optuna.Study, number: int, reason: str) -> TrialState:
        trial_id = self.backend.get_trial_id_from_study_id_trial_number(
            self.backend.get_study_id_from_name(study.study_name), number)
        self.backend.set_trial_user_attr(trial_id, FAIL_REASON, reason)
        self._tell(study, number, state=TrialState.FAIL)
        return TrialState.FAIL

    def _tell(self, study: optuna.Study, number: int, **told: Any) -> None:
        try:
            study.tell(number, **told)
        except RuntimeError as err:  # a grid sampler stops its study when the grid is done
            if "Study.stop" not in str(err):
                raise
            self.grid_done = True

    grid_done = False

    def stopped(self, failed: int, told: int) -> bool:
        if self.grid_done:
            log.info("the grid sampler has tried every point: no further trials")
            return True
        if told and failed / told > self.max_failure_rate:
            log.error("%d of %d trials failed, more than hydra.sweeper.max_failure_rate=%s: no further trials",
                      failed, told, self.max_failure_rate)
            return True
        return False

    def run_dir(self, job: int, overrides: list[str]) -> Path:
        from hydra_plugins.lmexp_launchers.lmexp_launchers import job_config

        return job_config(self.hydra_context, self.config, overrides, job)[1]

    def write_best(self, study: optuna.Study) -> None:
        """optimization_results.yaml in the sweep directory, as hydra-optuna-sweeper wrote it."""
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return
        best = {"name": "optuna", "best_params": study.best_params, "best_value": study.best_value}
        log.info("Best parameters: %s\nBest value: %s", study.best_params, study.best_value)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(best), self.sweep_dir / "optimization_results.yaml")


def _done(result: JobReturn) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def orphaned(trial: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial whose sweeper process (on this machine) is gone. A trial asked on another
    machine, or by hydra-optuna-sweeper, cannot be told apart from a running one: left alone."""
    host, _, pid = str(trial.user_attrs.get(SWEEPER, "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --- the search space ------------------------------------------------------------------------------

def search_space(params: dict[str, Any], arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """`params` (key → expression) and the command line's overrides: sweeps (`choice`, `range`,
    `interval`, `tag(log, interval)`) become Optuna distributions, the rest are passed to every job
    as they are; the command line wins over `params`."""
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in parser.parse_overrides([f"{key}={value}" for key, value in params.items()] + list(arguments)):
        key = override.get_key_element()
        space.pop(key, None), fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def distribution(override: Override) -> BaseDistribution:
    if override.is_choice_sweep() or override.is_range_sweep():
        return CategoricalDistribution([Transformer.encode(x) for x in override.sweep_iterator()])
    value = override.value()
    assert isinstance(value, IntervalSweep)
    log_scale = "log" in value.tags
    if isinstance(value.start, int) and isinstance(value.end, int):
        return IntDistribution(value.start, value.end, log=log_scale)
    return FloatDistribution(float(value.start), float(value.end), log=log_scale)


def override_value(value: Any) -> str:
    """A sampled value as an override's value: null, true/false, numbers and strings as typed."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def quoted(text: str) -> str:
    """`text` as a quoted override value (a URL's characters are not all allowed unquoted)."""
    return "'" + text.replace("'", "\\'") + "'"


def _is_grid(sampler_cfg: Any) -> bool:
    return bool(sampler_cfg) and str(sampler_cfg.get("_target_", "")).endswith("GridSampler")


def grid_of(space: dict[str, BaseDistribution]) -> dict[str, list]:
    """The grid sampler's points: every parameter must be a choice (or range)."""
    bad = [k for k, d in space.items() if not isinstance(d, CategoricalDistribution)]
    if bad:
        raise ConfigError(f"hydra/sweeper/sampler=grid: {', '.join(bad)} must be choice(...) or range(...), "
                          "not an interval")
    return {k: list(d.choices) for k, d in space.items()}
