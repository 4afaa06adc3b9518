"""What every export needs besides the converter: the dataset a run trained on, loaded as it trained
(`load_data`), and the bundle's self-test clip (`pick_selftest`: a validation clip the int8 model gets
right, its label on top, or a refusal when the data's labels do not fit the model). `export` (students)
and `headexport` (backbone heads) both use them.

Imports numpy, `tinyear.device` and the data loader; never torch or the converter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError
from tinyear.device.features import FrontendConfig


def say(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _data_roots(meta: dict, override) -> list[str]:
    if override:
        return [str(p) for p in override]
    data = meta.get("data") or {}
    roots = data.get("roots") or ([data["root"]] if data.get("root") else [])
    if isinstance(roots, (str, Path)):
        roots = [roots]
    if not roots:
        raise TinyearError(f"{meta.get('run_dir')}: the run records no dataset; give the training data with --data DIR")
    missing = [str(r) for r in roots if not Path(r).exists()]
    if missing:
        raise TinyearError(f"the run's dataset folder {', '.join(missing)} is gone; give the training data with --data DIR")
    return [str(r) for r in roots]


def load_data(meta: dict, override=(), *, progress: bool = True):
    """The dataset the run trained on (or `override`), loaded as the training did (same words and data
    seed), checked against the run's labels."""
    from .data import SILENCE, UNKNOWN, load_dataset

    labels = list(meta["labels"])
    roots = _data_roots(meta, override)
    recorded = meta.get("data") or {}
    words = recorded.get("words") or [label for label in labels if label not in (UNKNOWN, SILENCE)]
    dataset = load_dataset(roots, words, seed=int(recorded.get("seed", 0)), allow_missing=True, quiet=not progress,
                           unknown_ratio=float(recorded.get("unknown_ratio", 1.0)))
    if list(dataset.labels) != labels:
        extra = sorted(set(dataset.labels) - set(labels))
        lacking = sorted(set(labels) - set(dataset.labels))
        detail = "; ".join(x for x in (f"data has {', '.join(extra)}" if extra else "",
                                        f"data lacks {', '.join(lacking)}" if lacking else "") if x)
        raise TinyearError(f"{', '.join(roots)} gives labels {dataset.labels} but the student has {labels}"
                           f"{' (' + detail + ')' if detail else ''}; give the dataset it was trained on with --data")
    return dataset


SELFTEST_PER_CLASS = 64
"""Most validation clips of each class the self-test clip is looked for in."""


def pick_selftest(model_bytes: bytes, labels: list[str], waves: np.ndarray, y: np.ndarray, config: FrontendConfig,
              features=None):
    """One validation clip the int8 model gets right, stored as 16-bit PCM: expected probabilities are
    computed on exactly that audio. The most confident keyword clip among the first of each class (up to
    PER_CLASS): a keyword clip shows keyword labels in the wrong order, which a silence clip would not.
    A model that gets no keyword clip right but some `_unknown_`/`_silence_` clip (a smoke test's
    two-epoch model) stores that one. Refuses when it gets no clip right at all: the clip's label must
    be its top label here and on the device. `features` maps a clip to the model's input (default: the
    shared frontend's `clip_features` with `config`; a backbone bundle's embeddings)."""
    from tinyear.device.bundle import SelfTest
    from tinyear.device.features import clip_features
    from tinyear.device.runtime import Model, softmax

    from .data import SILENCE, UNKNOWN

    model = Model(model_bytes)
    features = features or (lambda audio: clip_features(audio, config))
    best, tried = None, 0
    said = {}  # keyword class -> the model's top labels for its clips
    for c in range(len(labels)):
        for i in np.flatnonzero(y == c)[:SELFTEST_PER_CLASS]:
            audio = (np.clip(np.round(waves[i].astype(np.float64) * 32767.0), -32768, 32767) / 32767.0).astype(np.float32)
            probs = softmax(model.predict(features(audio)))
            keyword = labels[c] not in (UNKNOWN, SILENCE)
            tried += 1
            if keyword:
                said.setdefault(c, []).append(int(probs.argmax()))
            score = (probs.argmax() == c, keyword, float(probs[c]))
            if best is None or score > best[0]:
                best = (score, audio, probs, labels[c])
            if score[0] and keyword and score[2] > 0.9:
                break  # a confident keyword clip of this class: enough
    if best is None:
        return None
    (right, _, _), audio, probs, label = best
    moved = _labels_permuted(said, labels)
    if moved:
        a, b = next(iter(moved.items()))
        raise TinyearError(f"the int8 model names the validation clips of {labels[a]!r} mostly {labels[b]!r}, and so on "
                           f"for {len(moved)} keyword folders: the data's labels do not fit the model; give the data "
                           "it was trained on with --data")
    if not right:
        raise TinyearError(f"the int8 model classifies none of the {tried} validation clips tried for the self-test "
                           "as their own label (the bundle's self-test needs one): the data's labels do not fit the "
                           "model; give the data it was trained on with --data")
    return SelfTest(audio=audio, expected=[float(p) for p in probs], label=label)


def _labels_permuted(said: dict, labels: list[str]) -> dict:
    """Whether the model names the clips of two or more keyword folders, each mostly, as one other
    keyword, a different one for each folder: the mark of folders (or labels) in another order than
    the model's ({folder class: the class the model says}, empty if not). A weak model that says one
    label for everything is not taken for that."""
    from .data import SILENCE, UNKNOWN

    moved = {}
    for c, tops in said.items():
        top = max(set(tops), key=tops.count)
        if top != c and labels[top] not in (UNKNOWN, SILENCE) and tops.count(top) * 2 > len(tops):
            moved[c] = top
    return moved if len(moved) >= 2 and len(set(moved.values())) == len(moved) else {}


