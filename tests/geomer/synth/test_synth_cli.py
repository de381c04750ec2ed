"""``geomer synth`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

from geomer.cli import main


def test_synth_command_writes_a_tiny_dataset(tmp_path, capsys):
    out = tmp_path / "tiny"
    status = main(["synth", str(out), "--subjects", "2", "--clips", "2", "--fps", "40", "--seed", "5",
                   "--difficulty", "easy", "--quiet"])
    assert status == 0
    truth = json.loads((out / "ground_truth.json").read_text())
    assert (truth["seed"], truth["fps"], truth["difficulty"], len(truth["clips"])) == (5, 40, "easy", 4)
    assert list(out.glob("CASME2-coding-*.xlsx"))
    assert "wrote casme2 dataset" in capsys.readouterr().out


def test_synth_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--subjects", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--subjects" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_installed_command_rejects_an_unknown_layout(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "geomer.cli", "synth", str(tmp_path / "x"), "--layout", "smic"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_a_killed_runs_temp_folder_is_removed_by_the_next_run(tmp_path):
    # a pid that has exited stands for a killed run; a running process's folder must stay
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f"data.tmp-{dead_pid}"
        live = tmp_path / f"data.tmp-{alive.pid}"
        other = tmp_path / f"other.tmp-{dead_pid}"
        for folder in (stale, live, other):
            (folder / "sub01").mkdir(parents=True)
        assert main(["synth", str(tmp_path / "data"), "--subjects", "1", "--clips", "1", "--fps", "40",
                     "--quiet"]) == 0
        assert not stale.exists()
        assert live.is_dir() and other.is_dir()
    finally:
        alive.kill()
        alive.wait()


def test_unusable_output_folders_are_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib

    generate_module = importlib.import_module("geomer.synth.generate")  # the package re-exports generate()

    def no_work(*args, **kwargs):
        raise AssertionError("rendering started before the output was checked")

    monkeypatch.setattr(generate_module, "texture_face", no_work)
    a_file = tmp_path / "taken"
    a_file.write_text("")
    full = tmp_path / "full"
    (full / "x").mkdir(parents=True)
    cases = (
        (a_file, "not a directory"),
        (a_file / "data", "cannot create"),
        (tmp_path / ("n" * 250), "too long"),
        (tmp_path / ("n" * 300), "too long"),
        (full, "not empty"),
    )
    for out, message in cases:
        assert main(["synth", str(out), "--subjects", "1", "--clips", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err and str(out) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "taken"]


def test_sigterm_ends_synth_like_ctrl_c_and_leaves_no_temp_folder(tmp_path):
    import os
    import signal
    import time
    from pathlib import Path

    out = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "geomer.cli", "synth", str(out), "--subjects", "6", "--clips", "6", "--quiet"],
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    deadline = time.monotonic() + 60
    # the temp folder appears once rendering has started
    while not list(tmp_path.glob("data.tmp-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "synth ended before the signal"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["geomer synth: terminated"]
    assert list(tmp_path.iterdir()) == []
