"""``geomer plot`` and ``geomer compare`` on hand-made run directories."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from geomer.cli import main


def _png(path: Path) -> tuple[int, int]:
    image = matplotlib.image.imread(path)
    return image.shape[0], image.shape[1]


def test_plot_writes_every_figure(run_dir, capsys):
    assert main(["plot", str(run_dir), "--face", "template"]) == 0
    figures = run_dir / "figures"
    expected = {"relations.png", "confusion.png", "training-curves.png"}
    expected |= {f"relations-{c}.png" for c in ("negative", "positive", "surprise")}
    expected |= {f"graph-{c}.png" for c in ("negative", "positive", "surprise")}
    assert {p.name for p in figures.iterdir()} == expected  # nothing half-written left behind
    for path in figures.iterdir():
        height, width = _png(path)
        assert height > 100 and width > 100
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(expected)


def test_plot_on_the_photo_into_another_folder(run_dir, tmp_path):
    pytest.importorskip("landmarks.render", reason="needs landmarks.render.photo_face")
    out = tmp_path / "figs"
    assert main(["plot", str(run_dir), "-o", str(out), "--quiet"]) == 0
    assert (out / "graph-positive.png").is_file()
    assert not (run_dir / "figures").exists()


def test_plot_bad_run_dir_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing" in error and "Traceback" not in error


def test_plot_refuses_components_of_another_partition(run_dir, capsys):
    config = run_dir / "config.json"
    config.write_text(config.read_text().replace('"partition": "k7"', '"partition": "k9"'))
    assert main(["plot", str(run_dir), "--face", "template"]) == 2
    assert "do not match" in capsys.readouterr().err
    assert not (run_dir / "figures").exists()  # refused before the first figure, not after


def test_plot_with_a_damaged_history_writes_nothing(run_dir, capsys):
    history = run_dir / "seed-0" / "fold-s2" / "history.csv"
    history.write_text("")
    assert main(["plot", str(run_dir), "--face", "template"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "fold-s2/history.csv: not a readable CSV" in error
    assert not (run_dir / "figures").exists()


def test_figures_are_all_drawn_before_one_is_written(run_dir, tmp_path):
    from geomer.errors import GeomerError
    from geomer.rundir import load_run
    from geomer.viz.run import write_run_figures

    run = load_run(run_dir)
    (run_dir / "seed-0" / "fold-s2" / "history.csv").write_text("epoch,loss\n1,abc\n")  # damaged after reading
    with pytest.raises(GeomerError, match=r"fold-s2/history.csv: row 2: loss is 'abc'"):
        write_run_figures(run, tmp_path / "figures", face="template")
    assert not (tmp_path / "figures").exists()


def test_a_folder_where_a_figure_goes_is_refused_before_any_figure_is_written(run_dir, tmp_path):
    from geomer.errors import GeomerError
    from geomer.rundir import load_run
    from geomer.viz.run import CONFUSION, write_run_figures

    out = tmp_path / "figures"
    (out / CONFUSION).mkdir(parents=True)
    with pytest.raises(GeomerError, match=f"{out / CONFUSION}: is a directory"):
        write_run_figures(load_run(run_dir), out, face="template")
    assert [p.name for p in out.iterdir()] == [CONFUSION]


def test_compare_with_ground_truth(tmp_path, make_run, run_dir, ground_truth_file, capsys):
    other = make_run(tmp_path / "run-mmt", model="mmt", noise=0.3, seed=2)
    figure = tmp_path / "out" / "compare.png"
    status = main(["compare", str(run_dir), str(other), "-o", str(figure), "--ground-truth", str(ground_truth_file)])
    assert status == 0
    assert figure.is_file() and _png(figure)[1] > 300
    table = pd.read_csv(figure.with_suffix(".csv"))
    assert list(zip(table.model_a, table.model_b)) == [
        ("dere-grl", "mmt"), ("dere-grl", "ground truth"), ("mmt", "ground truth")]
    assert set(table.scope) == {"overall"}
    assert table.spearman.between(-1, 1).all() and table.p_value.between(0, 1).all()
    # the low-noise run is closer to the planted relations than the noisy one
    assert table.spearman[1] > table.spearman[2]
    printed = capsys.readouterr().out
    assert "ground truth" in printed and "spearman" in printed


def test_compare_refuses_an_unfinished_run_and_another_datasets_ground_truth(tmp_path, make_run, run_dir,
                                                                            ground_truth_file, capsys, monkeypatch):
    import json

    figure = tmp_path / "c.png"
    partial = make_run(tmp_path / "run-partial", model="mmt", seed=2)
    (partial / "seed-0" / "fold-s2" / "predictions.csv").unlink()  # interrupted before this fold finished
    assert main(["compare", str(run_dir), str(partial), "-o", str(figure)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{partial}: the run is incomplete (1 fold(s) unfinished, e.g. seed-0/fold-s2)" in err
    # plot draws what is finished, and says that it is not all
    import geomer.viz.run

    drawn = []
    monkeypatch.setattr(geomer.viz.run, "write_run_figures", lambda run, *args, **kwargs: drawn.append(run) or [])
    assert main(["plot", str(partial), "-o", str(tmp_path / "figs"), "--quiet"]) == 0
    assert "1 fold(s) unfinished" in capsys.readouterr().err
    assert len(drawn[0].predictions) == 6  # the finished fold's clips

    other = json.loads(ground_truth_file.read_text())
    renamed = {"negative": "happiness", "positive": "disgust", "surprise": "surprise"}  # another dataset's scheme
    other["classes"] = [renamed[c] for c in other["classes"]]
    for key in ("relations", "motion_relations"):
        if key in other:
            other[key] = {renamed[c]: m for c, m in other[key].items()}
    other_file = tmp_path / "other" / "ground_truth.json"
    other_file.parent.mkdir()
    other_file.write_text(json.dumps(other))
    assert main(["compare", str(run_dir), "-o", str(figure), "--ground-truth", str(other_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{other_file}: classes happiness, disgust, surprise lack {run_dir}'s negative, positive" in err
    assert not figure.exists()

    # the same classes, other matrices: another draw's ground truth, told apart by the run's own
    # (at the root config.json records)
    own = tmp_path / "draw"
    own.mkdir()
    shutil.copy(ground_truth_file, own / "ground_truth.json")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "root": str(own)}))
    assert main(["compare", str(run_dir), "-o", str(figure), "--ground-truth", str(own)]) == 0
    drawn = json.loads(ground_truth_file.read_text())
    drawn["relations"] = {c: (np.asarray(m) * 0.5).tolist() for c, m in drawn["relations"].items()}
    other_file.write_text(json.dumps(drawn))
    figure.unlink()
    capsys.readouterr()
    assert main(["compare", str(run_dir), "-o", str(figure), "--ground-truth", str(other_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{other_file}: not the ground truth of {run_dir}'s dataset" in err
    assert not figure.exists()


def test_compare_per_class_rows(tmp_path, make_run, run_dir):
    other = make_run(tmp_path / "run-hsta", model="hsta", seed=3)
    figure = tmp_path / "compare.svg"
    assert main(["compare", str(run_dir), str(other), "-o", str(figure), "--per-class", "--permutations", "50"]) == 0
    table = pd.read_csv(figure.with_suffix(".csv"))
    assert list(table.scope) == ["overall", "negative", "positive", "surprise"]
    assert (table.permutations == 50).all()
    assert figure.read_text().lstrip().startswith("<?xml")


def test_compare_bad_inputs(tmp_path, run_dir, capsys):
    figure = tmp_path / "c.png"
    assert main(["compare", str(run_dir), str(tmp_path / "nope"), "-o", str(figure)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["compare", str(run_dir), "-o", str(tmp_path / "c.txt")]) == 2
    assert "cannot write a figure" in capsys.readouterr().err
    assert main(["compare", str(run_dir), str(run_dir / "."), "-o", str(figure)]) == 2  # one run beside itself
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "given twice" in err
    assert not figure.exists()


def test_compare_never_writes_over_a_file_that_is_not_a_figure(tmp_path, run_dir, capsys):
    notes = tmp_path / "notes"
    notes.write_text("my notes\n")
    assert main(["compare", str(run_dir), "-o", str(notes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"geomer compare: error: {notes}: cannot write a figure without an extension (use .png, .pdf or .svg)"]
    assert notes.read_text() == "my notes\n" and not (tmp_path / "notes.csv").exists()


def test_compare_refuses_a_negative_seed_before_any_work(tmp_path, run_dir, capsys):
    figure = tmp_path / "c.png"
    assert main(["compare", str(run_dir), "-o", str(figure), "--permutations", "10", "--seed", "-1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["geomer compare: error: --seed must be at least 0, got -1"]
    assert not figure.exists()


def test_compare_into_a_directory_names_it_before_any_work(tmp_path, run_dir, capsys):
    """The output check comes first: a missing run directory is not even looked at."""
    folder = tmp_path / "figures"
    folder.mkdir()
    assert main(["compare", str(run_dir), str(tmp_path / "nope"), "-o", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"geomer compare: error: {folder}: is a directory; -o needs a figure file name (.png, .pdf or .svg)"]
    assert not any(folder.iterdir()) and not (tmp_path / "figures.csv").exists()


def test_compare_on_a_full_disk_is_one_line_naming_the_figure(tmp_path, run_dir, capsys, monkeypatch):
    import errno

    from matplotlib.figure import Figure

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    figure = tmp_path / "out" / "c.png"
    assert main(["compare", str(run_dir), "-o", str(figure), "--permutations", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"geomer compare: error: {figure}: cannot write it (No space left on device)"]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(shutil.which("geomer", path=str(Path(sys.executable).parent)) is None, reason="geomer not installed")
def test_installed_command_reports_a_bad_run_dir(tmp_path):
    geomer = shutil.which("geomer", path=str(Path(sys.executable).parent))
    result = subprocess.run([geomer, "compare", str(tmp_path), "-o", str(tmp_path / "c.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"geomer compare: error: {tmp_path / 'config.json'}: missing"]


def test_compare_shows_occlusion_relations_the_baseline_and_motion_relations(tmp_path, make_run, ground_truth_file, patterns):
    import json

    runs = [make_run(tmp_path / "run-dere"), make_run(tmp_path / "run-mmt", model="mmt", seed=2)]
    rng = np.random.default_rng(11)  # not the patterns' seed
    baseline = rng.random((3, 7, 7)).astype(np.float32)
    symmetric = (patterns + patterns.transpose(0, 2, 1)) / 2  # the ground truth's pattern
    for run in runs:  # both runs on one dataset: one baseline
        np.save(run / "occlusion_relations.npy", (symmetric + 0.01 * rng.random(patterns.shape)).astype(np.float32))
        np.save(run / "baseline_relations.npy", baseline)
    truth = json.loads(ground_truth_file.read_text())
    truth["motion_relations"] = {c: baseline[i].tolist() for i, c in enumerate(truth["classes"])}
    ground_truth_file.write_text(json.dumps(truth))
    figure = tmp_path / "compare.png"
    assert main(["compare", *map(str, runs), "-o", str(figure), "--ground-truth", str(ground_truth_file)]) == 0
    table = pd.read_csv(figure.with_suffix(".csv"))
    versus_truth = table[table.model_b == "ground truth"].set_index("model_a")["spearman"]
    assert list(versus_truth.index) == ["dere-grl", "dere-grl occlusion", "mmt", "mmt occlusion",
                                        "input-only baseline", "motion_relations (ground truth)"]
    # the occlusion relations were planted on the ground truth's pattern, the baseline at random
    assert versus_truth["dere-grl occlusion"] > 0.9 and abs(versus_truth["input-only baseline"]) < 0.5
    assert versus_truth["input-only baseline"] == pytest.approx(versus_truth["motion_relations (ground truth)"])


def test_compare_refuses_runs_of_different_class_sets(tmp_path, make_run, run_dir, capsys):
    other = make_run(tmp_path / "run-ststnet", model="ststnet", seed=2)
    for path in [other / "config.json", *other.glob("seed-*/*/predictions.csv")]:  # another scheme
        path.write_text(path.read_text().replace("negative", "happiness"))
    figure = tmp_path / "c.png"
    assert main(["compare", str(run_dir), str(other), "-o", str(figure)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (f"{other}/config.json: classes happiness, positive, surprise differ from {run_dir}'s "
            "(negative, positive, surprise); compare runs of one class set") in err
    assert not figure.exists() and not figure.with_suffix(".csv").exists()


def test_a_ground_truth_of_another_draw_is_refused(tmp_path):
    # another generator seed, or more subjects of the same seed: other class means, and a figure
    # scored against them would look right and not be
    from types import SimpleNamespace

    from geomer.errors import GeomerError
    from geomer.relations import check_ground_truth_of, load_ground_truth
    from geomer.synth import generate

    def draw(name, seed, subjects):
        return generate(tmp_path / name, layout="casme2", subjects=subjects, clips=2, seed=seed,
                        difficulty="easy", fps=50, progress=False)

    own, other_seed, larger = draw("own", 1, 2), draw("other", 2, 2), draw("larger", 1, 3)
    truth = load_ground_truth(own)
    clips = list(truth.clips)
    subjects = [c.rsplit("/", 1)[0] for c in clips]
    predictions = pd.DataFrame({"sample": [f"{s}/{c}" for s, c in zip(subjects, clips)], "subject": subjects})
    run = SimpleNamespace(path=str(tmp_path / "run"), config={"root": str(own), "skipped_rows": []},
                          predictions=predictions, component_names=truth.component_names, classes=truth.classes)
    check_ground_truth_of(run, truth)
    for wrong in (other_seed, larger):
        with pytest.raises(GeomerError, match=f"not the ground truth of {run.path}'s dataset"):
            check_ground_truth_of(run, load_ground_truth(wrong))
    moved = SimpleNamespace(**{**vars(run), "config": {"skipped_rows": []}})  # its root gone: the clips tell
    check_ground_truth_of(moved, truth)
    with pytest.raises(GeomerError, match="more than .* was tested on and skipped"):
        check_ground_truth_of(moved, load_ground_truth(larger))
    if set(load_ground_truth(other_seed).clips) != set(clips):
        with pytest.raises(GeomerError, match="has no clip"):
            check_ground_truth_of(moved, load_ground_truth(other_seed))


def test_compare_refuses_zero_permutations_before_any_work(tmp_path, run_dir, capsys):
    """--permutations 0: status 2, one line, nothing written."""
    figure = tmp_path / "out" / "c.png"
    figure.parent.mkdir()
    assert main(["compare", str(run_dir), "-o", str(figure), "--permutations", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["geomer compare: error: --permutations must be at least 1, got 0"]
    assert list(figure.parent.iterdir()) == []
