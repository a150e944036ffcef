"""The on-disk preprocessing cache shared by the data modules: one directory per key, built
once, then loaded by every run that asks for the same key."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load_or_build(cache_dir: Path | None, key: str, build: Callable[[], None],
                  save: Callable[[Path], None], load: Callable[[Path], None]) -> bool:
    """`load` the cached entry `key`, or `build` it and `save` it into a new entry; True on a hit.

    Without a cache_dir everything is built in memory and nothing is saved.
    """
    if cache_dir is None:
        build()
        return False
    target = cache_dir / "preprocessed" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    # The lock keeps two processes (joblib jobs, DDP ranks) from building one entry twice.
    with FileLock(str(target) + ".lock"):
        if target.is_dir():
            load(target)
            return True
        build()
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save(tmp)
        os.replace(tmp, target)  # atomic: a half-written entry is never seen as a cache hit
    return False
