"""The one exception type for user mistakes.

Anything a user can fix (bad input, a missing file, a rollout that cannot start) raises
:class:`ShuntError` with a message that names the bad value and says what to do. The CLI turns it
into one line on stderr and exit code 1; ``--debug`` shows the traceback.
"""


class ShuntError(Exception):
    """A mistake the user can fix; the message names the value and says what to do."""

    exit_code = 1


class ValidationError(ShuntError, ValueError):
    """Bad input to a construct or a pure function (also a ``ValueError`` for callers that expect one)."""
