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
    (True where a node exists). When every graph has the same N nodes (a batch's ``ptr`` says so)
    the result is a view of ``batch[name]``, not a copy: treat it as read-only.
    """
    values = getattr(batch, name)
    index = getattr(batch, "batch", None)
    if index is None:  # a single Data object
        return values[None], torch.ones(1, values.shape[0], dtype=torch.bool, device=values.device)
    ptr = getattr(batch, "ptr", None)
    if ptr is not None and len(ptr) > 1 and int(ptr[-1]) == values.shape[0]:
        counts = ptr[1:] - ptr[:-1]
        if bool((counts == counts[0]).all()):  # no padding: to_dense_batch's scatter is a reshape
            b, n = len(counts), int(counts[0])
            return values.view(b, n, *values.shape[1:]), torch.ones(b, n, dtype=torch.bool, device=values.device)
    flat = values.reshape(values.shape[0], -1)
    dense, mask = to_dense_batch(flat, index)
    return dense.view(dense.shape[0], dense.shape[1], *values.shape[1:]), mask


def component_sums(values: torch.Tensor, component: torch.Tensor, num_components: int) -> torch.Tensor:
    """The sum of the node values of each facial component (a classifier that reads its features
    per component keeps where they come from).

    Shapes: values ``[B, N, D]``, component ``[N]`` long → ``[B, K, D]``.
    """
    one_hot = torch.nn.functional.one_hot(component, num_components).to(values.dtype)  # [N, K]
    return torch.einsum("bnd,nk->bkd", values, one_hot)


def component_means(weighted: torch.Tensor, weights: torch.Tensor, component: torch.Tensor,
                    num_components: int) -> torch.Tensor:
    """The weighted mean of the node values of each facial component; 0 for a component whose
    nodes all have weight 0 (padded or masked).

    Shapes: weighted ``[B, N, D]`` (weight × value, as the caller has it), weights ``[B, N]``,
    component ``[N]`` long → ``[B, K, D]``.
    """
    mass = component_sums(weights[..., None], component, num_components).clamp_min(1e-6)
    return component_sums(weighted, component, num_components) / mass


def standardise(values: torch.Tensor, unbiased: bool, eps: float = 1e-3) -> torch.Tensor:
    """``(values − mean) / (std + eps)`` over the last dimension (``unbiased``: the n − 1 std).

    The std is computed in two passes (mean, then the centred squares): on CPU this is several
    times faster than ``torch.std``'s one-pass kernel over a short last dimension, and equal to
    it up to float rounding.

    Shapes: ``[..., L]`` → ``[..., L]``.
    """
    centred = values - values.mean(dim=-1, keepdim=True)
    count = values.shape[-1] - 1 if unbiased else values.shape[-1]
    std = (centred.square().sum(dim=-1, keepdim=True) / count).sqrt()
    return centred / (std + eps)


def asinh(values: torch.Tensor) -> torch.Tensor:
    """``asinh`` as ``sign(x) · log1p(|x| + x² / (1 + sqrt(x² + 1)))``, as accurate as
    ``torch.asinh`` in float32 (relative error about 1e-7) for every finite value and ±inf.

    Why: on CPU ``torch.asinh`` is not vectorised; over ``mmt``'s flow patches (a batch of 32
    clips holds 1.2 million values) it took 26 ms on one thread, a fifth of a training step;
    this form takes 5 ms. Above ``_ASINH_LIMIT`` (where x² would overflow) the identity
    ``asinh(x) ≈ log(2x)`` continues it: ``asinh(L) + log(x / L)``. Values that need a gradient
    take ``torch.asinh`` (the fast form works in place).

    Shapes: any → the same.
    """
    if values.requires_grad:
        return torch.asinh(values)
    size = values.abs()
    large = bool((size > _ASINH_LIMIT).any())
    bounded = size.clamp(max=_ASINH_LIMIT) if large else size
    square = bounded * bounded
    out = square.div_((square + 1).sqrt_().add_(1)).add_(bounded).log1p_()
    if large:
        out += torch.log(size.clamp(min=_ASINH_LIMIT) / _ASINH_LIMIT)
    return out.copysign_(values)


# where asinh's fast form stops squaring (float32 squares overflow above about 1.8e19)
_ASINH_LIMIT = 1e15


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

    def __init__(self, graph, dim: int, frequencies: int = 4, component_std: float = 0.02) -> None:
        super().__init__()
        template = torch.as_tensor(np.asarray(graph.template, dtype=np.float32))
        component = torch.as_tensor(np.asarray(graph.component), dtype=torch.long)
        self.num_components = int(graph.num_components)
        self.register_buffer("template", template, persistent=False)
        self.register_buffer("component", component, persistent=False)
        self.frequencies = frequencies
        self.component_embedding = nn.Embedding(self.num_components, dim)
        # ViT-style small start by default (nn.Embedding's own is N(0, 1)): embeddings that start
        # ~30× larger than the content projection drown a small motion signal in every token.
        if component_std != 1.0:
            nn.init.trunc_normal_(self.component_embedding.weight, std=component_std)
        self.position = nn.Linear(4 * frequencies, dim)

    def forward(self) -> torch.Tensor:
        position = self.position(fourier_features(self.template, self.frequencies))
        return position + self.component_embedding(self.component)


class FoldStandardiser(nn.Module):
    """Standardise each channel with statistics of the training fold (BatchNorm without affine).

    In training, each batch is standardised with its own per-channel mean and variance (over
    every other dimension) and running estimates are kept (BatchNorm's, momentum 0.1: they
    forget their initial value of 1 after ~100 training steps); in evaluation the running
    estimates are used. So the scale comes from training clips only, never from the test fold, and a
    1-px optical flow becomes an O(1) input instead of a perturbation the embeddings swamp.

    Shapes: values ``[M, C, ...]`` → the same shape.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, affine=False)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        flat = values.reshape(values.shape[0], values.shape[1], -1)
        if flat.shape[-1] == 1:
            flat = flat[..., 0]  # BatchNorm1d takes [M, C] or [M, C, L]
        return self.norm(flat).reshape(values.shape)


