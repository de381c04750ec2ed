"""The ``landmarks`` CLI end to end, its one-line errors, and the benchmark rows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmarks import LandmarkTrack
from landmarks.cli import main
from landmarks.render import shifted_photo_clip


def _video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> Path:
    shifts = np.zeros((6, 2))
    shifts[3:, 0] = 1.0
    return _video(tmp_path_factory.mktemp("videos") / "face.avi", shifted_photo_clip(shifts))


def _one_error_line(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("landmarks: error: ")
    for fragment in fragments:
        assert fragment in err[0]


def test_extract_then_show(tmp_path, face_video, capsys):
    out = tmp_path / "tracks" / "face.npz"
    assert main(["extract", str(face_video), "-o", str(out), "--quiet"]) == 0
    track = LandmarkTrack.load(out)
    assert track.points.shape == (6, 68, 2) and track.valid.all() and track.fps == 30.0
    picture = tmp_path / "frame3.png"
    assert main(["show", str(out), "--frame", "3", "-o", str(picture)]) == 0
    image = cv2.imread(str(picture))
    assert image.shape == (360, 640, 3)
    x, y = np.round(track.points[3, 30]).astype(int)  # nose tip drawn in green
    assert image[y, x, 1] > 200 and image[y, x, 0] < 80


def test_extract_several_inputs_into_a_folder(tmp_path, face_video):
    frames_dir = tmp_path / "EP01"
    frames_dir.mkdir()
    for k, frame in enumerate(shifted_photo_clip(np.zeros((3, 2)))):
        cv2.imwrite(str(frames_dir / f"img{k + 1}.jpg"), frame)
    out = tmp_path / "out"
    assert main(["extract", str(face_video), str(frames_dir), "-o", str(out), "--quiet", "--fps", "200"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["EP01.npz", "face.npz"]
    folder_track = LandmarkTrack.load(out / "EP01.npz")
    assert folder_track.frame_index.tolist() == [1, 2, 3] and folder_track.fps == 200.0


@pytest.mark.parametrize("problem", ["missing", "corrupt", "no_face", "empty_folder"])
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, capsys, problem):
    if problem == "missing":
        source = tmp_path / "absent.mp4"
    elif problem == "corrupt":
        source = tmp_path / "noise.mp4"
        source.write_bytes(bytes(range(256)) * 20)
    elif problem == "no_face":
        source = _video(tmp_path / "wall.avi", [np.full((120, 160, 3), 90, np.uint8)] * 4)
    else:
        source = tmp_path / "frames"
        source.mkdir()
    out = tmp_path / "result.npz"
    assert main(["extract", str(source), "-o", str(out), "--quiet"]) == 2
    _one_error_line(capsys, source.name)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_show_errors(tmp_path, face_video, capsys):
    out = tmp_path / "face.npz"
    assert main(["extract", str(face_video), "-o", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["show", str(out), "--frame", "99", "-o", str(tmp_path / "x.png")]) == 2
    _one_error_line(capsys, "frame 99")
    assert not (tmp_path / "x.png").exists()
    assert main(["show", str(tmp_path / "none.npz"), "--frame", "0", "-o", str(tmp_path / "x.png")]) == 2
    _one_error_line(capsys, "none.npz")


@pytest.mark.slow
def test_installed_command_with_a_process_pool(tmp_path, face_video):
    command = shutil.which("landmarks") or str(Path(sys.executable).parent / "landmarks")
    second = tmp_path / "again.avi"
    shutil.copy(face_video, second)
    out = tmp_path / "out"
    done = subprocess.run(
        [command, "extract", str(face_video), str(second), "-o", str(out), "--jobs", "2", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["again.npz", "face.npz"]
    failed = subprocess.run(
        [command, "extract", str(tmp_path / "absent.mov"), "-o", str(tmp_path / "x.npz")],
        capture_output=True, text=True, timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"landmarks: error: {tmp_path / 'absent.mov'}: no such file or folder"]


def test_bench_rows_on_a_rendered_clip():
    from landmarks.bench import bench_landmarks

    rows = bench_landmarks(None, frames=12)
    names = [name for name, _, _ in rows]
    for expected in ("naive detect+predict", "tracker", "tracker re-detections", "jitter naive", "jitter tracker"):
        assert expected in names
    values = {name: value for name, value, _ in rows}
    assert all(np.isfinite(value) for value in values.values())
    assert values["tracker valid fraction"] == 1.0
    assert values["tracker mean-displacement error"] < 0.5


def test_a_rerun_keeps_finished_outputs_and_overwrite_redoes_them(tmp_path, face_video):
    out = tmp_path / "out"
    second = tmp_path / "second.avi"
    shutil.copy(face_video, second)
    assert main(["extract", str(face_video), "-o", str(out / "face.npz"), "--quiet"]) == 0
    finished = (out / "face.npz").stat()
    # an interrupted run over both inputs resumes: the finished track is kept, the other is made
    assert main(["extract", str(face_video), str(second), "-o", str(out), "--quiet"]) == 0
    kept = (out / "face.npz").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns)
    assert LandmarkTrack.load(out / "second.npz").points.shape == (6, 68, 2)
    assert main(["extract", str(face_video), "-o", str(out / "face.npz"), "--quiet", "--overwrite"]) == 0
    assert (out / "face.npz").stat().st_ino != finished.st_ino  # atomic writes: a new file
