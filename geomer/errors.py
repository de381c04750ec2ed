"""The error type for problems a user can fix (bad input, unknown names, missing files).

The CLI turns a :class:`GeomerError` into one line on stderr and exit status 2; anything else is
a bug and keeps its traceback.
"""


class GeomerError(Exception):
    """A user-facing error: the message is one line naming the file (and frame or row)."""