class PatchProjection(nn.Module):
    """Flattened node patches → token features.

    ``normalise`` says how a patch is scaled before the linear map:

    * ``"patch"``: each patch to zero mean, unit variance (grey texture whose brightness differs
      between clips);
    * ``"asinh"``: signs and magnitudes kept, large values compressed (optical flow as it is);
    * ``"fold"``: each channel (every dimension of ``patch_shape`` but the last two, e.g. flow's
      u, v, strain) standardised with the training fold's statistics (:class:`FoldStandardiser`):
      signs, magnitudes and the differences between nodes and clips are kept, on a scale the
      model can see (optical flow, frame differences: their magnitude is the signal);
    * ``"none"``: left to the caller.

    Shapes: patches ``[..., *patch_shape]`` → ``[..., D]`` (the trailing ``len(patch_shape)``
    dimensions are flattened).
    """

    def __init__(self, patch_shape: tuple[int, ...], dim: int, normalise: str = "patch") -> None:
        super().__init__()
        if normalise not in ("patch", "asinh", "fold", "none"):
            raise ValueError(f"unknown patch normalisation {normalise!r}")
        self.patch_shape = tuple(int(s) for s in patch_shape)
        self.normalise = normalise
        channels = int(np.prod(self.patch_shape[:-2])) if len(self.patch_shape) > 2 else 1
        self.standardiser = FoldStandardiser(channels) if normalise == "fold" else None
        self.linear = nn.Linear(int(np.prod(self.patch_shape)), dim)

    def prepare(self, patches: torch.Tensor) -> torch.Tensor:
        """The normalised flat patch the linear layer sees, ``[..., prod(patch_shape)]``."""
        lead = patches.shape[: patches.dim() - len(self.patch_shape)]
        flat = patches.reshape(*lead, -1).to(self.linear.weight.dtype)
        if self.normalise == "patch":
            return standardise(flat, unbiased=False)
        if self.normalise == "asinh":
            return asinh(flat)
        if self.normalise == "fold":
            channels = self.standardiser.norm.num_features
            rows = flat.reshape(-1, channels, flat.shape[-1] // channels)
            return self.standardiser(rows).reshape(flat.shape)
        return flat

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.linear(self.prepare(patches))


class MagnitudeEmbedding(nn.Module):
    """How much a node moves, as an explicit token feature.

    The mean optical-flow magnitude of each node patch, ``mean_pixels sqrt(u² + v²)``, one value
    per scale, standardised with the training fold's statistics (:class:`FoldStandardiser`) and
    mapped linearly to the token width. A linear map of the flow patch alone cannot compute a
    magnitude (a moving node's u, v can have either sign), and the magnitude is what separates
    moving from still nodes; unlike the movement prior, this feeds the model an input, it does
    not steer its attention.

    Shapes: flow patches ``[..., S, C >= 2, P, P]`` (u, v first) → ``[..., S, D]`` (one embedding
    per scale; sum over S for one multi-scale token).
    """

    def __init__(self, num_scales: int, dim: int) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.standardiser = FoldStandardiser(num_scales)
        self.linear = nn.Linear(1, dim)

    @staticmethod
    def magnitude(flow: torch.Tensor) -> torch.Tensor:
        """``[..., S, C, P, P]`` → mean flow magnitude per scale ``[..., S]``."""
        return flow[..., :2, :, :].float().pow(2).sum(dim=-3).sqrt().flatten(-2).mean(dim=-1)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        magnitude = self.magnitude(flow)
        lead = magnitude.shape[:-1]
        scaled = self.standardiser(magnitude.reshape(-1, self.num_scales)).reshape(*lead, -1)
        return self.linear(scaled.to(self.linear.weight.dtype)[..., None])


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
