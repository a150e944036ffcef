"""Facts about this machine measured once and kept on disk as small JSON files: the CPU's matmul
peak (lmexp.flops) and inductor's CPU ISA probe outcome (lmexp.impl)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def cache_home() -> Path:
    """~/.cache/lmexp (or under $XDG_CACHE_HOME)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmexp"


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is missing or unreadable (then the fact is measured again)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: Any) -> None:
    """Atomically (processes of one job may write at once); a read-only place only costs measuring
    again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass
