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
