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

from geomer.data.frames import find_frames_root
from geomer.data.sheets import SampleCollector, cell_text, clip_rows

NAME = "samm"
DEFAULT_SCHEME = "samm-5"
LAYOUT = "SAMM_Micro_FACS_Codes_v2.xlsx (title rows above the header) + 006/006_1_2/006_05562.jpg"
SHEET_PATTERNS = ("SAMM_Micro_FACS_Codes*.xlsx", "SAMM_Micro_FACS_Codes*.xls", "SAMM_Micro_FACS_Codes*.csv")
FRAME_SUBFOLDERS = ("SAMM",)
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
    return find_frames_root(root, FRAME_SUBFOLDERS, lambda name: re.fullmatch(r"\d{3}", name), NAME, "006/…")


def collect(root: Path, collector: SampleCollector, dataset: str = NAME) -> None:
    """Add every row of the SAMM sheet under ``root`` to ``collector``."""
    root = Path(root)
    rows = clip_rows(root, SHEET_PATTERNS, COLUMNS, NAME, subject_folder_name, collector)
    frames = frames_root(root)
    for entry in rows:
        collector.add_clip_row(entry, dataset=dataset, clip=entry.filename, folder=frames / entry.subject / entry.filename)
