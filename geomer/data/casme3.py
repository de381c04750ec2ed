"""CAS(ME)^3 Part A reader.

Layout::

    ROOT/<…part_A…>.xlsx     Part A label sheet: Subject, Filename, Onset, Apex, Offset, AU,
                             Objective class, emotion
    ROOT/[part_A/ | data/part_A/ | part_A/data/part_A/]spNO.1/a/color/1.jpg

A Part A "Filename" (a, b, c, …) is a whole task video holding several micro-expressions, so the
clip id is "<Filename>_<Onset>" (e.g. "a_120"); two rows with the same subject, file and onset are
duplicates. Rows with onset == apex are legal (the sheet marks the apex at the onset). Subjects may
be written "spNO.1" or 1. Class schemes: ``casme3-7`` (default), ``casme3-4``, ``casme3-3`` — see
:mod:`geomer.data.schemes`.
"""

from __future__ import annotations

from pathlib import Path

from geomer.data.frames import find_frames_root
from geomer.data.sheets import SampleCollector, cell_text, clip_rows, frame_value, subject_number

NAME = "casme3"
DEFAULT_SCHEME = "casme3-7"
LAYOUT = "Part A label sheet (*part_A*.xlsx) + spNO.1/a/color/*.jpg"
SHEET_PATTERNS = ("*part_A*.xlsx", "*part A*.xlsx", "*partA*.xlsx", "*part_A*.csv")
FRAME_SUBFOLDERS = ("part_A", "data/part_A", "part_A/data/part_A")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("Onset", "Onset Frame", "OnsetFrame"),
    "apex": ("Apex", "Apex Frame", "ApexFrame"),
    "offset": ("Offset", "Offset Frame", "OffsetFrame"),
    "aus": ("AU", "AUs", "Action Units"),
    "emotion": ("emotion", "Estimated Emotion"),
}


def subject_folder_name(value: object) -> str:
    """"spNO.1", "spno.1", 1 → "spNO.1"."""
    return f"spNO.{subject_number(value)}"


def frames_root(root: Path) -> Path:
    return find_frames_root(root, FRAME_SUBFOLDERS, lambda name: name.lower().startswith("spno."), NAME, "spNO.1/…")


def _onset_id(value: object) -> str:
    """The onset as the clip id writes it: the frame number, so "5", "5.0" and "05" are one clip
    (and their rows duplicates); a cell that is no frame number keeps its text (the row is then
    refused for its onset)."""
    try:
        return str(frame_value(value, "onset"))
    except ValueError:
        return cell_text(value)


def collect(root: Path, collector: SampleCollector, dataset: str = NAME) -> None:
    """Add every row of the Part A sheet under ``root`` to ``collector``."""
    root = Path(root)
    rows = clip_rows(root, SHEET_PATTERNS, COLUMNS, NAME, subject_folder_name, collector)
    frames = frames_root(root)
    for entry in rows:
        collector.add_clip_row(
            entry,
            dataset=dataset,
            clip=f"{entry.filename}_{_onset_id(entry.record['onset'])}",
            folder=frames / entry.subject / entry.filename / "color",
        )
