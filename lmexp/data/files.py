"""Data files named in a config: light enough for validation, before any heavy import."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from lmexp.errors import ConfigError


def resolve_files(patterns: str | list[str] | None, key: str) -> list[Path]:
    """Expand globs to a sorted file list; a pattern that matches nothing is a config error."""
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.expanduser(str(pattern)), recursive=True))
        matched = [m for m in matched if os.path.isfile(m)]
        if not matched:
            raise ConfigError(f"{key}: no file matches '{pattern}' (cwd: {os.getcwd()})")
        files.extend(Path(m) for m in matched)
    return files
