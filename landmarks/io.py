"""Frame readers: video files, frame folders and single images, streamed one frame at a time.

Frames come out as uint8 ``H×W`` (grey) or ``H×W×3`` BGR (OpenCV's order). Folder frames are
ordered by the number in their file name (``img2.jpg`` before ``img10.jpg``), never by listing
order; a folder in which no file name holds a number is read in natural sort order (``a2.png``
before ``a10.png``: digits inside a name compare by value) and numbered from 0. A single image is a one-frame source.
Every problem raises ``LandmarksError`` naming the file (and frame). The decoders print nothing:
FFmpeg is set quiet, and an image whose decoder complains (libjpeg's "Premature end of JPEG
file" for a truncated frame) is a bad frame, named in the error, not a silently damaged one.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

# FFmpeg's own console messages ("moov atom not found", "overread 8") would add lines to our
# one-line errors; read when OpenCV first opens a video, so set before any capture exists.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from landmarks.errors import LandmarksError  # noqa: E402

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm"})
#: Every still-image format OpenCV's imread reads (formats missing from a build fail per file).
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".bmp", ".dib", ".webp", ".avif", ".tif", ".tiff",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pfm", ".pxm", ".sr", ".ras", ".hdr", ".pic", ".exr",
})

_NUMBER = re.compile(r"\d+")
#: The largest frame number: tracks store frame numbers as int64.
MAX_FRAME_NUMBER = 2**63 - 1
#: The highest frame rate taken from a video's header (high-speed cameras for micro-expressions
#: record 100–1000 frames/s); above it the header is wrong and the rate is unknown, as a frame
#: folder's is (an absurd rate would stretch every time-based window: the apex smoothing).
MAX_FPS = 10_000.0


def frame_number(path: str | os.PathLike) -> int:
    """The frame number in a file name: the LAST run of digits in its stem.

    ``img46.jpg`` → 46, ``006_05562.jpg`` → 5562, ``image0001.bmp`` → 1.
    """
    numbers = _NUMBER.findall(Path(path).stem)
    if not numbers:
        raise LandmarksError(f"{path}: no frame number in the file name")
    number = int(numbers[-1])
    if number > MAX_FRAME_NUMBER:
        raise LandmarksError(f"{path}: frame number {numbers[-1]} is too large (at most {MAX_FRAME_NUMBER})")
    return number


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a still image by its suffix (see ``IMAGE_SUFFIXES``)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_frame_file(path: Path) -> bool:
    """Whether ``path``, an entry of a frame folder, is a frame: an image file that is not hidden
    (``._img45.jpg``, the metadata a Mac writes beside a copied file, would stand in for the
    real frame of its number). The one rule of the tracker, the dataset readers and pretraining."""
    return is_image_file(path) and not path.name.startswith(".") and path.is_file()


def natural_key(path: str | os.PathLike) -> tuple:
    """Sort key of a file name: runs of digits by value (``a2`` before ``a10``), letters without
    case, the stem before the suffix (``left`` before ``left-up``)."""
    path = Path(path)
    stem = tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.stem))
    return stem, path.suffix.lower(), path.name


def list_frames(folder: str | os.PathLike) -> tuple[list[Path], list[int]]:
    """The image files in ``folder`` in frame order, and their frame numbers.

    When every name holds a number, the numbers are the frame numbers and give the order (a
    repeated number is an error); when no name does, the files are in natural sort order,
    numbered from 0. A mix is an error naming a file without a number (a stray file among
    numbered frames would otherwise shift every frame number).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LandmarksError(f"{folder}: no such folder")
    files = [entry for entry in folder.iterdir() if is_frame_file(entry)]
    if not files:
        raise LandmarksError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    unnumbered = sorted((file for file in files if not _NUMBER.search(file.stem)), key=natural_key)
    if len(unnumbered) == len(files):
        return unnumbered, list(range(len(files)))
    if unnumbered:
        raise LandmarksError(f"{unnumbered[0]}: no frame number in the file name, while other frames in the folder have one")
    numbered = sorted((frame_number(file), natural_key(file), file) for file in files)
    for (number, _, first), (next_number, _, second) in zip(numbered, numbered[1:]):
        if number == next_number:
            raise LandmarksError(f"{second}: frame number {number} repeats {first.name}")
    return [file for _, _, file in numbered], [number for number, _, _ in numbered]


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files in ``folder`` in frame order (see ``list_frames``)."""
    return list_frames(folder)[0]


@contextlib.contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """Capture what C decoders print on the process's stderr (file descriptor 2) while inside;
    the list receives the captured lines on exit. Nothing reaches the console. The descriptor is
    the process's: another thread writing to stderr in that instant (a decode takes about a
    millisecond) would be taken for the decoder; the readers write nothing from threads."""
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to capture or silence
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip())


def opencv_path(path: str | os.PathLike) -> str:
    """``path`` as the string OpenCV opens; a LandmarksError when it is not UTF-8 text (a name
    that is not UTF-8 reaches Python as surrogates, and OpenCV crashes the process on those)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LandmarksError(f"{ascii(text)[1:-1]}: the path is not UTF-8 text, which OpenCV cannot open; "
                             "rename it") from None
    return text


