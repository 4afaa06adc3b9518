"""The one exception type that means "the user gave us something we cannot use".

Every module of tinyear raises `TinyearError` (or a subclass) for bad input: a file that is not audio,
a bundle that fails verification, a microphone that is gone. The command lines catch it and print its
message as a single line with a non-zero exit; anything else is a bug and keeps its traceback. The
message must say what is wrong and what to do about it. Imports nothing but the standard library.
"""

from __future__ import annotations


class TinyearError(Exception):
    """A user-facing error: the message is one line saying what is wrong and what to do."""


class AudioError(TinyearError):
    """An audio file or signal that cannot be turned into features."""


class BundleError(TinyearError):
    """A model bundle that is unreadable, damaged, or made for something else."""


class RuntimeMissingError(TinyearError):
    """No TFLite interpreter package is installed."""


def first_line(exc_or_text, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (or of a text), for quoting inside a one-line
    error: at most about `limit` characters, cut at a word boundary and marked with "..." rather than
    mid-word. An exception without a message gives its type's name."""
    text = str(exc_or_text)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line:
        return type(exc_or_text).__name__ if isinstance(exc_or_text, BaseException) else ""
    if len(line) <= limit:
        return line
    cut = line[:limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:(")
    return (cut if len(cut) >= limit // 2 else line[:limit]) + " ..."
