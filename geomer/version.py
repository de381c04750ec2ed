"""The geomer version, and which files written by other versions this one reads.

One scheme for every file geomer writes and reads back (run directories, training checkpoints,
pretraining checkpoints, the feature cache): the file records ``geomer_version``, and it is
readable when :func:`compatible_version` says so. A file from an incompatible version is refused
with a one-line :class:`~geomer.errors.GeomerError` naming it. The feature cache is the exception:
each entry records its cache format (``geomer.data.cache.CACHE_FORMAT``) in its identity and is
rebuilt when that differs, whatever geomer version wrote it.
"""

from __future__ import annotations

__version__ = "0.2.21"


def compatible_version(version: str, current: str = __version__) -> bool:
    """Whether files written by geomer ``version`` can be read by ``current``.

    Semantic versioning: the same major version; before 1.0, the same minor version too.
    """
    try:
        theirs = [int(part) for part in str(version).split(".")[:2]]
        ours = [int(part) for part in current.split(".")[:2]]
    except (AttributeError, ValueError):
        return False
    if len(theirs) < 2 or theirs[0] != ours[0]:
        return False
    return ours[0] > 0 or theirs[1] == ours[1]


def check_version(path, version, what: str = "file") -> None:
    """One-line GeomerError when the ``what`` at ``path``, written by geomer ``version``, is
    not readable by this geomer."""
    from geomer.errors import GeomerError

    if not compatible_version(version):
        raise GeomerError(f"{path}: a {what} of geomer {version}, incompatible with geomer {__version__}")
