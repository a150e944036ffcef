"""Sweeps: one W&B run per job in one group, failures recorded while the sweep goes on, fail_fast,
resume, the joblib/submitit/Optuna presets, and the guards (DDP inside a sweep, resume outside one)."""

from __future__ import annotations

import datetime
import os
import re
import signal
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from conftest import PRUNE_FROM_STEP_4, cli, start_cli, sweep_job, wait_for_record
from lmexp.runs import sweep
from lmexp.runs.study import journal_url
from lmexp.tools import compare
from lmexp.config import config_dir, register_resolvers
from lmexp.errors import ConfigError
from conftest import read_summary
from lmexp.train import train
from lmexp.wandb_offline import find_offline_runs, read_offline_run


def job_dirs(sweep_dir):
    return sorted((d for d in sweep_dir.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


def the_sweep(root):
    sweeps = list((root / "outputs" / "multiruns").iterdir())
    assert len(sweeps) == 1
    return sweeps[0]


def test_each_job_is_its_own_wandb_run_in_the_sweeps_group(tiny_sweep):
    result, sweep_dir = tiny_sweep
    assert "4 jobs: 4 completed" in result.stdout
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 4
    runs = {}
    for job in jobs:
        record = read_summary(job)
        assert record["status"] == "completed"
        [path] = find_offline_runs(job / "wandb")
        runs[job.name] = (record, read_offline_run(path))
    assert len({run.run_id for _, run in runs.values()}) == 4
    for record, run in runs.values():
        assert run.run_id == record["wandb"]["run_id"] and run.exit_code == 0
        assert run.group == sweep_dir.name and run.job_type == "causal_lm"
        assert run.name == "-".join(record["overrides"])
        assert run.config["optimizer"]["lr"] == float(record["overrides"][-2].split("=")[1])
        assert run.config["seed"] == record["seed"]
        for metric in ("val/perplexity", "val/loss", "test/perplexity"):
            assert run.summary[metric] == record["metrics"][metric]
    assert [r["overrides"][-2:] for r, _ in runs.values()] == [
        ["optimizer.lr=0.01", "seed=1"], ["optimizer.lr=0.01", "seed=2"],
        ["optimizer.lr=0.003", "seed=1"], ["optimizer.lr=0.003", "seed=2"],
    ]


def test_failure_fail_fast_and_resume(tmp_path, small_corpus, cache_dir, capsys):
    job = [*sweep_job(small_corpus, cache_dir), "logger=wandb", "optimizer.lr=1e-2,-1,5e-3"]
    result = cli("-m", *job, "fail_fast=true", cwd=tmp_path)
    sweep_dir = the_sweep(tmp_path)
    error = "optimizer.lr=-1: expected a number > 0"
    assert result.returncode == 1
    assert f"3 jobs: 1 completed, 1 failed (job 1: {error}), 1 not run (fail_fast)" in result.stdout
    first, failed, unrun = job_dirs(sweep_dir)
    assert read_summary(failed)["status"] == "failed" and read_summary(failed)["error"] == error
    assert not find_offline_runs(failed)  # a config error stops the job before W&B (or anything heavy) starts
    assert not (unrun / "summary.json").exists()

    # Resumed without fail_fast: the completed job is skipped, the failure recurs, the rest runs.
    recorded = (first / "summary.json").stat().st_mtime_ns
    result = cli("-m", *job, f"hydra.sweep.dir={sweep_dir}", "resume=true", cwd=tmp_path)
    assert result.returncode == 1
    assert f"3 jobs: 2 completed, 1 failed (job 1: {error})" in result.stdout
    assert "job 0: completed in an earlier run of this sweep, skipped" in result.stdout
    assert (first / "summary.json").stat().st_mtime_ns == recorded
    assert len(find_offline_runs(first / "wandb")) == 1 and not find_offline_runs(failed)
    assert read_summary(unrun)["status"] == "completed"
    assert "resume=true" not in " ".join(read_summary(unrun)["overrides"])

    assert compare.main(["compare", str(sweep_dir)]) == 0
    shown = capsys.readouterr().out
    assert "failed" in shown and error in shown


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_parallel_launchers(tmp_path, small_corpus, cache_dir, launcher):
    result = cli("-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "seed=1,2", *launcher, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 jobs: 2 completed" in result.stdout
    assert [read_summary(d)["seed"] for d in job_dirs(the_sweep(tmp_path))] == [1, 2]


@pytest.mark.parametrize("launcher, death", [
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "killed by SIGKILL"),
    # submitit's local controller drops its task's exit code, so the signal is not known
    (["hydra/launcher=submitit_local"], "its process ended without a result (killed from outside)"),
], ids=["joblib", "submitit_local"])
def test_a_job_killed_from_outside_is_recorded_and_resumed(tmp_path, small_corpus, cache_dir, launcher, death):
    """SIGKILL (as the OOM killer sends it) of the process running job 0: the launcher records it as
    failed (with the signal where it is known), job 1 (running beside it) completes, and resume=true
    re-runs only job 0."""
    sweep_dir = tmp_path / "sweep"
    job = ["-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "seed=1,2", *launcher, f"hydra.sweep.dir={sweep_dir}"]
    process = start_cli(*job, cwd=tmp_path)
    os.kill(wait_for_record(sweep_dir / "0", "running")["pid"], signal.SIGKILL)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1, output[-3000:]
    assert f"2 jobs: 1 completed, 1 failed (job 0: job died: {death})" in output
    assert read_summary(sweep_dir / "0")["error"] == f"job died: {death}"
    recorded = (sweep_dir / "1" / "summary.json").stat().st_mtime_ns

    result = cli(*job, "resume=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 jobs: 2 completed" in result.stdout
    assert (sweep_dir / "1" / "summary.json").stat().st_mtime_ns == recorded
    assert read_summary(sweep_dir / "0")["status"] == "completed"


def test_optuna_search_survives_failed_trials(tmp_path, small_corpus, cache_dir):
    # With the default seed, Optuna 5's TPE draws lr=0.01 for trials 0 and 1, and -1 for trial 2.
    result = cli("-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "hparams_search=default_optuna",
                 "hydra.sweeper.n_trials=3", "optimizer.lr=choice(-1,0.01)", cwd=tmp_path)
    sweep_dir = the_sweep(tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Directions: ['minimize']" in result.stdout
    assert "3 jobs: 2 completed, 1 failed (job 2: optimizer.lr=-1: expected a number > 0)" in result.stdout
    records = [read_summary(d) for d in job_dirs(sweep_dir)]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    completed = [r["metrics"]["val/perplexity"] for r in records if r["status"] == "completed"]
    assert best["best_value"] == pytest.approx(min(completed)) and best["best_params"]["optimizer.lr"] == 0.01


def test_run_and_sweep_dirs_are_unique_within_one_second(monkeypatch):
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr("hydra.core.utils.datetime", Frozen)
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        first, second = (compose("train", return_hydra_config=True) for _ in range(2))
    for key in ("run", "sweep"):
        a, b = (Path(cfg.hydra[key].dir).name for cfg in (first, second))
        assert a.startswith("2026-01-02_03-04-05_") and b.startswith("2026-01-02_03-04-05_") and a != b


def test_resume_outside_a_sweep_is_an_error(make_cfg):
    with pytest.raises(ConfigError, match="hydra.sweep.dir=.*ckpt_path=last"):
        train(make_cfg(["resume=true"]))


@pytest.mark.parametrize("launcher", ["BasicLauncher", "JoblibLauncher", "submitit_launcher.LocalLauncher"])
def test_ddp_that_would_rerun_the_sweep_is_refused(launcher):
    ddp = OmegaConf.create({"strategy": "ddp", "devices": 2})
    with pytest.raises(ConfigError, match="hydra/launcher=slurm"):
        sweep.check_ranks(ddp, launcher)
    sweep.check_ranks(ddp, "submitit_launcher.SlurmLauncher")
    sweep.check_ranks(OmegaConf.create({"strategy": "ddp_spawn", "devices": 2}), launcher)
    sweep.check_ranks(OmegaConf.create({"strategy": "ddp", "devices": 1}), launcher)
    with pytest.raises(ConfigError):
        sweep.check_ranks(OmegaConf.create({"strategy": "auto", "devices": [0, 1]}), launcher)


def test_joblib_workers_get_distinct_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    sweep.pin_gpu(3)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "6"


def test_slurm_preset_composes_into_an_sbatch_script(tmp_path, monkeypatch):
    """The preset's keys reach sbatch as the submitit launcher passes them (without a cluster: a stub srun)."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import _make_sbatch_string

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg, cpu = (compose("train", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", f"trainer.accelerator={accelerator}",
            "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=240", "hydra.launcher.array_parallelism=8"])
            for accelerator in ("gpu", "cpu"))

    def sbatch_script(cfg):
        launcher = instantiate(cfg.hydra.launcher)
        launcher.config = cfg
        params = launcher.resources(launcher.params)  # gpus_per_node: -1 → trainer.devices for a GPU job
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                      if k not in ("submitit_folder", "max_num_timeout")})
        return _make_sbatch_string("python -m lmexp.train", tmp_path, map_count=20, **executor._executor.parameters)

    script = sbatch_script(cfg)
    for line in ("--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--time=240", "--array=0-19%8",
                 "--signal=TERM@120"):
        assert f"#SBATCH {line}\n" in script
    assert "--signal=USR2" not in script
    assert "gpus" not in sbatch_script(cpu) and "--ntasks-per-node=4" in sbatch_script(cpu)  # CPU job: no GPU asked
    sweep.check_ranks(cfg.trainer, cfg.hydra.launcher._target_)  # ranks started by SLURM: allowed


# --- Optuna: pruning, slots that refill at once, a killed search continued -------------------------

def study_trials(storage: str, name: str) -> dict[int, "optuna.trial.FrozenTrial"]:
    """The study's trials by the sweep job that ran them."""
    import optuna

    from lmexp.runs.study import open_storage

    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).trials
    return {t.user_attrs["lmexp_job"]: t for t in trials if "lmexp_job" in t.user_attrs}


def test_the_pruner_stops_a_trial(make_cfg, small_corpus, cache_dir, tmp_path):
    """In process: the callback reports val/perplexity at each validation to the trial (through a
    journal file, as a job in another process does) and stops training when the pruner says so."""
    import optuna

    from lmexp.runs.study import open_storage

    storage = journal_url(tmp_path / "study.journal")
    optuna.create_study(storage=open_storage(storage), study_name="s").ask()
    pruning = {"_target_": "lmexp.callbacks.pruning.OptunaPruning", "storage": storage, "study_name": "s",
               "trial_number": 0, "monitor": "val/perplexity",
               "pruner": {"_target_": "optuna.pruners.ThresholdPruner", "upper": 1.0, "n_warmup_steps": 4}}
    cfg = make_cfg([*sweep_job(small_corpus, cache_dir), "trainer.max_steps=8"])
    with open_dict(cfg):
        cfg.callbacks.pruning = pruning
    train(cfg)
    record = read_summary(tmp_path / "run")
    [trial] = optuna.load_study(study_name="s", storage=open_storage(storage)).trials
    assert sorted(trial.intermediate_values) == [2, 4]  # reported at each validation, stopped at the first past warm-up
    assert record["status"] == "pruned" and record["global_step"] == 4
    assert record["pruned"] == {"step": 4, "metric": "val/perplexity", "value": trial.intermediate_values[4]}
    assert "val/perplexity" not in record["metrics"]  # no final scoring for a pruned run
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    [run] = [read_offline_run(p) for p in find_offline_runs(tmp_path / "run" / "wandb")]
    assert run.exit_code == 0 and "pruned" in run.tags and run.summary["pruned/step"] == 4


def test_a_search_without_a_pruner_never_stops_a_trial(tmp_path):
    """pruner: null means every trial runs to the end: not Optuna's default for None, a MedianPruner
    (which pruned 6 of 16 trials of the benchmark's unpruned search before this was fixed)."""
    import optuna

    from lmexp.runs.study import job_trial, open_storage

    storage = journal_url(tmp_path / "study.journal")
    study = optuna.create_study(storage=open_storage(storage), study_name="s")
    for _ in range(6):  # six good trials, done (past MedianPruner's default 5 start-up trials)
        good = study.ask()
        for step in range(1, 6):
            good.report(1.0, step)
        study.tell(good, 1.0)
    study.ask()
    bad = job_trial(storage, "s", 6, None)
    for step in range(1, 6):
        bad.report(9.0, step)
        assert not bad.should_prune()
    assert job_trial(storage, "s", 6, optuna.pruners.MedianPruner()).should_prune()


def test_pruned_failed_and_completed_trials_agree_in_study_and_records(tmp_path, small_corpus, cache_dir, capsys):
    """A grid of four trials: lr=-1 fails (twice), max_steps=2 completes before the pruner's warm-up,
    max_steps=6 is pruned at step 4. The study holds what the records say, and the line counts them."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = cli("-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "hparams_search=default_optuna",
                 "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=6", "hydra.sweeper.params=null", *PRUNE_FROM_STEP_4,
                 f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=grid",
                 "optimizer.lr=choice(-1,0.01)", "trainer.max_steps=choice(2,6)", cwd=tmp_path)
    sweep_dir = the_sweep(tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]  # two trials failed
    assert re.search(r"4 jobs: 1 completed, 1 pruned, 2 failed \(job \d: optimizer.lr=-1", result.stdout)
    trials = study_trials(storage, "grid")
    assert sorted(trials) == [0, 1, 2, 3]  # the grid is done after four: no further trials
    state = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
    for job, trial in trials.items():
        record = read_summary(sweep_dir / str(job))
        assert trial.state.name == state[record["status"]]
        assert "optuna_trial" not in " ".join(record["overrides"])  # not part of the run's identity
        if record["status"] == "completed":
            assert trial.value == record["metrics"]["val/perplexity"] and trial.params["trainer.max_steps"] == 2
        if record["status"] == "pruned":
            assert record["pruned"]["step"] == 4 and trial.value == record["pruned"]["value"]
            assert trial.params == {"optimizer.lr": 0.01, "trainer.max_steps": 6}
        if record["status"] == "failed":
            assert trial.user_attrs["fail_reason"] == f"failed: {record['error']}" and trial.params["optimizer.lr"] == -1

    assert compare.main(["compare", str(sweep_dir)]) == 0
    shown = capsys.readouterr().out
    assert "stopped by the study's pruner at step 4: val/perplexity = " in shown and re.search(r"\bfailed\b", shown)


def test_a_free_slot_takes_the_next_trial_at_once(tmp_path, small_corpus, cache_dir):
    """Two trials in flight (joblib): trial 0 is frozen (SIGSTOP) as soon as it starts; trials 1 and
    2 must both run to the end beside it (with batches of two, trial 2 would wait for trial 0). Then
    trial 0 is killed: told FAIL with its death, recorded as failed, and the search ends."""
    sweep_dir = tmp_path / "sweep"
    process = start_cli("-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "hparams_search=default_optuna",
                        "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    frozen = wait_for_record(sweep_dir / "0", "running")["pid"]
    os.kill(frozen, signal.SIGSTOP)
    try:
        wait_for_record(sweep_dir / "1", "completed")
        wait_for_record(sweep_dir / "2", "completed")
        assert read_summary(sweep_dir / "0")["status"] == "running"
    finally:
        os.kill(frozen, signal.SIGKILL)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1, output[-3000:]
    assert "3 jobs: 2 completed, 1 failed (job 0: job died: killed by SIGKILL)" in output
    trials = study_trials(journal_url(sweep_dir / "optuna.journal"), sweep_dir.name)
    assert [trials[j].state.name for j in (0, 1, 2)] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["fail_reason"] == "failed: job died: killed by SIGKILL"
    assert trials[2].datetime_start < trials[0].datetime_complete


def test_a_killed_search_continues_where_it_stopped(tmp_path, small_corpus, cache_dir):
    """The search is killed while trial 0 runs. Run again with the same storage and study (and
    resume=true in its sweep directory): trial 0 is told FAIL and asked again with its parameters in
    job 0's directory, and the search finishes: every trial pruned is a success (exit status 0)."""
    storage, sweep_dir = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "sweep"
    search = ["-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "hparams_search=default_optuna",
              "hydra.sweeper.n_trials=2", "trainer.max_steps=6", *PRUNE_FROM_STEP_4, f"hydra.sweeper.storage={storage}",
              "hydra.sweeper.study_name=killed", f"hydra.sweep.dir={sweep_dir}"]
    process = start_cli(*search, cwd=tmp_path)
    os.kill(wait_for_record(sweep_dir / "0", "running")["pid"], signal.SIGKILL)  # the basic launcher: the search itself
    process.communicate(timeout=60)
    killed = study_trials(storage, "killed")
    assert [t.state.name for t in killed.values()] == ["RUNNING"]

    result = cli(*search, "resume=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 jobs: 2 pruned" in result.stdout
    import optuna

    from lmexp.runs.study import open_storage

    trials = optuna.load_study(study_name="killed", storage=open_storage(storage)).trials
    assert [(t.state.name, t.user_attrs["lmexp_job"]) for t in trials] == [("FAIL", 0), ("PRUNED", 0), ("PRUNED", 1)]
    assert trials[0].user_attrs["fail_reason"] == "its search was killed while the trial ran"
    assert trials[1].params == trials[0].params
    assert read_summary(sweep_dir / "0")["status"] == "pruned"


def test_optuna_search_space_syntax():
    """hydra-optuna-sweeper's syntax, to Optuna's distributions; the command line wins over params."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.lmexp_sweeper._search import override_value, search_space

    space, fixed = search_space(
        {"optimizer.lr": "tag(log, interval(1e-4, 3e-2))", "optimizer.weight_decay": "interval(0.0, 0.3)",
         "model.n_layers": "range(1,4)", "seed": "7"},
        ["optimizer.weight_decay=choice(0.0,0.1)", "model.d_model=int(interval(16, 64))", "logger=csv", "seed=3"])
    assert space == {"optimizer.lr": FloatDistribution(1e-4, 3e-2, log=True),
                     "optimizer.weight_decay": CategoricalDistribution([0.0, 0.1]),
                     "model.n_layers": CategoricalDistribution([1, 2, 3]), "model.d_model": IntDistribution(16, 64)}
    assert fixed == ["logger=csv", "seed=3"]
    assert [override_value(v) for v in (None, True, 0.1, "csv")] == ["null", "true", "0.1", "csv"]


def test_asha_preset_puts_its_first_rung_at_the_jobs_first_validation():
    """hparams_search=asha: min_resource is the job's own trainer.val_check_interval, resolved where
    the job builds its pruner (the hydra node a job sees, as lmexp.build reads it)."""
    import optuna
    from hydra.core.hydra_config import HydraConfig

    from lmexp.callbacks.pruning import sweep_pruning

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True,
                      overrides=["hparams_search=asha", "trainer.val_check_interval=7", "+optuna_trial=0"])
    HydraConfig.instance().set_config(cfg)
    try:
        pruning = sweep_pruning(cfg, HydraConfig.get().sweeper)
        pruner = instantiate(pruning.pruner)
    finally:
        HydraConfig.instance().cfg = None
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert (pruner._min_resource, pruner._reduction_factor) == (7, 9)
