"""Files in and out: a cheap fingerprint of input files, and the checks that an output folder or
file can be made before any work is done (both packages use these; geomer builds on them)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from landmarks.errors import LandmarksError


def fingerprint(paths: Sequence[str | os.PathLike]) -> str:
    """A cheap fingerprint of files: a hash of each file's name, size and modification time
    (nanoseconds). A missing file is part of the fingerprint (so it changes when the file appears)."""
    parts = []
    for path in paths:
        path = Path(path)
        try:
            stat = path.stat()
            parts.append([path.name, stat.st_size, stat.st_mtime_ns])
        except OSError:
            parts.append([path.name, None, None])
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()


def check_output_folder(
    path: str | os.PathLike, option: str = "--out", error: type[Exception] = LandmarksError
) -> Path:
    """Raise ``error`` (one line) unless folder ``path`` exists as a writable folder or can be
    created; nothing is left behind (a probe file or folder is made there and removed).
    ``option`` names the flag that gave it; ``error`` is the calling package's user-error type
    (geomer passes ``GeomerError``). Returns ``path`` as a Path."""
    path = Path(path)
    # before any stat: the file system refuses a too-long name with a less helpful error
    if any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise error(f"{path}: a file name in it is too long")
    if path.exists() and not path.is_dir():
        raise error(f"{path}: exists and is not a directory; choose another {option}")
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"{path}: cannot create it ({existing} is not a directory)")
    # A real try, not os.access: root passes os.access everywhere, yet /sys, /proc or a read-only
    # mount refuse the write, which the caller would only learn after all its work. The probe is
    # what the command will do there: a file in the folder, or the first folder it must make.
    try:
        if existing == path:
            handle, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
            os.close(handle)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".write-check.", dir=existing))
    except OSError as failure:
        where = "it" if existing == path else existing
        raise error(f"{path}: cannot write in {where} ({failure.strerror or failure})") from None
    return path


def check_output_file(path: str | os.PathLike, option: str = "-o") -> Path:
    """One-line LandmarksError unless a file can be written at ``path``: its folder can be made
    and written, the name fits the file system, and no folder stands there; nothing is left behind."""
    path = Path(path)
    check_output_folder(path.parent, option)
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):  # the folder does not exist yet, or the system does not say
        limit = 255
    if len(os.fsencode(path.name)) > limit:
        raise LandmarksError(f"{path}: file name too long ({len(os.fsencode(path.name))} bytes, the limit is {limit})")
    if path.is_dir():
        raise LandmarksError(f"{path}: is a folder, an output file is needed")
    return path
