"""Token encoders shared by the transformer models: graph nodes (or node-centred patches) as tokens.

Every token of ``mmt``, ``mubert`` and ``hsta`` is a node of the region graph (or a patch centred
on one), so it carries

* its **component id** (a learned embedding per facial component), and
* a **position embedding** computed from the node's position in the canonical template
  (random-free Fourier features of the aligned (x, y), then a linear map),

plus the projection of its patch content (:class:`PatchProjection`). Because the component of
every token is known, the same K×K pooling turns any model's attention into relations
(:func:`geomer.models.attention.attention_relations`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import to_dense_batch



def dense_nodes(batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A node-major attribute of a PyG batch as a dense per-graph tensor.

    Shapes: ``batch[name]`` ``[N_total, ...]`` → ``[B, N, ...]`` (zero padded) and mask ``[B, N]``
    (True where a node exists).
    """
    values = getattr(batch, name)
    index = getattr(batch, "batch", None)
    if index is None:  # a single Data object
        index = torch.zeros(values.shape[0], dtype=torch.long, device=values.device)
    flat = values.reshape(values.shape[0], -1)
    dense, mask = to_dense_batch(flat, index)
    return dense.view(dense.shape[0], dense.shape[1], *values.shape[1:]), mask


def fourier_features(positions: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Sines and cosines of the positions at octave frequencies.

    Shapes: positions ``[..., 2]`` → ``[..., 4 * frequencies]``.
    """
    scales = (2.0 ** torch.arange(frequencies, dtype=positions.dtype, device=positions.device))
    angles = positions[..., None] * scales * math.pi  # [..., 2, F]
    features = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return features.flatten(-2)


class NodeTokenEmbedding(nn.Module):
    """Component id embedding + canonical-position embedding for each node of a graph.

    The template positions are in inter-ocular units (about ±1.5), so octave frequencies from
    1 to 2^(F-1) resolve neighbouring landmarks.

    Shapes: ``forward()`` → ``[N, D]``; ``component`` buffer ``[N]``.
    """

    def __init__(self, graph, dim: int, frequencies: int = 4) -> None:
        super().__init__()
        template = torch.as_tensor(np.asarray(graph.template, dtype=np.float32))
        component = torch.as_tensor(np.asarray(graph.component), dtype=torch.long)
        self.num_components = int(graph.num_components)
        self.register_buffer("template", template, persistent=False)
        self.register_buffer("component", component, persistent=False)
        self.frequencies = frequencies
        self.component_embedding = nn.Embedding(self.num_components, dim)
        self.position = nn.Linear(4 * frequencies, dim)

    def forward(self) -> torch.Tensor:
        position = self.position(fourier_features(self.template, self.frequencies))
        return position + self.component_embedding(self.component)


class PatchProjection(nn.Module):
    """Flattened node patches → token features.

    ``normalise="patch"`` standardises each patch (zero mean, unit variance: grey texture whose
    brightness differs between clips); ``"asinh"`` keeps signs and magnitudes but compresses
    large values (optical flow, whose magnitude is the signal); ``"none"`` leaves it to the caller
    (e.g. ``hsta`` normalises a node's whole frame sequence at once to keep temporal change).

    Shapes: patches ``[..., *patch_shape]`` → ``[..., D]`` (the trailing ``len(patch_shape)``
    dimensions are flattened).
    """

    def __init__(self, patch_shape: tuple[int, ...], dim: int, normalise: str = "patch") -> None:
        super().__init__()
        if normalise not in ("patch", "asinh", "none"):
            raise ValueError(f"unknown patch normalisation {normalise!r}")
        self.patch_shape = tuple(int(s) for s in patch_shape)
        self.normalise = normalise
        self.linear = nn.Linear(int(np.prod(self.patch_shape)), dim)

    def prepare(self, patches: torch.Tensor) -> torch.Tensor:
        """The normalised flat patch the linear layer sees, ``[..., prod(patch_shape)]``."""
        flat = patches.reshape(*patches.shape[: patches.dim() - len(self.patch_shape)], -1)
        flat = flat.to(self.linear.weight.dtype)
        if self.normalise == "patch":
            mean = flat.mean(dim=-1, keepdim=True)
            std = flat.std(dim=-1, keepdim=True, unbiased=False)
            return (flat - mean) / (std + 1e-3)
        if self.normalise == "asinh":
            return torch.asinh(flat)
        return flat

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.linear(self.prepare(patches))


def sized_variant(model_class: type[nn.Module], name: str, **defaults) -> Callable[..., nn.Module]:
    """A factory building ``model_class`` with other default settings (e.g. the paper size).

    The factory's signature is the class's with the new defaults, so the registry still lists and
    checks the settings; ``requires``, ``paper`` and the docstring are carried over.
    """

    def factory(num_classes: int, graph, **cfg) -> nn.Module:
        return model_class(num_classes, graph, **{**defaults, **cfg})

    signature = inspect.signature(model_class.__init__)
    parameters = [
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in signature.parameters.values()
        if p.name != "self"
    ]
    factory.__signature__ = signature.replace(parameters=parameters)
    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    factory.__doc__ = (
        f"{(inspect.getdoc(model_class) or '').splitlines()[0]} "
        f"({name}: {', '.join(f'{k}={v}' for k, v in defaults.items())})"
    )
    for attribute in ("requires", "requires_any", "paper"):
        if hasattr(model_class, attribute):
            setattr(factory, attribute, getattr(model_class, attribute))
    factory.model_class = model_class  # the registry reads the rest of the declarations there
    return factory
