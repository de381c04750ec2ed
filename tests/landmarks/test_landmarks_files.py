"""The shared file helpers: input fingerprints and output checks that create nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from landmarks.errors import LandmarksError
from landmarks.files import check_output_file, check_output_folder, fingerprint


def test_fingerprint_changes_with_size_time_and_presence(tmp_path):
    frame = tmp_path / "img1.jpg"
    frame.write_bytes(b"abc")
    first = fingerprint([frame, tmp_path / "img2.jpg"])
    assert fingerprint([frame, tmp_path / "img2.jpg"]) == first
    (tmp_path / "img2.jpg").write_bytes(b"x")  # a missing file appears
    second = fingerprint([frame, tmp_path / "img2.jpg"])
    assert second != first
    os.utime(frame, ns=(1, 1))
    assert fingerprint([frame, tmp_path / "img2.jpg"]) != second


def test_output_checks_refuse_with_one_line_and_create_nothing(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_output_file(tmp_path / "face.npz") == tmp_path / "face.npz"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # the write probes are gone
    with pytest.raises(LandmarksError, match="not a directory; choose another -o"):
        check_output_folder(blocker, "-o")
    with pytest.raises(ValueError, match="cannot create it"):
        check_output_folder(blocker / "sub", error=ValueError)
    with pytest.raises(LandmarksError, match="file name too long"):
        check_output_file(tmp_path / ("x" * 300 + ".npz"))
    with pytest.raises(LandmarksError, match="is a folder"):
        check_output_file(tmp_path)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")
def test_a_folder_the_system_refuses_is_refused_even_to_root():
    # root passes os.access everywhere, but /sys takes no new files nor folders: only a real try
    # finds that out before the work
    with pytest.raises(LandmarksError, match=r"^/sys/kernel/tracks: cannot write in /sys/kernel \("):
        check_output_folder("/sys/kernel/tracks")
    with pytest.raises(LandmarksError, match=r"^/sys: cannot write in it \("):
        check_output_file("/sys/face.npz")
    assert not Path("/sys/kernel/tracks").exists() and not Path("/sys/face.npz").exists()
