"""How a detection is written out, once for every command that prints them (`listen`, `classify --stream`).

Text: `   12.30 s  yes            0.912` (stream seconds, label, smoothed score). JSON: one object a line,
`{"type":"detection","time":12.3,"label":"yes","score":0.912}`, plus `wall_time` (unix seconds) when
the listener knows when it heard it. Standard library only.
"""

from __future__ import annotations

from .cliutil import json_line


def event_line(event, *, as_json: bool = False, wall_time: float | None = None) -> str:
    """The line (with its newline) that reports `event` (a `Detection`), as text or as JSON."""
    if as_json:
        record = {"type": "detection", **event.to_dict()}
        if wall_time is not None:
            record["wall_time"] = round(wall_time, 3)
        return json_line(record)
    return f"{event.time:9.2f} s  {event.label:<14} {event.score:.3f}\n"
