"""Every bundle shipped in models/ (the Speech Commands `keywords.tinyear` and the text-alone wake phrases
`computer-jarvis-snowboy.tinyear`): it reads back verified, passes its own self-test (its clip's label on
top), has a model card beside it that names its labels and sizes, and the README points to it. The
text-alone bundle's card states its accuracy on real speakers (../shared/data/other-speech); the slow
test measures that again with scripts/bench_words.py's scoring and finds the card's numbers; the keyword
bundle's card states its accuracy on the public part of the Speech Commands test set, measured again too."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, SHARED_DATA

from test_bench_words import _bench

MODELS = sorted((ROOT / "models").glob("*.tinyear"))
WAKE = ROOT / "models" / "computer-jarvis-snowboy.tinyear"
OTHER = SHARED_DATA / "other-speech"
PUBLIC = SHARED_DATA / "speech-commands-v2-test-public"
KEYWORDS = ROOT / "models" / "keywords.tinyear"


def test_both_bundles_are_shipped():
    assert {p.name for p in MODELS} >= {"keywords.tinyear", WAKE.name}


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_shipped_bundle_loads_self_tests_and_has_its_card(path):
    from tinyear.device import read_bundle
    from tinyear.device.selftest import run_selftest

    bundle = read_bundle(path)
    report = run_selftest(path)
    assert report["ok"] and report["label"] == bundle.selftest.label, report
    card = (path.with_suffix(".md")).read_text()
    assert card.startswith(f"# Model card: `{path.name}`")
    assert f"{len(bundle.model_bytes):,}" in card  # the model's size, as shipped
    for label in bundle.labels:
        assert re.search(rf"\b{label}\b", card), label
    assert f"models/{path.name}" in (ROOT / "README.md").read_text()


def _card_percents(card: str) -> set[str]:
    return set(re.findall(r"\d+\.\d%", card))


@pytest.mark.slow  # about 900 real clips through the int8 model
@pytest.mark.skipif(not OTHER.is_dir(), reason=f"shared data not here: {OTHER}")
def test_wake_card_numbers_are_what_the_bundle_scores_on_real_speakers():
    from tinyear.device import read_bundle
    from tinyear.device.detection import DetectionConfig

    bw = _bench()
    bundle = read_bundle(WAKE)
    sets = bw.real_clips(OTHER, speech_commands=None)
    scored = bw.score_bundle(WAKE.name, WAKE, sets)
    det = DetectionConfig.from_bundle(bundle)
    res = bw.rates(scored, {k: det.threshold_for(k) for k in scored.keywords})
    card = WAKE.with_suffix(".md").read_text()
    said = _card_percents(card)
    for word, r in res["recall"].items():
        assert f"{100 * r['rate']:.1f}%" in said, (word, r)
    for word, r in res["false_accepts"].items():
        assert f"{100 * r['rate']:.1f}%" in said, (word, r)
    assert f"{100 * res['other_phrases']['rate']:.1f}%" in said


@pytest.mark.slow  # 3,427 real clips through the int8 model
@pytest.mark.skipif(not PUBLIC.is_dir(), reason=f"shared data not here: {PUBLIC}")
def test_keywords_card_real_speech_numbers_are_what_the_bundle_scores():
    from tinyear.host.evaluate import evaluate

    result = evaluate(KEYWORDS, [str(PUBLIC)], split="all", progress=False)
    card = KEYWORDS.with_suffix(".md").read_text()
    said = _card_percents(card)
    assert f"**{result['accuracy']:.1f}%**" in card  # the headline int8 number
    for label, r in result["per_class"].items():
        assert f"{100 * r['recall']:.1f}%" in said, (label, r)
    assert f"**{result['accuracy']:.1f}%**" in (ROOT / "README.md").read_text()
