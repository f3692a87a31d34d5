"""The kinds of user error seg4seg reports.

Each is caught once, in the CLI, and printed as one line with exit code 2. Messages name the file
or flag at fault and say what to do; they never need a traceback to be understood.
"""


class Seg4SegError(Exception):
    """Base class of every error caused by the user's input or environment (exit code 2)."""


class UsageError(Seg4SegError):
    """A flag or combination of flags that cannot work."""


class ModelError(Seg4SegError):
    """A model folder, plans file or checkpoint that cannot be used."""


class DataError(Seg4SegError):
    """A dataset folder that cannot be used as a whole (a single bad case is skipped instead)."""


class OutputError(Seg4SegError):
    """An out folder that cannot be written, or holds results of different settings."""


class CaseError(Exception):
    """One case cannot be processed; the run skips it, records the reason and goes on."""
