"""A quiet terminal: lmexp's own lines, the progress bar and the final table, not third-party
notices that ask nothing of the user. Warnings that matter (e.g. a deprecated lmexp key) stay.

Each entry says why it asks nothing of an lmexp user. Where lmexp can avoid causing a notice
(an argument left unset, a setting it never uses) it does that instead, at the call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

# Messages (regex prefixes) that say nothing actionable about an lmexp run.
IGNORED_WARNINGS = (
    r"The `srun` command is available on your system but is not used",  # SLURM tools installed, not in a job
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning against a newer torch
    r"You have overridden `on_after_batch_transfer`",  # lmexp's MLM masking on the device, on purpose
    r".*weights_only",  # lmexp reads every checkpoint with weights_only=True itself
    r"The '(val|test|train)_dataloader' does not have many workers",  # num_workers is a speed setting
    # lmexp restores the data order itself on resume (the data module's state: samples done in the
    # epoch; a SIGKILLed run resumes bitwise, tested), which Lightning cannot see.
    r"You're resuming from a checkpoint that ended before the epoch ended",
    # A resumed run writes into a run directory of its own by design (its record names the checkpoint).
    r"The dirpath has changed from",
    # lmexp's launcher configs (conf/hydra/launcher/joblib.yaml, submitit_local.yaml) carry the names of
    # the plugins' on purpose, so `hydra/launcher=joblib` picks lmexp's; Hydra then checks them against
    # the plugin's schema, which holds, and says so at every composition (5 times per joblib sweep).
    r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema with the same name",
)
IGNORED_LOG_LINES = ("GPU available:", "TPU available:", "💡 Tip:", "HPU available:")


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(IGNORED_LOG_LINES)


def quiet_third_party() -> None:
    """Install the filters in this process (idempotent: the entry points and every worker process
    that runs their jobs call it)."""
    if not sys.stderr.isatty():
        # Optuna's log formatter (colorlog) colours its lines even in a pipe or a log file; NO_COLOR
        # is the convention colorlog (and rich) follow.
        os.environ.setdefault("NO_COLOR", "1")
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines())


@contextlib.contextmanager
def no_datasets_bars() -> Iterator[None]:
    """datasets' progress bars off for a step whose bar says nothing to the user ("Generating train
    split", "Filter", "Saving the dataset": moments of preprocessing that lmexp sums up in one log
    line); lmexp's own `tokenizing ...` bars stay."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
