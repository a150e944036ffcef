"""Optuna studies that several processes share: the sweeper asks and tells trials, each sweep job
reports to its own trial and asks whether to stop (lmexp.callbacks.pruning). They meet in the
study's storage, named by one string:

- `sqlite:///optuna.db`, `postgresql://user:password@host/db`: an RDB (SQLAlchemy URL);
- `journal:///path/optuna.journal`: Optuna's JournalStorage in a file (what a search without a
  storage gets, inside its sweep directory, so its jobs in other processes reach the study).
"""

from __future__ import annotations

import fcntl
import logging
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna

from lmexp.errors import ConfigError

log = logging.getLogger("lmexp")

JOURNAL = "journal://"


def journal_url(path: Path) -> str:
    return f"{JOURNAL}{Path(path).resolve()}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage named by `url`. A new sqlite database gets its schema under a file lock: two
    processes creating it at once otherwise race on Alembic's version stamp (DESIGN.md §7: seen
    with Optuna 2.10; Optuna 5.1's RDBStorage still creates tables, then stamps, unguarded).
    Other databases retry that race (PostgreSQL's unique version row makes the loser fail)."""
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(f"hydra.sweeper.storage={url}: expected a URL: sqlite:///file.db, "
                          f"postgresql://user:password@host/db or journal:///path/file.journal")
    with _sqlite_lock(url):
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(url)
            except Exception as err:  # sqlalchemy's IntegrityError/OperationalError of the schema race
                if attempt == 4 or "alembic_version" not in str(err) and "already exists" not in str(err):
                    raise
                log.info("the study's database was being created by another process; trying again")
                time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


@contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        yield
        return
    lock = Path(url[len(prefix):] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def job_trial(storage: str, study_name: str, number: int,
              pruner: optuna.pruners.BasePruner | None) -> optuna.trial.Trial:
    """Trial `number` of the study, as the job running it sees it: it reports intermediate values
    through the storage and asks `pruner` (the sweeper's, which the storage does not keep) whether
    to stop; None: never (Optuna's own default for None would be a MedianPruner)."""
    backend = open_storage(storage)
    study = optuna.load_study(study_name=study_name, storage=backend, pruner=pruner or optuna.pruners.NopPruner())
    trial_id = backend.get_trial_id_from_study_id_trial_number(backend.get_study_id_from_name(study_name), number)
    return optuna.trial.Trial(study, trial_id)
