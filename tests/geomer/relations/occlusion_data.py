"""Planted-relation clips for the occlusion and baseline tests (not collected: no test_ prefix).

Each class is defined by one pair of components whose nodes move (flow magnitude, landmark
displacement); every clip also moves one random other component (a distractor, the same for
every class), so reading which components moved cannot tell the class pair from the rest.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from geomer.graph import FaceGraph

SCALES, PATCH, STEPS, SEQUENCE = 3, 4, 16, 3
#: class → the (component, component) pair that defines it
CLASS_PAIRS = ((1, 6), (3, 6), (4, 5))


def planted_relevance(num_components: int = 7) -> np.ndarray:
    """[C, K, K] relevance of the planted classes, in the ground truth's co-activation form."""
    from geomer.synth.generate import coactivation

    out = []
    for pair in CLASS_PAIRS:
        activation = np.zeros(num_components)
        activation[list(pair)] = 1.0
        out.append(coactivation(activation))
    return np.stack(out)


def make_clip(graph: FaceGraph, label: int, moving: dict[int, float], rng: np.random.Generator,
              *, subject: str = "s0", clip: str = "c0") -> Data:
    """One clip whose components ``moving`` (component → px) move upward; every input modality set."""
    n = graph.num_nodes
    component = torch.as_tensor(graph.component, dtype=torch.long)
    displacement = np.zeros((n, 2), np.float32)
    for k, amount in moving.items():
        displacement[graph.component == k, 1] = -amount * (0.8 + 0.4 * rng.random(int((graph.component == k).sum())))
    displacement += rng.normal(0, 0.02, displacement.shape).astype(np.float32)
    magnitude = np.linalg.norm(displacement, axis=1)
    flow_stats = np.zeros((n, SCALES, 12), np.float32)
    flow_stats[:, :, :2] = displacement[:, None]
    flow_stats[:, :, 2] = magnitude[:, None]
    flow_stats[:, :, 3] = 1.0  # all motion in one orientation bin
    ramp = np.linspace(0, 1, STEPS, dtype=np.float32)
    geometry = displacement[:, None, :] * ramp[None, :, None] / 100.0
    onset = rng.random((n, SCALES, PATCH, PATCH)).astype(np.float32)
    apex = np.clip(onset + 0.1 * magnitude[:, None, None, None], 0, 1)
    sequence = np.stack([onset[:, 0]] * (SEQUENCE - 1) + [apex[:, 0]], axis=1)
    edges = graph.edges
    motion = geometry[:, -1]
    edge_motion = motion[edges[:, 1]] - motion[edges[:, 0]]
    x = np.concatenate([motion, flow_stats.reshape(n, -1)], axis=1)
    flow_patches = np.zeros((n, SCALES, 3, PATCH, PATCH), np.float32)
    flow_patches[:, :, 0] = displacement[:, 0, None, None, None]
    flow_patches[:, :, 1] = displacement[:, 1, None, None, None]
    return Data(
        x=torch.from_numpy(x), pos=torch.zeros(n, 2), edge_index=graph.edge_index.clone(),
        edge_attr=torch.from_numpy(np.concatenate([edge_motion, -edge_motion])), component=component,
        y=torch.tensor([label]), geometry=torch.from_numpy(geometry), flow_stats=torch.from_numpy(flow_stats),
        flow_patches=torch.from_numpy(flow_patches),
        texture=torch.from_numpy(np.stack([onset, apex], axis=2)), texture_apex=torch.from_numpy(apex),
        sequence=torch.from_numpy(sequence), clip=clip, subject=subject, dataset="planted",
    )


def planted_clips(graph: FaceGraph, per_class: int, seed: int = 0, *, class_motion: bool = True,
                  subjects: int = 4) -> list[Data]:
    """``per_class`` clips per class of ``subjects`` subjects: its pair moves 2–3 px and one
    distractor component, drawn uniformly from those outside the pair, moves 2–3 px. With
    ``class_motion`` off only the distractor moves, drawn from every component alike (nothing
    depends on the class)."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(per_class):
        for label, pair in enumerate(CLASS_PAIRS):
            moving = {k: rng.uniform(2, 3) for k in pair} if class_motion else {}
            others = [k for k in range(graph.num_components) if k not in pair or not class_motion]
            moving[int(rng.choice(others))] = rng.uniform(2, 3)
            clips.append(make_clip(graph, label, moving, rng, subject=f"s{i % subjects}", clip=f"c{i}_{label}"))
    return clips


from geomer.models import ModelOutput, register_model  # noqa: E402


@register_model("relations-test-linear")
class ComponentMotionClassifier(torch.nn.Module):
    """Linear classifier on each component's mean flow magnitude (the run-directory tests only).

    Shapes: batch.flow_stats [N_total, S, 12], batch.component [N_total] → logits [B, C]."""

    paper = "none: a fixture of geomer's relation tests"
    inputs = ("flow_stats", "component")

    def __init__(self, num_classes: int, graph):
        super().__init__()
        self.k = graph.num_components
        self.head = torch.nn.Linear(self.k, num_classes)

    def forward(self, batch) -> ModelOutput:
        from torch_geometric.utils import scatter

        size = int(batch.num_graphs)
        motion = scatter(batch.flow_stats[:, 0, 2], batch.batch * self.k + batch.component, dim=0,
                         dim_size=size * self.k, reduce="mean").view(size, self.k)
        relations = torch.softmax(motion[:, :, None] * motion[:, None, :], dim=-1)
        return ModelOutput(logits=self.head(motion), relations=relations, embedding=motion)
