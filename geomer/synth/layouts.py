"""Writers for the on-disk layouts of the synthetic dataset.

* ``casme2``: ``CASME2-coding-20140508.xlsx`` (Subject, Filename, OnsetFrame, ApexFrame,
  OffsetFrame, Action Units, Estimated Emotion) + colour frames ``sub01/EP03_02f/img<N>.jpg``;
  frame numbers start at a random number ≥ 10 per clip, a few frames lead in before the onset and
  trail after the offset; some clip ids carry CASME II's suffix letter ``f``.
* ``samm``: ``SAMM_Micro_FACS_Codes_v2.xlsx`` with a title block above the header row (Subject,
  Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration, Type, Action Units,
  Notes, Estimated Emotion) + greyscale frames ``006/006_1_2/006_<NNNNN>.jpg``.
* ``megc2019-flow``: ``combined_3class_gt.csv`` (dataset, sub, filename_o, label 0 negative /
  1 positive / 2 surprise, imagename) + ``combined_datasets_whole/<imagename>`` 224×224 apex face
  crops + ``STSNet_whole_norm_u_v_os/<sub>_<filename_o> .png`` 28×28 onset→apex flow images (RGB =
  u, v, optical strain from OpenCV Farneback on the face crops, each channel min-max normalised to
  0..255 per image). Subjects are spread round-robin over the composite's parts casme2 / samm /
  smic with each part's subject and clip naming.
"""

from __future__ import annotations

import csv
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from geomer.errors import GeomerError
from landmarks.registry import Registry

CASME2_SHEET = "CASME2-coding-20140508.xlsx"
SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
MEGC_CSV = "combined_3class_gt.csv"
MEGC_APEX_DIR = "combined_datasets_whole"
MEGC_FLOW_DIR = "STSNet_whole_norm_u_v_os"
MEGC_LABELS = {"negative": 0, "positive": 1, "surprise": 2}
_FIXED_TIME = _dt.datetime(2020, 1, 1)  # workbook metadata, so reruns give the same sheet


@dataclass(frozen=True)
class ClipPlan:
    """Everything decided about one clip before rendering (frame numbers as in file names)."""

    dataset: str
    subject: str
    clip: str
    label: str
    aus: tuple[str, ...]
    amplitudes_px: tuple[float, ...]
    first_frame: int
    num_frames: int
    onset: int
    apex: int
    offset: int

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.clip}"

    @property
    def au_text(self) -> str:
        return "+".join(self.aus)

    def position(self, frame_number: int) -> int:
        return frame_number - self.first_frame


RenderAt = Callable[[int], np.ndarray]  # position in the clip → BGR uint8 frame


def _imwrite(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise GeomerError(f"{path}: cannot write image")


def _write_workbook(path: Path, rows: list[list[object]], title_rows: list[list[object]] = ()) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    for row in [*title_rows, *rows]:
        sheet.append(row)
    workbook.properties.creator = "geomer synth"
    workbook.properties.created = _FIXED_TIME
    workbook.properties.modified = _FIXED_TIME
    workbook.save(path)


class Casme2Layout:
    name = "casme2"
    scheme = "casme2"

    def subject_names(self, index: int) -> tuple[str, str]:
        return "casme2", f"sub{index + 1:02d}"

    def clip_name(self, subject: str, index: int, rng: np.random.Generator, label: str) -> str:
        suffix = "f" if rng.uniform() < 0.5 else ""
        return f"EP{index + 1:02d}_{int(rng.integers(1, 10)):02d}{suffix}"

    def first_frame(self, rng: np.random.Generator) -> int:
        return int(rng.integers(10, 300))

    def write_clip(self, root: Path, plan: ClipPlan, render_at: RenderAt, onset_points: np.ndarray) -> None:
        folder = root / plan.subject / plan.clip
        for position in range(plan.num_frames):
            _imwrite(folder / f"img{plan.first_frame + position}.jpg", render_at(position))

    def finish(self, root: Path, plans: list[ClipPlan]) -> None:
        header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                  "Estimated Emotion"]
        rows = [header] + [
            [p.subject[3:], p.clip, p.onset, p.apex, p.offset, p.au_text, p.label] for p in plans
        ]
        _write_workbook(root / CASME2_SHEET, rows)


