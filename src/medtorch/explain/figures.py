"""Figures for explanations, drawn on matplotlib's Agg canvas without pyplot, so a caller's
backend (a notebook's inline one) and open figures stay untouched.

>>> figure = agg_figure((6, 3)); figure.add_subplot().plot([0, 1]); png = png_bytes(figure)
"""

from __future__ import annotations

import io
from typing import Any


def agg_figure(figsize: tuple[float, float]) -> Any:
    """An empty ``matplotlib.figure.Figure`` of ``figsize`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Any, dpi: int = 110) -> bytes:
    """``figure`` as PNG bytes, cropped to what is drawn."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
