"""The errors warmgen raises for what a user can fix; the CLI prints each as one line and exits 2."""


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message says where and how."""


class DataError(ValueError):
    """Malformed input data; the message names the file, the line and the field."""


class RunFolderError(RuntimeError):
    """A run folder's file cannot be written or read (a full disk, a damaged or unsafe file); the message names it."""


class TrainingError(RuntimeError):
    """Training cannot continue; the message says why and what to do."""
