"""Shared fixtures for model tests: realistic random PyG graphs with every modality.

Clips are built as :class:`geomer.features.types.ClipFeatures` and converted with the real
:func:`geomer.data.pyg.to_pyg`, so the tensors have exactly the shapes and layout the pipeline
produces: N = 68 nodes (k7 graph), S = 3 scales, P = 8 pixel patches, T = 16 steps, Tseq = 8
sequence frames.

The **separable** generator ties the class to *which components move*: class ``c`` moves
components ``moving_components(c, K)`` by a micro amplitude (about 0.03 inter-ocular distances,
~3 px on a 256-px face) along an onset → apex → offset bump; every modality is made consistent
with that motion (displacements, flow statistics and patches, the apex texture warped by the
motion, the frame sequence), and distractors are added: per-subject expressivity, a global head
translation, landmark and flow noise. With ``separable=False`` the moving components are drawn at
random, independent of the label.

Fixtures: ``contract`` (the dimensions), ``face_graph``, ``make_clip``, ``make_batch``, ``batch``
(4 clips, every modality), ``flow_batch`` (4 megc2019-flow-like clips: no onset, so no geometry,
texture onset or sequence), ``separable_split`` (train / test lists of Data, 3 classes),
``separable_batches`` (the same, collated once), ``fit`` and ``evaluate_accuracy`` (a fixed-step
AdamW loop and eval-mode accuracy for "the model learns" tests).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from geomer.data.pyg import to_pyg
from geomer.features.types import ClipFeatures
from geomer.graph import FaceGraph

CONTRACT = SimpleNamespace(N=68, S=3, P=8, T=16, Tseq=8, C=3, K=7)
PIXELS_PER_IOD = 100.0  # roughly the inter-ocular distance on a 256-px face crop
MICRO_AMPLITUDE = 0.03  # IOD units


def moving_components(label: int, num_components: int) -> tuple[int, int]:
    """The two components class ``label`` moves in the separable generator."""
    return ((2 * label + 1) % num_components, (2 * label + 2) % num_components)


def _texture_base(num_nodes: int, scales: int, patch: int) -> np.ndarray:
    """A fixed smooth grey texture per node and scale (the 'face'), in 0..1. [N, S, P, P]"""
    rng = np.random.default_rng(1234)
    coarse = rng.uniform(0.2, 0.8, size=(num_nodes, scales, 3, 3))
    grid = np.linspace(0, 2, patch)
    i0 = np.clip(np.floor(grid).astype(int), 0, 1)
    frac = grid - i0
    # bilinear upsampling of a 3×3 grid to P×P keeps gradients smooth and non-zero
    rows = coarse[..., i0, :] * (1 - frac)[:, None] + coarse[..., i0 + 1, :] * frac[:, None]
    return (rows[..., i0] * (1 - frac) + rows[..., i0 + 1] * frac).astype(np.float32)


def _warp(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """First-order warp of patches by a per-patch shift (u, v) in pixels: I(x - d) ≈ I - d·∇I."""
    gy, gx = np.gradient(texture, axis=(-2, -1))
    return np.clip(texture - u[..., None, None] * gx - v[..., None, None] * gy, 0.0, 1.0)


def _flow_image(points: np.ndarray, uv: np.ndarray, rng: np.random.Generator, size: int = 28):
    """The whole-face flow image [3, F, F] of node motions ``uv`` [N, 2] (px) at canonical
    ``points`` [N, 2]: Gaussian splats on an F×F face crop plus noise, in the features'
    convention (``geomer.features.flow_image``); and the nodes' positions in it [N, 2]."""
    from geomer.features.crop import canonical_to_crop
    from geomer.features.flow_image import flow_image_of_field

    affine = canonical_to_crop(size)
    centres = points @ affine[:, :2].T + affine[:, 2]  # [N, 2] pixels of the F×F crop
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), axis=-1)
    distance = ((grid[None] - centres[:, None, None, :]) ** 2).sum(-1)  # [N, F, F]
    weight = np.exp(-distance / (2 * 1.5**2))
    field = np.einsum("nhw,nc->hwc", weight, uv) + rng.normal(0.0, 0.05, size=(size, size, 2))
    return flow_image_of_field(field.astype(np.float32), size), centres.astype(np.float32)


