"""`geomer bench ENTRY` runs the library's measurements and prints one row per figure."""

from __future__ import annotations

import re

import pytest

from geomer.cli import main
from geomer.cli.bench import MAX_FRAMES

ROW = re.compile(r"^(?P<what>.+?)\s+(?P<value>-?\d+\.\d\d)\s+(?P<unit>\S+)$")


def _rows(text: str) -> dict[str, tuple[float, str]]:
    rows = {}
    for line in text.strip().splitlines():
        match = ROW.match(line)
        assert match, f"not a bench row: {line!r}"
        rows[match["what"].strip()] = (float(match["value"]), match["unit"])
    return rows


def test_bench_features_prints_positive_times_per_pair_and_clip(capsys):
    assert main(["bench", "features", "--repeats", "1"]) == 0
    rows = _rows(capsys.readouterr().out)
    per_pair = [value for what, (value, unit) in rows.items() if unit == "ms/pair"]
    per_clip = [value for what, (value, unit) in rows.items() if unit == "ms/clip"]
    assert len(per_pair) >= 2 and len(per_clip) >= 1
    assert all(value > 0 for value in per_pair + per_clip)


def test_bench_landmarks_on_a_rendered_clip_reports_both_pipelines(capsys):
    assert main(["bench", "landmarks", "--frames", "8"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["tracker"][1] == "frames/s" and rows["tracker"][0] > 0
    assert rows["naive detect+predict"][0] > 0
    # the rendered clip moves by known sub-pixel shifts: the tracker must recover them
    assert rows["tracker mean-displacement error"][0] < 0.5


def test_bench_synth_renders_frames(capsys):
    assert main(["bench", "synth", "--frames", "4"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert any(unit == "frames/s" and value > 0 for value, unit in rows.values())


def test_bench_needs_an_entry(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("argv, message", [
    (["landmarks", "--frames", "0"], "must be at least 1"), (["synth", "--frames", "-1"], "must be at least 1"),
    (["features", "--repeats", "0"], "must be at least 1"), (["pretrain", "--steps", "0"], "must be at least 1"),
    (["landmarks", "--frames", str(10**12)], "must be at most"), (["synth", "--frames", str(10**12)], "must be at most"),
    (["synth", "--frames", str(MAX_FRAMES + 1)], "must be at most"), (["train", "--jobs", "0"], "must be at least 1"),
])
def test_bench_counts_out_of_range_are_one_line_errors(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_train_on_cuda_without_a_gpu_is_a_one_line_error(capsys):
    assert main(["bench", "train", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no CUDA device" in err


@pytest.mark.parametrize("device, labels", [("cpu", ["2 CPU processes"]), ("cuda", ["GPU"]),
                                            ("auto", ["2 CPU processes", "GPU"])])
def test_bench_train_times_the_devices_asked_for(device, labels, monkeypatch):
    import geomer.train.bench as bench

    timed = []
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    monkeypatch.setattr(bench, "composite_graphs", lambda settings: [])
    monkeypatch.setattr(bench, "_timed_rows", lambda graphs, config, settings, label: timed.append(
        (label, config.device)) or [])
    bench.bench_train("dere-grl", device=device)
    assert [label for label, _ in timed] == labels
    assert [config_device for _, config_device in timed] == ["cuda" if label == "GPU" else "cpu" for label in labels]


def test_bench_landmarks_on_a_video_without_a_face_names_the_video(tmp_path, capsys):
    import cv2
    import numpy as np

    video = tmp_path / "noface.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for value in range(0, 200, 40):
        writer.write(np.full((120, 160, 3), value, np.uint8))
    writer.release()
    assert main(["bench", "landmarks", str(video), "--frames", "5"]) == 2
    assert f"{video}: no face found in any of its 5 frames" in capsys.readouterr().err

