"""The exceptions that mean an expected failure: printed as one line on stderr (no traceback, which
goes to the run's log file instead), recorded as `status: failed`, exit status 1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class ExpectedFailure(Exception):
    """A failure the user can act on; its message is one line saying what and where."""


class ConfigError(ExpectedFailure):
    """Bad input: a config value, a file, a checkpoint. The message names the key or file and says
    what was expected."""


class TrainingDiverged(ExpectedFailure):
    """The loss became NaN or infinite: the run stops, its last good checkpoint stays."""


class CannotWrite(ExpectedFailure):
    """A file or folder could not be written: a full disk, a quota, a read-only or forbidden
    folder. The message names the folder, what was being written and, where known, the room it
    needs; whatever was written before stays whole (writes go to a temporary name, then rename)."""


# errno values that mean the machine, not lmexp, refused a write.
_NO_ROOM = {28: "the disk is full", 122: "the disk quota is exceeded"}
_REFUSED = {13: "permission denied", 1: "permission denied", 30: "the file system is read-only"}


def cannot_write(path: str | os.PathLike[str], what: str, err: BaseException,
                 needed_bytes: int | None = None) -> CannotWrite | None:
    """The one-line `CannotWrite` for an error raised while writing `what` to `path`, or None when
    `err` is not a refused write (then the caller re-raises it).

    A refused write is an OSError whose errno says so, a library's own disk-full message (datasets:
    "Not enough free space"), or — for writers that hide the errno, like torch.save's "file write
    failed" — any write error while the folder has less room than `needed_bytes`."""
    folder = Path(path)
    if folder.suffix or folder.is_file():  # a file: name its folder
        folder = folder.parent
    try:
        free = shutil.disk_usage(_existing(folder)).free
    except OSError:
        free = None
    errno, text = getattr(err, "errno", None), str(err)
    if errno in _NO_ROOM:
        reason = _NO_ROOM[errno]
    elif "Not enough free space" in text or "No space left" in text or (
            needed_bytes and free is not None and free < needed_bytes):
        reason = "the disk is full"
    elif errno in _REFUSED:
        reason = _REFUSED[errno]
    else:
        return None
    if errno in _REFUSED and reason == _REFUSED[errno]:
        return CannotWrite(f"cannot write {what} to {folder}: {reason}. Choose another folder "
                           f"(paths.output_root, paths.cache_dir) and run the command again")
    room = ""
    if free is not None:
        room = (f"; needs about {_mb(needed_bytes)}, {_mb(free)} free" if needed_bytes
                else f"; {_mb(free)} free")
    return CannotWrite(f"cannot write {what} to {folder}: {reason}{room}. Make room (or choose "
                       f"another folder) and run the same command again")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n < 10 * 2**20 else f"{n / 2**20:.0f} MB"


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
