"""Pretraining checkpoints: save them with what they saw, load them into a model, check for leaks.

A pretraining checkpoint (``geomer pretrain``) is a ``torch.save`` dict::

    format "geomer-pretrained", format_version 1, geomer_version,
    model (registered name), model_cfg, state_dict,
    subjects (sorted global subject keys whose frames were used, e.g. "casme2/sub01";
              frames outside a known dataset are recorded as "external/<folder>"),
    sources (the videos / frame folders used),
    frame_fingerprints ("<size>:<sha1>" of every frame file read; a video's file), format 2 on,
    feature_settings, settings (epochs, steps, …), history.

Pretraining must never see the test subjects of the evaluation it feeds (docs/architecture.md, "Evaluation"). Two ways
are leak-free: pretrain on **external data** (no subject of the evaluated dataset), or pretrain
**per fold** (``geomer pretrain --dataset NAME --root PATH --exclude-subjects KEYS``, once per
test fold; ``geomer train --pretrain per-fold`` does this inside the run). :func:`check_pretraining`
refuses a checkpoint that saw a test subject, :func:`check_pretraining_frames` one that read any
frame file of an evaluated clip (by content, so a copy or another folder name does not hide it);
:func:`pretraining_record` is what a run records in ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from geomer.atomic import atomic_torch_save, check_torch_archive
from geomer.errors import GeomerError

FORMAT = "geomer-pretrained"
FORMAT_VERSION = 2


def save_pretrained(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    model_name: str,
    model_cfg: dict | None = None,
    subjects: Iterable[str] = (),
    sources: Iterable[str] = (),
    frame_fingerprints: Iterable[str] = (),
    feature_settings: dict | None = None,
    settings: dict | None = None,
    history: list[dict] | None = None,
) -> Path:
    """Write a pretraining checkpoint atomically (temp file in the same folder, then rename)."""
    from geomer import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "geomer_version": __version__,
        "model": model_name,
        "model_cfg": dict(model_cfg or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "subjects": sorted(set(subjects)),
        "sources": [str(s) for s in sources],
        "frame_fingerprints": sorted(set(frame_fingerprints)),
        "feature_settings": dict(feature_settings or {}),
        "settings": dict(settings or {}),
        "history": list(history or []),
    }
    atomic_torch_save(path, payload)
    return path


def read_pretrained(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict; a one-line GeomerError for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise GeomerError(f"{path}: pretrained checkpoint not found")
    check_torch_archive(path)
    try:
        # weights_only: a pretraining checkpoint is a file a user brings from elsewhere, and a
        # full pickle could run code on loading
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise GeomerError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise GeomerError(f"{path}: not a geomer pretraining checkpoint (made by geomer pretrain)")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise GeomerError(
            f"{path}: pretraining checkpoint format {payload['format_version']} is newer than "
            f"this geomer ({FORMAT_VERSION})"
        )
    # what a run reads of it: the leak check's subjects and frames, the weights
    for name, kind in (("model", str), ("state_dict", dict), ("subjects", list), ("sources", list),
                       ("frame_fingerprints", list)):
        if not isinstance(payload.get(name), kind):
            raise GeomerError(f"{path}: not a geomer pretraining checkpoint (missing or malformed {name!r})")
    return payload


def pretrained_subjects(path: str | os.PathLike) -> set[str]:
    """The global subject keys whose frames the pretraining saw."""
    return set(read_pretrained(path)["subjects"])


def pretraining_record(path: str | os.PathLike) -> dict[str, Any]:
    """What a run records about its initialisation (``metrics.json``'s ``pretraining``)."""
    payload = read_pretrained(path)
    subjects = payload["subjects"]
    external = all(s.startswith("external/") for s in subjects)
    return {
        "path": str(path),
        "model": payload["model"],
        "mode": "external" if external else "dataset",
        "subjects": subjects,
        "num_sources": len(payload["sources"]),
        "settings": payload.get("settings", {}),
    }


def check_pretraining(path: str | os.PathLike, test_subjects: Iterable[str]) -> None:
    """Raise GeomerError when the pretraining saw any of ``test_subjects`` (a leak)."""
    seen = pretrained_subjects(path) & set(test_subjects)
    if seen:
        listed = ", ".join(sorted(seen)[:3]) + (" …" if len(seen) > 3 else "")
        raise GeomerError(
            f"{path}: pretraining saw test subject(s) {listed}; pretrain per fold "
            f"(geomer pretrain --exclude-subjects) or on external data"
        )


def file_fingerprint(path: str | os.PathLike) -> str:
    """``"<size>:<sha1 of the bytes>"`` of a file: what a frame IS, whatever its path."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{os.path.getsize(path)}:{digest.hexdigest()}"


def frame_files(source: str | os.PathLike) -> list[Path]:
    """The files holding a source's frames: a folder's frames in order, or the video itself."""
    from landmarks.io import list_frame_files

    source = Path(source)
    return list_frame_files(source) if source.is_dir() else [source]


def check_pretraining_frames(path: str | os.PathLike, samples: Iterable[Any]) -> None:
    """Raise GeomerError when the pretraining read a frame file whose content (size and SHA-1)
    equals one of the evaluated ``samples``' frame files (``Sample.source``: a frame folder or
    a video), whatever folder or name it had; a checkpoint without fingerprints (made before
    they were recorded) cannot be checked and is refused too.

    Only files whose size matches a recorded one are hashed, so the check costs a ``stat`` per
    evaluated frame file.
    """
    from landmarks.errors import LandmarksError

    payload = read_pretrained(path)
    recorded = set(payload.get("frame_fingerprints") or ())
    if not recorded:
        raise GeomerError(
            f"{path}: the checkpoint records no frame fingerprints (made by an older geomer), so "
            "it cannot be checked against the evaluated clips; pretrain it again"
        )
    sizes = {int(fingerprint.split(":", 1)[0]) for fingerprint in recorded}
    for sample in samples:
        if not sample.source or not Path(sample.source).exists():
            continue
        try:
            files = frame_files(sample.source)
        except LandmarksError:  # a clip folder without frames: nothing to compare
            continue
        for file in files:
            if file.stat().st_size in sizes and file_fingerprint(file) in recorded:
                raise GeomerError(
                    f"{path}: pretraining read frame {file} of clip {sample.key} (same content), "
                    "which this evaluation tests; pretrain per fold (geomer train --pretrain "
                    "per-fold) or on external data"
                )


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load a pretraining checkpoint's weights into ``model``; returns the checkpoint's record.

    Every tensor of the checkpoint whose name and shape match is loaded; the classifier head
    (which pretraining never trained, and whose size depends on the classes) is left as built.
    A checkpoint of another model, or one whose encoder shapes differ (another size or feature
    setting), raises a one-line GeomerError.
    """
    payload = read_pretrained(path)
    name = getattr(model, "model_name", None)
    if name is not None and name.split("-")[0] != str(payload["model"]).split("-")[0]:
        raise GeomerError(f"{path}: pretrained for model {payload['model']!r}, not {name!r}")
    own = model.state_dict()
    loaded, mismatched = {}, []
    for key, value in payload["state_dict"].items():
        if key.startswith("head."):
            continue
        if key not in own:
            mismatched.append(key)
        elif own[key].shape != value.shape:
            mismatched.append(f"{key} {tuple(value.shape)}≠{tuple(own[key].shape)}")
        else:
            loaded[key] = value
    if mismatched or not loaded:
        detail = mismatched[0] if mismatched else "no shared weights"
        raise GeomerError(
            f"{path}: pretrained weights do not fit this {name or type(model).__name__} ({detail}); "
            f"build the model with the pretraining's settings {payload['model_cfg']}"
        )
    model.load_state_dict(loaded, strict=False)
    return pretraining_record(path)
