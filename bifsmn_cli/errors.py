"""Error types that decide the exit code: users see one line, never a traceback."""


class BifsmnError(Exception):
    """Base of the toolkit's own errors."""

    exit_code = 2


class UserError(BifsmnError):
    """Bad input from the user (a file, a key, a value): exit 1 with a one-line message saying what to do."""

    exit_code = 1


class InternalError(BifsmnError):
    """A bug or an environment failure the user cannot fix by changing input: exit 2."""

    exit_code = 2
