"""The flow image read at the nodes: the patch sampler, and mmt's flow-image scale token."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from geomer.models import create
from geomer.models.flow_image import flow_image_patches
from geomer.models.tokens import asinh, dense_nodes


def test_a_patch_at_a_whole_pixel_is_the_crop_of_the_image_with_zeros_outside():
    image = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    points = torch.tensor([[3.0, 4.0], [0.0, 0.0], [5.0, 2.0], [7.0, 7.0]])  # x, y; 2 nodes a graph
    batch = Batch.from_data_list([
        Data(flow_image=image[i:i + 1], flow_image_points=points[2 * i:2 * i + 2], num_nodes=2) for i in range(2)
    ])
    patches = flow_image_patches(batch, 2, 3, "test")
    assert patches.shape == (2, 2, 3, 3, 3)
    torch.testing.assert_close(patches[0, 0], image[0, :, 3:6, 2:5])  # rows y−1…y+1, columns x−1…x+1
    torch.testing.assert_close(patches[1, 0], image[1, :, 1:4, 4:7])
    corner = patches[0, 1]  # at (0, 0): the row and column above and left lie outside
    outside = torch.cat([corner[:, 0], corner[:, 1:, 0]], dim=1)
    torch.testing.assert_close(outside, torch.zeros_like(outside), atol=1e-4, rtol=0)
    torch.testing.assert_close(corner[:, 1:, 1:], image[0, :, 0:2, 0:2])
    # between pixels: bilinear
    half = Batch.from_data_list([Data(flow_image=image[:1], flow_image_points=torch.tensor([[3.5, 4.0]]), num_nodes=1)])
    torch.testing.assert_close(flow_image_patches(half, 1, 1, "test")[0, 0, :, 0, 0],
                               (image[0, :, 4, 3] + image[0, :, 4, 4]) / 2)


def test_without_a_flow_image_there_are_no_patches(batch):
    del batch.flow_image
    assert flow_image_patches(batch, 68, 5, "test") is None


def test_mmt_reads_the_flow_image_at_the_nodes_as_one_more_motion_scale(flow_batch, face_graph):
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2).eval()
    assert model.motion.scale_embedding.shape[0] == 3 + 1
    before = model(flow_batch).logits
    changed = flow_batch.clone()
    changed.flow_image = changed.flow_image + torch.randn_like(changed.flow_image)
    assert not torch.allclose(model(changed).logits, before)
    # its importance covers the image's scale too, and still sums to 1
    tokens = model._flow_image_tokens(flow_batch, 68)
    assert tokens.shape == (4, 68, 1, 16)
    flow, mask = dense_nodes(flow_batch, "flow_patches")
    importance = model.motion(flow, mask, None, tokens)[3]
    assert importance.shape == (4, 68, 4)
    torch.testing.assert_close(importance.sum(dim=(1, 2)), torch.ones(4))


def test_mmt_without_the_flow_image_scale_ignores_the_image(flow_batch, face_graph):
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, flow_image_patch=0,
                   flow_region_channels=0).eval()
    assert model.motion.scale_embedding.shape[0] == 3
    changed = flow_batch.clone()
    changed.flow_image = changed.flow_image + torch.randn_like(changed.flow_image)
    torch.testing.assert_close(model(changed).logits, model(flow_batch).logits)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 1e3, 1e6])
def test_asinh_agrees_with_torch_at_every_scale_and_sign(scale):
    values = torch.randn(1000) * scale
    torch.testing.assert_close(asinh(values.clone()), torch.asinh(values), rtol=3e-7, atol=0)
    torch.testing.assert_close(asinh(torch.zeros(3)), torch.zeros(3))


def test_asinh_at_the_ends_of_float32_and_with_a_gradient():
    values = torch.tensor([0.0, -1e-30, 1e15, 2e15, -1e20, 3e38, float("inf"), -float("inf")])
    torch.testing.assert_close(asinh(values.clone()), torch.asinh(values), rtol=3e-7, atol=0)
    assert asinh(torch.tensor([float("nan")])).isnan().all()
    leaf = torch.randn(5, requires_grad=True)
    asinh(leaf).sum().backward()
    torch.testing.assert_close(leaf.grad, 1 / torch.sqrt(leaf.detach() ** 2 + 1))

