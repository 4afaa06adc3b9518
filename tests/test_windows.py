"""Stream-aware training windows (`tinyear.host.windows`): the label rule on hand-built clips, the
window waveform against its plan, features and teacher outputs cached and made again exactly, and a
short distill through the CLI with --window-variants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import train_data  # noqa: E402

from tinyear.device.features import log_mel  # noqa: E402
from tinyear.host import windows  # noqa: E402
from tinyear.host.augment import AugmentConfig  # noqa: E402
from tinyear.host.data import load_dataset  # noqa: E402
from tinyear.host.featcache import build_features  # noqa: E402

SR = 16000
NAMES = ["yes", "no", "_unknown_", "_silence_"]
YES, NO, UNKNOWN, SILENCE = range(4)


def _word_at(start_s: float, length_s: float) -> np.ndarray:
    """A 1 s clip: a 1 kHz tone of even loudness over [start, start + length), near-silence elsewhere."""
    x = np.zeros(SR, np.float32)
    a, b = int(start_s * SR), int((start_s + length_s) * SR)
    x[a:b] = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(b - a) / SR)
    return x


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return train_data.make_dataset(tmp_path_factory.mktemp("win") / "data", per_word=10)


def test_active_energy_is_the_word_not_its_padding():
    e = windows.active_energy(_word_at(0.6, 0.4)[None])[0]  # (100,) frames of 10 ms
    assert (e[60:100] > 0).all() and (e[:60] == 0).all()
    assert windows.share_inside(e, 0, 0, 100) == pytest.approx(1.0)
    # the window [0.2 s, 1.2 s) of the clip placed at 0 holds the whole word; [0.9, 1.9) a quarter
    assert windows.share_inside(e, 0, 20, 100) == pytest.approx(1.0)
    assert windows.share_inside(e, 0, 90, 100) == pytest.approx(0.25)
    assert windows.share_inside(np.zeros(100), 0, 0, 100) == 0.0


def test_rule_labels():
    rule = lambda words: windows.rule_label(words, UNKNOWN, SILENCE)  # noqa: E731
    assert rule([(YES, 1.0)]) == (YES, YES, 1.0)
    assert rule([(YES, 0.8)]) == (YES, YES, 1.0)  # >= 0.8: the word
    assert rule([(YES, 0.25)]) == (UNKNOWN, UNKNOWN, 1.0)  # a fragment is speech, no keyword
    assert rule([(YES, 0.3)]) == (UNKNOWN, UNKNOWN, 1.0)
    first, other, lam = rule([(YES, 0.55)])  # half-way: a soft target, half the word
    assert {first, other} == {YES, UNKNOWN} and lam == pytest.approx(0.5)
    assert rule([(YES, 0.1), (NO, 0.9)]) == (NO, NO, 1.0)  # the neighbour's word is the window's
    first, other, lam = rule([(YES, 1.0), (NO, 1.0)])  # two whole words: half each
    assert {first, other} == {YES, NO} and lam == pytest.approx(0.5)
    assert rule([(YES, 0.0)]) == (SILENCE, SILENCE, 1.0)  # nothing of any word inside
    assert rule([]) == (SILENCE, SILENCE, 1.0)
    assert windows.rule_label([], UNKNOWN, -1) == (UNKNOWN, UNKNOWN, 1.0)  # no _silence_ label


def test_word_at_the_edge_of_a_hand_built_clip():
    """A word in the last 0.4 s of its clip, alone in its strip: the windows that cut it are labelled by
    the share left inside, and each window waveform is the strip cut where the plan says."""
    waves = np.stack([_word_at(0.6, 0.4), _word_at(0.3, 0.4)])
    labels = np.array([YES, SILENCE])
    plan = windows.window_plan(waves, labels, NAMES, 64, seed=3)
    assert plan.start.shape == (64, 2) and plan.clip_frames == 100
    e = windows.active_energy(waves)
    seen = set()
    for w in range(64):
        # a neighbour's word may share the window: the rule over every word in it
        words = [(YES, windows.share_inside(e[0], 100, int(plan.start[w, 0]), 100))]
        for j, at in ((plan.left[w, 0], plan.left_at[w, 0]), (plan.right[w, 0], plan.right_at[w, 0])):
            if j >= 0 and labels[j] != SILENCE:
                words.append((int(labels[j]), windows.share_inside(e[j], int(at), int(plan.start[w, 0]), 100)))
        assert (plan.first[w, 0], plan.other[w, 0], plan.lam[w, 0]) == pytest.approx(
            windows.rule_label(words, UNKNOWN, SILENCE))
        share = words[0][1]
        assert share >= 0.05 - 1e-9  # at least 50 ms of the word is always inside
        if len(words) == 1:
            seen.add("word" if share >= 0.8 else "unknown" if share <= 0.3 else "soft")
            if share <= 0.3:
                assert plan.first[w, 0] == UNKNOWN and plan.lam[w, 0] == 1.0
        x = windows.window_wave(waves, plan, [], None, 3, 0, w)
        strip = windows.strip_of(waves, plan, [], 3, 0, w)
        s = int(plan.start[w, 0]) * windows.HOP
        np.testing.assert_array_equal(x, np.clip(strip[s : s + SR], -1, 1))
        if plan.left[w, 0] == windows.NONE and plan.right[w, 0] == windows.NONE:
            np.testing.assert_array_equal(strip[SR : 2 * SR], waves[0])  # alone: the clip itself
    assert seen == {"word", "unknown", "soft"}  # onset anywhere, cut off at the edge, in between
    # the _silence_ clip holds no word: its windows are silence unless a neighbour's word comes in
    for w in range(64):
        if plan.left[w, 1] < 0 and plan.right[w, 1] < 0:
            assert plan.first[w, 1] == SILENCE


def test_plan_is_a_function_of_the_seed():
    rng = np.random.default_rng(0)
    waves = np.stack([_word_at(rng.uniform(0, 0.5), 0.4) for _ in range(20)])
    labels = rng.integers(0, 3, 20)
    a, b = (windows.window_plan(waves, labels, NAMES, 3, seed=7) for _ in range(2))
    c = windows.window_plan(waves, labels, NAMES, 3, seed=8)
    for name in ("left", "right", "left_at", "right_at", "start", "first", "other", "lam"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.start, c.start)
    # window w of clip i does not depend on how many windows are planned
    np.testing.assert_array_equal(windows.window_plan(waves, labels, NAMES, 1, seed=7).start[0], a.start[0])
    assert (a.left != np.arange(20)).all() and (a.right != np.arange(20)).all()  # never the clip itself


def test_window_features_cached_and_made_again(tones, tmp_path):
    dataset = load_dataset([tones], ["low", "high"], quiet=True)
    f = build_features(dataset, variants=2, augment=AugmentConfig(), cache_dir=tmp_path, progress=False, jobs=1,
                       mix_variants=1, window_variants=2)
    n = f.train.shape[1]
    assert f.win.shape == (2, n, *f.train.shape[2:]) and f.all_variants == 5 and f.window_variants == 2
    idx = np.arange(n)
    for k in (3, 4):  # 0, 1 augmented; 2 a mixture; 3, 4 windows
        kv = np.full(n, k)
        waves = f.variant_waves(idx[:6], kv[:6])
        np.testing.assert_allclose(f.features_of(idx[:6], kv[:6]), np.stack([log_mel(w) for w in waves]), atol=1e-5)
        first, other, lam = f.targets_of(idx, kv)
        np.testing.assert_array_equal(first, f.win_plan.first[k - 3])
        np.testing.assert_array_equal(lam, f.win_plan.lam[k - 3])
    first, other, lam = f.targets_of(idx, np.zeros(n, int))
    assert (first == f.train_y).all() and (lam == 1).all()
    again = build_features(dataset, variants=2, augment=AugmentConfig(), cache_dir=tmp_path, progress=False, jobs=2,
                           mix_variants=1, window_variants=2)
    assert again.seconds == 0.0 and again.win_key == f.win_key  # from the cache
    np.testing.assert_array_equal(np.asarray(again.win), np.asarray(f.win))
    other_seed = build_features(dataset, variants=2, augment=AugmentConfig(), cache_dir=tmp_path, progress=False,
                                jobs=1, window_variants=2, seed=1)
    assert other_seed.win_key != f.win_key
    assert len({p.name for p in tmp_path.rglob("win-*.npy")}) == 2


def test_waveform_teacher_judges_the_window(tones, tmp_path):
    judged, want = train_data.waveform_teacher_on_variant(tones, tmp_path, window_variants=1)
    np.testing.assert_allclose(judged, want, atol=1e-4)
    assert list(tmp_path.rglob("teacher-win-*.npy"))


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "tinyear.host.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_negative_window_variants_one_line(tones, tmp_path):
    for command in (["distill", "--no-teacher"], ["teacher"]):
        done = _cli(*command, str(tones), "--words", "low", "high", "--window-variants", "-1", "--out",
                    str(tmp_path / command[0]), timeout=120)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert "--window-variants" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = _cli("pipeline", "--data", str(tones), "--window-variants", "-2", "--out", str(tmp_path / "p"), timeout=120)
    assert done.returncode != 0 and "--window-variants" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_distill_with_window_variants(tones, tmp_path):
    out = tmp_path / "s"
    done = _cli("distill", str(tones), "--words", "low", "high", "--no-teacher", "--window-variants", "1",
                "--variants", "1", "--epochs", "2", "--student", "dscnn-s", "--out", str(out), "--quiet", "--json",
                "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["options"]["data"]["window_variants"] == 1
    assert list((tmp_path / "cache").rglob("win-*.npy"))
    done = _cli("distill", str(tones), "--words", "low", "high", "--no-teacher", "--window-variants", "1",
                "--mixup", "0.5", "--out", str(tmp_path / "s2"), "--quiet")
    assert done.returncode != 0 and "choose one" in done.stderr and "Traceback" not in done.stderr
