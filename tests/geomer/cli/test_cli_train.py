"""The train / evaluate / predict / models commands end to end on a tiny synthetic dataset."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np
import pytest

from geomer.cli import main

SMALL = ["--set", "hidden=8", "--set", "actions=2", "--set", "layers=2", "--set", "embedding=16"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from geomer.synth import generate

    return generate(
        tmp_path_factory.mktemp("synth") / "tiny", layout="casme2", subjects=3, clips=3,
        seed=1, difficulty="easy", fps=50, progress=False,
    )


@pytest.fixture(scope="module")
def trained_run(tiny_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    previous = os.environ.get("GEOMER_CACHE")
    os.environ["GEOMER_CACHE"] = str(base / "cache")
    try:
        from contextlib import redirect_stdout
        from io import StringIO

        printed = StringIO()
        with redirect_stdout(printed):
            status = main(
                ["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                 "--cache", str(base / "features"), "--epochs", "2", "--seeds", "0,1",
                 "--batch-size", "4", "--out", str(base / "run"), "--quiet", *SMALL]
            )
    finally:
        if previous is None:
            os.environ.pop("GEOMER_CACHE", None)
        else:
            os.environ["GEOMER_CACHE"] = previous
    return status, printed.getvalue(), base / "run"


@pytest.mark.slow
def test_train_writes_the_run_and_prints_the_table(trained_run, tiny_root):
    status, printed, run = trained_run
    assert status == 0
    assert "UF1" in printed and "pooled" in printed and "happiness" in printed
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "dere-grl" and metrics["dataset"] == "synth"
    assert metrics["seeds"] == [0, 1] and metrics["num_samples"] == 9 and metrics["num_folds"] == 3
    assert metrics["leaky"] is False and metrics["cfg"]["hidden"] == 8
    assert f"{metrics['uf1']:.4f}" in printed
    # the headline's interval is printed under it: n/a, as three subjects are too few for one
    assert metrics["uf1_interval"] == [None, None] and re.search(r"95 % interval +n/a +n/a +n/a", printed)
    config = json.loads((run / "config.json").read_text())
    assert config["feature_settings"]["face_size"] == 256 and config["protocol"] == "loso"
    assert np.load(run / "relations.npy").shape == (5, 7, 7)
    # the summary figures, drawn by the one figure writer (geomer.viz.run) under its names
    assert sorted(p.name for p in (run / "figures").iterdir()) == [
        "confusion.png", "relations.png", "training-curves.png"]


@pytest.mark.slow
def test_evaluate_repools_the_run(trained_run, capsys):
    _, _, run = trained_run
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()
    assert main(["evaluate", str(run), "--no-figures"]) == 0
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert f"{metrics['uf1']:.4f}" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_refuses_before_writing_and_names_the_damaged_file(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[2], run)
    metrics = (run / "metrics.json").read_bytes()
    shutil.rmtree(run / "figures")
    (run / "figures").write_text("a file where the figures go")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    assert "figures: is not a folder" in capsys.readouterr().err
    assert (run / "metrics.json").read_bytes() == metrics  # refused before anything was rewritten
    fold = next(run.glob("seed-0/*/"))
    np.save(fold / "relations.npy", np.zeros((len(np.load(fold / "relations.npy")), 6, 6), np.float32))
    assert main(["evaluate", str(run), "--no-figures"]) == 2
    err = capsys.readouterr().err  # the damaged file is named, not its intact neighbour
    assert f"{fold / 'relations.npy'}: 6 components" in err and "occlusion" not in err


@pytest.mark.slow
def test_installed_evaluate_command(trained_run):
    _, _, run = trained_run
    geomer = Path(sys.executable).with_name("geomer")
    done = subprocess.run([str(geomer), "evaluate", str(run), "--no-figures"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "UF1" in done.stdout
    missing = subprocess.run([str(geomer), "evaluate", str(run / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1 and "config.json" in missing.stderr


@pytest.mark.slow
def test_predict_a_clip_folder(trained_run, tiny_root, tmp_path, capsys):
    _, _, run = trained_run
    checkpoint = next(run.glob("seed-0/*/checkpoint.pt"))
    clip = next(p for p in sorted(tiny_root.glob("sub*/*")) if p.is_dir())
    assert main(["predict", str(clip), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "p"), "--quiet"]) == 0
    prediction = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction["apex_spotted"] is True
    assert np.asarray(prediction["relations"]).shape == (7, 7)
    assert (tmp_path / "p" / "relations.png").stat().st_size > 0
    assert "predicted:" in capsys.readouterr().out
    # an apex given is used, not spotted
    given = prediction["onset"] + 1 if prediction["apex"] != prediction["onset"] + 1 else prediction["onset"] + 2
    assert main(["predict", str(clip), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "q"), "--quiet",
                 "--apex", str(given)]) == 0
    chosen = json.loads((tmp_path / "q" / "prediction.json").read_text())
    assert chosen["apex"] == given and chosen["apex_spotted"] is False
    # a gap in the folder's frames is said once, as geomer prepare says it
    import shutil

    gapped = tmp_path / "gapped"
    shutil.copytree(clip, gapped)
    files = sorted(gapped.iterdir(), key=lambda p: int("".join(filter(str.isdigit, p.stem))))
    files[2].unlink()
    files[3].unlink()
    capsys.readouterr()
    assert main(["predict", str(gapped), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "g"), "--quiet"]) == 0
    err = capsys.readouterr().err
    first = int("".join(filter(str.isdigit, files[2].stem)))
    assert f"{gapped}: 2 frame(s) missing between onset" in err and f"(first: {first})" in err


@pytest.mark.parametrize("frames, message", [
    (["--apex", "9999"], "apex frame 9999 is not among frames"),
    (["--onset", "5", "--apex", "3"], "onset <= apex <= offset (got onset 5, apex 3)"),
    ([], "one image has no motion"),
    (["one-frame folder"], "has no motion; a clip needs at least two"),
])
def test_predict_refuses_a_bad_frame_range_or_one_image_before_tracking(untrained_checkpoint, tiny_root, tmp_path, capsys,
                                                            monkeypatch, frames, message):
    import landmarks

    def no_tracking(*args, **kwargs):
        raise AssertionError("tracked before the frame range was checked")

    monkeypatch.setattr(landmarks, "track", no_tracking)
    clip = next(p for p in sorted(tiny_root.glob("sub*/*")) if p.is_dir())
    if not frames:  # one frame file of the clip
        clip = sorted(clip.iterdir())[0]
    elif frames == ["one-frame folder"]:  # a folder holding one of the clip's frames
        first = sorted(clip.iterdir())[0]
        clip = tmp_path / "one"
        clip.mkdir()
        (clip / first.name).write_bytes(first.read_bytes())
        frames = []
    status = main(["predict", str(clip), "--checkpoint", str(untrained_checkpoint), "-o", str(tmp_path / "p"),
                   "--quiet", *frames])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and message in err and str(clip) in err
    assert not (tmp_path / "p").exists()


@pytest.fixture()
def untrained_checkpoint(tmp_path):
    from geomer.graph import FaceGraph
    from geomer.models import create
    from geomer.train.checkpoint import Checkpoint, save_checkpoint

    graph = FaceGraph()
    cfg = {"hidden": 8, "actions": 2, "layers": 2, "embedding": 16}
    model = create("dere-grl", 3, graph, **cfg)
    return save_checkpoint(
        tmp_path / "model.pt",
        Checkpoint("dere-grl", cfg, ("negative", "positive", "surprise"), graph.component_names,
                   graph.to_record(), model.state_dict()),
    )


def test_predict_without_a_face_is_one_line_and_status_2(untrained_checkpoint, tmp_path, capsys):
    video = tmp_path / "blank.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(8):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    status = main(["predict", str(video), "--checkpoint", str(untrained_checkpoint), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "blank.avi" in err


@pytest.mark.slow
@pytest.mark.parametrize("value, shown", [
    (float("nan"), "non-finite weights in"),  # refused as damage when the checkpoint is read
    (1e30, "non-finite class probabilities"),  # finite weights whose products overflow
])
def test_predict_with_non_finite_weights_writes_nothing(tiny_root, tmp_path, capsys, value, shown):
    import torch

    from geomer.graph import FaceGraph
    from geomer.models import create
    from geomer.train.checkpoint import Checkpoint, save_checkpoint

    graph = FaceGraph()
    cfg = {"hidden": 8, "actions": 2, "layers": 2, "embedding": 16}
    model = create("dere-grl", 3, graph, **cfg)
    weights = {k: torch.full_like(v, value) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    checkpoint = save_checkpoint(tmp_path / "nan.pt", Checkpoint(
        "dere-grl", cfg, ("negative", "positive", "surprise"), graph.component_names, graph.to_record(), weights))
    clip = next(p for p in sorted(tiny_root.glob("sub*/*")) if p.is_dir())
    assert main(["predict", str(clip), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "p"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and shown in err and str(checkpoint) in err
    assert not (tmp_path / "p" / "prediction.json").exists()


@pytest.mark.parametrize("field, value, shown", [
    ("cfg", {"hidden": 8, "bogus": 1}, "has no setting 'bogus'"),
    ("feature_settings", {"face_size": "256"}, "feature setting face_size='256': wrong type"),
    # sizes that would ask for terabytes once the clip is tracked
    ("feature_settings", {"patch_size": 100_000}, "feature settings out of range"),
    ("feature_settings", {"face_size": 10**6}, "feature settings out of range"),
    ("feature_settings", {"partition": "k5"}, "its feature settings sample 51 nodes, its graph has 68"),
])
def test_predict_names_the_checkpoint_whose_settings_do_not_build_its_model(tmp_path, capsys, field, value, shown):
    from geomer.graph import FaceGraph
    from geomer.models import create
    from geomer.train.checkpoint import Checkpoint, save_checkpoint

    graph = FaceGraph()
    model = create("dere-grl", 3, graph, hidden=8)
    fields = {"cfg": {"hidden": 8}, "feature_settings": {}, field: value}
    checkpoint = save_checkpoint(tmp_path / "edited.pt", Checkpoint(
        "dere-grl", fields["cfg"], ("negative", "positive", "surprise"), graph.component_names, graph.to_record(),
        model.state_dict(), feature_settings=fields["feature_settings"]))
    clip = tmp_path / "clip"
    clip.mkdir()
    assert main(["predict", str(clip), "--checkpoint", str(checkpoint), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"geomer predict: error: {checkpoint}: ") and shown in err[0]


def test_predict_with_a_foreign_checkpoint_fails(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"nonsense")
    status = main(["predict", str(tmp_path), "--checkpoint", str(tmp_path / "x.pt")])
    assert status == 2 and "not a geomer checkpoint" in capsys.readouterr().err


def test_unknown_model_and_dataset_list_the_known_ones(tmp_path, capsys):
    assert main(["train", "--model", "no-such-model", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "dere-grl" in err
    assert main(["train", "--model", "dere-grl", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "casme2" in err
    assert main(["train", "--model", "dere-grl", "--dataset", "casme2"]) == 2
    assert "--root" in capsys.readouterr().err
    assert main(["train", "--model", "dere-grl", "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_help_states_each_default_once_and_no_empty_one(capsys):
    from geomer.cli import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, command in subcommands.choices.items():
        text = " ".join(command.format_help().split())
        assert "(default: None)" not in text and "(default: [])" not in text, name
        assert "(default: the model's) (default" not in text, name
    assert "(default: 0,1,2)" in " ".join(subcommands.choices["train"].format_help().split())


def test_models_lists_every_registered_model(capsys):
    from geomer.models import get_spec, list_models

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in list_models():
        line = next(line for line in lines if line.split()[0] == name)
        for needed in get_spec(name).requires:
            assert needed in line


def _pretrained(path, subjects, sources=(), frames=()):
    """A pretraining checkpoint that read the frame files ``frames`` (default: one unrelated image)."""
    from geomer.graph import FaceGraph
    from geomer.models import create
    from geomer.models.pretrained import save_pretrained
    from geomer.models.pretrained import file_fingerprint

    if not frames:
        frames = [path.parent / "external-frame.png"]
        cv2.imwrite(str(frames[0]), np.full((8, 8), 3, np.uint8))
    cfg = {"hidden": 8, "actions": 2, "layers": 2, "embedding": 16}
    model = create("dere-grl", 5, FaceGraph(), **cfg)
    return save_pretrained(path, model, model_name="dere-grl", model_cfg=cfg, subjects=subjects, sources=sources,
                           frame_fingerprints=[file_fingerprint(frame) for frame in frames])


@pytest.mark.slow
def test_init_that_saw_the_evaluated_clips_as_external_frames_is_refused(trained_run, tiny_root, tmp_path, capsys):
    from geomer.data import read_dataset

    _, _, run = trained_run
    from geomer.models.pretrained import frame_files

    sample = read_dataset("synth", tiny_root).samples[0]
    copy = tmp_path / "renamed.png"  # the clip's frame under another name: refused by content
    copy.write_bytes(frame_files(sample.source)[1].read_bytes())
    init = _pretrained(tmp_path / "frames.pt", ["external/sub01"], frames=[copy])
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                   "--cache", str(run.parent / "features"), "--init", str(init),
                   "--out", str(tmp_path / "run"), "--quiet", *SMALL])
    err = capsys.readouterr().err
    assert status == 2 and sample.key in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_init_that_saw_a_test_subject_is_refused(trained_run, tiny_root, tmp_path, capsys):
    from geomer.data import read_dataset

    _, _, run = trained_run
    subject = read_dataset("synth", tiny_root).samples[0].subject_key
    init = _pretrained(tmp_path / "seen.pt", [subject, "external/other"])
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                   "--cache", str(run.parent / "features"), "--init", str(init),
                   "--out", str(tmp_path / "run"), "--quiet", *SMALL])
    err = capsys.readouterr().err
    assert status == 2 and subject in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_init_from_external_data_is_recorded(trained_run, tiny_root, tmp_path):
    _, _, run = trained_run
    init = _pretrained(tmp_path / "external.pt", ["external/faces"])
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                   "--cache", str(run.parent / "features"), "--init", str(init), "--epochs", "1",
                   "--seeds", "0", "--jobs", "1", "--out", str(tmp_path / "run"), "--quiet", *SMALL])
    assert status == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["pretraining"]["mode"] == "external"
    assert metrics["init"] == str(init)


@pytest.mark.slow
def test_a_model_input_the_data_lack_fails_at_the_start(trained_run, tiny_root, tmp_path, capsys, monkeypatch):
    from torch import nn

    from geomer.models import register_model, registry

    # Register into a copy of the registry, so other tests never see this model.
    monkeypatch.setattr(registry.MODELS, "_entries", dict(registry.MODELS.items()))

    @register_model("cli-test-needs-depth")
    class NeedsDepth(nn.Module):
        """Needs an input no dataset has (a test of the start-up check)."""

        requires = ("depth_map",)

        def __init__(self, num_classes, graph):
            super().__init__()

    _, _, run = trained_run
    status = main(["train", "--model", "cli-test-needs-depth", "--dataset", "synth", "--root", str(tiny_root),
                   "--cache", str(run.parent / "features"), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and "'depth_map'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_debug_before_or_after_the_command_shows_the_traceback(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    assert main(["evaluate", missing]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
    for argv in (["--debug", "evaluate", missing], ["evaluate", missing, "--debug"]):
        assert main(argv) == 2  # the same status as without --debug
        err = capsys.readouterr().err
        assert "Traceback" in err and "GeomerError" in err
        assert err.rstrip().splitlines()[-1].startswith("geomer evaluate: error: ") and "missing" in err


def test_a_broken_video_gives_one_line_without_ffmpeg_noise(untrained_checkpoint, tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(2000))  # an MP4 header without a moov atom
    done = subprocess.run(
        [sys.executable, "-m", "geomer.cli", "predict", str(video), "--checkpoint", str(untrained_checkpoint),
         "-o", str(tmp_path / "p"), "--quiet"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "broken.mp4" in done.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("options, message", [
    (["--lr", "-1"], "learning rate"), (["--lr", "nan"], "learning rate"),
    (["--weight-decay", "-1"], "weight decay"), (["--device", "tpu"], "unknown device"),
    (["--set", "hidden=abc"], "expected int"), (["--set", "hidden=16.7"], "expected int"),
    (["--set", "use_flow=maybe"], "expected bool"), (["--set", "dropout=nan"], "expected float"),
    (["--set", "nosuch=1"], "no setting"), (["--epochs", "3", "--steps", "100"], "not both"),
    (["--set", "hidden=8", "--set", "hidden=16"], "hidden is already set to '8'"),
    (["--augment", "flip,flip=0.3"], "flip is given twice"),
    (["--steps", "0"], "steps must be at least 1"), (["--set", "actions=0"], "actions must be ≥ 1"),
    (["--model", "mmt", "--set", "depth=0"], "depth must be ≥ 1"),
    (["--model", "mmt", "--set", "temperature=0"], "temperature must be > 0"),
    (["--model", "mmt", "--set", "attention_dropout=2"], "attention_dropout must lie in [0, 1)"),
    (["--model", "hsta", "--set", "tubelet=0"], "tubelet must be ≥ 1"),
    (["--model", "hsta", "--set", "special_dim=0"], "special_dim must be ≥ 1"),
    (["--model", "mubert", "--set", "swap_ratio=2"], "swap_ratio must lie in [0, 1]"),
    (["--ray-address", "10.0.0.1:6379"], "needs --executor ray"),
    (["--scheme", "bogus"], "unknown class scheme 'bogus'"), (["--protocol", "bogus"], "unknown protocol"),
    (["--seeds", "0,,1"], "expected comma-separated integers"), (["--seeds", "0,1,"], "expected comma-separated"),
    (["--pretrain-epochs", "3"], "--pretrain-epochs needs --pretrain per-fold"),
])
def test_bad_options_are_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys, options, message):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    status = main(["train", "--model", "dere-grl", "--out", str(tmp_path / "run"), "--quiet", *options])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_refused(tmp_path, capsys):
    assert main(["train", "--model", "dere-grl", "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "not available" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_unusable_outputs_are_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    a_file = tmp_path / "taken"
    a_file.write_text("")
    for out, message in ((a_file, "not a directory"), (a_file / "run", "cannot create")):
        assert main(["train", "--model", "dere-grl", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err and str(out) in err
    assert not (tmp_path / "cache").exists()


def test_an_output_under_a_file_is_one_line_in_every_command(tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("")
    assert main(["synth", str(a_file / "data"), "--subjects", "1", "--clips", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(a_file) in err and "Traceback" not in err
    # checked before any work: no clip is tracked, no run is read
    for argv, message in (
        (["predict", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt"), "-o", str(a_file)], "not a directory"),
        (["plot", str(tmp_path), "-o", str(a_file / "figures")], "cannot create"),
        (["compare", str(tmp_path), "-o", str(a_file / "c.png")], "not a directory"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err and str(a_file) in err


def test_an_unusable_cache_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("")
    assert main(["prepare", "--dataset", "synth", "--cache", str(a_file), "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err
    monkeypatch.setenv("GEOMER_CACHE", str(a_file / "cache"))
    assert main(["train", "--model", "dere-grl", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(a_file) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]



@pytest.mark.parametrize("error, shown", [
    (OSError(28, "No space left on device"), "No space left on device"),
    (BrokenProcessPool("worker gone"), "a worker process died"),
    # settings too large for the machine: torch reports an allocation it cannot make this way
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                  "you tried to allocate 10444800000000 bytes.\nError code 12"),
     "out of memory ([enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory"),
    (RuntimeError("CUDA error: out of memory\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."),
     "out of memory (CUDA error: out of memory): use smaller settings"),
    (MemoryError(), "out of memory (MemoryError)"),
])
def test_errors_without_a_file_are_one_line(monkeypatch, capsys, error, shown):
    """A full disk (an OSError naming no file), a killed worker process and a lack of memory end
    in one line, status 2."""
    _models_command_raises(monkeypatch, error)
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and shown in err[0]


def _models_command_raises(monkeypatch, error: BaseException) -> None:
    """Make ``geomer models`` raise ``error``."""
    from geomer import cli

    def fail(args):
        raise error

    build = cli.build_parser

    def parser_whose_models_command_fails():
        parser = build()
        parser._subparsers._group_actions[0].choices["models"].set_defaults(func=fail)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_whose_models_command_fails)


def test_a_runtime_error_that_is_no_lack_of_memory_stays_a_traceback(monkeypatch):
    # a defect in geomer or torch is not the user's to fix: never dressed up as one line
    _models_command_raises(monkeypatch, RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main(["models"])


def test_an_out_holding_another_run_is_refused_before_any_extraction(trained_run, tiny_root, tmp_path, capsys):
    # settings known before the features are extracted are compared first: on real data the
    # extraction takes minutes
    _, _, run = trained_run
    cache = tmp_path / "features"
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                   "--cache", str(cache), "--epochs", "3", "--seeds", "0,1", "--batch-size", "4",
                   "--out", str(run), "--quiet", *SMALL])
    assert status == 2
    assert "the run directory holds a different run (differs in epochs, settings)" in capsys.readouterr().err
    assert not any(path.is_file() for path in cache.rglob("*"))


def test_a_folder_where_a_fold_writes_is_refused_before_any_extraction(trained_run, tiny_root, tmp_path, capsys):
    _, _, trained = trained_run
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    blocked = next(run.glob("seed-1/*/predictions.csv"))
    blocked.unlink()
    blocked.mkdir()  # the fold would be trained again, then fail to write its predictions
    cache = tmp_path / "features"
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                   "--cache", str(cache), "--epochs", "2", "--seeds", "0,1", "--batch-size", "4",
                   "--out", str(run), "--quiet", *SMALL])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"{blocked}: is a folder, where the run writes the fold's predictions.csv" in err
    assert not any(path.is_file() for path in cache.rglob("*"))


@pytest.mark.parametrize("name", ["prediction.json", "relations.png"])
def test_predict_refuses_a_folder_where_an_output_goes_before_any_work(tiny_root, tmp_path, capsys, name):
    # found before the tracking and the model run (the checkpoint is not even read), nothing written
    clip = next(p for p in sorted(tiny_root.glob("sub*/*")) if p.is_dir())
    (tmp_path / "p" / name).mkdir(parents=True)
    assert main(["predict", str(clip), "--checkpoint", str(tmp_path / "no.pt"), "-o", str(tmp_path / "p"), "--quiet"]) == 2
    assert f"{tmp_path / 'p' / name}: is a folder, where predict writes its {name}" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "p").iterdir()] == [name]


def test_an_unreachable_ray_cluster_is_refused_before_any_feature_is_extracted(tiny_root, tmp_path, capsys):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
        status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                       "--executor", "ray", "--ray-address", address, "--cache", str(tmp_path / "cache"),
                       "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and f"cannot reach {address}" in err
    # neither features nor the run: the cluster was tried before the extraction
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "cache").rglob("*.npz"))


def test_the_agreement_line_names_the_baseline_and_each_kinds_spearman(tmp_path):
    """The ground-truth line shows the input-only baseline and each relation's Spearman from ground_truth_agreement."""
    from geomer.cli._common import relation_agreement_line
    from geomer.relations import ground_truth_agreement, load_run_relations, synthetic_ground_truth
    from geomer.rundir import load_run
    from tests.geomer.viz.test_viz_figures import _synthetic_run

    run = load_run(_synthetic_run(tmp_path, "dere-grl")[0])
    kinds = load_run_relations(run.path, list(run.classes), run.num_components)
    table = ground_truth_agreement(kinds, list(run.classes), synthetic_ground_truth(run), run=run)
    line = relation_agreement_line(run).strip().splitlines()[-1]
    rows = table.set_index("relation")
    assert {"occlusion", "input-only baseline"} <= set(rows.index)
    for relation in ("occlusion", "input-only baseline"):
        assert f"{relation} {rows.loc[relation, 'spearman']:.3f}" in line, relation
