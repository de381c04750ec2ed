"""geomer.atomic: a destination is complete or untouched, never half-written."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest

from geomer.atomic import atomic_path, atomic_save_npy, atomic_torch_save, atomic_write_text
from geomer.errors import GeomerError


def test_text_and_npy_round_trip_under_their_own_names(tmp_path):
    atomic_write_text(tmp_path / "deep" / "a.json", '{"x": 1}\n')
    atomic_save_npy(tmp_path / "r.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert (tmp_path / "deep" / "a.json").read_text() == '{"x": 1}\n'
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), np.arange(6).reshape(2, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "r.npy"]  # no temp files left


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_written_files_get_the_usual_permissions_not_private_ones(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(mask)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")  # like a real full disk: no file named


def test_a_full_disk_is_one_line_naming_the_file_and_loses_nothing(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(GeomerError, match=rf"^{re.escape(str(target))}: cannot write it \(No space left on device\)$"):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            _full_disk()
    monkeypatch.setattr(os, "replace", _full_disk)  # the rename itself failing
    with pytest.raises(GeomerError, match=re.escape(str(target))):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_folder_standing_at_the_destination_is_named(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(GeomerError, match=rf"^{re.escape(str(tmp_path / 'out'))}: is a directory"):
        atomic_write_text(tmp_path / "out", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("message", [
    "[enforce fail at inline_container.cc:672] . unexpected pos 120128 vs 120000",  # writing a record
    "basic_ios::clear: iostream error",  # closing the archive (measured on a 1 MB tmpfs)
])
def test_torch_save_failing_mid_write_is_one_line_naming_the_file(tmp_path, monkeypatch, message):
    import torch

    def torch_save_on_a_full_disk(payload, path):
        Path(path).write_bytes(b"PK half a zip")
        raise RuntimeError(message)

    target = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    with pytest.raises(GeomerError, match=rf"^{re.escape(str(target))}: cannot write it"):
        atomic_torch_save(target, {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_torch_save_failing_for_another_reason_keeps_its_own_error(tmp_path, monkeypatch):
    import torch

    def torch_save_with_a_bug(payload, path):
        raise RuntimeError("cannot pickle this object")

    monkeypatch.setattr(torch, "save", torch_save_with_a_bug)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save(tmp_path / "checkpoint.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []
