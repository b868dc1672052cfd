"""The one exception type a user sees as a single line (exit code 2) instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: an unknown name, a bad option value, a missing or corrupt file.

    The message names the option, file or value and says what was expected. The CLI prints it
    as one line and exits with code 2.
    """


class DivergenceError(UserError):
    """Training diverged: a non-finite loss, weights or embeddings."""
