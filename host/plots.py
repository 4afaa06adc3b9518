"""Figures for reports and run folders: matplotlib on the Agg backend (no display needed), saved as PNG
atomically. matplotlib is imported when a figure is made, never at module import.
"""

from __future__ import annotations

import io
from pathlib import Path

from tinyear.device.fileio import atomic_write_bytes


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int) -> Path:
    """Write `fig` as a PNG at `path` (folders made as needed), atomically, and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, buf.getvalue())
