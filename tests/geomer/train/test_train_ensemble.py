"""``geomer ensemble``: members' fold probabilities averaged, then pooled like any run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from geomer.cli import main
from geomer.graph import FaceGraph
from geomer.rundir import RunDir, samples_fingerprint
from geomer.train.metrics import classification_metrics

CLASSES = ["negative", "positive", "surprise"]
GRAPH = FaceGraph("k7")
# two folds of three clips each, from two datasets; true labels
CLIPS = {"f1": [("casme2/s1/a", 0), ("casme2/s1/b", 1), ("casme2/s1/c", 2)],
         "f2": [("samm/s2/a", 0), ("samm/s2/b", 1), ("samm/s2/c", 2)]}


def member_probabilities(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {fold: rng.dirichlet(np.ones(3), size=len(clips)) for fold, clips in CLIPS.items()}


def write_run(path, probabilities: dict, *, model="m", leaky=False, classes=CLASSES, folds=("f1", "f2"),
              seeds=(0,), relation_value=0.0, occlusion_value=None, shift_samples=False):
    records = [(key, key.rsplit("/", 1)[0], key.split("/")[0], classes[label]) for clips in CLIPS.values()
               for key, label in clips]
    if shift_samples:
        records = records[::-1]
    run = RunDir(path)
    run.open({"model": model, "cfg": {}, "dataset": "d", "classes": list(classes),
              "component_names": list(GRAPH.component_names), "graph": GRAPH.to_record(),
              "seeds": list(seeds), "folds": list(folds), "leaky": leaky, "num_samples": 6,
              "samples": samples_fingerprint(records), "tested_samples": samples_fingerprint(sorted(records))})
    for seed in seeds:
        for fold in folds:
            clips = CLIPS[fold]
            out = run.fold(seed, fold)
            out.path.mkdir(parents=True)
            out.save_relations(np.full((len(clips), 7, 7), relation_value, np.float32))
            if occlusion_value is not None:
                out.save_relations(np.full((len(clips), 7, 7), occlusion_value, np.float32),
                                   kind="occlusion_relations")
            out.write_predictions([k for k, _ in clips], [k.rsplit("/", 1)[0] for k, _ in clips],
                                  [k.split("/")[0] for k, _ in clips], [label for _, label in clips],
                                  probabilities[fold], classes)
    return path


def test_ensemble_averages_probabilities_and_pools(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a, b = member_probabilities(rng), member_probabilities(rng)
    write_run(tmp_path / "a", a, model="dere-grl", relation_value=0.1)
    write_run(tmp_path / "b", b, model="ststnet", leaky=True, relation_value=0.3)
    out = tmp_path / "ens"
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert "ensemble on d: 6 clips, 2 folds" in capsys.readouterr().out

    truth = np.array([label for clips in CLIPS.values() for _, label in clips])
    # the probabilities as written (6 decimals), averaged, then the pooled UF1 by hand
    rounded = {f: np.round(p, 6) for f, p in a.items()}, {f: np.round(p, 6) for f, p in b.items()}
    mean = np.concatenate([(rounded[0][f] + rounded[1][f]) / 2 for f in CLIPS])
    expected = classification_metrics(truth, mean.argmax(1), 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "ensemble" and metrics["leaky"] is True  # a member is leaky
    assert metrics["uf1"] == pytest.approx(expected.uf1) and metrics["uar"] == pytest.approx(expected.uar)
    assert set(metrics["per_dataset"]) == {"casme2", "samm"}
    assert [m["model"] for m in metrics["members"]] == ["dere-grl", "ststnet"]
    member, ensemble = (json.loads((run / "config.json").read_text()) for run in (tmp_path / "a", out))
    assert ensemble["tested_samples"] == member["tested_samples"]  # so its pooling checks the clips too
    written = np.loadtxt(out / "seed-0" / "f1" / "predictions.csv", delimiter=",", skiprows=1,
                         usecols=(5, 6, 7))
    np.testing.assert_allclose(written, (rounded[0]["f1"] + rounded[1]["f1"]) / 2, atol=1e-6)
    np.testing.assert_allclose(np.load(out / "seed-0" / "f2" / "relations.npy"), 0.2, atol=1e-6)
    assert (out / "figures" / "confusion.png").is_file() and (out / "figures" / "relations.png").is_file()


def test_occlusion_relations_are_averaged_and_the_baseline_kept(tmp_path):
    rng = np.random.default_rng(4)
    write_run(tmp_path / "a", member_probabilities(rng), occlusion_value=0.1)
    write_run(tmp_path / "b", member_probabilities(rng), occlusion_value=0.3)
    baseline = rng.random((3, 7, 7)).astype(np.float32)
    RunDir(tmp_path / "a").save_relations(baseline, kind="baseline_relations")
    out = tmp_path / "ens"
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    for fold in CLIPS:
        np.testing.assert_allclose(np.load(out / "seed-0" / fold / "occlusion_relations.npy"), 0.2, atol=1e-6)
    per_class = np.load(out / "occlusion_relations.npy")
    assert per_class.shape == (3, 7, 7) and np.allclose(per_class, 0.2, atol=1e-6)
    np.testing.assert_array_equal(np.load(out / "baseline_relations.npy"), baseline)


def test_no_occlusion_relations_unless_every_member_has_them(tmp_path):
    rng = np.random.default_rng(5)
    write_run(tmp_path / "a", member_probabilities(rng), occlusion_value=0.1)
    write_run(tmp_path / "b", member_probabilities(rng))
    out = tmp_path / "ens"
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert not list(out.rglob("occlusion_relations.npy"))


@pytest.mark.parametrize("damage", ["order", "label"])
def test_a_fold_whose_clips_or_labels_differ_is_refused_before_writes(tmp_path, capsys, damage):
    """The configs agree (same sample fingerprint), but one member's fold file does not."""
    rng = np.random.default_rng(6)
    write_run(tmp_path / "a", member_probabilities(rng))
    write_run(tmp_path / "b", member_probabilities(rng))
    damaged = tmp_path / "b" / "seed-0" / "f2" / "predictions.csv"
    header, *rows = damaged.read_text().splitlines(keepends=True)
    if damage == "order":
        rows = [rows[1], rows[0], *rows[2:]]
    else:  # the first clip's true class changed: negative → positive
        rows[0] = rows[0].replace(",negative,", ",positive,", 1)
    damaged.write_text(header + "".join(rows))
    out = tmp_path / "ens"
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{damaged}: its clips or labels differ" in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["relations", "occlusion_relations"])
def test_a_member_fold_with_a_matrix_per_clip_missing_is_refused_before_writes(tmp_path, capsys, kind):
    """A member's fold relations with one matrix fewer than its predictions: one line naming the file, no --out."""
    rng = np.random.default_rng(7)
    write_run(tmp_path / "a", member_probabilities(rng), occlusion_value=0.1)
    write_run(tmp_path / "b", member_probabilities(rng), occlusion_value=0.3)
    damaged = tmp_path / "b" / "seed-0" / "f2" / f"{kind}.npy"
    np.save(damaged, np.load(damaged)[:-1])
    out = tmp_path / "ens"
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{damaged}: 2 matrices for 3 predictions" in err
    assert not out.exists()


