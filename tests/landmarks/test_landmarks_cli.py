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
from landmarks.errors import LandmarksError
from landmarks.render import photo_face, shifted_photo_clip


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


@pytest.mark.parametrize("problem", ["missing", "corrupt", "no_face", "empty_folder", "tiny_image", "huge_frame_number"])
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, capsys, problem):
    if problem == "missing":
        source = tmp_path / "absent.mp4"
    elif problem == "corrupt":
        source = tmp_path / "noise.mp4"
        source.write_bytes(bytes(range(256)) * 20)
    elif problem == "no_face":
        source = _video(tmp_path / "wall.avi", [np.full((120, 160, 3), 90, np.uint8)] * 4)
    elif problem == "tiny_image":  # too small for dlib's CNN detector, the last retry
        source = tmp_path / "dot.png"
        cv2.imwrite(str(source), np.full((4, 4), 90, np.uint8))
    elif problem == "huge_frame_number":  # beyond the int64 a track stores
        source = tmp_path / "frames"
        source.mkdir()
        cv2.imwrite(str(source / f"img{2**64}.png"), shifted_photo_clip(np.zeros((1, 2)))[0])
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
    # a video where the track is expected: named as no track, not numpy's allow_pickle advice
    assert main(["show", str(face_video), "--frame", "3", "-o", str(tmp_path / "x.png")]) == 2
    _one_error_line(capsys, f"{face_video}: not a landmark track")
    assert not (tmp_path / "x.png").exists()


def test_show_refuses_a_frame_folder_changed_since_it_was_tracked(tmp_path, capsys):
    folder = tmp_path / "clip"
    folder.mkdir()
    shifts = np.zeros((6, 2))
    for number, frame in enumerate(shifted_photo_clip(shifts), start=10):
        cv2.imwrite(str(folder / f"img{number}.png"), frame)
    out = tmp_path / "clip.npz"
    assert main(["extract", str(folder), "-o", str(out), "--quiet"]) == 0
    (folder / "img11.png").unlink()  # every later frame moves up one position
    capsys.readouterr()
    assert main(["show", str(out), "--frame", "10", "-o", str(tmp_path / "x.png")]) == 2
    _one_error_line(capsys, "has changed since it was tracked")  # the input fingerprint extract recorded
    # a track that records no fingerprint (geomer's cache writes none): frames are read by number
    track = LandmarkTrack.load(out)
    LandmarkTrack(points=track.points, valid=track.valid, frame_index=track.frame_index, box=track.box,
                  fps=track.fps, source=track.source, backend=track.backend).save(out)
    assert main(["show", str(out), "--frame", "13", "-o", str(tmp_path / "x.png")]) == 2
    _one_error_line(capsys, "frame 13 is no longer where it was tracked")
    assert not (tmp_path / "x.png").exists()
    assert main(["show", str(out), "--frame", "10", "-o", str(tmp_path / "x.png")]) == 0  # before the gap


