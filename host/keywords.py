"""Keywords as the user gives them (`--words`): checked once, turned into a label, a text to speak and
espeak-ng's phonemes of it.

A word may be given as
- a plain word or phrase: `yes`, `"lights on"` (label `lights_on`, spoken "lights on"; an underscore in
  the word is spoken as a space, so `lights_on` is the same keyword);
- espeak-ng phonemes in double brackets: `[[l'aIts]]` (label from the phoneme letters, here `laits`),
  which espeak-ng speaks as given (flite cannot, so only espeak-ng voices say it);
- `name=...`, either form with the label named: `lights=[[l'aIts]]`, `lamp="lamp on"`.

`parse_keywords` refuses, one line each (TinyearError): no words, a word given twice (two words with one
label), a reserved label (`_unknown_`, `_silence_`, `_background_noise_`), a label that cannot be a
folder name, and, when it is to be spoken (check_speech), a word espeak-ng says nothing for and
phonemes it does not read as given. Standard library only, plus the espeak-ng program for the checks.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass

from tinyear.device.errors import TinyearError
from tinyear.device.labels import NON_KEYWORDS

BACKGROUND = "_background_noise_"  # the noise folder of the dataset layout (tinyear.host.data.layout)
RESERVED = frozenset({*NON_KEYWORDS, BACKGROUND})
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
PHONEMES_RE = re.compile(r"\[\[(.*)\]\]", re.S)
# Marks in espeak-ng's phoneme notation that are not sounds: stress, length, pauses, word breaks.
_MARKS_RE = re.compile(r"[\s'',%=_:;|-]")
ESPEAK_CHECK_VOICE = "en-us"


@dataclass(frozen=True)
class Keyword:
    label: str
    """The class name: folder name in a dataset, label of the model."""
    text: str
    """What the speech engines are given: a word, a phrase, or `[[phonemes]]`."""
    phonemes: str = ""
    """espeak-ng's phonemes of `text` (`espeak-ng -x`); empty when not checked."""

    @property
    def is_phonemes(self) -> bool:
        return self.text.startswith("[[")

    def describe(self) -> str:
        """`label` alone when it is spoken as itself, else `label = "text"`."""
        return self.label if self.text == self.label else f'{self.label} = "{self.text}"'


def parse_keyword(spec) -> Keyword:
    """One `--words` item (or a Keyword, returned as is) -> Keyword, not yet checked against espeak-ng."""
    if isinstance(spec, Keyword):
        return spec
    spec = str(spec).strip()
    if not spec:
        raise TinyearError("an empty word was given; name each keyword, e.g. --words yes no \"lights on\"")
    name, text = None, spec
    match = re.fullmatch(r"([^=\[\]\s]+)=(.*)", spec, re.S)
    if match:
        name, text = match.group(1), match.group(2).strip()
        if not text:
            raise TinyearError(f"{spec!r}: nothing to say after '='; write name=word or name=[[phonemes]]")
    brackets = PHONEMES_RE.fullmatch(text)
    if "[[" in text or "]]" in text:
        if not brackets or not brackets.group(1).strip():
            raise TinyearError(f"{spec!r}: phonemes are written whole in double brackets, e.g. [[l'aIts]] or "
                               "lights=[[l'aIts]]")
        text = f"[[{brackets.group(1).strip()}]]"
        derived = re.sub(r"[^a-z0-9]", "", brackets.group(1).lower())
    else:
        derived = re.sub(r"[^A-Za-z0-9_-]", "", "_".join(text.split()))  # case kept: a folder named Yes/ is Yes
        text = " ".join(text.replace("_", " ").split())
    label = name if name is not None else derived
    if label in RESERVED:
        raise TinyearError(f"{label!r} is a reserved label (_unknown_, _silence_ and _background_noise_ are made by "
                           "tinyear); choose another keyword")
    if not LABEL_RE.fullmatch(label or ""):
        raise TinyearError(f"{spec!r} cannot be a folder name (label {label!r}); a label is letters, digits, _ and "
                           f"-, starting with a letter or digit; name it: mylabel={spec}")
    return Keyword(label=label, text=text)


