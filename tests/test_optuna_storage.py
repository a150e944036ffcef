"""One Optuna study shared by several `lmexp-train -m` processes through an RDB storage (sqlite here,
PostgreSQL on a cluster), continued by a re-run; a new database created by several processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import optuna
import pytest

from conftest import cli, sweep_job

TRIALS = ["hparams_search=default_optuna", "hydra.sweeper.n_trials=2", "logger=csv"]


def optuna_sweep(corpus, cache, storage: str, study: str, cwd, seed: int) -> list[str]:
    return [sys.executable, "-m", "lmexp.train", "-m", *sweep_job(corpus, cache), *TRIALS,
            f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study}", f"seed={seed}"]


def _open(url: str) -> None:
    from lmexp.runs.study import open_storage

    optuna.create_study(storage=open_storage(url), study_name="race", load_if_exists=True)


def test_processes_creating_one_new_sqlite_database_at_once(tmp_path):
    """Optuna's RDBStorage creates the schema, then stamps its version, unguarded: processes that
    create a new sqlite file at the same moment race on the stamp (DESIGN.md §7). open_storage
    creates it under a file lock: every process gets the one study."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'new.db'}"
    processes = [multiprocessing.get_context("fork").Process(target=_open, args=(url,)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["race"]


def test_two_processes_and_a_rerun_share_one_sqlite_study(tmp_path, small_corpus, cache_dir):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "LMEXP_OUTPUT_ROOT": str(tmp_path / "outputs")}
    processes = [subprocess.Popen(optuna_sweep(small_corpus, cache_dir, storage, "shared", tmp_path, seed),
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for seed in (1, 2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert "2 jobs: 2 completed" in output
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 4 and {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 4  # two samplers, distinct draws

    # A re-run continues the study: its trials are added to the four, numbered after them.
    result = cli(*optuna_sweep(small_corpus, cache_dir, storage, "shared", tmp_path, 3)[3:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.number for t in study.trials] == list(range(6))
    assert study.best_value == min(t.value for t in study.trials)


def postgres_url() -> str:
    url = os.environ.get("LMEXP_TEST_POSTGRES_URL")
    if not url:
        reason = "no PostgreSQL server: set LMEXP_TEST_POSTGRES_URL (scripts/postgres-up.sh prints one)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI starts the server; a missing one is a failure there, never a skip
        pytest.skip(reason)
    return url


def test_a_study_in_postgresql(tmp_path, small_corpus, cache_dir):
    url, study = postgres_url(), f"lmexp-test-{uuid.uuid4().hex[:8]}"
    try:
        for seed in (1, 2):  # two processes, one after the other, on one study
            result = cli(*optuna_sweep(small_corpus, cache_dir, url, study, tmp_path, seed)[3:], cwd=tmp_path)
            assert result.returncode == 0, result.stderr[-3000:]
        trials = optuna.load_study(study_name=study, storage=url).trials
        assert [t.number for t in trials] == [0, 1, 2, 3]
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    finally:
        optuna.delete_study(study_name=study, storage=url)
