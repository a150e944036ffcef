"""A quiet terminal: lmexp's own lines, the progress bar and the final table, not third-party
notices that ask nothing of the user. Warnings that matter (e.g. a deprecated lmexp key) stay."""

from __future__ import annotations

import logging
import warnings

# Messages (regex prefixes) that say nothing actionable about an lmexp run.
IGNORED_WARNINGS = (
    r"The `srun` command is available on your system but is not used",  # SLURM tools installed, not in a job
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning against a newer torch
    r"You have overridden `on_after_batch_transfer`",  # lmexp's MLM masking on the device, on purpose
    r".*weights_only",  # lmexp reads every checkpoint with weights_only=True itself
    r"The '(val|test|train)_dataloader' does not have many workers",  # num_workers is a speed setting
)
IGNORED_LOG_LINES = ("GPU available:", "TPU available:", "💡 Tip:", "HPU available:")


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(IGNORED_LOG_LINES)


def quiet_third_party() -> None:
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):  # once per process, however many jobs
            logger.addFilter(_DropLines())
