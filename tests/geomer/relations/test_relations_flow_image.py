"""Occlusion of the whole-face flow image: a component's REGION is neutralised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from geomer.errors import GeomerError
from geomer.features.crop import canonical_to_crop
from geomer.features.flow_image import flow_image_regions
from geomer.graph import FaceGraph
from geomer.models import ModelOutput
from geomer.relations import neutralise, occlusion_relations

GRAPH = FaceGraph("k7")
SIZE = 28
MOUTH, RIGHT_BROW = 6, 1


def template_in_flow_image() -> np.ndarray:
    affine = canonical_to_crop(SIZE)
    return (GRAPH.template @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


def near(component: int, radius: float = 1.0) -> torch.Tensor:
    """[F, F] pixels within ``radius`` of a node of ``component`` — fixed, independent of the
    region map."""
    points = template_in_flow_image()[GRAPH.component == component]
    grid = np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="xy"), axis=-1)
    distance = np.linalg.norm(grid[:, :, None] - points[None, None], axis=-1).min(axis=-1)
    return torch.from_numpy(distance <= radius)


def clip(rng: np.random.Generator, label: int = 1) -> Data:
    """A flow-image clip that moves everywhere (u, v, strain random), with its region map."""
    image = rng.normal(0.0, 0.3, size=(3, SIZE, SIZE)).astype(np.float32)
    image[2] = np.abs(image[2])
    regions = flow_image_regions(template_in_flow_image(), GRAPH.component, SIZE)
    return Data(flow_image=torch.from_numpy(image)[None], flow_image_component=torch.from_numpy(regions)[None],
                component=torch.as_tensor(GRAPH.component), y=torch.tensor([label]), num_nodes=GRAPH.num_nodes)


class TwoRegionModel(nn.Module):
    """Class 1's evidence is the flow energy of the mouth's pixels TIMES that of the right brow's
    (both needed); class 0 is constant. Its relations are uniform (no mechanism of its own)."""

    def forward(self, batch) -> ModelOutput:
        image = batch.flow_image
        energy = lambda mask: (image[:, 0] ** 2 + image[:, 1] ** 2)[:, mask].mean(dim=1)  # noqa: E731
        evidence = 40 * energy(near(MOUTH)) * energy(near(RIGHT_BROW))
        logits = torch.stack([torch.full_like(evidence, 0.5), evidence], dim=1)
        k = GRAPH.num_components
        return ModelOutput(logits, torch.full((len(image), k, k), 1 / k), evidence[:, None])


def test_regions_follow_the_nearest_node_and_leave_the_background():
    points = template_in_flow_image()
    regions = flow_image_regions(points, GRAPH.component, SIZE)
    assert regions.shape == (SIZE, SIZE) and regions.dtype == np.int64
    for point, component in zip(points, GRAPH.component):
        x, y = np.round(point).astype(int)
        if 0 <= x < SIZE and 0 <= y < SIZE:
            assert regions[y, x] == component or np.linalg.norm(point - (x, y)) > 0.3
    assert set(np.unique(regions)) == {-1, *range(GRAPH.num_components)}
    assert regions[0, 0] == regions[0, -1] == -1  # the image's corners are off the face
    mouth_rows = np.nonzero((regions == MOUTH).any(axis=1))[0]
    brow_rows = np.nonzero((regions == RIGHT_BROW).any(axis=1))[0]
    assert mouth_rows.min() > brow_rows.max()


def test_neutralise_clears_only_the_components_region():
    rng = np.random.default_rng(0)
    batch = Batch.from_data_list([clip(rng), clip(rng)])
    out = neutralise(batch, (MOUTH,))
    region = batch.flow_image_component == MOUTH  # [B, F, F]
    assert bool(region.any())
    before, after = batch.flow_image, out.flow_image
    assert torch.all(after[:, 0][region] == 0) and torch.all(after[:, 1][region] == 0)
    still = before[:, 2].flatten(1).median(dim=1).values
    torch.testing.assert_close(after[:, 2], torch.where(region, still[:, None, None], before[:, 2]))
    torch.testing.assert_close(after[:, :2][~region[:, None].expand(-1, 2, -1, -1)],
                               before[:, :2][~region[:, None].expand(-1, 2, -1, -1)])
    assert not torch.equal(before, after)  # the input batch is left as it was
    torch.testing.assert_close(neutralise(batch, (MOUTH,)).flow_image, after)


def test_a_model_of_two_regions_gets_its_relation_there():
    rng = np.random.default_rng(1)
    result = occlusion_relations(TwoRegionModel(), [clip(rng) for _ in range(5)], num_components=7, batch_size=4)
    relevance = result.relevance.mean(axis=0)
    assert relevance[MOUTH] > 0.1 and relevance[RIGHT_BROW] > 0.1
    others = [k for k in range(7) if k not in (MOUTH, RIGHT_BROW)]
    assert relevance[others].max() < 0.02 * min(relevance[MOUTH], relevance[RIGHT_BROW])
    pairwise = result.pairwise.mean(axis=0)
    off = pairwise[~np.eye(7, dtype=bool)]
    assert pairwise[MOUTH, RIGHT_BROW] == pytest.approx(off.max())
    assert np.sort(off)[-3] < 0.02 * off.max()  # the pair (both orders) stands alone


def test_a_flow_image_without_its_regions_is_refused():
    data = clip(np.random.default_rng(2))
    del data.flow_image_component
    with pytest.raises(GeomerError, match="flow_image_component"):
        neutralise(Batch.from_data_list([data]), (MOUTH,))