@pytest.mark.parametrize("change, message", [
    ({"folds": ("f1",)}, "folds differ"),
    ({"classes": ["negative", "positive", "other"]}, "classes differ"),
    ({"shift_samples": True}, "samples differ"),
    ({"seeds": (0, 1)}, "seeds differ"),
])
def test_members_that_differ_are_refused_in_one_line_before_writes(tmp_path, capsys, change, message):
    rng = np.random.default_rng(1)
    write_run(tmp_path / "a", member_probabilities(rng))
    write_run(tmp_path / "b", member_probabilities(rng), **change)
    out = tmp_path / "ens"
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and str(tmp_path / "b") in err
    assert not out.exists()


@pytest.mark.parametrize("cell", ["abc", "7.5", ""])
def test_a_member_with_damaged_probabilities_is_refused_in_one_line_before_writes(tmp_path, capsys, cell):
    rng = np.random.default_rng(3)
    write_run(tmp_path / "a", member_probabilities(rng))
    write_run(tmp_path / "b", member_probabilities(rng))
    damaged = tmp_path / "b" / "seed-0" / "f2" / "predictions.csv"
    lines = damaged.read_text().splitlines(keepends=True)
    cells = lines[2].split(",")
    cells[6] = cell  # prob_positive of the second clip
    lines[2] = ",".join(cells)
    damaged.write_text("".join(lines))
    out = tmp_path / "ens"
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{damaged}: row 3: prob_positive is '{cell}', not a probability in [0, 1]" in err
    assert not out.exists()


