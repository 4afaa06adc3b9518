"""Keywords as given on the command line: parsing (words, phrases, [[phonemes]], name=...), the one-line
refusals of `synth`, `teacher` and `pipeline`, synthesis from phonemes with real espeak-ng, and which
folders of a `--data` set the pipeline takes as keywords."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from train_data import make_dataset

from tinyear.device.errors import TinyearError
from tinyear.host.keywords import dataset_keywords, parse_keywords

MINI = SHARED_DATA / "speech-commands-mini-train"


def _cli(*args, tmp_path):
    env = {**os.environ, "TINYEAR_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "tinyear.host.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def _one_error_line(done, text):
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stderr
    assert len(lines) == 1 and lines[0].startswith("tinyear: error: ") and text in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_forms_give_label_and_text():
    got = [(k.label, k.text) for k in parse_keywords(["yes", "lights on", "[[l'aIts]]", "lamp=[[l'amp]]",
                                                      "go_home"])]
    assert got == [("yes", "yes"), ("lights_on", "lights on"), ("laits", "[[l'aIts]]"), ("lamp", "[[l'amp]]"),
                   ("go_home", "go home")]


@pytest.mark.parametrize("words, text", [
    (["yes", "yes"], "given twice"),
    (["lights on", "lights_on"], "given twice"),
    (["yes", "_unknown_"], "reserved label"),
    (["_silence_"], "reserved label"),
    (["_unknown_=yes"], "reserved label"),
    (["..."], "cannot be a folder name"),
    (["[[l'aIts"], "double brackets"),
    (["x="], "nothing to say"),
])
def test_refusals_without_speaking(words, text):
    with pytest.raises(TinyearError, match=text):
        parse_keywords(words)


def test_no_words_refused():
    with pytest.raises(TinyearError, match="no keywords"):
        parse_keywords([])


@pytest.mark.parametrize("word, text", [
    ("x=...", "says nothing"),
    ("[[l'aI#ts]]", "do not parse"),
    ("n=[[123]]", "do not parse"),
])
def test_synth_cli_refuses_what_espeak_cannot_say(tmp_path, word, text):
    done = _cli("synth", tmp_path / "out", "--per-word", "1", "--words", "yes", word, tmp_path=tmp_path)
    _one_error_line(done, text)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("words, text", [
    (["yes", "yes"], "given twice"),
    (["yes", "_unknown_"], "reserved label"),
    (["!!"], "cannot be a folder name"),
])
def test_synth_refuses_bad_words_in_one_line(tmp_path, words, text):
    _one_error_line(_cli("synth", tmp_path / "s", "--words", *words, tmp_path=tmp_path), text)
    assert not (tmp_path / "s").exists()


@pytest.mark.slow  # four CLI starts, about 12 s on two busy cores
def test_teacher_distill_and_pipeline_refuse_bad_words_in_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for cmd, words, text in (
        (["teacher", data, "--out", tmp_path / "t"], ["yes", "yes"], "given twice"),
        (["distill", data, "--out", tmp_path / "d", "--teacher", tmp_path / "t"], ["_silence_"], "reserved label"),
        (["pipeline", "--out", tmp_path / "p"], ["lights on", "lights_on"], "given twice"),
        (["pipeline", "--out", tmp_path / "p"], ["x=[[l'aI#ts]]"], "do not parse"),
    ):
        _one_error_line(_cli(*cmd, "--words", *words, tmp_path=tmp_path), text)
    assert not (tmp_path / "p").exists()


def test_empty_word_list_is_refused(tmp_path):
    done = _cli("synth", tmp_path / "s", "--words", tmp_path=tmp_path)
    assert done.returncode != 0 and "expected at least one argument" in done.stderr
    _one_error_line(_cli("synth", tmp_path / "s", "--words", "", tmp_path=tmp_path), "empty word")


@pytest.mark.slow
def test_synth_speaks_phonemes_and_phrases_and_says_so(tmp_path):
    out = tmp_path / "home"
    done = _cli("synth", out, "--words", "lights on", "lamp=[[l'amp]]", "[[l'aIts]]", "--per-word", "2",
                "--unknown", "1", "--jobs", "1", "--quiet", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'lights_on "lights on"' in done.stdout and "lamp \"[[l'amp]]\" /l'amp/ (espeak-ng only)" in done.stdout
    for label in ("lights_on", "lamp", "laits"):
        assert len(list((out / label).glob("*.wav"))) == 2
    manifest = json.loads((out / "tinyear-synth.json").read_text())
    assert manifest["request"]["spoken"] == {"lights_on": "lights on", "lamp": "[[l'amp]]", "laits": "[[l'aIts]]"}
    lamp = next(k for k in manifest["keywords"] if k["label"] == "lamp")
    assert lamp["engines"] == ["espeak-ng"] and lamp["phonemes"] == "l'amp"


def test_dataset_keywords_rule(tmp_path):
    data = make_dataset(tmp_path / "tones", per_word=2)  # low/, high/, _unknown_/, _background_noise_/
    (data / "bed").mkdir()  # a Speech Commands other word: _unknown_ by design
    assert [k.label for k in dataset_keywords(data)] == ["high", "low"]
    assert [k.label for k in dataset_keywords(data, ["low", "high"])] == ["low", "high"]
    with pytest.raises(TinyearError, match=r"not keywords \(high\); add them to --words, or pass --fold-unknown"):
        dataset_keywords(data, ["low"])
    assert [k.label for k in dataset_keywords(data, ["low"], fold_unknown=True)] == ["low"]


@pytest.mark.skipif(not MINI.exists(), reason=f"shared data not here: {MINI}")
def test_speech_commands_tree_keeps_its_ten_keywords():
    assert [k.label for k in dataset_keywords(MINI)] == ["yes", "no", "up", "down", "left", "right", "on", "off",
                                                         "stop", "go"]


def test_pipeline_data_refuses_folders_that_are_not_keywords(tmp_path):
    data = make_dataset(tmp_path / "tones", per_word=2)
    done = _cli("pipeline", "--data", data, "--words", "low", "--out", tmp_path / "run", tmp_path=tmp_path)
    _one_error_line(done, "not keywords (high)")
    assert "--fold-unknown" in done.stderr


def test_near_misses_are_close_and_never_a_keyword():
    from tinyear.host.nearmiss import near_misses, phoneme_swaps

    assert phoneme_swaps("j'Es")[:2] == ["w'Es", "h'Es"] and "j'Ez" in phoneme_swaps("j'Es")
    near = near_misses(["yes", "no", "lights on"])
    assert "yesterday" in near["yes"] and "[[j'Is]]" in near["yes"]
    assert "lights" in near["lights_on"] and "on" in near["lights_on"]
    assert not {"know", "no", "[[n'oU]]"} & set(near["no"])  # a homophone of a keyword is never a near miss
    assert all(1 <= len(v) <= 8 for v in near.values())


def test_near_miss_phonemes_are_ones_espeak_says_as_written():
    """jarvis is dZ'A@vIs: its `A@` is one vowel, not `A` + a swappable `@` ([[dZ'AVvIs]] is silence to
    espeak-ng, and synthesis failed on it); every phoneme near miss reads back as written."""
    from tinyear.host.keywords import espeak_phonemes
    from tinyear.host.nearmiss import _sound, near_misses

    near = near_misses(["jarvis", "snowboy", "computer"])
    swaps = [t for v in near.values() for t in v if t.startswith("[[")]
    assert not any("AV" in t or "AI" in t or "OE" in t for t in swaps), swaps
    assert "[[tS'A@vIs]]" in near["jarvis"]
    assert all(_sound(espeak_phonemes(t)) == _sound(t[2:-2]) for t in swaps)


def test_a_voice_that_says_nothing_is_one_line():
    from tinyear.host import synth

    speaker = synth.Speaker("espeak-ng", "en-gb", 1.0, 40)
    job = synth.Job("_unknown_/x.wav", "[[dZ'AVvIs]]", speaker, (0, 0), 160.0, 40, synth.DEFAULT_SYNTH)
    with pytest.raises(TinyearError, match="says nothing for"):
        synth.make_clip(job)
    ok = synth.make_clip(synth.Job("_unknown_/y.wav", "[[dZ'A@vIs]]", speaker, (0, 1), 160.0, 40, synth.DEFAULT_SYNTH))
    assert ok.shape == (16000,) and float(abs(ok).max()) > 0.05


@pytest.mark.slow
def test_synth_near_miss_writes_them_into_unknown(tmp_path):
    out = tmp_path / "near"
    done = _cli("synth", out, "--words", "yes", "--per-word", "1", "--unknown", "0", "--near-miss", "3",
                "--jobs", "1", "--quiet", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name.split("_")[0] for p in (out / "_unknown_").glob("*.wav"))
    assert names == ["eyes", "wEs", "yesterday"]
    assert "near misses in _unknown_: yes: yesterday eyes" in done.stdout
    manifest = json.loads((out / "tinyear-synth.json").read_text())
    assert manifest["request"]["near_miss"] == 3 and manifest["near_misses"]["yes"][0] == "yesterday"
