"""User-facing errors.

Every error a user can cause (bad data, bad config, a checkpoint that does not
fit) is raised as one of these, with a one-line message that names the file,
line or field and says how to fix it. The CLI and the dashboard print the
message instead of a traceback.
"""


class PapRecError(Exception):
    """Base class for errors caused by input the user controls."""


class DataError(PapRecError):
    """A dataset file is missing, malformed or inconsistent."""

    def __init__(self, path, message, line=None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class ConfigError(PapRecError):
    """A configuration field has a value the search cannot run with."""

    def __init__(self, field, message):
        super().__init__(f"config field '{field}': {message}")
        self.field = field


class CheckpointError(PapRecError):
    """A model checkpoint cannot be loaded into the backbone."""
