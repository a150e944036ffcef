"""A run or sweep directory that cannot be written fails in one line before Hydra creates it (Hydra
itself would end in a traceback: `OSError: [Errno 30] Read-only file system`)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lmexp.errors import cannot_write


def check_writable(directory: Path, what: str) -> None:
    """Write a few bytes beside where `directory` will be (its nearest existing folder); exit 1 with
    one line naming the folder if the disk refuses them."""
    folder = directory
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
    except OSError as err:
        refused = cannot_write(folder, what, err)
        if refused is None:
            raise
        print(f"error: {refused}", file=sys.stderr)
        sys.exit(1)  # Hydra turns a callback's exceptions into warnings; SystemExit ends the command


class WritableOutputDir(Callback):
    """Hydra callback: the output folder of a run (`hydra.run.dir`) or sweep (`hydra.sweep.dir`) can be written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(config.hydra.run.dir), "the run directory")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_writable(Path(config.hydra.sweep.dir), "the sweep directory")
