"""Micron-BERT pretraining on unlabeled face frames, single process or DistributedDataParallel.

Pipeline: videos / frame folders → ``landmarks.track`` (cached under
``cache_root()/pretrain/tracks``) → pairs of frames ``gap`` apart → node-centred grey patches of
both frames on the clip's aligned face crop (the same crop, scales and patch sampling as
``geomer.features``) → :meth:`geomer.models.mubert.MicronBERT.pretraining_losses` (blockwise-swap
reconstruction + Patch-of-Interest context agreement) → a checkpoint recording the subjects and
sources it saw (:mod:`geomer.models.pretrained`).

Distributed: :func:`pretrain` runs unchanged under ``torchrun --nproc_per_node N``: it joins the
process group torchrun describes (gloo on CPU, nccl on GPU), rank 0 extracts the frame pairs and
broadcasts them, a ``DistributedSampler`` shards them, DDP averages the gradients, rank 0 writes
the checkpoint::

    geomer pretrain --frames VIDEOS_OR_FOLDERS... --epochs 10 --out runs/pretrain
    torchrun --nproc_per_node 2 $(which geomer) pretrain --frames ... --out runs/pretrain
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from geomer.atomic import write_error
from geomer.errors import GeomerError
from geomer.features.types import FeatureSettings
from geomer.models.pretrained import file_fingerprint, frame_files
from geomer.rundir import FoldDir

#: The checkpoint ``geomer pretrain`` writes in its ``--out`` folder.
PRETRAINED_FILE = "pretrained.pt"


@dataclass(frozen=True)
class PretrainSource:
    """One video or frame folder and the global subject key of the person in it; ``key`` is
    the dataset sample key when it comes from a dataset (its cached landmark track is reused)."""

    path: Path
    subject: str
    key: str | None = None


@dataclass(frozen=True)
class PretrainConfig:
    """Pretraining settings (``geomer pretrain`` flags)."""

    model: str = "mubert"
    model_cfg: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    context_weight: float = 0.5
    seed: int = 0
    pairs_per_source: int = 4
    gap: int | None = None  # frames between the two frames of a pair; None → a quarter clip
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "pairs_per_source"):
            if int(getattr(self, name)) < 1:
                raise GeomerError(f"pretraining {name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise GeomerError(f"pretraining learning rate must be a positive number, got {self.lr}")
        if self.gap is not None and self.gap < 1:
            raise GeomerError(f"pretraining gap must be at least 1 frame, got {self.gap}")
        if not self.context_weight >= 0:
            raise GeomerError(f"pretraining context weight must be >= 0, got {self.context_weight}")


# ----------------------------------------------------------------------------- sources


def sources_from_paths(
    paths: Sequence[str | os.PathLike], exclude_subjects: Sequence[str] = ()
) -> list[PretrainSource]:
    """Videos and frame folders under ``paths`` (a path may be a video, a frame folder or a
    folder of those, searched recursively; a clip reached twice counts once), minus those of
    ``exclude_subjects``. Their subject
    keys are ``external/<parent folder>``; a key to exclude that none of them has is an error
    (it would exclude nothing)."""
    from landmarks.io import VIDEO_SUFFIXES, is_frame_file

    found: list[PretrainSource] = []

    def visit(path: Path) -> None:
        if path.is_file():
            if path.suffix.lower() in VIDEO_SUFFIXES:
                found.append(PretrainSource(path, f"external/{path.parent.name or 'root'}"))
            return
        if any(is_frame_file(c) for c in path.iterdir()):  # a frame folder, by the tracker's rule
            found.append(PretrainSource(path, f"external/{path.parent.name or 'root'}"))
            return
        for child in sorted(path.iterdir()):
            if not child.name.startswith("."):
                visit(child)

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise GeomerError(f"{path}: no such video or frame folder")
        before = len(found)
        visit(path)
        if len(found) == before:
            raise GeomerError(f"{path}: no video or frame folder found in it")
    unique: dict[Path, PretrainSource] = {}
    for source in found:  # a clip reached twice counts once
        unique.setdefault(source.path.resolve(), source)
    found = list(unique.values())
    excluded = set(exclude_subjects)
    unknown = excluded - {source.subject for source in found}
    if unknown:
        raise GeomerError(f"--exclude-subjects names no subject of the frames (their keys are "
                          f"external/<parent folder>): {sorted(unknown)[0]}")
    return [source for source in found if source.subject not in excluded]


def sources_from_dataset(
    name: str, root: str | os.PathLike, exclude_subjects: Sequence[str] = ()
) -> list[PretrainSource]:
    """The clips of a dataset (any reader of ``geomer.data``), minus ``exclude_subjects``
    (global keys), with their real subject keys — for per-fold pretraining."""
    from geomer.data.datasets import read_dataset

    index = read_dataset(name, root)
    excluded = set(exclude_subjects)
    unknown = excluded - {s.subject_key for s in index.samples}
    if unknown:
        raise GeomerError(f"{root}: --exclude-subjects names no subject of {name}: {sorted(unknown)[0]}")
    sources, seen = [], set()
    for sample in index.samples:
        if sample.subject_key in excluded or sample.source in seen:
            continue
        if not Path(sample.source).is_dir() and Path(sample.source).suffix.lower() not in (
            ".mp4", ".mov", ".avi", ".mkv"
        ):
            raise GeomerError(f"{sample.source}: dataset {name} has no frames to pretrain on")
        seen.add(sample.source)
        sources.append(PretrainSource(Path(sample.source), sample.subject_key, sample.key))
    return sources


def default_sources(exclude_subjects: Sequence[str] = (), progress: bool = True) -> list[PretrainSource]:
    """The synthetic standard dataset's clips (generated once, see ``geomer.synth``)."""
    from geomer.synth import standard_dataset

    return sources_from_dataset("synth", standard_dataset(progress=progress), exclude_subjects)


