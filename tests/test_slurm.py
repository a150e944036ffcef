"""Sweeps on a real SLURM cluster (scripts/slurm-up.sh starts a one-node one on localhost): a job
array with the basic launcher's records and result, a job killed from outside, preemption (requeue)
and SIGTERM (what SLURM sends at the time limit) continuing from last.ckpt to the same metrics, and an
Optuna search whose trials, each a SLURM job, report to the study and are pruned."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import PRUNE_FROM_STEP_4, cli, start_cli, sweep_job, wait_for_record
from lmexp.tools import compare
from conftest import read_summary
from lmexp.wandb_offline import find_offline_runs, read_offline_run


def _cluster_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "no SLURM cluster (sbatch not found): start one with `sudo scripts/slurm-up.sh`"
    if subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode != 0:
        return "sbatch is here but slurmctld does not answer (`sinfo` fails): `sudo scripts/slurm-up.sh`"
    return None


@pytest.fixture(autouse=True)
def cluster():
    reason = _cluster_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(reason)  # CI brings the cluster up: a missing one fails there, never skips
    if reason:
        pytest.skip(reason)


pytestmark = pytest.mark.slurm
# One CPU per job: both jobs of a pair run at once on the 2-CPU node.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]
EXACT = ["trainer.deterministic=true", "trainer.max_steps=40", "trainer.val_check_interval=5"]


def slurm_job_id(run_dir) -> str:
    """The SLURM job id (`<array>_<task>`) that ran a sweep job, from submitit's folder."""
    [log] = (run_dir.parent / ".submitit").glob(f"*_{run_dir.name}/*_{run_dir.name}_0_log.out")
    return log.parent.name


def _job(run_dir) -> str:
    return subprocess.run(["scontrol", "show", "job", slurm_job_id(run_dir)], capture_output=True, text=True).stdout


def test_array_sweep_matches_the_basic_launcher(tmp_path, small_corpus, cache_dir, capsys):
    sweep = [*sweep_job(small_corpus, cache_dir), "logger=wandb", "trainer.deterministic=true",
             "optimizer.lr=1e-2,-1", "seed=1,2"]
    results = {}
    for name, launcher in (("basic", []), ("slurm", SLURM)):
        start = time.perf_counter()
        result = cli("-m", *sweep, *launcher, f"hydra.sweep.dir={tmp_path / name}", cwd=tmp_path)
        results[name] = (result, time.perf_counter() - start)
        print(f"{name}: {results[name][1]:.1f} s")
    error = "optimizer.lr=-1: expected a number > 0"
    for name, (result, _) in results.items():
        assert result.returncode == 1, result.stderr[-3000:]
        assert f"4 jobs: 2 completed, 2 failed (job 2: {error}; job 3: {error})" in result.stdout
    assert "Submitit 'slurm'" in results["slurm"][0].stdout and "sacct" not in results["slurm"][0].stdout
    for job in ("0", "1", "2", "3"):
        basic, slurm = (read_summary(tmp_path / name / job) for name in ("basic", "slurm"))
        assert (slurm["status"], slurm["error"], slurm["overrides"]) == (basic["status"], basic["error"], basic["overrides"])
        assert slurm["metrics"] == basic["metrics"]  # deterministic: the same numbers, wherever the job ran
        runs = [read_offline_run(p) for p in find_offline_runs(tmp_path / "slurm" / job)]
        if job in "01":
            assert [(r.group, r.exit_code) for r in runs] == [("slurm", 0)]
        else:
            assert runs == []  # a config error stops the job before W&B (or anything heavy) starts
    assert re.fullmatch(r"\d+_[0-3]", slurm_job_id(tmp_path / "slurm" / "3"))
    capsys.readouterr()
    tables = []
    for name in ("basic", "slurm"):
        assert compare.main(["compare", str(tmp_path / name)]) == 0
        tables.append(capsys.readouterr().out.replace(str(tmp_path / name), "SWEEP"))
    assert tables[0] == tables[1]


