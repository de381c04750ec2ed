"""``geomer train --protocol holdout-dataset`` end to end on the synthetic composite layout."""

from __future__ import annotations

import json

import pytest

from geomer.cli import main
from geomer.synth.generate import generate

SMALL = ["--set", "hidden=8", "--set", "actions=2", "--set", "layers=2", "--set", "embedding=16"]


@pytest.fixture(scope="module")
def composite_root(tmp_path_factory):
    # three subjects: one per part of the composite (casme2, samm, smic)
    return generate(tmp_path_factory.mktemp("syn") / "flow", layout="megc2019-flow", subjects=3,
                    clips=2, seed=4, progress=False)


@pytest.mark.slow
def test_holdout_dataset_trains_one_fold_per_dataset_and_pools(composite_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    status = main(["train", "--model", "dere-grl", "--dataset", "megc2019-flow", "--root", str(composite_root),
                   "--protocol", "holdout-dataset", "--epochs", "1", "--seeds", "0", "--batch-size", "4",
                   "--out", str(out), "--quiet", *SMALL])
    assert status == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["protocol"] == "holdout-dataset" and config["folds"] == ["casme2", "samm", "smic"]
    assert sorted(p.name for p in (out / "seed-0").iterdir() if p.is_dir()) == ["casme2", "samm", "smic"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["leaky"] is False
    assert set(metrics["per_dataset"]) == {"casme2", "samm", "smic"}


def test_holdout_dataset_on_a_single_dataset_is_one_line_before_writes(tmp_path, monkeypatch, capsys):
    root = generate(tmp_path / "c2", layout="casme2", subjects=2, clips=1, seed=1, progress=False)
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(root),
                   "--protocol", "holdout-dataset", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "not a composite" in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_loso_on_a_single_subject_is_one_line_before_any_extraction_or_write(tmp_path, monkeypatch, capsys):
    root = generate(tmp_path / "one", layout="casme2", subjects=1, clips=2, seed=1, progress=False)
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(root),
                   "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "no training samples" in err and "of 1" in err
    assert not out.exists() and not (tmp_path / "cache").exists()
