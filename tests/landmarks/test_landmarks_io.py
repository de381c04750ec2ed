"""Readers: OpenCV-written videos, frame folders created in shuffled order, and every bad input."""

from __future__ import annotations

import random
import types

import cv2
import numpy as np
import pytest

from landmarks import LandmarksError, open_frames, read_frames
from landmarks.io import frame_number, list_frame_files, read_image


def _pattern(k: int, size=(64, 48)) -> np.ndarray:
    """A frame whose brightness encodes k (survives lossy codecs)."""
    width, height = size
    frame = np.full((height, width, 3), 10 + 6 * k, np.uint8)
    frame[:, : width // 2, 2] = 200  # some colour, so colour is checked too
    return frame


def _write_video(path, count: int, fourcc: str, fps: float = 25.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert writer.isOpened()
    for k in range(count):
        writer.write(_pattern(k))
    writer.release()


@pytest.mark.parametrize("name, fourcc", [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")])
def test_video_streams_every_frame_in_order(tmp_path, name, fourcc):
    path = tmp_path / name
    _write_video(path, 30, fourcc, fps=25.0)
    source = open_frames(path)
    assert len(source) == 30
    assert source.fps == pytest.approx(25.0)
    frames = iter(source)
    assert isinstance(frames, types.GeneratorType)  # streamed, not loaded
    numbers, levels = [], []
    for number, image in frames:
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        numbers.append(number)
        levels.append(float(image[:, 40:, 1].mean()))
    assert numbers == list(range(30))
    np.testing.assert_allclose(levels, [10 + 6 * k for k in range(30)], atol=4)
    picked = read_frames(path, [17, 3, 17])
    assert [abs(float(p[:, 40:, 1].mean()) - (10 + 6 * k)) < 4 for p, k in zip(picked, [17, 3, 17])] == [True] * 3


def test_folder_ordered_by_number_not_listing(tmp_path):
    numbers = list(range(1, 13))
    random.Random(3).shuffle(numbers)  # created (and listed by the OS) in shuffled order
    for n in numbers:
        cv2.imwrite(str(tmp_path / f"img{n}.png"), _pattern(n))
    (tmp_path / "notes.txt").write_text("not a frame")
    files = list_frame_files(tmp_path)
    assert [f.name for f in files][:3] == ["img1.png", "img2.png", "img3.png"]
    assert files[-1].name == "img12.png"
    source = open_frames(tmp_path, fps=200)
    assert len(source) == 12 and source.fps == 200
    got = [(number, int(image[0, 40, 1])) for number, image in source]
    assert got == [(n, 10 + 6 * n) for n in range(1, 13)]
    (second,) = read_frames(tmp_path, [1])
    assert int(second[0, 40, 1]) == 10 + 6 * 2
    assert int(read_frames(tmp_path, [1], numbers=[2])[0][0, 40, 1]) == 10 + 6 * 2
    with pytest.raises(LandmarksError, match="frame 3 is no longer where it was tracked"):
        read_frames(tmp_path, [1], numbers=[3])  # a track made before frame 2 was removed


def test_folder_fps_unknown_without_setting(tmp_path):
    cv2.imwrite(str(tmp_path / "a1.png"), _pattern(1))
    assert np.isnan(open_frames(tmp_path).fps)


def test_grey_frames_stay_grey(tmp_path):
    for n in (5, 40):
        cv2.imwrite(str(tmp_path / f"006_{n:05d}.jpg"), np.full((30, 20), 7 * n % 255, np.uint8))
    frames = list(open_frames(tmp_path))
    assert [number for number, _ in frames] == [5, 40]
    assert all(image.shape == (30, 20) for _, image in frames)


@pytest.mark.parametrize(
    "name, number", [("img46.jpg", 46), ("006_05562.jpg", 5562), ("image0001.bmp", 1), ("reg_img10.png", 10)]
)
def test_frame_number(name, number):
    assert frame_number(name) == number


def test_missing_path(tmp_path):
    with pytest.raises(LandmarksError, match="nothere.mp4"):
        open_frames(tmp_path / "nothere.mp4")


def test_empty_folder_and_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LandmarksError, match="empty.*no image files"):
        open_frames(empty)
    other = tmp_path / "docs"
    other.mkdir()
    (other / "readme.txt").write_text("x")
    with pytest.raises(LandmarksError, match="docs.*no image files"):
        open_frames(other)


def test_image_without_number_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "img1.png"), _pattern(1))
    cv2.imwrite(str(tmp_path / "cover.png"), _pattern(2))
    with pytest.raises(LandmarksError, match="cover.png"):
        open_frames(tmp_path)


def test_corrupt_video_is_named(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(LandmarksError, match="broken.mp4"):
        list(open_frames(path))


def test_truncated_video_names_file_and_frame(tmp_path):
    path = tmp_path / "cut.avi"
    _write_video(path, 40, "MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LandmarksError, match=r"cut.avi: frame \d+ cannot be decoded"):
        list(open_frames(path))


def test_frames_of_different_sizes_name_the_frame(tmp_path):
    cv2.imwrite(str(tmp_path / "f1.png"), _pattern(1))
    cv2.imwrite(str(tmp_path / "f2.png"), _pattern(2, size=(32, 48)))
    with pytest.raises(LandmarksError, match="f2.png: frame 2 is 32x48"):
        list(open_frames(tmp_path))


@pytest.mark.parametrize("name", [b"frame1\xff.png", b"clip\xff.avi"])
def test_a_path_that_is_not_utf8_is_one_line_not_a_crash(tmp_path, name):
    # OpenCV crashes the process on a path Python holds with surrogates (a name that is not UTF-8)
    import os

    if name.endswith(b".png"):
        cv2.imwrite(str(tmp_path / "frame1.png"), _pattern(1))
        (tmp_path / "frame1.png").rename(tmp_path / os.fsdecode(name))
    else:
        _write_video(tmp_path / "clip.avi", 3, "MJPG")
        (tmp_path / "clip.avi").rename(tmp_path / os.fsdecode(name))
    with pytest.raises(LandmarksError, match=r"\\udcff\.(png|avi): the path is not UTF-8 text, which OpenCV cannot open"):
        read_frames(tmp_path / os.fsdecode(name), [0]) if name.endswith(b".avi") else read_image(tmp_path / os.fsdecode(name))


def test_a_video_whose_header_gives_an_absurd_frame_rate_has_an_unknown_rate(tmp_path):
    # a rate of 4e9 frames/s would stretch every time-based window (the apex smoothing) absurdly
    import math
    import struct

    _write_video(tmp_path / "clip.avi", 3, "MJPG")
    data = bytearray((tmp_path / "clip.avi").read_bytes())
    struct.pack_into("<II", data, data.find(b"strh") + 28, 1, 4_000_000_000)  # dwScale, dwRate
    (tmp_path / "absurd.avi").write_bytes(bytes(data))
    assert open_frames(tmp_path / "clip.avi").fps == 25.0
    assert math.isnan(open_frames(tmp_path / "absurd.avi").fps)
    assert len(open_frames(tmp_path / "absurd.avi")) == 3


def test_a_frame_the_video_drops_is_an_error_not_a_renumbering(tmp_path):
    # an AVI whose 5th frame chunk is empty (a "dropped frame"): the decoder skips it, and every
    # later frame would silently take its predecessor's number
    import struct

    _write_video(tmp_path / "clip.avi", 10, "MJPG")
    data = (tmp_path / "clip.avi").read_bytes()
    movi, index = data.find(b"movi") + 4, data.find(b"idx1")
    chunks, at = [], movi
    while at < index:
        size = struct.unpack_from("<I", data, at + 4)[0]
        chunks.append(data[at + 8:at + 8 + size])
        at += 8 + size + (size & 1)
    chunks[4] = b""
    body, entries, offset = b"", b"", 4
    for payload in chunks:
        entries += b"00dc" + struct.pack("<III", 0x10, offset, len(payload))
        chunk = b"00dc" + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)
        body, offset = body + chunk, offset + len(chunk)
    riff = (b"AVI " + data[12:data.find(b"movi") - 8] + b"LIST" + struct.pack("<I", 4 + len(body)) + b"movi" + body
            + b"idx1" + struct.pack("<I", len(entries)) + entries)
    (tmp_path / "dropped.avi").write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    assert len(list(open_frames(tmp_path / "clip.avi"))) == 10
    with pytest.raises(LandmarksError, match=r"dropped.avi: a frame is missing after frame 3 \(the timestamps jump 80 ms"):
        list(open_frames(tmp_path / "dropped.avi"))


def test_a_video_whose_header_under_counts_its_frames_reads_them_all(tmp_path):
    # the tracker reads every frame the video holds; reading one back must not stop at the count
    # the header announces (show and predict said "position 7 is outside 0..2")
    import struct

    _write_video(tmp_path / "clip.avi", 10, "MJPG")
    data = bytearray((tmp_path / "clip.avi").read_bytes())
    struct.pack_into("<I", data, data.find(b"avih") + 24, 3)  # dwTotalFrames
    struct.pack_into("<I", data, data.find(b"strh") + 40, 3)  # the stream's dwLength
    (tmp_path / "fewer.avi").write_bytes(bytes(data))
    assert len(open_frames(tmp_path / "fewer.avi")) == 3
    np.testing.assert_array_equal(read_frames(tmp_path / "fewer.avi", [7])[0], read_frames(tmp_path / "clip.avi", [7])[0])
    with pytest.raises(LandmarksError, match=r"fewer.avi: frame position 12 is outside 0..9"):
        read_frames(tmp_path / "fewer.avi", [12])


def test_not_a_video_suffix(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b")
    with pytest.raises(LandmarksError, match="table.csv: not a video"):
        open_frames(path)


def test_read_frames_position_out_of_range(tmp_path):
    cv2.imwrite(str(tmp_path / "f1.png"), _pattern(1))
    with pytest.raises(LandmarksError, match="position 3"):
        read_frames(tmp_path, [3])


def test_folder_without_numbers_is_read_in_natural_order(tmp_path):
    names = ["right.png", "left-up.png", "Left.png", "front.png"]
    for k, name in enumerate(names):
        cv2.imwrite(str(tmp_path / name), _pattern(k))
    source = open_frames(tmp_path)
    frames = list(source)
    assert [file.name for file in source.files] == ["front.png", "Left.png", "left-up.png", "right.png"]
    assert [number for number, _ in frames] == [0, 1, 2, 3]
    assert [int(image[0, -1, 0]) for _, image in frames] == [10 + 6 * 3, 10 + 6 * 2, 10 + 6 * 1, 10]


def test_a_single_image_is_a_one_frame_source(tmp_path):
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), _pattern(5))
    source = open_frames(path)
    assert len(source) == 1 and not source.is_video
    ((number, image),) = list(source)
    assert number == 0 and image.shape == (48, 64, 3)
    assert read_frames(path, [0])[0].shape == (48, 64, 3)


@pytest.mark.parametrize("suffix", [".ppm", ".pgm", ".tif", ".tiff", ".webp", ".png", ".bmp", ".jpg", ".jp2", ".pnm", ".sr", ".ras", ".hdr"])
def test_still_image_formats_opencv_reads(tmp_path, suffix):
    frame = _pattern(3)
    if suffix == ".pgm":
        frame = frame[:, :, 1]
    if suffix == ".hdr":  # a float format: values 0..1
        frame = frame.astype(np.float32) / 255.0
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in (2, 1):
        assert cv2.imwrite(str(folder / f"img{k}{suffix}"), frame)
    frames = list(open_frames(folder))
    assert [number for number, _ in frames] == [1, 2]
    image = frames[0][1]
    assert image.dtype == np.uint8 and image.shape[:2] == (48, 64)
    assert abs(int(image[0, -1].max()) - 28) <= 3  # the pattern's brightness survives (lossy codecs ±3)
    assert open_frames(folder / f"img1{suffix}").files == [folder / f"img1{suffix}"]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_frame_is_a_bad_frame_and_the_decoder_says_nothing(tmp_path, capfd, suffix):
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        cv2.imwrite(str(tmp_path / f"img{k}{suffix}"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    damaged = tmp_path / f"img2{suffix}"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    capfd.readouterr()
    with pytest.raises(LandmarksError) as error:
        list(open_frames(tmp_path))
    message = str(error.value)
    assert "\n" not in message and f"img2{suffix}" in message and "frame 2" in message
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # libjpeg / libpng printed nothing


def test_a_png_whose_colour_profile_libpng_warns_about_is_read(tmp_path, capfd):
    import struct
    import zlib

    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = cv2.imencode(".png", image)[1].tobytes()
    body = b"ICC Profile\0\0" + zlib.compress(b"\0" * 132)  # a profile libpng finds too short
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    after_header = 8 + 8 + 13 + 4  # signature, IHDR (length, type, 13 bytes, CRC)
    path = tmp_path / "profiled.png"
    path.write_bytes(data[:after_header] + chunk + data[after_header:])
    np.testing.assert_array_equal(read_image(path), image)  # the pixels are untouched by the warning
    assert capfd.readouterr().err == ""
