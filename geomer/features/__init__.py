"""Per-clip features on the facial region graph: geometry, flow at nodes, texture, apex spotting.

Entry points: :func:`extract_clip` (frames + a landmark track), :func:`extract_flow_image_clip`
(megc2019-flow: apex crop + u/v/strain flow image), :func:`spot_apex`. Settings and the result are
:class:`FeatureSettings` and :class:`ClipFeatures`.
"""

from geomer.features.apex import spot_apex
from geomer.features.extract import decode_flow_image, extract_clip, extract_flow_image_clip
from geomer.features.types import ClipFeatures, FeatureSettings

__all__ = [
    "ClipFeatures",
    "FeatureSettings",
    "decode_flow_image",
    "extract_clip",
    "extract_flow_image_clip",
    "spot_apex",
]
