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


def plot_detection_curves(curves: dict, path: str | Path, *, title: str = "", budget: float | None = None,
                          points: dict | None = None) -> Path:
    """Recall against false accepts per hour, one line per model: `curves` maps a name to rows with
    "recall" and "false_accepts_per_hour" (a sweep of the operating point); `points` maps a name to one
    (false accepts per hour, recall) operating point, drawn as a marker; `budget` draws a vertical line
    at that false-accept rate."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, rows in curves.items():
        pts = sorted({(r["false_accepts_per_hour"], r["recall"]) for r in rows if r["recall"] is not None})
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    for name, (fa, recall) in (points or {}).items():
        ax.plot([fa], [recall], marker="*", markersize=12, linestyle="none", label=name)
    if budget is not None:
        ax.axvline(budget, color="grey", linestyle=":", label=f"{budget:g} FA/h")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("recall (keywords found)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        import textwrap

        ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
