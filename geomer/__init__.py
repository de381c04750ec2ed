"""geomer: facial micro-expression recognition on facial-landmark region graphs.

The package is organised by concept (see DESIGN.md section 2): ``graph`` → ``features`` →
``data`` → ``synth`` → ``models`` → ``train`` → ``viz``; the ``cli`` only calls public functions.
"""

__version__ = "0.1.0"
