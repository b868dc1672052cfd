"""The exceptions a user sees as a single line instead of a traceback, and the exit codes.

Exit codes of ``python -m benchmark`` (docs/reliability.md, "Exit status"): 0 done; 1 ``report
--check`` found differences; 2 bad input or a run that cannot go on (:class:`UserError`); 3 a
file could not be written (:class:`WriteError`); 4 an internal error (a bug: any other
exception, one line, the traceback in a log file); 130 interrupted.
"""

from __future__ import annotations

#: exit codes, in one place
EXIT_DONE, EXIT_DIFFERENCES, EXIT_BAD_INPUT, EXIT_WRITE_FAILED, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Bad input from the user: an unknown name, a bad option value, a missing or corrupt file.

    The message names the option, file or value and says what was expected. The CLI prints it
    as one line and exits with code 2.
    """


class DivergenceError(UserError):
    """Training diverged: a non-finite loss, weights or embeddings."""


class UnsafeFileError(UserError):
    """A file the suite was asked to read would run code or write elsewhere if it were used."""


class WriteError(OSError):
    """A file could not be written (the atomic writer's failure; what was there is intact)."""


def short(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how much was left out: error messages
    stay one readable line whatever the value."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}... ({len(text)} characters)"
