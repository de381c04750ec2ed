"""Micron-BERT pretraining: DDP keeps ranks identical, the CLI on a tiny frame folder, checkpoints."""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from geomer.cli import main
from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from geomer.models import create
from geomer.models.pretrained import (
    check_pretraining,
    load_pretrained,
    pretrained_subjects,
    pretraining_record,
    save_pretrained,
)
from geomer.train.pretrain import PretrainConfig, sources_from_paths, train_on_pairs

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
    sources = sources_from_paths([tmp_path])
    assert [(s.path.name, s.subject) for s in sources] == [
        ("EP01", "external/sub01"),
        ("clip.mp4", "external/sub02"),
    ]
    with pytest.raises(GeomerError, match="no such"):
        sources_from_paths([tmp_path / "missing"])


@pytest.mark.slow
def test_pretrain_cli_on_a_tiny_frame_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    _write_face_frames(tmp_path / "people" / "alice")
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
