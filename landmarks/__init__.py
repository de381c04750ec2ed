"""landmarks: face detection and 68-point landmark tracking from videos and frame folders.

A standalone package (it knows nothing about geomer). See ``landmarks.track`` for the entry point
and ``LandmarkTrack`` for the result.
"""

from landmarks.errors import LandmarksError
from landmarks.template import CANONICAL_TEMPLATE

__all__ = ["CANONICAL_TEMPLATE", "LandmarksError"]
