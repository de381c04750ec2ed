"""geomer: facial micro-expression recognition on facial-landmark region graphs.

The package is organised by concept (see docs/architecture.md, "Layers"): ``graph`` → ``features`` →
``data`` → ``synth`` → ``models`` → ``train`` → ``viz``; the ``cli`` only calls public functions.
"""

from geomer.version import __version__

__all__ = ["__version__"]