def parse_keywords(words, *, check_speech: bool = False, allow_empty: bool = False) -> list[Keyword]:
    """`--words` items -> Keywords, in order. check_speech: also ask espeak-ng for each one's phonemes and
    refuse a word it says nothing for or phonemes it does not read as given (needs espeak-ng)."""
    items = [words] if isinstance(words, (str, Keyword)) else list(words or [])
    if not items and not allow_empty:
        raise TinyearError("no keywords given; name at least one, e.g. --words yes no")
    keywords = [parse_keyword(w) for w in items]
    twice = [label for label, n in Counter(k.label for k in keywords).items() if n > 1]  # folder names: exact
    if twice:
        given = [str(w) if not isinstance(w, Keyword) else w.text for w, k in zip(items, keywords) if k.label == twice[0]]
        raise TinyearError(f"keyword {twice[0]!r} is given twice ({', '.join(given)}); give each keyword once")
    if check_speech:
        keywords = [k if k.phonemes else check_spoken(k) for k in keywords]
    return keywords


def labels(keywords) -> list[str]:
    return [k.label for k in keywords]


def espeak_phonemes(text: str, voice: str = ESPEAK_CHECK_VOICE) -> str:
    """espeak-ng's phonemes of `text` (`espeak-ng -q -x`), one line."""
    from .tts import require_espeak

    require_espeak()
    done = subprocess.run(["espeak-ng", "-v", voice, "-q", "-x", text], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TinyearError(f"espeak-ng failed on {text!r}: {done.stderr.strip()[:200] or 'no reason given'}")
    return " ".join(done.stdout.split())


def check_spoken(keyword: Keyword) -> Keyword:
    """The keyword with its phonemes, or TinyearError if espeak-ng would say nothing or misread them."""
    said = espeak_phonemes(keyword.text)
    if not _MARKS_RE.sub("", said):
        raise TinyearError(f"espeak-ng says nothing for {keyword.text!r} (keyword {keyword.label}); give a word it "
                           "can speak, or its phonemes as [[...]]")
    if keyword.is_phonemes:
        given = keyword.text[2:-2]
        if _MARKS_RE.sub("", given) != _MARKS_RE.sub("", said):
            raise TinyearError(f"phonemes {given!r} (keyword {keyword.label}) do not parse: espeak-ng reads them as "
                               f"{said!r}; see `espeak-ng -x WORD` for its phoneme names")
    return Keyword(keyword.label, keyword.text, said)


# Speech Commands' own "other words": recorded to be `_unknown_`, never keywords of their own.
SPEECH_COMMANDS_OTHER_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
                               "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
                               "backward", "forward", "follow", "learn", "visual")
SPEECH_COMMANDS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def word_folders(root) -> list[str]:
    """The word folders of a dataset root: every class folder but the reserved ones and hidden ones."""
    from pathlib import Path

    root = Path(root)
    if not root.is_dir():
        raise TinyearError(f"{root}: no such dataset folder")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name not in RESERVED)


def dataset_keywords(root, words=None, *, fold_unknown: bool = False) -> list[Keyword]:
    """The keywords to train on a dataset folder. Without `words`: a Speech Commands tree (all ten
    keyword folders there) gives the ten keywords, its other folders `_unknown_`, as always; any other
    dataset's word folders are all keywords (but Speech Commands' other words, which are `_unknown_`
    by design). With `words`: those; a word folder that is none of them becomes `_unknown_` only with
    fold_unknown, else TinyearError naming the folders and the two ways out."""
    folders = word_folders(root)
    if words is None:
        if set(SPEECH_COMMANDS_WORDS) <= set(folders):
            return parse_keywords(SPEECH_COMMANDS_WORDS)
        mine = [f for f in folders if f not in SPEECH_COMMANDS_OTHER_WORDS]
        if not folders:
            raise TinyearError(f"{root} has no class folders (a folder of clips per word, e.g. {root}/yes/*.wav); "
                               "see docs/DATA.md")
        if not mine:
            raise TinyearError(f"{root} has no word folders to learn (only _unknown_ ones); name the keywords "
                               "with --words")
        return parse_keywords(mine)
    keywords = parse_keywords(words)
    others = [f for f in folders if f not in {k.label for k in keywords} and f not in SPEECH_COMMANDS_OTHER_WORDS]
    if others and not fold_unknown:
        shown = ", ".join(others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
        raise TinyearError(f"{root} has word folders that are not keywords ({shown}); add them to --words, or pass "
                           "--fold-unknown to train them as _unknown_")
    return keywords
