"""SMIC-HS reader (labels from the folders, no label sheet, no apex).

Layout::

    ROOT/HS/s1/micro/negative/s1_ne_01/image0106005.bmp

(ROOT may also be the HS folder itself.) The label is the class folder (negative, positive,
surprise); onset = the first frame number, offset = the last; apex is None (spotted downstream by
``geomer.features.spot_apex``); no AUs. Problems are reported per clip folder ("row" = the folder
relative to the root).
"""

from __future__ import annotations

import re
from pathlib import Path

from geomer.data.frames import frames_of
from geomer.data.sheets import SampleCollector
from geomer.errors import GeomerError

NAME = "smic"
DEFAULT_SCHEME = "composite-3"
LAYOUT = "HS/s1/micro/negative/s1_ne_01/image*.bmp (labels from the folders; no apex: spotted)"


def clip_id(name: str) -> str:
    """A SMIC clip id as the HS folders write it: "s01_ne_01" (zero-padded copies) → "s1_ne_01"."""
    return re.sub(r"^s0*(\d+)_", r"s\1_", name)


def hs_folder(root: Path) -> Path:
    root = Path(root)
    for candidate in (root / "HS", root):
        if candidate.is_dir() and any(
            (p / "micro").is_dir() for p in candidate.iterdir() if re.fullmatch(r"s\d+", p.name)
        ):
            return candidate
    raise GeomerError(f"{root}: not a smic root: folder HS/ with s1/micro/… is missing")


def collect(root: Path, collector: SampleCollector, dataset: str = NAME) -> None:
    """Add every clip folder of SMIC-HS under ``root`` to ``collector``."""
    hs = hs_folder(root)
    subjects = sorted(
        (p for p in hs.iterdir() if p.is_dir() and re.fullmatch(r"s\d+", p.name)),
        key=lambda p: int(p.name[1:]),
    )
    for subject_dir in subjects:
        micro = subject_dir / "micro"
        if not micro.is_dir():
            continue  # subjects without micro-expressions exist in SMIC
        for label_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            for clip_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
                frames = frames_of(clip_dir)
                numbers = list(frames)
                collector.add(
                    file=hs,
                    row=clip_dir.relative_to(hs).as_posix(),
                    dataset=dataset,
                    # "s01" and "s1" are one person: one subject key, so a copy of a clip under
                    # both is a duplicate, never a clip on both sides of a LOSO split
                    subject=f"s{int(subject_dir.name[1:])}",
                    clip=clip_id(clip_dir.name),
                    label=label_dir.name,
                    onset=numbers[0] if numbers else None,
                    apex=None,
                    offset=numbers[-1] if numbers else None,
                    folder=clip_dir,
                    required_frames=("onset", "offset"),
                )