# ----------------------------------------------------------------------------- frame pairs


def _cached_track(source: Path, backend: str, key: str | None = None):
    """The source's landmark track: from ``geomer prepare``'s track cache when the source is a
    prepared dataset sample, else from (or into) ``cache_root()/pretrain/tracks``."""
    import landmarks
    from landmarks.track import LandmarkTrack

    from geomer.data.cache import FeatureCache
    from geomer.paths import cache_root

    if key is not None:
        prepared = FeatureCache(None, FeatureSettings(backend=backend)).track_path(source)
        if prepared.is_file():
            try:
                return LandmarkTrack.load(prepared)
            except Exception:  # noqa: BLE001 - unreadable: fall through to our own cache
                pass
    stat = source.stat()
    digest = hashlib.sha1(f"{source.resolve()}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    path = cache_root() / "pretrain" / "tracks" / backend / f"{digest}.npz"
    if path.is_file():
        try:
            return LandmarkTrack.load(path)
        except Exception:  # noqa: BLE001 - unreadable cache entry: track again
            pass
    track = landmarks.track(source, backend=backend)
    try:
        track.save(path)
    except OSError as error:
        raise write_error(path, error) from None
    return track


def frame_pair_patches(
    source: Path, settings: FeatureSettings, pairs: int, gap: int | None = None,
    key: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Node-centred grey patches of ``pairs`` frame pairs of one video or frame folder, and the
    content fingerprints (:func:`file_fingerprint`) of the frame files they were read from (the
    video file for a video).

    Both frames of a pair are warped with the clip's one alignment onto the face crop and
    sampled at the first frame's landmarks, as ``geomer.features`` samples onset and apex.

    Shapes: → ``[M, N, S, 2, P, P]`` float32 in 0..1 (M ≤ pairs; 0 when no usable pair).
    """
    from landmarks.errors import LandmarksError
    from landmarks.io import read_frames

    from geomer.features.crop import pixel_to_crop, to_grey, warp_to_crop
    from geomer.features.sampling import sample_patches

    graph = settings.graph()
    try:
        track = _cached_track(source, settings.backend, key)
        alignment = track.alignment()
    except LandmarksError as error:  # it names a file: the source, or a frame in it
        raise GeomerError(str(error)) from None
    length = len(track)
    gap = max(1, length // 4) if gap is None else int(gap)
    starts = [s for s in range(length - gap) if track.valid[s] and track.valid[s + gap]]
    if not starts:
        return np.zeros((0, graph.num_nodes, len(settings.scales), 2, settings.patch_size,
                         settings.patch_size), np.float32), []
    chosen = [starts[i] for i in np.linspace(0, len(starts) - 1, min(pairs, len(starts))).round().astype(int)]
    positions = sorted({p for s in chosen for p in (s, s + gap)})
    try:
        images = dict(zip(positions, read_frames(source, positions, numbers=track.frame_index[positions])))
    except LandmarksError as error:
        raise GeomerError(str(error)) from None
    transform = pixel_to_crop(alignment, settings.face_size)
    out = []
    for start in chosen:
        crops = [
            warp_to_crop(to_grey(images[p]), transform, settings.face_size).astype(np.float32) / 255.0
            for p in (start, start + gap)
        ]
        points = track.points[start, graph.node_ids].astype(np.float64)
        centres = (points @ transform[:, :2].T + transform[:, 2]).astype(np.float32)
        out.append(sample_patches(np.stack(crops, axis=-1), centres, settings.scales, settings.patch_size))
    files = frame_files(source)
    used = files if len(files) == 1 else [files[p] for p in positions]
    return np.stack(out).astype(np.float32), [file_fingerprint(f) for f in used]


def source_pairs(
    sources: Sequence[PretrainSource],
    settings: FeatureSettings,
    pairs_per_source: int,
    gap: int | None = None,
    progress: bool = True,
) -> list[tuple[np.ndarray, list[str]]]:
    """Frame-pair patches ``[M, N, S, 2, P, P]`` and frame fingerprints of each source, in order."""
    from tqdm import tqdm

    return [
        frame_pair_patches(source.path, settings, pairs_per_source, gap, source.key)
        for source in tqdm(sources, desc="frame pairs", disable=not progress, unit="clip")
    ]


def build_pairs(
    sources: Sequence[PretrainSource],
    settings: FeatureSettings,
    pairs_per_source: int,
    gap: int | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, list[PretrainSource], list[str]]:
    """Frame-pair patches of every source; returns them ``[M, N, S, 2, P, P]``, the sources
    that gave at least one pair (only those are recorded as seen) and the fingerprints of the
    frame files read."""
    chunks, used, fingerprints = [], [], []
    for source, (patches, prints) in zip(sources, source_pairs(sources, settings, pairs_per_source, gap, progress)):
        if len(patches):
            chunks.append(patches)
            used.append(source)
            fingerprints += prints
    if not chunks:
        apart = f" {gap} frames apart (is the gap as long as the clips?)" if gap is not None else ""
        raise GeomerError(f"no frame pair with a face in both frames{apart} in the given sources")
    return np.concatenate(chunks), used, fingerprints


# ----------------------------------------------------------------------------- training


class PretrainingObjective(torch.nn.Module):
    """Wraps a model's pretraining objective so that DDP sees the losses as its forward
    (``model.pretraining_objective()``; for Micron-BERT
    :class:`geomer.models.mubert.MicronBERTPretraining`: blockwise-swap reconstruction + a
    variance–covariance-regularised contextual token).

    Shapes: pairs ``[B, N, S, 2, P, P]`` → (total loss, dict of detached parts).
    """

    def __init__(self, model: torch.nn.Module, context_weight: float) -> None:
        super().__init__()
        self.losses = model.pretraining_objective()
        self.context_weight = context_weight

    @property
    def model(self) -> torch.nn.Module:
        return self.losses.student

    def forward(self, pairs: torch.Tensor, generator: torch.Generator | None = None):
        losses = self.losses(pairs[:, :, :, 0], pairs[:, :, :, 1], generator=generator)
        total = losses["reconstruction"] + self.context_weight * losses["context"]
        return total, {k: float(v.detach()) for k, v in losses.items()}


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def check_pretrainable(model: str) -> None:
    """GeomerError naming the pretrainable models when ``model`` has no pretraining."""
    from geomer.models import get_spec, list_models

    if not get_spec(model).pretrainable:
        known = [name for name in list_models() if get_spec(name).pretrainable]
        raise GeomerError(f"model {model!r} has no pretraining; pretrainable: {', '.join(known)}")


def train_on_pairs(
    pairs: torch.Tensor, graph, config: PretrainConfig, device: torch.device | None = None,
    features: FeatureSettings | None = None,
):
    """Pretrain ``config.model`` on frame-pair patches; DDP when a process group is initialised.

    Every rank must call it with the same ``pairs``; the ``DistributedSampler`` gives each rank
    its share. ``features``: the settings the pairs were sampled with (defaults when None).
    Returns (the unwrapped model, history: list of per-epoch mean losses and the optimiser
    steps taken so far).

    Shapes: pairs ``[M, N, S, 2, P, P]``.
    """
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler
    from tqdm import tqdm

    from geomer.models import create

    check_pretrainable(config.model)
    device = device or _device()
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts)
    model = create(config.model, 2, graph, features, **config.model_cfg).to(device)
    objective: torch.nn.Module = PretrainingObjective(model, config.context_weight)
    if distributed:
        objective = DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # the classifier head takes no part in pretraining
        )
    dataset = TensorDataset(pairs)
    sampler = DistributedSampler(dataset, shuffle=True, seed=config.seed) if distributed else None
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        shuffle=sampler is None,
        generator=torch.Generator().manual_seed(config.seed) if sampler is None else None,
        drop_last=False,
    )
    optimiser = torch.optim.AdamW(
        [p for p in objective.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    swap_generator = torch.Generator().manual_seed(config.seed * 1000 + rank)
    step = 0
    history = []
    epochs = tqdm(range(config.epochs), desc="pretrain", disable=not config.progress or rank != 0)
    for epoch in epochs:
        if sampler is not None:
            sampler.set_epoch(epoch)
        objective.train()
        sums: dict[str, float] = {}
        batches = 0
        for (batch,) in loader:
            loss, parts = objective(batch.to(device), swap_generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            for key, value in {"loss": float(loss.detach()), **parts}.items():
                sums[key] = sums.get(key, 0.0) + value
            batches += 1
        row = {"epoch": epoch + 1, "steps": step, **{k: v / max(batches, 1) for k, v in sums.items()}}
        history.append(row)
        epochs.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}")
    if distributed:
        # DDP keeps the parameters equal, but each rank's last steps updated the running
        # statistics of the fold standardisers (BatchNorm buffers) from its own shard only:
        # average them so that every rank holds the same model.
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= dist.get_world_size()
    return model, history


def pretrain(
    sources: Sequence[PretrainSource],
    out: str | os.PathLike,
    config: PretrainConfig = PretrainConfig(),
    settings: FeatureSettings = FeatureSettings(),
) -> Path | None:
    """Pretrain on ``sources`` and write ``out/pretrained.pt`` (``PRETRAINED_FILE``); returns its
    path in the process that wrote it, None in the other ranks of a group.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is joined here (gloo on CPU, nccl
    on GPU) and left again at the end; rank 0 writes the checkpoint. Without a group (no
    ``WORLD_SIZE`` above 1) this process is rank 0 whatever ``RANK`` says.
    """
    from geomer.models.pretrained import save_pretrained

    created = False
    world = os.environ.get("WORLD_SIZE", "1")
    if not world.isdigit():
        raise GeomerError(f"WORLD_SIZE={world!r} is not a process count (torchrun sets it)")
    # torchrun sets all four; a WORLD_SIZE left in the environment alone cannot join a group
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if int(world) > 1 and missing and not dist.is_initialized():
        raise GeomerError(f"WORLD_SIZE={world} but no {', '.join(missing)}: start the processes with "
                          "torchrun --nproc_per_node N, or unset WORLD_SIZE")
    if int(world) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(_device())
        dist.init_process_group(backend)
        created = True
    distributed = dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    try:
        payload = [None]
        if rank == 0:
            payload = [build_pairs(sources, settings, config.pairs_per_source, config.gap, config.progress)]
        if distributed:
            dist.broadcast_object_list(payload, src=0)
        pairs, used, fingerprints = payload[0]
        graph = settings.graph()
        model, history = train_on_pairs(torch.from_numpy(pairs), graph, config, features=settings)
        path = Path(out) / PRETRAINED_FILE
        if rank == 0:
            save_pretrained(
                path,
                model,
                model_name=config.model,
                model_cfg=config.model_cfg,
                subjects=[s.subject for s in used],
                sources=[str(s.path.resolve()) for s in used],
                frame_fingerprints=fingerprints,
                feature_settings=settings.to_dict(),
                settings={**asdict(config), "pairs": int(len(pairs)), "steps": history[-1]["steps"],
                          "world_size": dist.get_world_size() if distributed else 1},
                history=history,
            )
        if distributed:
            dist.barrier()
        return path if rank == 0 else None
    finally:
        if created:
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- per fold


@dataclass(frozen=True)
class FoldPretraining:
    """Per-fold pretraining inside a LOSO run (``geomer train --pretrain per-fold``): before each
    fold × seed is fine-tuned, its model is pretrained on the frame pairs of that fold's TRAINING
    clips only (never a test subject's), with the run's seed.

    ``pairs`` / ``fingerprints`` / ``subjects`` are per sample, in the run's sample order (the
    graphs' order); ``config`` holds the pretraining settings (its model, model settings and
    seed are the run's).
    """

    config: PretrainConfig
    pairs: tuple[np.ndarray, ...]
    fingerprints: tuple[tuple[str, ...], ...]
    subjects: tuple[str, ...]
    keys: tuple[str, ...]

    def record(self) -> dict:
        """What determines every fold's pretraining apart from its clips: ``config.json`` and
        ``metrics.json`` record it, so a changed setting is never resumed into old folds."""
        settings = asdict(self.config)
        for key in ("model", "model_cfg", "seed", "progress"):
            settings.pop(key)
        return {"mode": "per-fold", "settings": settings}


def fold_pretraining(samples, settings: FeatureSettings, config: PretrainConfig, progress: bool = True) -> FoldPretraining:
    """Frame pairs of every sample (``geomer.data`` ``Sample`` records, the run's order) for
    :func:`pretrain_fold`; GeomerError when a sample has no frames (e.g. ``megc2019-flow``)."""
    sources = []
    for sample in samples:
        path = Path(sample.source) if sample.source else None
        if path is None or not (path.is_dir() or path.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv")):
            raise GeomerError(f"{sample.source or sample.key}: clip {sample.key} has no frames to pretrain on (--pretrain per-fold)")
        sources.append(PretrainSource(path, sample.subject_key, sample.key))
    built = source_pairs(sources, settings, config.pairs_per_source, config.gap, progress)
    return FoldPretraining(
        config=config,
        pairs=tuple(pairs for pairs, _ in built),
        fingerprints=tuple(tuple(prints) for _, prints in built),
        subjects=tuple(source.subject for source in sources),
        keys=tuple(str(sample.key) for sample in samples),
    )


def pretrain_fold(
    pretraining: FoldPretraining,
    train: Sequence[int],
    test_subjects: Sequence[str],
    fold_dir: FoldDir,
    *,
    model: str,
    model_cfg: dict,
    graph,
    seed: int,
    feature_settings: dict,
    device: torch.device | str = "cpu",
) -> tuple[Path, dict]:
    """Pretrain ``model`` on the frame pairs of the samples ``train`` into
    the fold's ``pretrained-<key>.pt`` (:meth:`geomer.rundir.FoldDir.pretrained_path`), or reuse
    that file when it exists, reads back and records
    the same key. The key hashes everything that determines the weights: the pretraining
    settings, the model and its settings, the seed, the feature settings and the training clips'
    frame fingerprints. Returns the checkpoint's path and the fold's record for ``metrics.json``.
    """
    from geomer.models.pretrained import check_pretraining, read_pretrained, save_pretrained

    used = [i for i in train if len(pretraining.pairs[i])]
    if not used:
        raise GeomerError(f"{fold_dir.path}: no training clip of this fold gave a frame pair to pretrain on")
    subjects = sorted({pretraining.subjects[i] for i in used})
    leaked = set(subjects) & set(test_subjects)
    if leaked:  # the folds guarantee it; checked again because a leak here would be silent
        raise GeomerError(f"{fold_dir.path}: per-fold pretraining would see test subject {sorted(leaked)[0]}")
    identity = {
        **pretraining.record(), "model": model, "model_cfg": model_cfg, "seed": int(seed),
        "feature_settings": feature_settings,
        "frames": [list(pretraining.fingerprints[i]) for i in used],
    }
    key = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = fold_dir.pretrained_path(key)
    reused = False
    if path.is_file():
        try:
            payload = read_pretrained(path)
            reused = payload.get("settings", {}).get("key") == key
        except GeomerError:  # unreadable: pretrain again
            reused = False
    if reused:
        settings = payload["settings"]
    else:
        pairs = torch.from_numpy(np.concatenate([pretraining.pairs[i] for i in used]))
        config = replace(pretraining.config, model=model, model_cfg=dict(model_cfg), seed=int(seed), progress=False)
        features = FeatureSettings.from_dict(feature_settings) if feature_settings else None
        trained, history = train_on_pairs(pairs, graph, config, torch.device(device), features=features)
        settings = {**asdict(config), "pairs": int(len(pairs)), "steps": history[-1]["steps"], "key": key}
        save_pretrained(
            path, trained, model_name=model, model_cfg=model_cfg, subjects=subjects,
            sources=[pretraining.keys[i] for i in used],
            frame_fingerprints=[f for i in used for f in pretraining.fingerprints[i]],
            feature_settings=feature_settings, settings=settings, history=history,
        )
    check_pretraining(path, test_subjects)
    record = {"mode": "per-fold", "file": path.name, "steps": int(settings["steps"]),
              "epochs": int(settings["epochs"]), "pairs": int(settings["pairs"]),
              "subjects": len(subjects), "seed": int(seed)}
    return path, record


# ----------------------------------------------------------------------------- speed


def bench_pretrain(
    dim: int = 512, depth: int = 4, heads: int = 4, decoder_depth: int = 4,
    batch_size: int = 16, steps: int = 5, settings: FeatureSettings = FeatureSettings(),
) -> list[tuple[str, float, str]]:
    """Rows ``(what, value, unit)``: pretraining throughput (frame pairs/s) of ``mubert`` at the
    given width and depth (decoder as wide as the encoder), on random frame-pair patches of the
    default feature settings' shapes, with the full objective (blockwise swap, DMA,
    reconstruction, context views) and AdamW steps on the CPU (torch's thread count as set).
    The defaults are the official ``mae_vit_small_patch8`` encoder and decoder size.
    """
    import time

    from geomer.models import create

    if min(dim, depth, heads, decoder_depth, batch_size, steps) < 1:
        raise GeomerError("--dim, --depth, --heads, --decoder-depth, --batch-size and --steps must be at least 1")
    if dim % heads:
        raise GeomerError(f"--dim {dim} must be a multiple of --heads {heads}")
    graph = settings.graph()
    torch.manual_seed(0)
    model = create("mubert", 2, graph, settings, dim=dim, depth=depth, heads=heads, decoder_dim=dim,
                   decoder_depth=decoder_depth, mlp_ratio=4.0)
    objective = PretrainingObjective(model, PretrainConfig().context_weight)
    optimiser = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    shape = (batch_size, graph.num_nodes, len(settings.scales), 2, settings.patch_size, settings.patch_size)
    pairs = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        loss, _ = objective(pairs, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()  # warm-up: allocations, first-call overheads
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    cpu_seconds = (time.process_time() - cpu_started) / steps
    parameters = sum(p.numel() for p in objective.parameters())
    what = (f"pretraining mubert dim {dim}, depth {depth}, {heads} heads, decoder depth {decoder_depth}, "
            f"{graph.num_nodes} node tokens, {parameters / 1e6:.1f} M parameters with the decoder, batch {batch_size}, "
            f"{torch.get_num_threads()} threads")
    return [
        (what, batch_size / seconds, "pairs/s"),
        ("seconds per optimiser step", seconds, "s"),
        # CPU time of this process: on a shared machine the wall-clock rate follows the load
        ("frame pairs per CPU second (all threads together)", batch_size / cpu_seconds, "pairs/s"),
    ]