def test_show_on_a_full_disk_names_the_picture_and_leaves_nothing(tmp_path, face_video, capsys, monkeypatch):
    import errno

    track = tmp_path / "face.npz"
    assert main(["extract", str(face_video), "-o", str(track), "--quiet"]) == 0

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a real full disk: no file named

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    picture = tmp_path / "pictures" / "frame3.png"
    capsys.readouterr()
    assert main(["show", str(track), "--frame", "3", "-o", str(picture)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"landmarks: error: {picture}: cannot write (No space left on device)"]
    assert list(picture.parent.iterdir()) == []


def test_a_worker_that_died_is_one_line(tmp_path, face_video, monkeypatch, capsys):
    # what a pool reports when a worker or its fork server was killed (`kill -9`, out of memory)
    from concurrent.futures.process import BrokenProcessPool

    from landmarks import cli

    def killed(job):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(cli, "_extract_one", killed)
    assert main(["extract", str(face_video), "-o", str(tmp_path / "face.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landmarks: error: a worker process died")


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


def test_jitter_is_the_point_motion_the_face_motion_does_not_explain():
    """A rigidly translating point set has no jitter; independent noise of σ px per coordinate
    has a jitter of about σ·√π·√(67/68) (the norm of a 2-D Gaussian of σ√2 per axis, less the
    mean over the 68 points)."""
    from landmarks.bench import jitter

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, (68, 2))
    drift = np.cumsum(rng.normal(0, 2.0, (200, 2)), axis=0)
    moving = base[None] + drift[:, None, :]
    assert jitter(moving) == pytest.approx(0.0, abs=1e-9)
    sigma = 0.3
    noisy = moving + rng.normal(0, sigma, moving.shape)
    assert jitter(noisy) == pytest.approx(sigma * np.sqrt(np.pi) * np.sqrt(67 / 68), rel=0.03)
    valid = np.ones(200, bool)
    valid[1::2] = False  # no two consecutive valid frames
    assert np.isnan(jitter(noisy, valid))


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


def test_extract_a_single_image_then_show_it_from_another_folder(tmp_path, monkeypatch, capsys):
    rgb, _ = photo_face()
    (tmp_path / "data").mkdir()
    cv2.imwrite(str(tmp_path / "data" / "portrait.webp"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    monkeypatch.chdir(tmp_path / "data")
    assert main(["extract", "portrait.webp", "-o", "portrait.npz", "--quiet"]) == 0
    track = LandmarkTrack.load(tmp_path / "data" / "portrait.npz")
    assert len(track) == 1 and track.valid.all() and track.frame_index.tolist() == [0]
    assert track.source == str(tmp_path / "data" / "portrait.webp")  # absolute
    monkeypatch.chdir(tmp_path)
    assert main(["show", "data/portrait.npz", "--frame", "0", "-o", "drawn.png"]) == 0
    assert cv2.imread(str(tmp_path / "drawn.png")).shape == (512, 512, 3)


def _no_tracking(monkeypatch):
    """Make any tracking fail the test: the checks must come before the work."""
    import landmarks.tracker

    def refuse(*args, **kwargs):
        raise AssertionError("tracking started before the outputs and options were checked")

    monkeypatch.setattr(landmarks.tracker, "track", refuse)


@pytest.mark.parametrize("case", ["under_a_file", "file_for_a_folder", "name_too_long", "folder_for_a_file"])
def test_unusable_outputs_are_refused_before_tracking(tmp_path, face_video, capsys, monkeypatch, case):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    inputs = [str(face_video)]
    if case == "under_a_file":  # a read-only place: a folder cannot be made under a file
        out = blocker / "tracks" / "face.npz"
    elif case == "file_for_a_folder":  # several inputs need a folder, -o names a file
        inputs.append(str(face_video.parent))
        out = blocker
    elif case == "name_too_long":
        out = tmp_path / ("x" * 300 + ".npz")
    else:  # the output file's place is taken by a folder
        out = tmp_path / "tracks"
        (out / "face.npz").mkdir(parents=True)
    _no_tracking(monkeypatch)
    assert main(["extract", *inputs, "-o", str(out), "--quiet"]) == 2
    _one_error_line(capsys)
    assert blocker.read_text() == "x"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")
@pytest.mark.parametrize("several", [False, True])
def test_an_output_place_the_system_refuses_is_refused_before_tracking(tmp_path, face_video, capsys, monkeypatch,
                                                                     several):
    # /sys refuses new files even to root, for whom os.access says yes
    inputs = [str(face_video), str(tmp_path / "second.avi")] if several else [str(face_video)]
    shutil.copy(face_video, tmp_path / "second.avi")
    _no_tracking(monkeypatch)
    out = "/sys/kernel/landmarks-tracks" if several else "/sys/landmarks-face.npz"
    assert main(["extract", *inputs, "-o", out, "--quiet"]) == 2
    _one_error_line(capsys, "/sys", "cannot write")  # one line, not one per input


def test_several_inputs_refuse_an_output_named_like_a_file(tmp_path, face_video, capsys, monkeypatch):
    second = tmp_path / "second.avi"
    shutil.copy(face_video, second)
    with monkeypatch.context() as patch:
        _no_tracking(patch)
        assert main(["extract", str(face_video), str(second), "-o", str(tmp_path / "x.npz"), "--quiet"]) == 2
        _one_error_line(capsys, "x.npz", "several inputs need an output folder")
        assert not (tmp_path / "x.npz").exists()
    # an existing folder of that name is what the user asked for
    (tmp_path / "x.npz").mkdir()
    assert main(["extract", str(face_video), str(second), "-o", str(tmp_path / "x.npz"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "x.npz").iterdir()) == ["face.npz", "second.npz"]


def test_a_rerun_with_every_output_kept_prints_no_empty_progress_bar(tmp_path, face_video, capsys):
    second = tmp_path / "second.avi"
    shutil.copy(face_video, second)
    command = ["extract", str(face_video), str(second), "-o", str(tmp_path / "out")]
    assert main(command) == 0
    capsys.readouterr()
    assert main(command) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        "landmarks: kept 2 existing output(s); --overwrite re-extracts them"
    ]


@pytest.mark.parametrize("option", [["--jobs", "0"], ["--fps", "-5"], ["--smooth", "-3"], ["--smooth", "4"],
                                    ["--redetect-every", "0"], ["--min-valid-fraction", "1.5"], ["--fps", "nan"],
                                    ["--smooth", "99999999999"], ["--fps", "1e9"]])
def test_bad_option_values_are_refused_before_anything_is_written(tmp_path, face_video, capsys, monkeypatch, option):
    _no_tracking(monkeypatch)
    out = tmp_path / "new" / "face.npz"
    assert main(["extract", str(face_video), "-o", str(out), *option]) == 2
    _one_error_line(capsys, option[0])
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("kind", ["archive", "fifo"])
def test_an_output_that_is_no_track_is_never_replaced_unasked(tmp_path, face_video, capsys, kind):
    import os

    import numpy as np

    out = tmp_path / "mine.npz"
    if kind == "archive":
        np.savez(out, a=np.arange(3))  # the user's own archive under the output's name
    else:
        os.mkfifo(out)
    before = out.stat()
    assert main(["extract", str(face_video), "-o", str(out), "--quiet"]) == 2
    _one_error_line(capsys, "exists and is not a " + ("landmark track" if kind == "archive" else "regular file"))
    assert out.stat() == before


def test_show_draws_a_track_whose_points_lie_far_outside_the_frame(tmp_path, face_video, capsys):
    import numpy as np

    out = tmp_path / "face.npz"
    assert main(["extract", str(face_video), "-o", str(out), "--quiet"]) == 0
    arrays = dict(np.load(out))
    arrays["points"] = arrays["points"].copy()
    arrays["points"][0, 0] = [3e9, -3e9]  # finite, beyond OpenCV's 32-bit coordinates
    np.savez(tmp_path / "far.npz", **arrays)
    assert main(["show", str(tmp_path / "far.npz"), "--frame", str(int(arrays["frame_index"][0])),
                 "-o", str(tmp_path / "far.png")]) == 0
    assert (tmp_path / "far.png").stat().st_size > 0


def test_a_truncated_or_foreign_output_is_extracted_again(tmp_path, face_video, capsys):
    out = tmp_path / "face.npz"
    assert main(["extract", str(face_video), "-o", str(out), "--quiet"]) == 0
    good = out.read_bytes()
    out.write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    assert main(["extract", str(face_video), "-o", str(out), "--quiet"]) == 0
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "face.npz" in notice[0] and "extracting it again" in notice[0]
    assert LandmarkTrack.load(out).valid.all()
    # other options make another track: not kept either
    assert main(["extract", str(face_video), "-o", str(out), "--quiet", "--smooth", "3"]) == 0
    assert "other options" in capsys.readouterr().err
    assert '"smooth": 3' in LandmarkTrack.load(out).settings
    # the same command again keeps it
    before = out.stat().st_ino
    assert main(["extract", str(face_video), "-o", str(out), "--quiet", "--smooth", "3"]) == 0
    assert out.stat().st_ino == before


def test_debug_shows_the_traceback_of_an_input_error(tmp_path, capsys):
    wall = _video(tmp_path / "wall.avi", [np.full((120, 160, 3), 90, np.uint8)] * 3)
    out = tmp_path / "wall.npz"
    assert main(["extract", str(wall), "-o", str(out), "--quiet"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    # --debug after the command name or before it, as geomer takes it
    for command in (["extract", str(wall), "-o", str(out), "--quiet", "--debug"],
                    ["--debug", "extract", str(wall), "-o", str(out), "--quiet"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "no face found" in err, command


def test_debug_before_show_shows_the_traceback_and_exits_2(tmp_path, capsys):
    assert main(["--debug", "show", str(tmp_path / "none.npz"), "--frame", "0", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "LandmarksError" in err
    assert err.rstrip().splitlines()[-1].startswith("landmarks: error: ") and "none.npz" in err


def test_ctrl_c_exits_130_with_one_line(tmp_path, face_video, capsys, monkeypatch):
    import landmarks.tracker

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(landmarks.tracker, "track", interrupted)
    assert main(["extract", str(face_video), "-o", str(tmp_path / "face.npz"), "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["landmarks: interrupted"]
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_jpeg_frame_is_named_with_its_frame(tmp_path, capfd):
    frames = tmp_path / "EP01"
    frames.mkdir()
    for k, frame in enumerate(shifted_photo_clip(np.zeros((3, 2)))):
        cv2.imwrite(str(frames / f"img{k + 1}.jpg"), frame)
    data = (frames / "img2.jpg").read_bytes()
    (frames / "img2.jpg").write_bytes(data[: len(data) * 2 // 3])
    capfd.readouterr()
    assert main(["extract", str(frames), "-o", str(tmp_path / "EP01.npz"), "--quiet"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "img2.jpg" in err[0] and "frame 2" in err[0], err
    assert not (tmp_path / "EP01.npz").exists()


@pytest.mark.slow
def test_a_real_ctrl_c_during_extraction(tmp_path):
    import os
    import signal
    import time

    def as_a_terminal_would():
        # a shell's child starts with SIGINT delivered and at its default action; a test worker's
        # child inherits the worker's signal mask and dispositions, whatever ran there before
        os.setsid()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    # long enough (about 5 s of tracking) that the interrupt arrives before the clip is done
    long_video = _video(tmp_path / "long.avi", shifted_photo_clip(np.zeros((2400, 2))))
    process = subprocess.Popen(
        [sys.executable, "-m", "landmarks.cli", "extract", str(long_video), "-o", str(tmp_path / "long.npz")],
        stderr=subprocess.PIPE, preexec_fn=as_a_terminal_would,
    )
    seen = b""
    deadline = time.monotonic() + 60
    while b"frame/s" not in seen and time.monotonic() < deadline:  # the progress bar: tracking runs
        chunk = os.read(process.stderr.fileno(), 256)
        if not chunk:
            break
        seen += chunk
    assert process.poll() is None, f"extraction ended before the interrupt: {seen.decode()!r}"
    os.killpg(process.pid, signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    err = (seen + rest).decode()
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].endswith("landmarks: interrupted") and "Traceback" not in err
    assert not (tmp_path / "long.npz").exists()


def test_help_shows_no_empty_default(capsys):
    texts = {}
    for command in ("extract", "show"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        texts[command] = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in texts[command] and "(default: False)" not in texts[command], command
    assert "(default: dlib)" in texts["extract"]  # defaults worth saying are still said


def test_ctrl_c_while_the_parser_is_built_exits_130_with_one_line(capsys, monkeypatch):
    import landmarks.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(landmarks.cli, "_parser", interrupted)
    assert main(["extract", "x.mp4", "-o", "x.npz"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["landmarks: interrupted"]


def test_sigterm_exits_143_with_one_line(tmp_path, capsys, monkeypatch):
    import os
    import signal
    import time

    import landmarks.cli

    def terminated_while_working(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler's exception ends the sleep
        return 0

    monkeypatch.setattr(landmarks.cli, "_show", terminated_while_working)
    assert main(["show", str(tmp_path / "t.npz"), "--frame", "0", "-o", str(tmp_path / "f.png")]) == 143
    assert capsys.readouterr().err.strip().splitlines() == ["landmarks: terminated"]
