"""Near misses of a keyword, to be spoken into `_unknown_`: words a model should NOT take for it.

For each keyword, in this order: the words of a phrase on their own (`lights on` -> `lights`, `on`),
longer words of a small word list that contain it (`on` -> `one`, `phone`; `go` -> `goat`), and
one-phoneme swaps of espeak-ng's phonemes of it (`j'Es` -> `[[j'Is]]`, `[[j'Ez]]`: a vowel for a near
vowel, a consonant for a near consonant; never one accent's vowel for another's, like US `O2` for
British `0` in "on"), spoken as `[[...]]`. A candidate that is another keyword, or
sounds like any keyword (the same phonemes, stress aside), is left out, and so is a swap that espeak-ng
does not read back as written (it would say it cut short, or as silence). `near_misses` is deterministic.
Standard library only, plus espeak-ng (`tinyear.host.keywords`).
"""

from __future__ import annotations

import re

from .keywords import Keyword, espeak_phonemes, parse_keywords

# Longer words for "contains it": everyday words on top of the synthetic _unknown_ list (tinyear.host.synth).
CONTAINING_WORDS = (
    "yesterday", "eyes", "yeast", "nobody", "notice", "note", "nose", "know", "snow", "cup", "upper", "upon",
    "pup", "download", "downtown", "clown", "leftover", "lefty", "bright", "fright", "righteous", "one", "phone",
    "upon", "onion", "honest", "money", "done", "offer", "office", "coffee", "toffee", "often", "stopper",
    "stopwatch", "doorstop", "goat", "gold", "golf", "ago", "going", "good", "going", "cargo", "ego", "lamppost",
    "clamp", "camp", "damp", "sunlight", "highlight", "delight", "flight", "slight", "starlight", "lighter",
    "lightning", "playing", "display", "replay", "player", "pause", "paused", "seen", "nexus", "backpack",
    "music", "musical", "open", "opener", "reopen", "closet", "closer", "turning", "return", "volume",
)
# One-phoneme swaps in espeak-ng's English notation: each phoneme and the near ones it becomes.
SWAPS = {
    "E": ("I", "a"), "I": ("E", "i:"), "i:": ("I", "eI"), "a": ("E", "V"), "V": ("a", "E"), "0": ("V", "oU"),
    "O2": ("V", "oU"), "O:": ("V", "oU"), "oU": ("u:", "aU"), "u:": ("oU", "U"), "aI": ("eI", "OI"),
    "aU": ("oU", "a"), "eI": ("E", "aI"), "3:": ("V", "E@"), "@": ("V", "I"),
    "p": ("b", "t"), "b": ("p", "d"), "t": ("d", "k"), "d": ("t", "b"), "k": ("g", "t"), "g": ("k", "d"),
    "f": ("v", "T"), "v": ("f", "b"), "s": ("z", "S"), "z": ("s", "D"), "S": ("s", "tS"), "m": ("n", "b"),
    "n": ("m", "N"), "N": ("n", "m"), "l": ("r", "w"), "r": ("l", "w"), "w": ("r", "v"), "j": ("w", "h"),
    "h": ("j", "f"), "T": ("f", "s"), "D": ("v", "z"), "tS": ("S", "dZ"), "dZ": ("tS", "j"),
}
# Phonemes of several characters that are not swapped but must not be cut apart either (else the `@` of
# jarvis' `A@` became `V`: [[dZ'AVvIs]], which espeak-ng says as silence).
WHOLE = ("A@", "OI", "e@", "i@", "U@", "O@", "o@", "aI@", "aU@", "A:", "3:", "aI3", "aU3", "@L", "@5", "I2", "I#", "e#", "a#")
_TOKENS = sorted({*SWAPS, *WHOLE}, key=len, reverse=True)
_MARKS = re.compile(r"[\s'',%=_:;|-]")
MAX_CANDIDATES = 8


def _tokens(phonemes: str) -> list[str]:
    out, i = [], 0
    while i < len(phonemes):
        token = next((t for t in _TOKENS if phonemes.startswith(t, i)), phonemes[i])
        out.append(token)
        i += len(token)
    return out


def phoneme_swaps(phonemes: str) -> list[str]:
    """Every one-phoneme swap of `phonemes` (espeak-ng notation), in order of position then swap."""
    tokens = _tokens(phonemes)
    swaps = []
    for i, token in enumerate(tokens):
        for other in SWAPS.get(token, ()):
            swaps.append("".join([*tokens[:i], other, *tokens[i + 1 :]]))
    return swaps


def _sound(phonemes: str) -> str:
    return _MARKS.sub("", phonemes)


def near_misses(keywords, *, limit: int = MAX_CANDIDATES) -> dict[str, list[str]]:
    """Keyword label -> up to `limit` texts to speak as its near misses (words or `[[phonemes]]`)."""
    keywords = [k if k.phonemes else parse_keywords([k], check_speech=True)[0] for k in parse_keywords(keywords)]
    taken_text = {k.text.lower() for k in keywords} | {k.label.lower() for k in keywords}
    taken_sound = {_sound(k.phonemes) for k in keywords}
    result = {}
    for k in keywords:
        candidates = []
        if not k.is_phonemes:
            words = k.text.lower().split()
            if len(words) > 1:
                candidates += words
            candidates += [w for w in CONTAINING_WORDS if len(words) == 1 and words[0] in w and w != words[0]]
        main = k.phonemes.split()[0] if " " not in k.text else k.phonemes
        candidates += [f"[[{p}]]" for p in phoneme_swaps(main)]
        kept, seen = [], set()
        for text in candidates:
            if text.lower() in taken_text or text in seen:
                continue
            seen.add(text)
            sound = _sound(espeak_phonemes(text))
            if text.startswith("[[") and sound != _sound(text[2:-2]):
                continue  # espeak-ng does not read these phonemes as written (it would say them cut short, or not at all)
            if sound and sound not in taken_sound:
                kept.append(text)
        result[k.label] = _spread(kept, limit)
    return result


def _spread(candidates: list[str], limit: int) -> list[str]:
    """Up to `limit` candidates, words first, then phoneme swaps taken evenly over the word's length."""
    words = [c for c in candidates if not c.startswith("[[")][: limit // 2 or 1]
    swaps = [c for c in candidates if c.startswith("[[")]
    room = limit - len(words)
    if len(swaps) > room > 0:
        step = len(swaps) / room
        swaps = [swaps[int(i * step)] for i in range(room)]
    return words + swaps[: max(room, 0)]


def keyword_of(text: str) -> Keyword:
    """A near-miss text as a Keyword-like record for synthesis (label: a file-name-safe form)."""
    return Keyword(label=re.sub(r"[^A-Za-z0-9]", "", text) or "nearmiss", text=text)
