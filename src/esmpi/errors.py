"""User-facing error types. Each message is one or a few lines naming the file, key or env and the fix.

``run.py`` prints an ``EsmpiError`` without a traceback and exits with its ``exit_code``; any other
exception is a bug or an environment crash and aborts every rank with its traceback.
"""

EXIT_USAGE = 2        # bad config, env id, run directory, checkpoint
EXIT_REPLICA = 3      # ranks diverged (replica check)
EXIT_NONFINITE = 4    # theta became non-finite
EXIT_OUTPUT = 5       # a checkpoint or log could not be written mid-run (disk full, read-only file system)


class EsmpiError(Exception):
    """An error caused by the user's input; printed as one message, no traceback."""

    exit_code = EXIT_USAGE


class ConfigError(EsmpiError):
    pass


class EnvError(EsmpiError):
    pass


class DataError(ConfigError):
    """A dataset file that is missing, truncated or malformed (IDX files of the supervised objective)."""


class RunDirError(EsmpiError):
    pass


class CheckpointError(EsmpiError):
    pass


class ReplicaMismatch(EsmpiError):
    exit_code = EXIT_REPLICA


class NonFiniteTheta(EsmpiError):
    exit_code = EXIT_NONFINITE


class OutputError(EsmpiError):
    """A file could not be written during the run. Raised on the writing rank only (``local``): the
    runner prints it and aborts every rank with ``EXIT_OUTPUT``."""

    exit_code = EXIT_OUTPUT
    local = True
