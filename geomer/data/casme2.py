"""CASME II reader.

Layout::

    ROOT/CASME2-coding-*.xlsx        Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
                                     Action Units, Estimated Emotion
    ROOT/[SUB/]sub01/EP02_01f/img46.jpg

``SUB`` is optional: one of CASME2_RAW_selected, CASME2_RAW, Cropped (cropped frames are named
``reg_img46.jpg``), CASME2_Cropped, CASME2-RAW. Subjects may be written 1, "01" or "sub01"
(folder "sub01"). Clip ids keep their suffix letters ("EP02_01f"); when the sheet and the folder
disagree only by one trailing letter ("EP02_01" vs "EP02_01f") the folder name is the clip id.
"""

from __future__ import annotations

import re
from pathlib import Path

from geomer.data.frames import find_frames_root
from geomer.data.sheets import SampleCollector, clip_rows, subject_number

NAME = "casme2"
DEFAULT_SCHEME = "casme2-5"
LAYOUT = (
    "CASME2-coding-*.xlsx + sub01/EP02_01f/img46.jpg (directly or under CASME2_RAW_selected/, "
    "CASME2_RAW/ or Cropped/)"
)
SHEET_PATTERNS = ("CASME2-coding-*.xlsx", "CASME2-coding-*.xls", "CASME2-coding-*.csv")
FRAME_SUBFOLDERS = ("CASME2_RAW_selected", "CASME2_RAW", "Cropped", "CASME2_Cropped", "CASME2-RAW")
COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("OnsetFrame", "Onset Frame", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset"),
    "aus": ("Action Units", "ActionUnits", "AU", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
}


def subject_folder_name(value: object) -> str:
    """1, "1", "01", "sub01", 1.0 → "sub01"; ``ValueError`` when there is no number."""
    return f"sub{subject_number(value):02d}"


def frames_root(root: Path) -> Path:
    """The folder holding sub01, sub02, ... (ROOT itself or one of its known subfolders)."""
    return find_frames_root(root, FRAME_SUBFOLDERS, lambda name: re.fullmatch(r"sub\d+", name, re.I), NAME, "sub01/…")


def clip_folder(subject_dir: Path, filename: str) -> tuple[Path | None, str]:
    """The clip's frame folder and a reason when it is missing.

    Exact name first; otherwise the one folder whose name differs by one trailing letter.
    """
    exact = subject_dir / filename
    if exact.is_dir():
        return exact, ""
    if not subject_dir.is_dir():
        return None, f"frames folder {subject_dir} is missing"
    stem = filename[:-1] if re.search(r"\d[A-Za-z]$", filename) else filename
    near = [
        p
        for p in subject_dir.iterdir()
        if p.is_dir() and re.fullmatch(re.escape(stem) + r"[A-Za-z]?", p.name, re.I)
    ]
    if len(near) == 1:
        return near[0], ""
    return None, f"frames folder {exact} is missing"


def collect(root: Path, collector: SampleCollector, dataset: str = NAME) -> None:
    """Add every row of the CASME II sheet under ``root`` to ``collector``."""
    root = Path(root)
    rows = clip_rows(root, SHEET_PATTERNS, COLUMNS, NAME, subject_folder_name, collector)
    frames = frames_root(root)
    for entry in rows:
        folder, problem = clip_folder(frames / entry.subject, entry.filename)
        clip = folder.name if folder is not None else entry.filename
        collector.add_clip_row(entry, dataset=dataset, clip=clip, folder=folder, folder_problem=problem)
