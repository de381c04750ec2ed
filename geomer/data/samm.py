"""SAMM reader.

Layout::

    ROOT/SAMM_Micro_FACS_Codes_v2.xlsx   a title block, then the header row: Subject, Filename,
                                         Inducement Code, Onset Frame, Apex Frame, Offset Frame,
                                         Duration, Type, Action Units, Notes, Estimated Emotion
    ROOT/[SAMM/]006/006_1_2/006_05562.jpg  (greyscale frames)

The header row is the first row whose cells include "Filename"; subjects may be written 6 or
"006" (folder "006").
"""

from __future__ import annotations

import re
from pathlib import Path

from geomer.data.sheets import SampleCollector, cell_text, find_sheet, read_table
from geomer.errors import GeomerError

NAME = "samm"
DEFAULT_SCHEME = "samm-5"
LAYOUT = "SAMM_Micro_FACS_Codes_v2.xlsx (title rows above the header) + 006/006_1_2/006_05562.jpg"
SHEET_PATTERNS = ("SAMM_Micro_FACS_Codes*.xlsx", "SAMM_Micro_FACS_Codes*.xls", "SAMM_Micro_FACS_Codes*.csv")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("Onset Frame", "OnsetFrame", "Onset"),
    "apex": ("Apex Frame", "ApexFrame", "Apex"),
    "offset": ("Offset Frame", "OffsetFrame", "Offset"),
    "aus": ("Action Units", "AU", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
}


def subject_folder_name(value: object) -> str:
    """6, "6", "006" → "006"."""
    text = cell_text(value)
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"subject {value!r} is not a number")
    return f"{int(text):03d}"


def frames_root(root: Path) -> Path:
    """The folder holding 006, 007, ... (ROOT itself or ROOT/SAMM)."""
    for candidate in (root, root / "SAMM"):
        if candidate.is_dir() and any(
            p.is_dir() and re.fullmatch(r"\d{3}", p.name) for p in candidate.iterdir()
        ):
            return candidate
    raise GeomerError(f"{root}: not a samm root: no 006/… subject frame folders under it or SAMM/")


def collect(root: Path, collector: SampleCollector, dataset: str = NAME) -> None:
    """Add every row of the SAMM sheet under ``root`` to ``collector``."""
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
        folder = frames / subject / filename
        collector.add(
            file=sheet,
            row=row,
            dataset=dataset,
            subject=subject,
            clip=filename,
            label=record["emotion"],
            onset=record["onset"],
            apex=record["apex"],
            offset=record["offset"],
            aus=record["aus"],
            folder=folder,
        )