def make_features(
    graph: FaceGraph,
    label: int,
    rng: np.random.Generator,
    *,
    separable: bool = True,
    kind: str = "frames",
    num_classes: int = CONTRACT.C,
    clip: str = "clip",
) -> ClipFeatures:
    """One synthetic clip's :class:`ClipFeatures` on ``graph`` (see the module docstring)."""
    n, k = graph.num_nodes, graph.num_components
    s, p, t, tseq = CONTRACT.S, CONTRACT.P, CONTRACT.T, CONTRACT.Tseq
    if separable:
        moved = moving_components(label, k)
    else:
        moved = tuple(rng.choice(k, size=2, replace=False))
    active = np.isin(graph.component, moved).astype(np.float32)  # [N]
    # per component and class a fixed direction, so the motion itself is class-specific
    angles = np.array([np.pi * (0.5 + 0.3 * np.sin(3.0 * (c + 1) + label)) for c in range(k)])
    direction = np.stack([np.cos(angles), -np.sin(angles)], axis=1)[graph.component]  # [N, 2]
    expressivity = rng.uniform(0.7, 1.3)
    time = np.linspace(0.0, 1.0, t, dtype=np.float32)
    profile = np.sin(np.pi * time) ** 2  # onset → apex (middle) → offset
    motion = MICRO_AMPLITUDE * expressivity * active[:, None] * direction  # [N, 2] at apex
    head = rng.normal(0.0, 0.3 * MICRO_AMPLITUDE, size=2) * time[:, None]  # [T, 2] drift
    geometry = profile[:, None, None] * motion[None] + head[:, None, :]
    geometry = geometry + rng.normal(0.0, 0.1 * MICRO_AMPLITUDE, size=(t, n, 2))
    geometry = geometry.astype(np.float32)
    apex_step = int(np.argmax(profile))
    apex = geometry[apex_step]
    edge = apex[graph.edges[:, 1]] - apex[graph.edges[:, 0]]

    # flow: the apex displacement in pixels, a bit coarser at larger scales, plus noise
    scale_gain = np.linspace(1.0, 0.8, s, dtype=np.float32)
    uv = apex[:, None, :] * PIXELS_PER_IOD * scale_gain[None, :, None]
    uv = uv + rng.normal(0.0, 0.15, size=uv.shape)
    magnitude = np.linalg.norm(uv, axis=-1)
    bins = np.floor((np.arctan2(uv[..., 1], uv[..., 0]) % (2 * np.pi)) / (np.pi / 4)).astype(int) % 8
    histogram = np.eye(8, dtype=np.float32)[bins] * (magnitude[..., None] > 0.05)
    relative = apex - apex[graph.edges].mean(axis=1).mean(axis=0)
    strain = (np.linalg.norm(relative, axis=-1) * 10.0)[:, None] * np.ones((1, s))
    flow_stats = np.concatenate(
        [uv, magnitude[..., None], histogram, strain[..., None]], axis=-1
    ).astype(np.float32)
    flow_patches = np.stack(
        [
            np.broadcast_to(uv[..., 0, None, None], (n, s, p, p)),
            np.broadcast_to(uv[..., 1, None, None], (n, s, p, p)),
            np.broadcast_to(strain[..., None, None], (n, s, p, p)),
        ],
        axis=2,
    ) + rng.normal(0.0, 0.05, size=(n, s, 3, p, p))

    base = _texture_base(n, s, p)
    onset_texture = np.clip(base + rng.normal(0.0, 0.01, size=base.shape), 0.0, 1.0)
    apex_texture = _warp(onset_texture, uv[..., 0], uv[..., 1])
    middle = s // 2
    steps = np.linspace(0, t - 1, tseq).round().astype(int)
    sequence = np.stack(
        [
            _warp(
                onset_texture[:, middle],
                uv[:, middle, 0] * profile[i],
                uv[:, middle, 1] * profile[i],
            )
            for i in steps
        ]
    )  # [Tseq, N, P, P]
    points = graph.template + rng.normal(0.0, 0.01, size=graph.template.shape)
    flow_image, flow_image_points = _flow_image(points, uv.mean(axis=1), rng)

    if kind == "flow_image":  # megc2019-flow: no onset landmarks, no frames
        return ClipFeatures(
            clip=clip, onset=None, apex=10, offset=None, apex_spotted=False,
            points=points + apex, geometry=None, apex_displacement=None, edge_displacement=None,
            flow_stats=flow_stats, flow_patches=flow_patches, texture_onset=None,
            texture_apex=apex_texture, sequence=None, flow_image=flow_image,
            flow_image_points=flow_image_points,
        )
    if kind != "frames":
        raise ValueError(f"unknown clip kind {kind!r}")
    return ClipFeatures(
        clip=clip, onset=0, apex=apex_step, offset=t - 1, apex_spotted=False, points=points,
        geometry=geometry, apex_displacement=apex, edge_displacement=edge,
        flow_stats=flow_stats, flow_patches=flow_patches, texture_onset=onset_texture,
        texture_apex=apex_texture, sequence=sequence, flow_image=flow_image,
        flow_image_points=flow_image_points,
    )


