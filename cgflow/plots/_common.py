"""What every figure module shares."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures go to files and never need a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
