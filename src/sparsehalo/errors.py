"""Errors a user can act on.

Anything raised as :class:`SparsehaloError` is bad input or a bad state the user can fix (a wrong
config key, a missing dataset file, a corrupt checkpoint, a diverged run).  The command line prints it
as one line and exits with a non-zero code instead of dumping a traceback.
"""


class SparsehaloError(Exception):
    """A problem with the user's input or files, reported as one line."""

    exit_code = 2


class DataError(SparsehaloError):
    """A dataset file is missing, corrupt, or fails its checksum."""


class ConfigError(SparsehaloError):
    """A configuration key or value is wrong."""


class CheckpointError(SparsehaloError):
    """A checkpoint cannot be read safely or does not match the model."""


class IntegrityError(CheckpointError):
    """A file's content does not match the SHA-256 recorded when it was written."""


class DivergenceError(SparsehaloError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""

    exit_code = 3
