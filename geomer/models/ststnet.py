"""STSTNet: the Shallow Triple Stream Three-dimensional CNN, a reference model on whole flow images.

Liong, Gan, See, Khor, Huang: *Shallow Triple Stream Three-dimensional CNN (STSTNet) for
Micro-expression Recognition*, IEEE FG 2019 (arXiv:1902.03634). The paper's network: the onset→apex
optical flow of the whole face as a 28×28 image with three channels (horizontal flow u, vertical
flow v, optical strain) stacked into a "3-D" input; three shallow streams, 3×3 convolutions with 3,
5 and 8 filters, each followed by ReLU and 3×3 max pooling (stride 3); the 16 maps concatenated,
2×2 average pooling, flattened, one fully connected layer to the classes. It reached UF1 0.735 on
the MEGC 2019 composite in the challenge (the paper's own protocol).

It is here as the simple reference beside geomer's models, trained by the same engine, protocol
and pooled metrics (``geomer train --model ststnet``), on any dataset whose features carry
``flow_image`` (every frame dataset and ``megc2019-flow``; see ``geomer.features.flow_image``).

Reimplementation choices (not from the paper): padding 1 for the convolutions and 1 for the max
pooling (28 → 10 → 5 after the average pooling, 400 features); batch normalisation after each
stream's convolution (as the widely used public PyTorch versions have it); dropout before the
classifier; the engine's recipe (AdamW, class-weighted cross-entropy, a fixed epoch budget; values
set a priori, not tuned on any test fold).

Relations: STSTNet has no notion of facial components, so it has no intrinsic relations; it emits
the uniform matrix (every entry 1/K), which says "no information". Its occlusion relations are
measured like every model's: the occlusion rule (``geomer.relations.neutralise``) neutralises a
component's region of the flow image (the pixels whose nearest landmark belongs to it: u, v to 0,
strain to the image's still level), so they say which facial regions its evidence comes from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geomer.errors import GeomerError, check_shape
from geomer.features.types import FeatureSettings
from geomer.models.output import ModelOutput
from geomer.models.registry import register_model

STREAM_CHANNELS = (3, 5, 8)


@register_model("ststnet")
class STSTNet(nn.Module):
    """STSTNet: three shallow conv streams (3, 5, 8 filters) over the whole u/v/strain flow image.

    Settings:
        dropout: dropout on the pooled features, before the classifier.

    Shapes (F = ``features.flow_image_size``, 28 by default):
        - batch.flow_image: [B, 3, F, F]
        - output: logits [B, C], relations [B, K, K] (uniform), embedding [B, D]
          (D = 16·⌈(⌊(F − 1)/3⌋ + 1)/2⌉², 400 for F = 28)
    """

    paper = (
        "Liong, Gan, See, Khor, Huang: Shallow Triple Stream Three-dimensional CNN (STSTNet) for "
        "Micro-expression Recognition, IEEE FG 2019, arXiv:1902.03634"
    )
    requires: tuple[str, ...] = ("flow_image",)
    small_config: dict = {}
    # The engine's recipe: a fixed budget of 100 epochs (as the leak-free reference on the
    # composite), set a priori.
    train_defaults = {"epochs": 100, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-3}
    inputs: tuple[str, ...] = ("flow_image", "y")

    def __init__(
        self, num_classes: int, graph, *, features: FeatureSettings = FeatureSettings(), dropout: float = 0.5
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise GeomerError(f"ststnet: dropout must be in [0, 1), got {dropout}")
        self.image_size = features.flow_image_size
        self.num_classes = int(num_classes)
        self.num_components = int(graph.num_components)
        self.dropout = float(dropout)
        self.streams = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3, channels, kernel_size=3, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=3, padding=1),
            )
            for channels in STREAM_CHANNELS
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)
        pooled = -(-((self.image_size - 1) // 3 + 1) // 2)  # conv keeps F; max pool; avg pool (ceil)
        self.embedding_size = sum(STREAM_CHANNELS) * pooled * pooled
        self.classifier = nn.Linear(self.embedding_size, self.num_classes)

    def forward(self, batch) -> ModelOutput:
        image = batch.flow_image
        check_shape(image, ("B", 3, self.image_size, self.image_size), "ststnet: flow_image",
                    hint=" (built for the feature settings' flow_image_size)")
        maps = torch.cat([stream(image) for stream in self.streams], dim=1)
        embedding = self.pool(maps).flatten(1)
        logits = self.classifier(F.dropout(embedding, self.dropout, self.training))
        size = logits.shape[0]
        k = self.num_components
        relations = torch.full((size, k, k), 1.0 / k, dtype=logits.dtype, device=logits.device)
        return ModelOutput(logits, relations, embedding)