def test_bad_member_lists_and_outputs_are_refused(tmp_path, capsys):
    rng = np.random.default_rng(2)
    write_run(tmp_path / "a", member_probabilities(rng))
    write_run(tmp_path / "b", member_probabilities(rng))
    for argv, message in (
        ([str(tmp_path / "a")], "at least two"),
        ([str(tmp_path / "a"), str(tmp_path / "a")], "given twice"),
        ([str(tmp_path / "a"), str(tmp_path / "missing")], "not a directory"),
    ):
        assert main(["ensemble", *argv, "--out", str(tmp_path / "ens")]) == 2
        assert message in capsys.readouterr().err
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "a")]) == 2
    assert "one of the ensembled runs" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "file")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metrics.json").write_text("mine")
    for out, message in ((tmp_path / "a" / "seed-0" / "f1", "inside the run directory"),
                         (tmp_path / "mine", "not a run directory")):
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / "ens").exists()


def test_a_run_in_two_members_is_refused_as_counted_twice(tmp_path, capsys):
    rng = np.random.default_rng(5)
    for name in "abc":
        write_run(tmp_path / name, member_probabilities(rng))
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    assert main(["ensemble", str(tmp_path / "ab"), str(tmp_path / "c"), "--out", str(tmp_path / "abc")]) == 0
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "ac")]) == 0
    capsys.readouterr()
    for members in (["ab", "a"], ["abc", "b"], ["ab", "ac"]):  # a member of a member, nested, shared
        assert main(["ensemble", *(str(tmp_path / m) for m in members), "--out", str(tmp_path / "twice")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "it would count twice" in err[0]
    assert not (tmp_path / "twice").exists()


def test_a_copied_or_moved_run_is_still_the_same_run(tmp_path, capsys):
    """Trained runs are told apart by their predictions, not by their paths: a copy of a member,
    or an ensemble whose members were moved away since, still counts the same run once."""
    rng = np.random.default_rng(6)
    for name in "abc":
        write_run(tmp_path / name, member_probabilities(rng))
    shutil.copytree(tmp_path / "a", tmp_path / "a-copy")
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "a-copy"), "--out", str(tmp_path / "twice")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f"a-copy: its trained run {(tmp_path / 'a-copy').resolve()} has the "
                                             f"predictions of {(tmp_path / 'a').resolve()} in {tmp_path / 'a'}; "
                                             "it would count twice")
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    (tmp_path / "a").rename(tmp_path / "a-moved")
    assert main(["ensemble", str(tmp_path / "ab"), str(tmp_path / "a-moved"), "--out", str(tmp_path / "twice")]) == 2
    assert "it would count twice" in capsys.readouterr().err
    assert not (tmp_path / "twice").exists()
    # another run of other predictions is welcome
    assert main(["ensemble", str(tmp_path / "ab"), str(tmp_path / "c"), "--out", str(tmp_path / "abc")]) == 0


def test_an_ensemble_made_before_fingerprints_is_followed_by_its_paths(tmp_path, capsys):
    """An ensemble of 0.2.14 recorded its members by path only: they are followed while they are
    there (an edited record that loops, once)."""
    rng = np.random.default_rng(7)
    for name in "abc":
        write_run(tmp_path / name, member_probabilities(rng))
    assert main(["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    config_path = tmp_path / "ab" / "config.json"
    config = json.loads(config_path.read_text())
    for entry in config["members"]:
        del entry["trained"]
    config["members"].append({"path": str((tmp_path / "ab").resolve()), "model": "ensemble"})  # edited: itself
    config_path.write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["ensemble", str(tmp_path / "ab"), str(tmp_path / "b"), "--out", str(tmp_path / "twice")]) == 2
    assert "it would count twice" in capsys.readouterr().err
    assert main(["ensemble", str(tmp_path / "ab"), str(tmp_path / "c"), "--out", str(tmp_path / "abc")]) == 0
    recorded = [run["path"] for entry in json.loads((tmp_path / "abc" / "config.json").read_text())["members"]
                for run in entry["trained"]]
    assert recorded == [str((tmp_path / n).resolve()) for n in "abc"]
