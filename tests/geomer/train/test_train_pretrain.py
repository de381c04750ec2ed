"""Micron-BERT pretraining: DDP keeps ranks identical, the CLI on a tiny frame folder, checkpoints."""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_tiny_model import damage_archive

from geomer.cli import main
from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from geomer.models import create
from geomer.models.pretrained import (
    check_pretraining,
    file_fingerprint,
    load_pretrained,
    pretrained_subjects,
    pretraining_record,
    save_pretrained,
)
from geomer.features.types import FeatureSettings
from geomer.train.pretrain import PretrainConfig, build_pairs, sources_from_paths, train_on_pairs

SMALL = dict(dim=16, depth=1, heads=2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        pairs = torch.rand(8, 68, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
        config = PretrainConfig(model_cfg=SMALL, epochs=1, batch_size=4, progress=False)
        model, history = train_on_pairs(pairs, FaceGraph(), config, torch.device("cpu"))
        torch.save({"state": model.state_dict(), "history": history}, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_pretraining_leaves_identical_weights_on_both_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    first = torch.load(tmp_path / "rank0.pt")
    second = torch.load(tmp_path / "rank1.pt")
    torch.manual_seed(0)
    initial = create("mubert", 2, FaceGraph(), **SMALL).state_dict()
    assert first["history"][0]["loss"] > 0
    moved = 0
    for key, value in first["state"].items():
        torch.testing.assert_close(value, second["state"][key], rtol=0, atol=1e-6)
        moved += int(not torch.equal(value, initial[key]))
    assert moved > 10  # a real optimisation step happened on both ranks


def _write_face_frames(folder, count=6):
    from landmarks.render import shifted_photo_clip

    folder.mkdir(parents=True)
    shifts = np.stack([np.linspace(0.0, 2.0, count), np.zeros(count)], axis=1)
    for i, frame in enumerate(shifted_photo_clip(shifts, size=(320, 320))):
        cv2.imwrite(str(folder / f"img{i + 1}.png"), frame)


def test_sources_are_found_in_nested_folders_and_videos(tmp_path):
    (tmp_path / "sub01" / "EP01").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "sub01" / "EP01" / "img1.png"), np.zeros((8, 8), np.uint8))
    (tmp_path / "sub02").mkdir()
    (tmp_path / "sub02" / "clip.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._cover.jpg").write_bytes(b"\0" * 64)  # hidden: no frame, so the folder is no clip
    sources = sources_from_paths([tmp_path])
    assert [(s.path.name, s.subject) for s in sources] == [
        ("EP01", "external/sub01"),
        ("clip.mp4", "external/sub02"),
    ]
    # a clip reached twice (named again, or inside a folder also named) counts once
    again = sources_from_paths([tmp_path / "sub01" / "EP01", tmp_path, f"{tmp_path}/sub01/EP01/"])
    assert [s.path.name for s in again] == ["EP01", "clip.mp4"]
    with pytest.raises(GeomerError, match="no such"):
        sources_from_paths([tmp_path / "missing"])
    # an excluded subject's clips are left out; a key no clip has would exclude nothing: refused
    assert [s.subject for s in sources_from_paths([tmp_path], ["external/sub01"])] == ["external/sub02"]
    with pytest.raises(GeomerError, match="names no subject of the frames.*casme2/sub01"):
        sources_from_paths([tmp_path], ["casme2/sub01"])


@pytest.mark.slow
def test_pretrain_cli_on_a_tiny_frame_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    _write_face_frames(tmp_path / "people" / "alice")
    # a RANK left in the environment without a process group: this process writes and reports
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "out"
    status = main(["pretrain", "--frames", str(tmp_path / "people"), "--epochs", "2",
                   "--pairs-per-source", "3", "--gap", "2", "--out", str(out), "--quiet"])
    assert status == 0
    checkpoint = out / "pretrained.pt"
    assert pretrained_subjects(checkpoint) == {"external/people"}
    record = pretraining_record(checkpoint)
    assert record["mode"] == "external" and record["settings"]["pairs"] == 3
    assert "pretrained mubert" in capsys.readouterr().out

    model = create("mubert", 3, FaceGraph())
    before = model.patches.linear.weight.clone()
    load_pretrained(model, checkpoint)
    assert not torch.equal(before, model.patches.linear.weight)
    check_pretraining(checkpoint, {"casme2/sub01"})
    with pytest.raises(GeomerError, match="saw test subject"):
        check_pretraining(checkpoint, {"external/people"})


def test_pretrain_cli_rejects_a_missing_folder(tmp_path, capsys):
    assert main(["pretrain", "--frames", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "no such video or frame folder" in capsys.readouterr().err


def test_a_clip_without_a_face_is_named_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    clip = tmp_path / "people" / "wall"
    clip.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(clip / f"img{i + 1}.png"), np.full((64, 64), 90, np.uint8))
    assert main(["pretrain", "--frames", str(tmp_path / "people"), "--out", str(tmp_path / "pre"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"geomer pretrain: error: {clip}: no face found in any of its 2 frames"]


def test_pretrain_rejects_an_unknown_backend_before_any_work(tmp_path, capsys):
    assert main(["pretrain", "--backend", "nope", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown landmark backend 'nope'" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_load_pretrained_refuses_other_models_and_sizes(tmp_path):
    graph = FaceGraph()
    source = create("mubert", 2, graph, **SMALL)
    path = save_pretrained(tmp_path / "p.pt", source, model_name="mubert", model_cfg=SMALL,
                           subjects=["casme2/sub01"])
    with pytest.raises(GeomerError, match="not 'mmt'"):
        load_pretrained(create("mmt", 3, graph), path)
    with pytest.raises(GeomerError, match="do not fit"):
        load_pretrained(create("mubert", 3, graph, dim=32, depth=1, heads=2), path)
    target = create("mubert", 5, graph, **SMALL)
    load_pretrained(target, path)  # the head (5 classes) is left as built
    torch.testing.assert_close(target.dma.query.weight, source.dma.query.weight)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GeomerError, match="junk.pt"):
        pretrained_subjects(tmp_path / "junk.pt")
    damaged = damage_archive(path, tmp_path / "damaged.pt")
    with pytest.raises(GeomerError, match="damaged.pt: a damaged checkpoint .*CRC"):
        load_pretrained(create("mubert", 5, graph, **SMALL), damaged)


def test_pretrain_refuses_an_out_inside_a_run_before_any_work(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"geomer_version": "0.2.13"}')
    assert main(["pretrain", "--frames", str(tmp_path / "nope"), "--out", str(tmp_path / "run" / "pre"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"inside the run directory {tmp_path / 'run'}" in err[0]



def test_pretrain_refuses_a_negative_seed_before_any_work(tmp_path, capsys):
    assert main(["pretrain", "--frames", str(tmp_path / "nope"), "--seed", "-1", "--out", str(tmp_path / "pre"),
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["geomer pretrain: error: --seed must be at least 0, got -1"]
    assert not (tmp_path / "pre").exists()


@pytest.mark.parametrize("option, message", [
    (["--batch-size", "0"], "batch size must be at least 1"), (["--lr", "0"], "learning rate must be a positive"),
    (["--pairs-per-source", "0"], "pairs per source must be at least 1"), (["--gap", "0"], "gap must be at least 1"),
    (["--epochs", "0"], "epochs must be at least 1"),
])
def test_pretrain_refuses_bad_settings_before_finding_or_rendering_clips(tmp_path, monkeypatch, capsys, option, message):
    # without --frames the clips are the synthetic standard dataset's: rendered into the cache
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    assert main(["pretrain", *option, "--out", str(tmp_path / "pre"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_pretrain_never_replaces_an_earlier_checkpoint(tmp_path, capsys):
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / "pretrained.pt").write_bytes(b"an earlier pretraining")
    _write_face_frames(tmp_path / "people" / "alice", count=2)
    assert main(["pretrain", "--frames", str(tmp_path / "people"), "--out", str(tmp_path / "pre"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"geomer pretrain: error: {tmp_path / 'pre' / 'pretrained.pt'}: exists (an earlier pretraining); "
                   "remove it or choose another --out"]
    assert (tmp_path / "pre" / "pretrained.pt").read_bytes() == b"an earlier pretraining"
    (tmp_path / "pre" / "pretrained.pt").unlink()
    (tmp_path / "pre" / "pretrained.pt").mkdir()  # a folder in its place: said so
    assert main(["pretrain", "--frames", str(tmp_path / "people"), "--out", str(tmp_path / "pre"), "--quiet"]) == 2
    assert "pretrained.pt: is a folder, where pretrain writes its checkpoint" in capsys.readouterr().err


def test_a_gap_as_long_as_every_clip_is_named_in_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    _write_face_frames(tmp_path / "people" / "alice", count=3)
    with pytest.raises(GeomerError, match="3 frames apart .is the gap as long as the clips"):
        build_pairs(sources_from_paths([tmp_path / "people"]), FeatureSettings(), 2, gap=3, progress=False)
    assert len(build_pairs(sources_from_paths([tmp_path / "people"]), FeatureSettings(), 2, gap=2, progress=False)[0]) == 1


def test_a_track_that_cannot_be_cached_is_one_line_naming_it(tmp_path, monkeypatch):
    import errno

    from landmarks import LandmarkTrack

    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    _write_face_frames(tmp_path / "people" / "alice", count=3)

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")  # a real full disk names no file

    monkeypatch.setattr(LandmarkTrack, "save", full_disk)
    with pytest.raises(GeomerError, match=rf"^{tmp_path / 'cache'}/pretrain/tracks/.*\.npz: cannot write it \(No space"):
        build_pairs(sources_from_paths([tmp_path / "people"]), FeatureSettings(), 2, gap=2, progress=False)


# ----------------------------------------------------------------------------- the objective


def _mean_cosine_between_clips(model, pairs):
    model.eval()
    with torch.no_grad():
        context, _, _ = model.encode(pairs[:, :, :, 1], torch.ones(len(pairs), 68, dtype=torch.bool))
    unit = torch.nn.functional.normalize(context, dim=-1)
    similarity = unit @ unit.T
    n = len(unit)
    return float((similarity.sum() - similarity.diagonal().sum()) / (n * n - n))


@pytest.mark.slow
def test_contextual_tokens_of_different_clips_stay_apart(tmp_path, monkeypatch):
    """The cosine agreement used before collapsed here (mean cosine 0.986 → 0.9994 in 100 steps)."""
    from geomer.features.types import FeatureSettings
    from geomer.synth import generate
    from geomer.train.pretrain import build_pairs, sources_from_dataset

    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    root = generate(tmp_path / "synth", layout="casme2", subjects=6, clips=5, seed=2,
                    difficulty="easy", fps=50, progress=False)
    sources = sources_from_dataset("synth", root)
    pairs, used, fingerprints = build_pairs(sources, FeatureSettings(), 1, None, False)
    assert len(pairs) == 30 and len(used) == 30 and len(fingerprints) == 60
    pairs = torch.from_numpy(pairs)
    torch.manual_seed(0)
    before = _mean_cosine_between_clips(create("mubert", 2, FaceGraph()), pairs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, history = train_on_pairs(
            pairs, FaceGraph(), PretrainConfig(epochs=50, batch_size=16, lr=1e-3, progress=False),
            torch.device("cpu"),
        )
    finally:
        torch.set_num_threads(threads)
    assert history[-1]["steps"] == 100
    assert history[-1]["reconstruction"] < history[0]["reconstruction"]
    after = _mean_cosine_between_clips(model, pairs)
    assert before > 0.95  # the tokens of different faces start almost parallel
    assert after < 0.9, f"contextual tokens collapsed: mean cosine {after:.4f}"


# ----------------------------------------------------------------------------- in geomer train


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from geomer.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "tiny", layout="casme2", subjects=3, clips=2,
                    seed=1, difficulty="easy", fps=50, progress=False)


TINY = ["--set", "dim=16", "--set", "depth=1", "--set", "heads=2", "--set", "decoder_dim=16",
        "--epochs", "1", "--batch-size", "4", "--jobs", "1", "--quiet"]


@pytest.mark.slow
def test_per_fold_pretraining_sees_only_training_subjects_records_and_resumes(tiny_root, tmp_path, monkeypatch):
    import json

    from geomer.models.pretrained import read_pretrained

    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    command = ["train", "--model", "mubert", "--dataset", "synth", "--root", str(tiny_root),
               "--pretrain", "per-fold", "--pretrain-epochs", "2", "--seeds", "0", "--out", str(run), *TINY]
    assert main(command) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    pretraining = metrics["pretraining"]
    assert pretraining["mode"] == "per-fold" and pretraining["settings"]["epochs"] == 2
    assert sorted(pretraining["folds"]) == [f"seed-0/casme2_sub0{i}" for i in (1, 2, 3)]
    for name, record in pretraining["folds"].items():
        fold = run / name
        payload = read_pretrained(fold / record["file"])
        test_subject = "casme2/" + name.rsplit("_", 1)[1]
        assert payload["subjects"] == sorted({"casme2/sub01", "casme2/sub02", "casme2/sub03"} - {test_subject})
        assert record["steps"] == 2 * 1 and record["pairs"] == 2 * 2 * 4  # 2 epochs of one batch
        assert torch.load(fold / "checkpoint.pt", weights_only=False)["extra"]["init"].endswith(record["file"])

    # a fold whose fine-tuning did not finish is trained again, its pretraining is reused
    fold = run / "seed-0" / "casme2_sub02"
    pretrained = fold / pretraining["folds"]["seed-0/casme2_sub02"]["file"]
    stamp = pretrained.stat().st_mtime_ns
    predictions = (fold / "predictions.csv").read_text()
    (fold / "predictions.csv").unlink()
    assert main(command) == 0
    assert pretrained.stat().st_mtime_ns == stamp
    assert (fold / "predictions.csv").read_text() == predictions

    # pretraining changes what the fold's model starts from
    plain = tmp_path / "plain"
    assert main(["train", "--model", "mubert", "--dataset", "synth", "--root", str(tiny_root),
                 "--seeds", "0", "--out", str(plain), *TINY]) == 0
    assert json.loads((plain / "metrics.json").read_text())["pretraining"] is None
    assert (plain / "seed-0" / "casme2_sub02" / "predictions.csv").read_text() != predictions


def test_init_and_per_fold_pretraining_are_exclusive_and_refused_before_writing(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "--model", "mubert", "--dataset", "synth", "--root", str(tiny_root),
                   "--pretrain", "per-fold", "--init", str(tmp_path / "p.pt"), "--out", str(out), "--quiet"])
    assert status == 2
    assert "not both" in capsys.readouterr().err
    assert not out.exists()
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                   "--pretrain", "per-fold", "--out", str(out), "--quiet"])
    assert status == 2 and "has no pretraining" in capsys.readouterr().err
    assert not out.exists()
    status = main(["train", "--model", "mubert", "--dataset", "synth", "--root", str(tiny_root),
                   "--pretrain-epochs", "3", "--out", str(out), "--quiet"])
    assert status == 2 and "needs --pretrain per-fold" in capsys.readouterr().err
    status = main(["train", "--model", "mubert", "--dataset", "synth", "--root", str(tiny_root),
                   "--pretrain", "per-fold", "--pretrain-epochs", "0", "--out", str(out), "--quiet"])
    assert status == 2 and "epochs must be at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_a_checkpoint_of_another_model_is_refused_before_writing(tiny_root, tmp_path, capsys):
    frame = tmp_path / "external-frame.png"
    cv2.imwrite(str(frame), np.full((8, 8), 3, np.uint8))
    path = save_pretrained(tmp_path / "p.pt", create("mubert", 2, FaceGraph(), **SMALL), model_name="mubert",
                           model_cfg=SMALL, subjects=["external/x"], frame_fingerprints=[file_fingerprint(frame)])
    out = tmp_path / "run"
    status = main(["train", "--model", "dere-grl", "--dataset", "synth", "--root", str(tiny_root),
                   "--init", str(path), "--out", str(out), "--quiet"])
    error = capsys.readouterr().err
    assert status == 2 and len(error.strip().splitlines()) == 1 and "not 'dere-grl'" in error
    assert not out.exists()  # so the corrected command is not refused as "a different run"


def test_the_frame_guard_compares_content_not_names(tmp_path):
    import shutil
    from types import SimpleNamespace

    from geomer.models.pretrained import check_pretraining_frames
    from geomer.models.pretrained import file_fingerprint

    clip = tmp_path / "data" / "sub01" / "EP01"
    clip.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(clip / f"img{i + 1}.png"), np.full((8, 8), 40 * i, np.uint8))
    elsewhere = tmp_path / "renamed" / "anything"
    shutil.copytree(clip, elsewhere)  # the same frames under another name
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), np.full((8, 8), 7, np.uint8))
    model = create("mubert", 2, FaceGraph(), **SMALL)
    sample = SimpleNamespace(key="casme2/sub01/EP01", source=str(clip))

    seen = save_pretrained(tmp_path / "seen.pt", model, model_name="mubert", model_cfg=SMALL,
                           subjects=["external/renamed"], sources=[str(elsewhere)],
                           frame_fingerprints=[file_fingerprint(elsewhere / "img2.png")])
    with pytest.raises(GeomerError, match=r"img2.png of clip casme2/sub01/EP01"):
        check_pretraining_frames(seen, [sample])
    unseen = save_pretrained(tmp_path / "unseen.pt", model, model_name="mubert", model_cfg=SMALL,
                             subjects=["external/x"], frame_fingerprints=[file_fingerprint(other)])
    check_pretraining_frames(unseen, [sample])
    blind = save_pretrained(tmp_path / "blind.pt", model, model_name="mubert", model_cfg=SMALL,
                            subjects=["external/x"])
    with pytest.raises(GeomerError, match="no frame fingerprints"):
        check_pretraining_frames(blind, [sample])


@pytest.mark.slow
def test_train_refuses_external_pretraining_on_the_evaluated_clips_own_frames(tiny_root, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "not-the-dataset" / "clips"
    shutil.copytree(tiny_root / "sub02" / sorted(p.name for p in (tiny_root / "sub02").iterdir())[0], copy)
    assert main(["pretrain", "--frames", str(copy), "--epochs", "1", "--pairs-per-source", "1",
                 "--out", str(tmp_path / "pre"), "--quiet", "--model", "mubert"]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    status = main(["train", "--model", "mubert", "--dataset", "synth", "--root", str(tiny_root),
                   "--init", str(tmp_path / "pre" / "pretrained.pt"), "--out", str(out), *TINY])
    assert status == 2
    error = capsys.readouterr().err
    assert "pretraining read frame" in error and "casme2/sub02" in error
    assert not (out / "config.json").exists()


@pytest.mark.parametrize("environment, message", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but no RANK, MASTER_ADDR, MASTER_PORT: start the processes with torchrun"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a process count"),
])
def test_a_stray_world_size_is_one_line_before_anything_is_written(tmp_path, monkeypatch, environment, message):
    from geomer.train.pretrain import pretrain

    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(GeomerError, match=message):
        pretrain([], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
