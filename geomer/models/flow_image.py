"""The whole-face flow image read at the nodes: flow-pixel patches centred on each node.

A clip may carry its onset→apex flow as one small image (``flow_image`` [3, F, F]: u, v, optical
strain; :mod:`geomer.features.flow_image`) and where its nodes lie in that image
(``flow_image_points`` [N, 2], x and y in flow pixels). At a 256-px aligned face, the node
patches of the feature scales (8–32 px) span 1–3.5 pixels of the composite's 28×28 flow image,
so they see little of what the image holds; a patch sized in *flow* pixels reads the image at
its own resolution, and stays on its node, so every feature keeps its facial component.
``dere-grl`` and ``mmt`` read it this way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
