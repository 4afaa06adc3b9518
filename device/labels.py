"""The reserved label names of a keyword model, defined once for both halves.

A tinyear model's labels are its keywords plus, when it has them, `UNKNOWN` (any other word) and
`SILENCE` (no word: background, noise, digital silence). Those two take part in the softmax like any
label but never produce an event (`NON_KEYWORDS`); the host's datasets, label maps and evaluation name
the same classes. Standard library only.
"""

from __future__ import annotations

UNKNOWN = "_unknown_"
"""Any word that is not a keyword."""

SILENCE = "_silence_"
"""No word at all: background noise or silence."""

NON_KEYWORDS = (SILENCE, UNKNOWN)
"""Labels that mean "no keyword": scored, never fired."""

