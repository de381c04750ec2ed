"""The error raised for bad input; the ``landmarks`` CLI prints it as one line and exits 2."""


class LandmarksError(Exception):
    """A user-facing error whose message names the file (and frame)."""
