"""A report's figure: matplotlib off-screen (no display here or in CI), returned as PNG bytes."""

from __future__ import annotations

import io


def subplots(figsize: tuple[float, float], grid: tuple[int, int] | None = None):
    """(figure, axes) on matplotlib's off-screen Agg backend; with `grid` (rows, columns) the axes as rows of axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if grid is None:
        return plt.subplots(figsize=figsize)
    return plt.subplots(*grid, figsize=figsize, squeeze=False)


def png(fig) -> bytes:
    """The figure laid out, as PNG bytes at 100 dpi; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
