"""A tiny registered model and hand-made graphs for the engine tests (not collected: no test_ prefix).

The engine imports this module by name in worker processes (the registry records where a model
was registered: ``ModelSpec.origin``), which is
also how a user's own registered model reaches a process pool or Ray.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from geomer.features import FeatureSettings
from geomer.models import ModelOutput, register_model

FEATURES = 4


@register_model("train-tiny")
class TinyComponentModel(nn.Module):
    """Linear classifier on component-pooled node features (engine tests only).

    Shapes: batch.x [N_total, 4], batch.component [N_total] → logits [B, C], relations [B, K, K].
    """

    paper = "none: a fixture of geomer's engine tests"
    requires = ("x",)
    inputs = ("x", "component")  # all it reads: the engine may drop other attributes
    small_config = {"hidden": 8}

    def __init__(self, num_classes: int, graph, hidden: int = 8, aux_weight: float = 0.0):
        super().__init__()
        self.num_components = graph.num_components
        self.encode = nn.Linear(FEATURES, hidden)
        self.head = nn.Linear(hidden * self.num_components, num_classes)
        self.aux_weight = aux_weight

    def forward(self, batch) -> ModelOutput:
        size = int(batch.num_graphs)
        k = self.num_components
        # The first FEATURES columns: the model also runs on other tests' graphs, whose x is wider.
        hidden = torch.tanh(self.encode(batch.x[:, :FEATURES].float()))
        group = batch.batch * k + batch.component
        components = scatter(hidden, group, dim=0, dim_size=size * k, reduce="mean").view(size, k, -1)
        relations = torch.softmax(components @ components.transpose(1, 2), dim=-1)
        aux = self.aux_weight * hidden.pow(2).mean() if self.aux_weight else None
        return ModelOutput(
            logits=self.head(components.flatten(1)),
            relations=relations,
            embedding=components.mean(dim=1),
            aux_loss=aux,
        )


@register_model("train-tiny-geometry")
class TinyGeometryModel(TinyComponentModel):
    """The tiny model, also sized by the feature geometry it is built for (engine tests only):
    its buffer ``steps_seen`` has ``features.steps`` entries, so a checkpoint shows which
    feature settings the engine built it with."""

    def __init__(self, num_classes: int, graph, *, features: FeatureSettings, hidden: int = 8):
        super().__init__(num_classes, graph, hidden=hidden)
        self.register_buffer("steps_seen", torch.zeros(features.steps))


def make_graphs(
    face_graph,
    subjects: int = 6,
    per_class: int = 2,
    classes: int = 3,
    separation: float = 1.5,
    seed: int = 0,
    datasets: tuple[str, ...] = ("alpha", "beta"),
) -> list[Data]:
    """Clips whose class shifts node feature ``label`` by ``separation`` (noise std 1)."""
    rng = np.random.default_rng(seed)
    n = face_graph.num_nodes
    component = torch.as_tensor(face_graph.component, dtype=torch.long)
    graphs = []
    for s in range(subjects):
        dataset = datasets[s % len(datasets)]
        for label in range(classes):
            for c in range(per_class):
                x = rng.normal(size=(n, FEATURES)).astype(np.float32)
                x[:, label] += separation
                graphs.append(
                    Data(
                        x=torch.from_numpy(x),
                        component=component.clone(),
                        edge_index=face_graph.edge_index,
                        y=torch.tensor([label]),
                        clip=f"clip{label}_{c}",
                        subject=f"{dataset}/s{s:02d}",
                        dataset=dataset,
                        num_nodes=n,
                    )
                )
    return graphs


def damage_archive(path, out):
    """Write ``path`` (a torch zip archive) to ``out`` with 8 bytes of its largest entry's stored
    data overwritten: the same size, a valid zip directory, but an entry that fails its CRC."""
    import zipfile
    from pathlib import Path

    path, out = Path(path), Path(out)
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    # the local header: 30 bytes, then the name and the extra field (lengths at offsets 26 and 28)
    name_length, extra_length = (int.from_bytes(data[entry.header_offset + o: entry.header_offset + o + 2], "little")
                                 for o in (26, 28))
    start = entry.header_offset + 30 + name_length + extra_length
    data[start: start + 8] = bytes(255 - b for b in data[start: start + 8])
    out.write_bytes(bytes(data))
    return out
