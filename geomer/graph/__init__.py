"""The facial-landmark region graph (see :class:`FaceGraph`)."""

from geomer.graph.face_graph import IBUG_CHAINS, NODE_SUBSETS, PARTITIONS, FaceGraph

__all__ = ["FaceGraph", "IBUG_CHAINS", "NODE_SUBSETS", "PARTITIONS"]
