"""``LandmarkTrack``: the 68-point landmarks of one clip, frame by frame, and its ``.npz`` form."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmarks.align import apply_transform, estimate_similarity
from landmarks.errors import LandmarksError
from landmarks.template import CANONICAL_TEMPLATE

#: How many valid frames (from the first) the clip's one alignment transform is estimated on.
ALIGNMENT_FRAMES = 5

_KEYS = ("points", "valid", "fps", "frame_index", "box", "source", "backend")
#: Keys written since later versions; a track without them loads with their defaults.
_OPTIONAL_KEYS = {"settings": ""}


def _read_umask() -> int:
    """The process's file-creation mask. Linux states it in /proc (no change to the mask, so no
    race with other threads); elsewhere it is read once, at import, by setting and restoring it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The mode of a file written by ``open`` under this process's umask (tempfile makes 0600 files).
FILE_MODE = 0o666 & ~_read_umask()


@dataclass(frozen=True, eq=False)
class LandmarkTrack:
    """The landmarks of one clip.

    Shapes:
        points: [T, 68, 2] float32, (x, y) pixels in the source frames; NaN where ``valid`` is False.
        valid: [T] bool, False where the face was lost.
        frame_index: [T] int64, the frame NUMBERS (video frame number from 0, or the number in a
            frame file's name), which is how label sheets refer to frames.
        box: [T, 4] float32 (x0, y0, x1, y1), the face box the points were predicted in; NaN where
            not valid.
    ``fps`` is the source's frame rate (NaN for a frame folder given without one); ``source`` the
    absolute path (or a description); ``backend`` the backend name; ``settings`` what else made
    it (the ``landmarks extract`` options and a fingerprint of the source, as JSON; "" if unknown),
    so a kept output can be checked against the command that would remake it.
    """

    points: np.ndarray
    valid: np.ndarray
    frame_index: np.ndarray
    box: np.ndarray
    fps: float
    source: str
    backend: str
    settings: str = ""

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float32)
        valid = np.asarray(self.valid, dtype=bool)
        frame_index = np.asarray(self.frame_index, dtype=np.int64)
        box = np.asarray(self.box, dtype=np.float32)
        length = len(valid)
        if (
            points.shape != (length, 68, 2)
            or valid.shape != (length,)
            or frame_index.shape != (length,)
            or box.shape != (length, 4)
        ):
            raise ValueError(
                f"inconsistent LandmarkTrack shapes: points {points.shape}, valid {valid.shape}, "
                f"frame_index {frame_index.shape}, box {box.shape}"
            )
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "valid", valid)
        object.__setattr__(self, "frame_index", frame_index)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "source", str(self.source))
        object.__setattr__(self, "backend", str(self.backend))
        object.__setattr__(self, "settings", str(self.settings))

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if len(self.valid) else 0.0

    def alignment(self) -> np.ndarray:
        """The clip's one similarity [2, 3] onto ``CANONICAL_TEMPLATE``.

        Estimated on the mean shape of the first ``ALIGNMENT_FRAMES`` valid frames (averaging a
        few frames keeps one frame's noise out of the transform applied to the whole clip).
        """
        first = np.flatnonzero(self.valid)[:ALIGNMENT_FRAMES]
        if len(first) == 0:
            raise LandmarksError(f"{self.source}: no valid frame to align on")
        return estimate_similarity(self.points[first].mean(axis=0), CANONICAL_TEMPLATE)

    def aligned(self) -> np.ndarray:
        """Points in canonical coordinates (inter-ocular distance 1): [T, 68, 2] float32."""
        return apply_transform(self.points, self.alignment())

    def position(self, frame_number: int) -> int:
        """0-based position of frame NUMBER ``frame_number`` in this track."""
        hits = np.flatnonzero(self.frame_index == int(frame_number))
        if len(hits) == 0:
            first, last = (self.frame_index[[0, -1]] if len(self) else (None, None))
            raise LandmarksError(
                f"{self.source}: frame {frame_number} is not in the track (frames {first}..{last})"
            )
        return int(hits[0])

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.npz`` atomically (temp file in the same folder, then rename); the file gets
        the permissions of any new file (0666 less the umask), not a temp file's 0600."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short temp name: the final name may already be as long as the file system allows
        handle, temp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(handle, FILE_MODE)
            with os.fdopen(handle, "wb") as file:
                np.savez(
                    file,
                    points=self.points,
                    valid=self.valid,
                    fps=np.float64(self.fps),
                    frame_index=self.frame_index,
                    box=self.box,
                    source=np.str_(self.source),
                    backend=np.str_(self.backend),
                    settings=np.str_(self.settings),
                )
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LandmarkTrack:
        path = Path(path)
        if not path.is_file():
            raise LandmarksError(f"{path}: no such track file")
        # np.load takes any file that is not an .npz or .npy for a pickle and answers with advice
        # about allow_pickle; a video given in a track's place must be named for what it is not
        try:
            with open(path, "rb") as file:
                is_npz = file.read(4) == b"PK\x03\x04"  # the zip archive an .npz is
        except OSError as error:
            raise LandmarksError(f"{path}: cannot read the track ({error.strerror or error})") from None
        if not is_npz:
            raise LandmarksError(f"{path}: not a landmark track (not an .npz archive)")
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [key for key in _KEYS if key not in archive.files]
                if missing:
                    raise LandmarksError(f"{path}: not a landmark track (missing {', '.join(missing)})")
                fields = {key: archive[key] for key in _KEYS}
                for key, default in _OPTIONAL_KEYS.items():
                    fields[key] = archive[key] if key in archive.files else default
        except LandmarksError:
            raise
        except Exception as error:  # zip/format errors from a corrupt or foreign file
            raise LandmarksError(f"{path}: cannot read the track ({error})") from None
        try:
            track = cls(
                points=fields["points"],
                valid=fields["valid"],
                frame_index=fields["frame_index"],
                box=fields["box"],
                fps=float(fields["fps"]),
                source=str(fields["source"]),
                backend=str(fields["backend"]),
                settings=str(fields["settings"]),
            )
        except ValueError as error:
            raise LandmarksError(f"{path}: {error}") from None
        # a valid frame's points and box are drawn and measured: NaN or inf there is damage to
        # the file (invalid frames may hold anything)
        finite = np.isfinite(track.points).all(axis=(1, 2)) & np.isfinite(track.box).all(axis=1)
        bad = np.flatnonzero(track.valid & ~finite)
        if len(bad):
            raise LandmarksError(f"{path}: frame {int(track.frame_index[bad[0]])}: non-finite landmark points "
                                 f"or box in a valid frame ({len(bad)} frame(s))")
        return track
