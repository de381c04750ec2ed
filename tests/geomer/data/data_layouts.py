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


SAMM_ROWS = [
    # Subject, Filename, Onset, Apex, Offset, AUs, Emotion
    (6, "006_1_2", 5562, 5588, 5619, "4+7", "Anger"),
    (6, "006_1_5", 10, 12, 15, "R12+R14", "Happiness"),
    ("007", "007_3_1", 100, 104, 110, "1+2", "Surprise"),
    ("007", "007_3_2", 20, 22, 25, "R12?", "Other"),
    (8, "008_5_3", 3, 4, 6, "9", "Disgust"),
]


def write_samm(root: Path, rows=SAMM_ROWS, title_rows: int = 12, frames: bool = True) -> Path:
    """SAMM layout: a title block of ``title_rows`` rows above the header; greyscale frames."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    header = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
              "Duration", "Type", "Action Units", "Notes", "Estimated Emotion"]
    title = [["SAMM micro-expression FACS codes"] + [None] * 10] + [[None] * 11] * (title_rows - 1)
    body = [
        [s, f, 1, on, ap, off, (off - on + 1) if isinstance(off, int) and isinstance(on, int) else None,
         "Micro - 1/2", aus, "", emotion]
        for s, f, on, ap, off, aus, emotion in rows
    ]
    pd.DataFrame(title + [header] + body).to_excel(
        root / "SAMM_Micro_FACS_Codes_v2.xlsx", index=False, header=False
    )
    if frames:
        for subject, filename, onset, _apex, offset, _aus, _label in rows:
            number = int(subject)
            write_frames(root / f"{number:03d}" / filename, range(int(onset), int(offset) + 1),
                         lambda n, s=number: f"{s:03d}_{n:05d}.jpg", grey=True)
    return root


SMIC_CLIPS = [
    # subject, label folder, clip, first frame, frames
    ("s1", "negative", "s1_ne_01", 106005, 4),
    ("s1", "positive", "s1_po_01", 5, 3),
    ("s2", "surprise", "s2_sur_01", 998, 5),
    ("s3", "negative", "s3_ne_02", 1, 3),
]


def write_smic(root: Path, clips=SMIC_CLIPS) -> Path:
    root = Path(root)
    for subject, label, clip, first, count in clips:
        write_frames(root / "HS" / subject / "micro" / label / clip, range(first, first + count),
                     lambda n: f"image{n:07d}.bmp")
    return root


CASME3_ROWS = [
    # Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion
    ("spNO.1", "a", 10, 12, 16, "L1+L2", 3, "surprise"),
    ("spNO.1", "a", 40, 40, 44, "4", 1, "disgust"),   # onset == apex is legal
    ("spNO.1", "b", 5, 7, 9, "12", 2, "happy"),
    ("spNO.2", "c", 3, 4, 8, "4+7", 1, "Anger"),
    ("spNO.3", "a", 2, 3, 5, "", 7, "others"),
]


def write_casme3(root: Path, rows=CASME3_ROWS) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["Subject", "Filename", "Onset", "Apex", "Offset", "AU",
                                "Objective class", "emotion"]).to_excel(
        root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", index=False)
    spans: dict[Path, set[int]] = {}
    for subject, filename, onset, _apex, offset, *_ in rows:
        folder = root / "part_A" / subject / filename / "color"
        spans.setdefault(folder, set()).update(range(int(onset), int(offset) + 1))
    for folder, numbers in spans.items():
        write_frames(folder, sorted(numbers), lambda n: f"{n}.jpg")
    return root


FLOW_ROWS = [
    # dataset, sub, filename_o, label, imagename
    ("casme2", "sub01", "EP02_01f", 1, "sub01_EP02_01f.png"),
    ("casme2", "sub02", "EP01_11f", 0, "sub02_EP01_11f.png"),
    ("smic", "s1", "s1_ne_01", 0, "s1_s1_ne_01.png"),
    ("samm", "006", "006_1_2", 0, "006_006_1_2.png"),
    ("samm", "007", "007_3_1", 2, "007_007_3_1.png"),
]


def write_megc2019_flow(root: Path, rows=FLOW_ROWS, under_datasets: bool = False) -> Path:
    root = Path(root)
    base = root / "datasets" if under_datasets else root
    (base / "combined_datasets_whole").mkdir(parents=True, exist_ok=True)
    (base / "STSNet_whole_norm_u_v_os").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["dataset", "sub", "filename_o", "label", "imagename"]).to_csv(
        root / "combined_3_class2_for_optical_flow.csv", index=False)
    for _dataset, sub, filename, _label, image in rows:
        cv2.imwrite(str(base / "combined_datasets_whole" / image), np.zeros((224, 224, 3), np.uint8))
        cv2.imwrite(str(base / "STSNet_whole_norm_u_v_os" / f"{sub}_{filename} .png"),
                    np.zeros((28, 28, 3), np.uint8))
    return root
