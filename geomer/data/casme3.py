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

import re
from pathlib import Path

from geomer.data.sheets import SampleCollector, cell_text, find_sheet, read_table
from geomer.errors import GeomerError

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
    digits = re.findall(r"\d+", cell_text(value))
    if not digits:
        raise ValueError(f"subject {value!r} has no number")
    return f"spNO.{int(digits[-1])}"


def frames_root(root: Path) -> Path:
    for candidate in (root, *(root / sub for sub in FRAME_SUBFOLDERS)):
        if candidate.is_dir() and any(
            p.is_dir() and p.name.lower().startswith("spno.") for p in candidate.iterdir()
        ):
            return candidate
    raise GeomerError(
        f"{root}: not a casme3 root: no spNO.1/… frame folders under it or under "
        f"{', '.join(s + '/' for s in FRAME_SUBFOLDERS)}"
    )


def collect(root: Path, collector: SampleCollector, dataset: str = NAME) -> None:
    """Add every row of the Part A sheet under ``root`` to ``collector``."""
    root = Path(root)
    sheet = find_sheet(root, SHEET_PATTERNS, NAME)
    table = read_table(sheet, COLUMNS, key_column="filename")
    frames = frames_root(root)
    for record, row in zip(table.rows, table.row_numbers):
        try:
            subject = subject_folder_name(record["subject"])
        except ValueError as error:
            collector.reject(sheet, row, str(error))
            continue
        filename = cell_text(record["filename"])
        if not filename:
            collector.reject(sheet, row, "Filename is blank")
            continue
        folder = frames / subject / filename / "color"
        collector.add(
            file=sheet,
            row=row,
            dataset=dataset,
            subject=subject,
            clip=f"{filename}_{cell_text(record['onset'])}",
            label=record["emotion"],
            onset=record["onset"],
            apex=record["apex"],
            offset=record["offset"],
            aus=record["aus"],
            folder=folder,
        )
