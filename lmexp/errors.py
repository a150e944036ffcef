"""The exceptions that mean an expected failure: printed as one line on stderr (no traceback, which
goes to the run's log file instead), recorded as `status: failed`, exit status 1."""


class ExpectedFailure(Exception):
    """A failure the user can act on; its message is one line saying what and where."""


class ConfigError(ExpectedFailure):
    """Bad input: a config value, a file, a checkpoint. The message names the key or file and says
    what was expected."""


class TrainingDiverged(ExpectedFailure):
    """The loss became NaN or infinite: the run stops, its last good checkpoint stays."""
