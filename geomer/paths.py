"""Where geomer keeps what it makes once and reuses (synthetic datasets, feature caches), and the
check that an output folder can be written before any work is done."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: ``$GEOMER_CACHE`` if set, else ``$XDG_CACHE_HOME/geomer`` (``~/.cache``)."""
    explicit = os.environ.get("GEOMER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "geomer"


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """One-line GeomerError unless folder ``path`` exists as a writable folder or can be created;
    nothing is created. Returns ``path`` as a Path."""
    from geomer.errors import GeomerError

    path = Path(path)
    # before any stat: the file system refuses a too-long name with a less helpful error
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise GeomerError(f"{path}: a file name in it is too long")
    if path.exists() and not path.is_dir():
        raise GeomerError(f"{path}: exists and is not a directory; choose another {option}")
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise GeomerError(f"{path}: cannot create it ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GeomerError(f"{path}: cannot write in {existing} (permission denied)")
    return path
