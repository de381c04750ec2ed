"""The one shape-check helper: named dimensions, sizes carried across arrays, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomer.errors import GeomerError, check_shape
from geomer.features.types import ClipFeatures


def test_named_dimensions_bind_once_and_are_returned():
    assert check_shape(np.zeros((2, 4, 4)), ("B", "K", "K"), "relations") == {"B": 2, "K": 4}
    assert check_shape(torch.zeros(()), (), "loss") == {}
    with pytest.raises(GeomerError, match=r"^relations must be \[B, K, K\], got \[2, 4, 3\]$"):
        check_shape(np.zeros((2, 4, 3)), ("B", "K", "K"), "relations")
    with pytest.raises(GeomerError, match=r"must be \[B, K, K\], got \[4, 4\]"):
        check_shape(np.zeros((4, 4)), ("B", "K", "K"), "relations")
    with pytest.raises(ValueError, match=r"x must be \[3, 2\], got \[3, 1\] \(why\)"):
        check_shape(np.zeros((3, 1)), (3, 2), "x", error=ValueError, hint=" (why)")


def test_sizes_carry_a_name_across_arrays():
    sizes = check_shape(np.zeros((68, 2)), ("N", 2), "points")
    check_shape(np.zeros((68, 3, 12)), ("N", "S", 12), "flow_stats", sizes=sizes)
    assert sizes == {"N": 68, "S": 3}
    with pytest.raises(GeomerError, match=r"texture must be \[N=68, S=3, P, P\], got \[51, 3, 8, 8\]"):
        check_shape(np.zeros((51, 3, 8, 8)), ("N", "S", "P", "P"), "texture", sizes=sizes)


def test_clip_features_check_that_their_arrays_agree():
    n, s, p = 5, 2, 4
    arrays = dict(
        points=np.zeros((n, 2)), geometry=None, apex_displacement=None, edge_displacement=None,
        flow_stats=np.zeros((n, s, 12)), flow_patches=np.zeros((n, s, 3, p, p)), texture_onset=None,
        texture_apex=np.zeros((n, s, p, p)), sequence=None,
    )
    ClipFeatures(clip="c", onset=0, apex=1, offset=2, apex_spotted=False, **arrays)
    with pytest.raises(GeomerError, match=r"clip c: texture_apex must be \[N=5, S=2, P=4, P=4\], got \[5, 2, 4, 3\]"):
        ClipFeatures(clip="c", onset=0, apex=1, offset=2, apex_spotted=False,
                     **{**arrays, "texture_apex": np.zeros((n, s, p, 3))})
