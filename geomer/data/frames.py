"""Frame files of a clip folder, keyed by the number in their names.

Label sheets refer to frames by the number in the file name (``img46.jpg``, ``reg_img46.jpg``,
``006_05562.jpg``, ``image0106005.bmp``): the LAST run of digits in the stem. Frames are ordered
by that number, never by ``os.listdir`` order.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from geomer.errors import GeomerError
from landmarks.errors import LandmarksError
from landmarks.io import frame_number, is_frame_file


def find_frames_root(
    root: Path, subfolders: tuple[str, ...], is_subject_folder, layout: str, example: str
) -> Path:
    """The folder holding a dataset's subject frame folders: ``root`` itself or the first of its
    ``subfolders`` with a folder whose name ``is_subject_folder`` accepts; a one-line GeomerError
    naming ``root`` (``example`` shows such a folder, e.g. ``"sub01/…"``) otherwise."""
    for candidate in (root, *(root / name for name in subfolders)):
        if candidate.is_dir() and any(p.is_dir() and is_subject_folder(p.name) for p in candidate.iterdir()):
            return candidate
    raise GeomerError(
        f"{root}: not a {layout} root: no {example} frame folders directly under it or under "
        f"{', '.join(name + '/' for name in subfolders)}"
    )


def frame_number_of(path: Path) -> int | None:
    """The last number in a file's stem (``landmarks.io.frame_number``), None when it has none."""
    try:
        return frame_number(path)
    except LandmarksError:
        return None


def index_frames(folder: Path) -> dict[int, Path]:
    """Frame number → file for the frames directly in ``folder`` (``landmarks.io.is_frame_file``,
    the tracker's rule), ordered by number."""
    found: dict[int, Path] = {}
    for path in Path(folder).iterdir():
        if is_frame_file(path):
            number = frame_number_of(path)
            if number is not None:
                found[number] = path
    return dict(sorted(found.items()))


@lru_cache(maxsize=4096)
def _cached_index(folder: str, mtime_ns: int) -> dict[int, Path]:
    return index_frames(Path(folder))


def frame_gap(present, onset: int, offset: int) -> tuple[int, int | None]:
    """How many frame numbers from ``onset`` to ``offset`` are not in ``present`` (the numbers a
    folder holds), and the first of them ((0, None) without a gap). Counted from ``present``,
    never by walking the range (a stray file numbered 99999999999 makes it that long)."""
    present = set(present)
    count = (offset - onset + 1) - sum(onset <= n <= offset for n in present)
    if count <= 0:
        return 0, None
    first = onset
    while first in present:
        first += 1
    return count, first


def frames_of(folder: Path) -> dict[int, Path]:
    """:func:`index_frames`, cached per folder modification time (readers ask many times)."""
    folder = Path(folder)
    return _cached_index(str(folder), folder.stat().st_mtime_ns)
