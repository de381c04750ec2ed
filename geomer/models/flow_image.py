"""The whole-face flow image read at the nodes: flow-pixel patches centred on each node.

A clip may carry its onset→apex flow as one small image (``flow_image`` [3, F, F]: u, v, optical
strain; :mod:`geomer.features.flow_image`) and where its nodes lie in that image
(``flow_image_points`` [N, 2], x and y in flow pixels). At a 256-px aligned face, the node
patches of the feature scales (8–32 px) span 1–3.5 pixels of the composite's 28×28 flow image,
so they see little of what the image holds; a patch sized in *flow* pixels reads the image at
its own resolution, and stays on its node, so every feature keeps its facial component.
``dere-grl`` and ``mmt`` read it this way.

:class:`FlowRegionReadout` reads the rest of the image too: every pixel, summed over the region of
the facial component it belongs to (``flow_image_component``), so the features stay per component.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geomer.errors import check_shape


def flow_image_patches(batch, num_nodes: int, size: int, model: str) -> torch.Tensor | None:
    """The ``size``×``size`` flow pixels centred on every node (bilinear, zeros outside the image);
    None when the batch has no flow image with node positions.

    Shapes: ``batch.flow_image`` ``[B, 3, F, F]``, ``batch.flow_image_points`` ``[B·N, 2]``
    (x, y pixels) → ``[B, N, 3, size, size]``.
    """
    image = getattr(batch, "flow_image", None)
    points = getattr(batch, "flow_image_points", None)
    if image is None or points is None:
        return None
    side = image.shape[-1]
    graphs = points.shape[0] // num_nodes
    check_shape(image, (graphs, 3, side, side), f"{model}: flow_image")
    offsets = torch.arange(size, dtype=torch.float32, device=image.device) - (size - 1) / 2
    grid = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), dim=-1).reshape(-1, 2)
    pixels = points.float().reshape(graphs, num_nodes, 1, 2) + grid  # [B, N, size², 2]
    # pixel centres at -1 … 1 (align_corners=True): x ↦ 2x / (F − 1) − 1
    patches = F.grid_sample(image.float(), pixels * (2.0 / (side - 1)) - 1.0, mode="bilinear",
                            padding_mode="zeros", align_corners=True)  # [B, 3, N, size²]
    return patches.transpose(1, 2).reshape(graphs, num_nodes, 3, size, size)


class FlowRegionReadout(nn.Module):
    """Each facial component's region of the whole flow image, read pixel by pixel.

    Every pixel of the flow image (u, v, strain) is standardised with the training fold's
    statistics of that pixel (BatchNorm without affine), weighted by its own learned ``c``
    weights and summed over the pixels of each component's region (``flow_image_component``,
    the nearest node's component; off-face pixels are left out): a linear read-out of the
    image, split by component.

    Shapes: image [B, 3, F, F], regions [B, F, F] long (−1 off the face) → [B, K, c]
    (``c`` = ``channels``). :meth:`per_node` applies the models' rule of which clips read it.
    """

    def __init__(self, side: int, channels: int, num_components: int, model: str):
        super().__init__()
        self.side, self.num_components, self.model = int(side), int(num_components), model
        pixels = 3 * self.side * self.side
        self.norm = nn.BatchNorm1d(pixels, affine=False)
        # a region holds about pixels / K standardised values: its sum starts with unit variance
        self.weight = nn.Parameter(torch.randn(3, self.side * self.side, channels) * (pixels / num_components) ** -0.5)

    def forward(self, image: Tensor, regions: Tensor) -> Tensor:
        b = image.shape[0]
        check_shape(image, (b, 3, self.side, self.side), f"{self.model}: flow_image")
        flat = image.reshape(b, -1)
        if self.training and b == 1:  # no batch statistics from one clip: the running ones
            values = F.batch_norm(flat, self.norm.running_mean, self.norm.running_var, training=False)
        else:
            values = self.norm(flat)
        values = values.reshape(b, 1, 3, -1)
        # one matrix product: each clip's standardised pixels, kept once per component (zero
        # outside its region; off-face pixels are in none), times the per-pixel weights. The
        # same sums as weighting every pixel and summing per region, for less than half the time
        # forward and backward on a CPU
        component = torch.arange(self.num_components, device=regions.device).view(1, -1, 1, 1)
        in_region = (regions.reshape(b, 1, 1, -1) == component).to(values.dtype)  # [B, K, 1, F²]
        rows = (values * in_region).reshape(b * self.num_components, -1)  # [B·K, 3·F²]
        return (rows @ self.weight.reshape(rows.shape[1], -1)).reshape(b, self.num_components, -1)

    def per_node(self, batch, node_component: Tensor) -> Tensor | None:
        """Every node's read-out of its component's region, or None where the models do not read
        it: the batch has no flow image with regions, or its clips have a landmark trajectory
        (``geometry``), which carries their motion (README, "Real data": read by such clips, the
        per-pixel weights cost the synthetic tuning data).

        Shapes: batch.flow_image [B, 3, F, F], batch.flow_image_component [B, F, F],
        node_component [N] → [B, N, c]
        """
        image = getattr(batch, "flow_image", None)
        regions = getattr(batch, "flow_image_component", None)
        if image is None or regions is None or getattr(batch, "geometry", None) is not None:
            return None
        return self(image.float(), regions)[:, node_component]
