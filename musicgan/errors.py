"""User errors: mistakes the user can fix, which the CLI shows as one ``error:`` line and exit status 2.

Standard library only: the CLI catches :class:`UserError` without importing torch, Ray or the data
pipeline, so a mistake is reported as fast as Python starts. The error types of the other modules
(``ConfigError``, ``BuildError``, ``DataError``, ``CheckpointError``, ...) subclass it.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake the user can fix; the message says what is wrong and, where it can, what to run."""


class MissingError(UserError):
    """Something named on the command line does not exist; the message says which command makes it."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (a multi-line message is joined with ' | ')."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " | ".join(lines) or type(error).__name__