def decode_image(path: str | os.PathLike, where: str | None = None) -> np.ndarray:
    """One image file decoded as uint8 grey ``H×W`` or BGR ``H×W×3``; ``where`` names it in
    errors (default: the path). A decoder warning (a truncated JPEG still decodes, with grey
    rows) makes it a bad frame."""
    where = where or str(path)
    name = opencv_path(path)
    with _decoder_messages() as messages:
        try:
            image = cv2.imread(name, cv2.IMREAD_UNCHANGED)
        except cv2.error:
            image = None
    # libpng warns about ancillary chunks (a colour profile it dislikes: "iCCP: known incorrect
    # sRGB profile", common in PNGs saved by image editors) that do not touch the pixels; damaged
    # pixel data is a "libpng error" and no image
    messages = [line for line in messages if not line.startswith("libpng warning:")]
    if messages:
        raise LandmarksError(f"{where}: the image decodes with an error ({messages[0]})")
    return _as_uint8_image(image, where)


def _as_uint8_image(image: np.ndarray | None, where: str) -> np.ndarray:
    if image is None:
        raise LandmarksError(f"{where}: cannot decode the image (corrupt or not an image)")
    if image.dtype == np.uint16:  # 16-bit PNGs, TIFFs: keep the top 8 bits
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):  # HDR, PFM: nominal range 0..1
        image = np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.dtype != np.uint8:
        raise LandmarksError(f"{where}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise LandmarksError(f"{where}: unsupported image shape {image.shape}")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as uint8 grey ``H×W`` or BGR ``H×W×3`` (grey files stay grey)."""
    path = Path(path)
    if not path.is_file():
        raise LandmarksError(f"{path}: no such file")
    return decode_image(path)


class FrameSource:
    """A video file, a frame folder or one image; iterate for ``(frame_number, image)`` pairs.

    Frames are decoded lazily, so memory stays flat. ``len()`` is the number of frames (a video's
    container count), ``fps`` the frame rate (NaN for a folder or image opened without ``fps``),
    ``path`` the source path. Video frame numbers count from 0; a single image is frame 0.
    """

    #: A video may decode at most this many frames fewer than its container announces (counts in
    #: some containers are estimates); a larger shortfall means a truncated or corrupt file.
    COUNT_TOLERANCE = 1
    #: Consecutive frames whose timestamps lie further apart than this many frame durations have
    #: a frame missing between them (a variable frame rate varies far less).
    GAP_TOLERANCE = 1.5

    def __init__(self, path: str | os.PathLike, fps: float | None = None) -> None:
        self.path = Path(path)
        if self.path.is_dir() or is_image_file(self.path):
            self.is_video = False
            if self.path.is_dir():
                self.files, self.numbers = list_frames(self.path)
            elif self.path.is_file():
                self.files, self.numbers = [self.path], [0]
            else:
                raise LandmarksError(f"{self.path}: no such file or folder")
            self.fps = float(fps) if fps is not None else math.nan
            self._length = len(self.files)
        elif self.path.is_file():
            if self.path.suffix.lower() not in VIDEO_SUFFIXES:
                raise LandmarksError(
                    f"{self.path}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}), an image or a frame folder"
                )
            self.is_video = True
            capture = self._open_capture()
            try:
                count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
                video_fps = capture.get(cv2.CAP_PROP_FPS)
            finally:
                capture.release()
            if count <= 0:
                raise LandmarksError(f"{self.path}: the video has no frames (corrupt or empty)")
            self._length = count
            # the header's rate where it is plausible (NaN otherwise); the timestamps are read by it
            self._header_fps = float(video_fps) if 0 < video_fps <= MAX_FPS else math.nan
            self.fps = float(fps) if fps is not None else self._header_fps
        else:
            raise LandmarksError(f"{self.path}: no such file or folder")

    def _open_capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(opencv_path(self.path))
        if not capture.isOpened():
            capture.release()
            raise LandmarksError(f"{self.path}: cannot open the video (corrupt or unsupported)")
        return capture

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self._iter_video() if self.is_video else self._iter_folder()

    def _iter_folder(self) -> Iterator[tuple[int, np.ndarray]]:
        shape = None
        for number, file in zip(self.numbers, self.files):
            where = str(file) if file == self.path else f"{file} (frame {number})"
            image = decode_image(file, where)
            if shape is None:
                shape = image.shape[:2]
            elif image.shape[:2] != shape:
                raise LandmarksError(
                    f"{file}: frame {number} is {image.shape[1]}x{image.shape[0]}, "
                    f"the folder's first frame is {shape[1]}x{shape[0]}"
                )
            yield number, image

    def _iter_video(self) -> Iterator[tuple[int, np.ndarray]]:
        capture = self._open_capture()
        try:
            # a frame the container drops (an empty chunk) is skipped by the decoder: every later
            # frame would be renumbered silently; its timestamps show the gap
            rate = self._header_fps
            duration = 1000.0 / rate  # NaN for an unknown rate: no gap is ever found
            number, previous = 0, None
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                stamp = capture.get(cv2.CAP_PROP_POS_MSEC)
                if previous is not None and stamp - previous > self.GAP_TOLERANCE * duration:
                    raise LandmarksError(
                        f"{self.path}: a frame is missing after frame {number - 1} (the timestamps jump "
                        f"{stamp - previous:.0f} ms at {rate:g} frames/s), so the later frames would be "
                        "renumbered: re-encode the video")
                previous = stamp
                yield number, image
                number += 1
        finally:
            capture.release()
        if number < self._length - self.COUNT_TOLERANCE:
            raise LandmarksError(
                f"{self.path}: frame {number} cannot be decoded (the video announces "
                f"{self._length} frames: truncated or corrupt)"
            )

    def describe(self) -> str:
        return str(self.path)


def open_frames(path: str | os.PathLike, fps: float | None = None) -> FrameSource:
    """Open a video file (mp4, mov, avi, …), a frame folder or one image for streaming; see
    ``FrameSource``."""
    return FrameSource(path, fps=fps)


def read_frames(path: str | os.PathLike, positions: Sequence[int],
                numbers: Sequence[int] | None = None) -> list[np.ndarray]:
    """The frames at 0-based ``positions`` in the ordered sequence, in the order asked.

    ``numbers``: the frame numbers the caller expects there (a track's ``frame_index`` at those
    positions); a frame folder whose frame at a position has another number (a frame file removed
    or added since it was tracked) is an error naming the frame, never a silently shifted frame.
    Folders read the files directly; videos are decoded sequentially up to the last position
    asked (seeking is frame-inaccurate with many codecs, and exactness matters here).
    """
    source = open_frames(path)
    positions = [int(position) for position in positions]
    for position in positions:
        # a video's header may under-count its frames (the tracker reads them all): its range is
        # known once it is decoded
        if position < 0 or (not source.is_video and position >= len(source)):
            raise LandmarksError(f"{source.path}: frame position {position} is outside 0..{len(source) - 1}")
    if numbers is not None and not source.is_video:  # a video's frame number is its position
        for position, number in zip(positions, numbers, strict=True):
            if source.numbers[position] != int(number):
                raise LandmarksError(f"{source.path}: frame {int(number)} is no longer where it was tracked "
                                     "(frames were added or removed since): track it again")
    if not source.is_video:
        return [decode_image(source.files[position]) for position in positions]
    wanted = set(positions)
    found: dict[int, np.ndarray] = {}
    last, decoded = max(positions, default=-1), 0
    for position, (_, image) in enumerate(source):
        decoded = position + 1
        if position in wanted:
            found[position] = image
        if position >= last:
            break
    missing = wanted - found.keys()
    if missing:  # the video ended (one cut short is an error of the iteration itself)
        raise LandmarksError(f"{source.path}: frame position {min(missing)} is outside 0..{decoded - 1}")
    return [found[position] for position in positions]