class SammLayout:
    name = "samm"
    scheme = "samm"

    def subject_names(self, index: int) -> tuple[str, str]:
        return "samm", f"{index + 6:03d}"

    def clip_name(self, subject: str, index: int, rng: np.random.Generator, label: str) -> str:
        return f"{subject}_{index + 1}_{int(rng.integers(1, 8))}"

    def first_frame(self, rng: np.random.Generator) -> int:
        return int(rng.integers(1000, 8000))

    def write_clip(self, root: Path, plan: ClipPlan, render_at: RenderAt, onset_points: np.ndarray) -> None:
        folder = root / plan.subject / plan.clip
        for position in range(plan.num_frames):
            grey = cv2.cvtColor(render_at(position), cv2.COLOR_BGR2GRAY)
            _imwrite(folder / f"{plan.subject}_{plan.first_frame + position:05d}.jpg", grey)

    def finish(self, root: Path, plans: list[ClipPlan]) -> None:
        title = [
            ["SAMM: Spontaneous Actions and Micro-Movements (synthetic, geomer synth)"],
            ["Micro-Movement FACS Codes v2"],
            [],
            ["Frames at 200 fps unless stated in ground_truth.json"],
            [],
        ]
        header = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
                  "Offset Frame", "Duration", "Type", "Action Units", "Notes", "Estimated Emotion"]
        rows = [header] + [
            [int(p.subject), p.clip, int(p.clip.split("_")[1]), p.onset, p.apex, p.offset,
             p.offset - p.onset + 1, "Micro - 1/2", p.au_text, "", p.label.capitalize()]
            for p in plans
        ]
        _write_workbook(root / SAMM_SHEET, rows, title)


def face_crop_box(points: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int]:
    """A square (x0, y0, side) around landmarks [68, 2], enlarged to hold brows and chin."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    side = int(round(max(high - low) * 1.15))
    side = min(side, *size)
    x0 = int(np.clip(round(centre[0] - side / 2), 0, size[0] - side))
    y0 = int(np.clip(round(centre[1] - side / 2), 0, size[1] - side))
    return x0, y0, side


def flow_image(onset_grey: np.ndarray, apex_grey: np.ndarray, size: int = 28) -> np.ndarray:
    """The STSTNet-style onset→apex flow image: BGR uint8 [size, size, 3] with R=u, G=v, B=strain."""
    flow = cv2.calcOpticalFlowFarneback(onset_grey, apex_grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    u, v = flow[..., 0], flow[..., 1]
    u_y, u_x = np.gradient(u)
    v_y, v_x = np.gradient(v)
    strain = np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2)
    channels = []
    for channel in (u, v, strain):
        small = cv2.resize(channel, (size, size), interpolation=cv2.INTER_AREA)
        span = small.max() - small.min()
        scaled = (small - small.min()) / span * 255.0 if span > 0 else np.zeros_like(small)
        channels.append(np.round(scaled).astype(np.uint8))
    u8, v8, s8 = channels
    return np.dstack([s8, v8, u8])


class MegcFlowLayout:
    name = "megc2019-flow"
    scheme = "megc3"
    _PARTS = ("casme2", "samm", "smic")

    def subject_names(self, index: int) -> tuple[str, str]:
        part = self._PARTS[index % 3]
        number = index // 3 + 1
        return part, {"casme2": f"sub{number:02d}", "samm": f"{number + 5:03d}", "smic": f"s{number}"}[part]

    def clip_name(self, subject: str, index: int, rng: np.random.Generator, label: str) -> str:
        if subject.startswith("sub"):
            return f"EP{index + 1:02d}_{int(rng.integers(1, 10)):02d}f"
        if subject.startswith("s"):
            # SMIC names its clips by class: s1_ne_01, s1_po_02, s1_sur_03
            return f"{subject}_{dict(negative='ne', positive='po', surprise='sur')[label]}_{index + 1:02d}"
        return f"{subject}_{index + 1}_{int(rng.integers(1, 8))}"

    def first_frame(self, rng: np.random.Generator) -> int:
        return int(rng.integers(10, 300))

    def write_clip(self, root: Path, plan: ClipPlan, render_at: RenderAt, onset_points: np.ndarray) -> None:
        onset = render_at(plan.position(plan.onset))
        apex = render_at(plan.position(plan.apex))
        x0, y0, side = face_crop_box(onset_points, (onset.shape[1], onset.shape[0]))

        def crop(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image[y0 : y0 + side, x0 : x0 + side], (224, 224), interpolation=cv2.INTER_AREA)

        onset_crop, apex_crop = crop(onset), crop(apex)
        _imwrite(root / MEGC_APEX_DIR / self.image_name(plan), apex_crop)
        grey = [cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in (onset_crop, apex_crop)]
        _imwrite(root / MEGC_FLOW_DIR / f"{plan.subject}_{plan.clip} .png", flow_image(*grey))

    @staticmethod
    def image_name(plan: ClipPlan) -> str:
        return f"{plan.subject}_{plan.clip}.jpg"

    def finish(self, root: Path, plans: list[ClipPlan]) -> None:
        path = root / MEGC_CSV
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["dataset", "sub", "filename_o", "label", "imagename"])
            for p in plans:
                writer.writerow([p.dataset, p.subject, p.clip, MEGC_LABELS[p.label], self.image_name(p)])


LAYOUT_WRITERS: Registry[Callable[[], object]] = Registry(
    "synthetic layout", GeomerError,
    {"casme2": Casme2Layout, "samm": SammLayout, "megc2019-flow": MegcFlowLayout},
)
LAYOUTS = LAYOUT_WRITERS.names()


def get_layout(name: str):
    """A writer of the named on-disk layout (one of :data:`LAYOUTS`)."""
    return LAYOUT_WRITERS[name]()

