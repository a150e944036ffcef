"""The one exception type that means "the user asked for something that cannot work"."""


class ConfigError(Exception):
    """Bad input: printed as one line (no traceback) and the run exits non-zero.

    The message must name the config key or file and say what was expected.
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stops, its last good checkpoint stays."""
