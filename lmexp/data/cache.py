"""The on-disk preprocessing cache shared by the data modules: one directory per key, built
once, then loaded by every run that asks for the same key."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from lmexp.errors import cannot_write


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load_or_build(cache_dir: Path | None, key: str, build_into: Callable[[Path], None],
                  load: Callable[[Path], None], resume: bool = False) -> bool:
    """`load` the cached entry `key`, or `build_into` a new entry's directory, publish it and
    `load` it; True on a hit.

    The entry is built under `<key>.partial` and renamed when whole, so a half-built entry is never
    a hit. `resume`: a `.partial` left by a killed build is built on (the builder keeps what it
    finished); else it is started afresh. Without a cache_dir the entry is built in a temporary
    folder, removed at exit.
    """
    if cache_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="lmexp-preprocessed-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        build_into(scratch)
        load(scratch)
        return False
    target = cache_dir / "preprocessed" / key
    partial = target.with_name(target.name + ".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The lock keeps two processes (joblib jobs, DDP ranks) from building one entry twice.
        lock = FileLock(str(target) + ".lock")
        lock.acquire()
    except OSError as err:
        raise cannot_write(target.parent, "the preprocessing cache", err) or err
    try:
        if target.is_dir():
            load(target)
            return True
        try:
            if not resume:
                shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(exist_ok=True)
        except OSError as err:
            raise cannot_write(partial, "the preprocessed data", err) or err
        build_into(partial)
        try:
            os.replace(partial, target)  # atomic: a half-written entry is never seen as a cache hit
        except OSError as err:
            raise cannot_write(target, "the preprocessed data", err) or err
        load(target)
    finally:
        lock.release()
    return False
