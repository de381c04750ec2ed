"""Writers of tiny fictitious datasets in the real on-disk layouts (16×16 frames), for the
geomer.data tests. Each returns the root; ``rows`` let a test break a layout on purpose."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd


def write_frames(folder: Path, numbers, name=lambda n: f"img{n}.jpg", grey=False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for n in numbers:
        shape = (16, 16) if grey else (16, 16, 3)
        cv2.imwrite(str(folder / name(n)), rng.integers(0, 255, shape, dtype=np.uint8))


CASME2_ROWS = [
    # Subject, Filename, Onset, Apex, Offset, AUs, Emotion
    (1, "EP02_01f", 46, 59, 86, "12", "happiness"),
    (1, "EP03_02", 10, 12, 20, "R12+L14", "Others"),
    ("02", "EP01_11f", 5, 8, 12, "4+7+L10", "disgust"),
    ("02", "EP05_02", 3, 4, 9, "12?", "Happiness "),
    (3, "EP07_01", 20, 25, 30, "AU4+AU7", "repression"),
    (3, "EP08_04", 1, 2, 6, None, "surprise"),
    (4, "EP09_01", 1, 3, 5, "1+2", "fear"),
]


def write_casme2(root: Path, rows=CASME2_ROWS, subfolder: str = "", frames: bool = True,
                 cropped: bool = False, title_rows: int = 0) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        rows,
        columns=["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                 "Estimated Emotion"],
    )
    table.to_excel(root / "CASME2-coding-20140508.xlsx", index=False)
    if frames:
        base = root / subfolder if subfolder else root
        for subject, filename, onset, apex, offset, _aus, _label in rows:
            try:
                first, last = int(onset), int(offset)
            except (TypeError, ValueError):
                first, last = 1, 3
            name = (lambda n: f"reg_img{n}.jpg") if cropped else (lambda n: f"img{n}.jpg")
            number = int(str(subject).replace("sub", ""))
            write_frames(base / f"sub{number:02d}" / str(filename), range(first, last + 1), name)
    return root
