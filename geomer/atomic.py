"""Atomic file writes: a file is either absent, the old version, or complete — never half-written.

Everything geomer writes to caches and run directories goes through :func:`atomic_path`: the
writer fills a temp file in the destination's folder, which is renamed over the destination
(``os.replace`` is atomic within one file system) only when the writer finished without error.
The torch archives written here are checked on reading by :func:`check_torch_archive` (their
CRCs, which torch.load does not verify).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from landmarks.track import FILE_MODE

from geomer.errors import GeomerError, WriteError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; rename it to ``path`` on success, delete it on error.

    An operating-system error while writing (a full disk, no permission, a folder named ``path``)
    becomes a :class:`GeomerError` naming ``path``; ``path`` itself is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise write_error(path, error) from error
    os.close(handle)
    try:
        yield Path(temporary)
        # mkstemp makes the file private (0600); a cache or run shared with others must stay
        # readable to them as any other file this user writes would be
        if Path(temporary).exists():
            os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except OSError as error:
        raise write_error(path, error) from error
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_error(path: Path, error: OSError) -> WriteError:
    """The one-line error for failing to write ``path``."""
    if isinstance(error, IsADirectoryError) or path.is_dir():
        return WriteError(f"{path}: is a directory, cannot write a file there")
    return WriteError(f"{path}: cannot write it ({error.strerror or error})")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` ``array`` to ``path`` atomically (the name is kept as given)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.save(stream, array)


def atomic_torch_save(path: str | os.PathLike, payload) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically.

    torch reports a failed write (a full disk) as a RuntimeError, not an OSError: "enforce fail at
    inline_container.cc" while it writes a record, "basic_ios::clear: iostream error" when it
    closes the archive; either becomes a GeomerError naming ``path`` too. Any other RuntimeError
    passes through unchanged.
    """
    import torch

    path = Path(path)
    with atomic_path(path) as temporary:
        try:
            torch.save(payload, temporary)
        except RuntimeError as error:
            if not any(sign in str(error) for sign in ("inline_container", "iostream error")):  # a bug: traceback
                raise
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise WriteError(f"{path}: cannot write it (torch.save failed: {first}; is the disk full?)") from error


def check_torch_archive(path: Path) -> None:
    """One-line GeomerError when ``path``, a torch zip archive, holds an entry that fails its CRC
    check: torch.load does not check them, so damaged bytes inside a tensor would load as other
    numbers (NaN weights, a "finished" fold that predicts nothing). A file that is no zip archive
    at all is left to torch.load to refuse."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return
    if damaged is not None:
        # entries are named "<the name the archive was saved under>/data/…": the first part is the
        # temporary file of the atomic write, which tells a reader nothing
        entry = damaged.partition("/")[2] or damaged
        raise GeomerError(f"{path}: a damaged checkpoint (its entry {entry} fails its CRC check)")