@pytest.fixture(scope="session")
def contract() -> SimpleNamespace:
    """The contract dimensions: N, S, P, T, Tseq, C (classes used here), K."""
    return CONTRACT


@pytest.fixture(scope="session")
def face_graph() -> FaceGraph:
    return FaceGraph("k7")


@pytest.fixture(scope="session")
def make_clip(face_graph):
    """``make_clip(label, seed, *, graph=None, separable=True, kind="frames", subject="s00")``
    → one PyG ``Data`` made by the real ``to_pyg``."""

    def build(label, seed, *, graph=None, separable=True, kind="frames", subject="s00",
              num_classes=CONTRACT.C):
        graph = face_graph if graph is None else graph
        rng = np.random.default_rng(seed)
        clip = f"{subject}_{seed:04d}"
        features = make_features(graph, int(label), rng, separable=separable, kind=kind,
                                 num_classes=num_classes, clip=clip)
        return to_pyg(features, graph, int(label), subject=f"synthetic/{subject}",
                      dataset="synthetic")

    return build


@pytest.fixture(scope="session")
def make_batch(make_clip):
    """``make_batch(size, seed=0, *, num_classes=3, **make_clip options)`` → a PyG ``Batch``
    whose labels cycle through the classes."""

    def build(size, seed=0, *, num_classes=CONTRACT.C, **options):
        clips = [
            make_clip(i % num_classes, seed * 10_000 + i, subject=f"s{i % 5:02d}",
                      num_classes=num_classes, **options)
            for i in range(size)
        ]
        return Batch.from_data_list(clips)

    return build


@pytest.fixture
def batch(make_batch) -> Batch:
    """4 clips with every modality (geometry, flow, texture, sequence)."""
    return make_batch(4, seed=1)


@pytest.fixture
def flow_batch(make_batch) -> Batch:
    """4 megc2019-flow-like clips: no geometry, texture onset or sequence."""
    return make_batch(4, seed=2, kind="flow_image")


@pytest.fixture(scope="session")
def separable_split(make_clip):
    """(train, test) lists of Data for a 3-class separable task: 120 / 60 clips, disjoint
    subjects."""
    train = [make_clip(i % 3, i, subject=f"s{i % 8:02d}") for i in range(120)]
    test = [make_clip(i % 3, 50_000 + i, subject=f"t{i % 4:02d}") for i in range(60)]
    return train, test


@pytest.fixture(scope="session")
def separable_batches(separable_split):
    """(train batches, test batch): the separable train clips collated once into 4 fixed
    batches of 30 (collating every step would dominate a test's time), the test clips into one."""
    train, test = separable_split
    batches = [Batch.from_data_list(train[i : i + 30]) for i in range(0, len(train), 30)]
    return batches, Batch.from_data_list(test)


def train_steps(model, batches, *, steps=60, lr=3e-3):
    """Fit ``model`` for ``steps`` AdamW steps cycling over the pre-collated ``batches``
    (cross-entropy plus the model's ``aux_loss``); returns the last loss."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = float("nan")
    for step in range(steps):
        batch = batches[step % len(batches)]
        out = model(batch)
        objective = torch.nn.functional.cross_entropy(out.logits, batch.y)
        if out.aux_loss is not None:
            objective = objective + out.aux_loss
        optimiser.zero_grad()
        objective.backward()
        optimiser.step()
        loss = float(objective.detach())
    return loss


def accuracy(model, batch) -> float:
    """Accuracy of ``model`` in eval mode on one collated batch."""
    model.eval()
    with torch.no_grad():
        predicted = model(batch).logits.argmax(dim=1)
    return float((predicted == batch.y).float().mean())


@pytest.fixture(scope="session")
def fit():
    """``fit(model, batches, steps=60, lr=3e-3)`` → last training loss."""
    return train_steps


@pytest.fixture(scope="session")
def evaluate_accuracy():
    """``evaluate_accuracy(model, batch)`` → accuracy in eval mode."""
    return accuracy


@pytest.fixture(scope="session")
def class_components():
    """``class_components(label, K)`` → the components the separable generator moves."""
    return moving_components