def test_a_job_killed_on_the_cluster_is_recorded_and_resumed(tmp_path, small_corpus, cache_dir):
    sweep_dir = tmp_path / "sweep"
    job = ["-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "seed=1,2", *SLURM, f"hydra.sweep.dir={sweep_dir}"]
    process = start_cli(*job, cwd=tmp_path)
    os.kill(wait_for_record(sweep_dir / "0", "running")["pid"], signal.SIGKILL)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1, output[-3000:]
    error = read_summary(sweep_dir / "0")["error"]
    assert re.fullmatch(r"job died: SLURM job \d+_0 ended FAILED \(.*\)", error), error
    assert f"2 jobs: 1 completed, 1 failed (job 0: {error})" in output

    recorded = (sweep_dir / "1" / "summary.json").stat().st_mtime_ns
    result = cli(*job, "resume=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 jobs: 2 completed" in result.stdout
    assert (sweep_dir / "1" / "summary.json").stat().st_mtime_ns == recorded


def test_preempted_and_sigtermed_jobs_continue_to_the_same_metrics(tmp_path, small_corpus, cache_dir):
    """Three identical jobs: job 0 is requeued (`scontrol requeue`, as preemption does), job 1 gets
    SIGTERM (as at its time limit: `scancel --signal=TERM`), job 2 runs through. The requeued job
    continues from its last.ckpt by itself; the SIGTERMed one records `interrupted` and continues with
    resume=true; all three end with the same metrics, bitwise."""
    sweep_dir = tmp_path / "sweep"
    job = ["-m", *sweep_job(small_corpus, cache_dir), "logger=csv", *EXACT, "seed=1,1,1", *SLURM,
           "hydra.launcher.array_parallelism=2", f"hydra.sweep.dir={sweep_dir}"]
    process = start_cli(*job, cwd=tmp_path)
    for num, command in (("0", ["scontrol", "requeue"]), ("1", ["scancel", "--signal=TERM"])):
        last = sweep_dir / num / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 240
        while not last.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        subprocess.run([*command, slurm_job_id(sweep_dir / num)], check=True)
    # slurmctld makes a requeued job wait 120 s before it is eligible again; an admin's `StartTime=now`
    # lets it start at once (it is still pending on the restart, then runs again).
    deadline = time.monotonic() + 60
    while "JobState=PENDING" not in _job(sweep_dir / "0") and time.monotonic() < deadline:
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"JobId={slurm_job_id(sweep_dir / '0')}", "StartTime=now"], check=True)
    output = process.communicate(timeout=400)[0]
    assert process.returncode == 1, output[-3000:]
    assert "3 jobs: 2 completed, 1 interrupted" in output
    requeued, interrupted, through = (read_summary(sweep_dir / n) for n in "012")
    assert requeued["resumed_from"] == str(sweep_dir / "0" / "checkpoints" / "last.ckpt")
    assert "Restarts=1" in _job(sweep_dir / "0")
    assert interrupted["status"] == "interrupted" and interrupted["error"].startswith("stopped by SIGTERM at step ")
    assert f"last.ckpt saved: continue with ckpt_path={sweep_dir / '1'}" in interrupted["error"]
    # Its log, like every job's, lacks Lightning's notices that a single run's terminal does not show.
    assert not any(line in (sweep_dir / n / "train.log").read_text() for n in "012"
                   for line in ("GPU available:", "TPU available:", "Tip:"))
    assert (sweep_dir / "1" / "checkpoints" / "last.ckpt").is_file()

    result = cli(*job, "resume=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 jobs: 3 completed" in result.stdout
    resumed = read_summary(sweep_dir / "1")
    assert resumed["resumed_from"] == str(sweep_dir / "1" / "checkpoints" / "last.ckpt")
    assert requeued["metrics"] == resumed["metrics"] == through["metrics"]
    assert requeued["global_step"] == resumed["global_step"] == through["global_step"] == 40


def test_optuna_trials_on_the_cluster_report_and_are_pruned(tmp_path, small_corpus, cache_dir):
    """Three trials, two at a time, each a SLURM job of its own: every job reaches the study (a journal
    file in the sweep directory), reports at steps 2 and 4 and is pruned at 4; pruned is no failure."""
    import optuna

    from lmexp.runs.study import journal_url, open_storage

    sweep_dir = tmp_path / "sweep"
    result = cli("-m", *sweep_job(small_corpus, cache_dir), "logger=csv", "hparams_search=default_optuna",
                 "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "trainer.max_steps=6", *PRUNE_FROM_STEP_4,
                 *SLURM, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 jobs: 3 pruned" in result.stdout
    trials = optuna.load_study(study_name=sweep_dir.name, storage=open_storage(journal_url(sweep_dir / "optuna.journal"))).trials
    assert [t.state.name for t in trials] == ["PRUNED"] * 3
    for trial in trials:
        job = sweep_dir / str(trial.user_attrs["lmexp_job"])
        record = read_summary(job)
        assert sorted(trial.intermediate_values) == [2, 4] and record["status"] == "pruned"
        assert record["pruned"]["value"] == trial.intermediate_values[4] == trial.value
        assert (job / "checkpoints" / "last.ckpt").is_file()
    # One SLURM job per trial (not an array): each submitted when a slot freed.
    assert len({p.name for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+", p.name)}) == 3
