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
                 needed_bytes: int | None = None) -> ExpectedFailure | None:
    """The one-line `CannotWrite` for an OSError raised while writing `what` to `path`, or None
    when `err` is not a refused write (then the caller re-raises it).

    Also recognises the disk-full message of libraries that check the room first (datasets:
    "Not enough free space")."""
    errno = getattr(err, "errno", None)
    text = str(err)
    if errno in _NO_ROOM or "Not enough free space" in text or "No space left" in text:
        reason = _NO_ROOM.get(errno, "the disk is full")
    elif errno in _REFUSED:
        reason = _REFUSED[errno]
    else:
        return None
    folder = Path(path)
    if folder.suffix or not folder.is_dir():  # a file: name its folder
        folder = folder.parent
    room = ""
    try:
        free = shutil.disk_usage(_existing(folder)).free
        room = f"; {free / 2**20:.0f} MB free"
        if needed_bytes:
            room = f"; needs about {needed_bytes / 2**20:.0f} MB, {free / 2**20:.0f} MB free"
    except OSError:
        pass
    return CannotWrite(f"cannot write {what} to {folder}: {reason}{room}. Make room (or choose "
                       f"another folder) and run the same command again")


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
