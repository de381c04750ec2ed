"""geomer.atomic: a destination is complete or untouched, never half-written."""

from __future__ import annotations

import numpy as np
import pytest

from geomer.atomic import atomic_path, atomic_save_npy, atomic_write_text


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
