"""`tinyear mine`: the windows a real tone bundle fires on in a negative stream of the training split,
written as 1 s `_unknown_` clips whose names keep them in the training split; the bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from stream_model import tone_bundle, tone_dataset, unknown_bundle  # noqa: F401  (tone_bundle is a fixture)
from tinyear.host.cli import main as tinyear_main
from tinyear.host.data import load_dataset
from tinyear.host.data.speakers import speaker_split, word_and_speaker
from tinyear.host.mine import negative_pools, negative_stream, train_key


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return tone_dataset(tmp_path_factory.mktemp("minedata") / "data", per_class=40)


@pytest.fixture()
def bundle(tone_bundle, tmp_path):
    return unknown_bundle(tone_bundle, tmp_path / "tones.tinyear")


def mine(capsys, *args):
    code = tinyear_main(["mine", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_key_always_hashes_into_train():
    keys = [f"spk{i}" for i in range(200)]
    held = [k for k in keys if speaker_split(k) != "train"]
    assert held  # some keys hash into validation or test
    for k in keys:
        key = train_key(k)
        assert speaker_split(key) == "train"
        assert key == k or k not in held or key.startswith(k + "m")
        assert (key == k) == (k not in held)  # a training speaker keeps its own key
    assert "_" not in train_key("a_b c") and speaker_split(train_key("a_b c")) == "train"


def test_negative_stream_is_training_material_only(tones):
    pools, noise, sr = negative_pools([tones], ["low", "high"])
    train = {c.path for c in load_dataset([tones], ["low", "high"], unknown_ratio=None, quiet=True).clips_in("train")}
    assert pools["distractor"] and pools["other"] and pools["fragment"]
    assert all(c.path in train for pool in pools.values() for c in pool)
    wave, placed = negative_stream(pools, noise, sr, minutes=1.0, seed=0)
    again, _ = negative_stream(pools, noise, sr, minutes=1.0, seed=0)
    np.testing.assert_array_equal(wave, again)
    assert len(wave) == 60 * sr and {p.kind for p in placed} == {"distractor", "other", "fragment"}
    assert all(p.clip in {str(c) for c in train} for p in placed)
    # a fragment keeps only a part of its keyword: shorter than the word it was cut from
    from tinyear.device.audio import load_audio
    from tinyear.host.streams import active_span

    for p in [p for p in placed if p.kind == "fragment"][:5]:
        x = load_audio(p.clip, sr)
        a, b = active_span(x, sr)
        assert p.end - p.start < b - a


@pytest.mark.slow
def test_mine_writes_firing_windows_into_the_train_split(bundle, tones, tmp_path, capsys):
    out = tmp_path / "mined"
    code, stdout, err = mine(capsys, bundle, tones, "--out", out, "--minutes", "3", "--json")
    assert code == 0, err
    s = json.loads(stdout)
    files = sorted((out / "_unknown_").glob("*.flac"))
    assert s["count"] == len(files) == len(s["clips"]) > 0  # the tone model fires on chirps and fragments
    assert s["windows_per_hour"] == pytest.approx(s["count"] / (s["stream"]["minutes"] / 60), rel=0.01)
    assert set(s["fired_labels"]) <= {"low", "high"} and sum(s["fired_labels"].values()) == s["count"]
    assert sum(s["fired_on"].values()) == s["count"]
    for f in files:
        x, sr = sf.read(f, dtype="float32")
        assert sr == 16000 and x.shape == (16000,) and np.abs(x).max() > 0
    # the source clip's speaker key is kept whenever it already hashes into train
    for c in s["clips"]:
        name = c["file"].split("/")[-1].rsplit(".", 1)[0]
        word, speaker = word_and_speaker("_unknown_", name)
        if c["source"]:
            source_speaker = word_and_speaker("_unknown_" if "/_unknown_/" in c["source"] else "x",
                                              c["source"].split("/")[-1].rsplit(".", 1)[0])[1]
            assert speaker == train_key(source_speaker)
    # given as one more dataset folder, every mined clip is in the training split
    dataset = load_dataset([tones, out], ["low", "high"], unknown_ratio=None, quiet=True)
    mined = [c for c in dataset.clips if c.path is not None and out in c.path.parents]
    assert len(mined) == len(files) and {c.split for c in mined} == {"train"} and {c.label for c in mined} == {"_unknown_"}
    assert (out / f"mine-{s['clips'][0]['file'].split('nohash_')[1].split('-')[0]}-0.json").exists()
    # the same command again writes the same clips (deterministic), over them
    code, stdout2, _ = mine(capsys, bundle, tones, "--out", out, "--minutes", "3", "--json")
    assert code == 0 and json.loads(stdout2)["clips"] == s["clips"]
    code, text, _ = mine(capsys, bundle, tones, "--out", out, "--minutes", "3")
    assert code == 0 and "per hour" in text and "labels that fired" in text


@pytest.mark.slow
def test_mine_takes_a_run_folder(tones, tmp_path, capsys):
    run = tmp_path / "run"
    code = tinyear_main(["distill", str(tones), "--words", "low", "high", "--no-teacher", "--epochs", "1",
                         "--variants", "1", "--student", "dscnn-s", "--out", str(run), "--quiet",
                         "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    capsys.readouterr()
    code, stdout, err = mine(capsys, run, tones, "--out", tmp_path / "m", "--minutes", "1", "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["detection"]["threshold"] > 0 and len(list((tmp_path / "m" / "_unknown_").glob("*.flac"))) == s["count"]


def test_bad_inputs_are_one_line(bundle, tones, tmp_path, capsys):
    no_unknown = tmp_path / "no-unknown"
    shutil.copytree(tones, no_unknown, ignore=shutil.ignore_patterns("_unknown_", "chatter"))
    empty = tmp_path / "empty"
    (empty / "low").mkdir(parents=True)
    cases = [([tmp_path / "nope.tinyear", tones], "no such bundle"),
             ([tmp_path, tones], "not a run folder"),
             ([bundle, no_unknown], "no _unknown_ clips"),
             ([bundle, empty], "no"),
             ([bundle, tmp_path / "missing-data"], "no such dataset folder")]
    for args, needle in cases:
        code, _, err = mine(capsys, *args, "--out", tmp_path / "o")
        assert code != 0 and needle in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):
        tinyear_main(["mine", str(bundle), str(tones), "--out", str(tmp_path / "o"), "--minutes", "-1"])
    assert not (tmp_path / "o" / "_unknown_").exists() or not any((tmp_path / "o" / "_unknown_").iterdir())
