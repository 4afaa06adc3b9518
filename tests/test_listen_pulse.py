"""`tinyear-device listen` end to end through real PortAudio: a private PulseAudio server with a 48 kHz
stereo null sink is the microphone (scripts/virtual_mic.py), `paplay` plays known words into it, and
the listener, a subprocess, must print them in order and nothing else. Nothing is mocked: PortAudio
records the sink's monitor through ALSA's pulse plugin, the listener resamples 48 -> 16 kHz with soxr
and downmixes (or picks a channel).

The words are tone bursts that the stream-trained tone model knows (tests/stream_model.py), and, with
the shipped keyword bundle (models/keywords.tinyear), words spoken by people (the public Speech
Commands test part beside the checkout), and with the text-alone wake bundle that carries the
speech_embedding backbone (models/computer-jarvis-snowboy.tinyear), wake phrases spoken by people
(../shared/data/other-speech): each the first clip, in name order, that the bundle recognises offline, because this test proves the microphone path hears what the model hears in a
file; the model's accuracy on people is measured by the benchmarks, not here. Also: `devices` lists the pulse device, and a microphone that disappears (its sink unloaded,
then the whole server killed) is reported and retried until it is back, without a traceback, and
SIGTERM ends the listener with its one-line summary.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, full_pipe, write_wav
from stream_model import SR, tone_bundle, tone_stream  # noqa: F401  (tone_bundle is a fixture)

pytestmark = pytest.mark.audio

KEYWORDS_BUNDLE = ROOT / "models" / "keywords.tinyear"
WAKE_BUNDLE = ROOT / "models" / "computer-jarvis-snowboy.tinyear"
REAL_SPEECH = ROOT.parent / "shared" / "data" / "speech-commands-v2-test-public"
OTHER_SPEECH = ROOT.parent / "shared" / "data" / "other-speech"
DEVICE_CLI = [sys.executable, "-m", "tinyear.device.cli"]


def load_virtual_mic():
    spec = importlib.util.spec_from_file_location("virtual_mic", ROOT / "scripts" / "virtual_mic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mic(tmp_path):
    """A fresh virtual microphone per test (a vanishing-device test must not leave a broken one)."""
    vm = load_virtual_mic()
    missing = vm.missing_tools()
    if missing:
        pytest.skip(f"PulseAudio tools missing ({', '.join(missing)}): apt-get install pulseaudio pulseaudio-utils libasound2-plugins")
    with vm.VirtualMic(tmp_path / "vmic") as m:
        yield m


class Listener:
    """`tinyear-device listen ... --json` as a subprocess, its output collected line by line."""

    def __init__(self, mic, bundle: Path, *args: str):
        self.proc = subprocess.Popen([*DEVICE_CLI, "listen", str(bundle), "--json", "--input", "pulse", *args],
                                     env=mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[dict] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, stream, is_json: bool) -> None:
        for line in stream:
            if is_json:
                self.out.append(json.loads(line))
            else:
                self.err.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30.0, after: int = 0) -> str:
        """The first stderr line (from index `after`) matching `pattern`; fails with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.err[after:]:
                if re.search(pattern, line):
                    return line
            if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                break
            time.sleep(0.05)
        pytest.fail(f"listener never printed /{pattern}/; stderr so far:\n" + "\n".join(self.err))

    def detections(self) -> list[dict]:
        return [o for o in self.out if o.get("type") == "detection"]

    def wait_for_labels(self, labels: list[str], timeout: float = 30.0, last: bool = False) -> None:
        """Wait until the detections are `labels` (or, with `last`, end with them)."""
        def got():
            seen = [d["label"] for d in self.detections()]
            return seen[-len(labels):] == labels if last else seen == labels

        wait_until(got, timeout, f"detections {labels}", self)

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return code


def wait_until(condition, timeout: float, what: str, listener: Listener | None = None) -> None:
    """Poll `condition` every 50 ms until it holds; fail after `timeout` s, with the listener's stderr."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = "" if listener is None else ("; stderr so far:\n" + "\n".join(listener.err)
                                                  + f"\ndetections: {listener.detections()}")
            pytest.fail(f"waited {timeout:g} s for {what}{detail}")
        time.sleep(0.05)


def people_words(words: list[str], rng: np.random.Generator, bundle: Path, folder: Path = REAL_SPEECH, *,
                 reach: float = 0.3, least: float = 0.95):
    """Words spoken by people, as a stream like tone_stream's: (waveform at 16 kHz, truth rows). For each
    word, the first clip of REAL_SPEECH/word in name order that the bundle recognises offline wherever
    the listener's 1 s window falls around it (scored at 0.1 s steps, from `reach` s early to `reach` s
    late: every window must give that word at least `least`, or the bundle's own threshold for it if
    higher, so that any smoothing and sustain rule the bundle carries still fires), whole, at -20 dBFS
    RMS. Clips of another `folder` (other-speech's wake phrases run 1-3 s) are cut to their loudest second
    first; a phrase longer than the window cannot hold 0.95 that far off-centre, so those are asked less."""
    from tinyear.device.audio import load_audio
    from tinyear.device.bundle import read_bundle
    from tinyear.device.classify import Classifier
    from tinyear.device.detection import DetectionConfig
    from tinyear.device.features import fit_clip

    classifier = Classifier(bundle)
    detection = DetectionConfig.from_bundle(read_bundle(bundle))
    pad = np.zeros(int(round(reach * SR)), dtype=np.float32)

    def recognised(x: np.ndarray, word: str) -> bool:
        padded = np.concatenate([pad, x, pad])
        for start in range(0, len(padded) - SR + 1, SR // 10):
            probs = classifier.scores(padded[start : start + SR])
            if classifier.labels[int(np.argmax(probs))] != word or probs.max() < max(least, detection.threshold_for(word)):
                return False
        return True

    parts, truth, t = [np.zeros(int(1.5 * SR), dtype=np.float32)], [], 1.5
    for word in words:
        for path in sorted((folder / word).glob("*.flac")):
            x = load_audio(path, SR)
            x = x if folder == REAL_SPEECH else fit_clip(x)
            gain = min(10 ** (-20 / 20) / np.sqrt(np.mean(x.astype(np.float64) ** 2)), 0.9 / np.abs(x).max())
            x = x * np.float32(gain)  # -20 dBFS RMS, never clipped
            if len(x) == SR and recognised(x, word):
                break
        else:
            raise AssertionError(f"no clip of {word!r} in {folder} that the bundle recognises")
        parts.append(x)
        truth.append((t, t + len(x) / SR, word))
        gap = rng.uniform(2.0, 2.6)
        parts.append(np.zeros(int(gap * SR), dtype=np.float32))
        t += len(x) / SR + gap
    return np.concatenate(parts), truth


def cases():
    yield pytest.param("tones", id="tones")
    keywords = pytest.mark.skipif(not REAL_SPEECH.is_dir(), reason=f"needs the real-speech clips in {REAL_SPEECH}")
    yield pytest.param("keywords", id="people-keywords", marks=keywords)
    wake = pytest.mark.skipif(not OTHER_SPEECH.is_dir(), reason=f"needs the real wake phrases in {OTHER_SPEECH}")
    yield pytest.param("wake", id="people-wake-phrases-backbone-bundle", marks=wake)


def words_and_bundle(case: str, tone_bundle_path: Path, tmp_path: Path):
    rng = np.random.default_rng(1)
    if case == "tones":
        words = ["low", "high", "high", "low", "high", "low"]
        wave, truth = tone_stream(words, rng, noise_dbfs=-60.0)
        return wave, truth, tone_bundle_path
    if case == "wake":  # the text-alone bundle that carries the speech_embedding backbone
        wave, truth = people_words(["computer", "snowboy", "jarvis", "computer"], rng, WAKE_BUNDLE, OTHER_SPEECH,
                                   reach=0.2, least=0.7)
        return wave, truth, WAKE_BUNDLE
    words = ["yes", "stop", "left", "go", "down", "right"]
    wave, truth = people_words(words, rng, KEYWORDS_BUNDLE)
    return wave, truth, KEYWORDS_BUNDLE


@pytest.mark.slow
@pytest.mark.parametrize("case", list(cases()))
def test_listen_hears_the_words_in_order(mic, tone_bundle, tmp_path, case):
    wave, truth, bundle = words_and_bundle(case, tone_bundle, tmp_path)
    words = [label for _, _, label in truth]
    # Played in stereo with the words on the right channel only: the default listener (both channels
    # averaged) and --channel 1 hear them; --channel 0 hears silence.
    stereo = np.stack([np.zeros_like(wave), wave], axis=1)
    path = write_wav(tmp_path / "words.wav", stereo)
    both = Listener(mic, bundle, "--capture-rate", "48000")
    right = Listener(mic, bundle, "--channel", "1")
    left = Listener(mic, bundle, "--channel", "0")
    for listener in (both, right, left):
        listener.wait_for(r"audio arriving from 'pulse'")  # the monitor stream delivers: what is played is heard
    assert "at 48000 Hz, 2 channels downmixed" in both.wait_for("listening on")
    assert "channel 1 of 2" in right.wait_for("listening on")
    played_at = time.time()
    mic.play(path)
    both.wait_for_labels(words)  # the last word's event comes up to ~1.5 s after it ends
    right.wait_for_labels(words)  # (and the left channel, which hears silence, has had as long)
    codes = [listener.stop() for listener in (both, right, left)]
    for listener, code in zip((both, right, left), codes):
        stderr = "\n".join(listener.err)
        assert code == 0, stderr
        assert "Traceback" not in stderr
        assert re.search(r"terminated: ran [\d.]+ s, \d+ detections?, \d+ overflows?", stderr), stderr
        summary = listener.out[-1]
        assert summary["type"] == "summary" and summary["reason"] == "terminated"
        assert summary["detections"] == len(listener.detections())
    assert [d["label"] for d in both.detections()] == words, both.err
    assert [d["label"] for d in right.detections()] == words, right.err
    assert left.detections() == []
    # Each event comes after its word started playing (a wall-clock sanity check of the pairing,
    # not a speed requirement: latency is measured by scripts/bench_live.py).
    for event, (start, _, _) in zip(both.detections(), truth):
        assert event["wall_time"] > played_at + start


def test_devices_lists_the_pulse_device(mic):
    result = subprocess.run([*DEVICE_CLI, "devices", "--json"], env=mic.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    devices = [json.loads(line) for line in result.stdout.splitlines()]
    pulse = [d for d in devices if d["name"] == "pulse"]
    assert pulse, devices
    assert {16000, 48000} <= set(pulse[0]["supported_rates"]) and pulse[0]["max_input_channels"] >= 2
    text = subprocess.run([*DEVICE_CLI, "devices"], env=mic.env, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and re.search(r"\d+\s+pulse\s+\[ALSA\]", text.stdout), text.stdout


@pytest.mark.slow
def test_vanishing_microphone_is_retried_until_it_is_back(mic, tone_bundle, tmp_path):
    rng = np.random.default_rng(2)
    listener = Listener(mic, tone_bundle)
    listener.wait_for("audio arriving from")

    # 1. The sink (the "USB microphone") disappears, is retried in vain at least once, and comes back.
    mark = len(listener.err)
    mic.unload_sink()
    listener.wait_for(r"input 'pulse' lost \(", timeout=15, after=mark)
    listener.wait_for(r"input 'pulse' still unavailable", timeout=15, after=mark)
    mark = len(listener.err)
    mic.load_sink()
    listener.wait_for(r"input back after", timeout=30, after=mark)
    listener.wait_for(r"audio arriving from", timeout=30, after=mark)

    # 2. The whole sound server dies, and a new one starts later.
    mark = len(listener.err)
    mic.kill_server()
    listener.wait_for(r"input 'pulse' lost \(", timeout=15, after=mark)
    listener.wait_for(r"input 'pulse' still unavailable", timeout=15, after=mark)
    mark = len(listener.err)
    mic.start()
    listener.wait_for(r"input back after", timeout=40, after=mark)
    listener.wait_for(r"audio arriving from", timeout=30, after=mark)

    # 3. It still hears.
    wave, truth = tone_stream(["high", "low"], rng, noise_dbfs=-60.0)
    mic.play(write_wav(tmp_path / "after.wav", wave))
    listener.wait_for_labels(["high", "low"], last=True)
    code = listener.stop()
    stderr = "\n".join(listener.err)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "Expression '" not in stderr and "ALSA lib" not in stderr, stderr
    assert re.search(r"terminated: ran [\d.]+ s, \d+ detections?, \d+ overflows?, 2 reconnects", stderr), stderr
    assert [d["label"] for d in listener.detections()][-2:] == ["high", "low"], stderr


@pytest.mark.parametrize("case", ["no such input", "no such index", "channel out of range", "bad bundle", "cannot record"])
def test_listen_bad_input_is_one_line(mic, tone_bundle, tmp_path, case):
    bad_bundle = tmp_path / "bad.tinyear"
    bad_bundle.write_bytes(tone_bundle.read_bytes()[:-5])
    if case == "cannot record":  # the pulse device is listed, but the source behind it is gone
        mic.unload_sink()
    args = {
        "cannot record": [str(tone_bundle), "--input", "pulse"],
        "no such input": [str(tone_bundle), "--input", "no-such-microphone"],
        "no such index": [str(tone_bundle), "--input", "999"],
        "channel out of range": [str(tone_bundle), "--input", "pulse", "--channel", "99"],
        "bad bundle": [str(bad_bundle)],
    }[case]
    result = subprocess.run([*DEVICE_CLI, "listen", *args, "--duration", "5"], env=mic.env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyear-device: error: "), result.stderr


def test_exec_hook_gets_the_detection(mic, tone_bundle, tmp_path):
    wave, truth = tone_stream(["high", "low"], np.random.default_rng(4), noise_dbfs=-60.0)
    log = tmp_path / "heard.txt"
    listener = Listener(mic, tone_bundle, "--exec", f'echo "$TINYEAR_LABEL $TINYEAR_SCORE $TINYEAR_TIME" >> {log}')
    listener.wait_for("audio arriving from")
    mic.play(write_wav(tmp_path / "two.wav", wave))
    listener.wait_for_labels(["high", "low"])
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 2, 10, "both hooks to run", listener)
    assert listener.stop(sig=signal.SIGINT) == 0, "\n".join(listener.err)  # Ctrl-C: a clean stop too
    assert re.search(r"interrupted: ran [\d.]+ s, 2 detections, \d+ overflows?", "\n".join(listener.err)), listener.err
    rows = [line.split() for line in log.read_text().splitlines()]
    assert [r[0] for r in rows] == ["high", "low"]
    events = listener.detections()
    assert [float(r[1]) for r in rows] == pytest.approx([e["score"] for e in events], abs=1e-4)
    assert [float(r[2]) for r in rows] == pytest.approx([e["time"] for e in events], abs=1e-3)
    assert listener.out[-1]["exec_ran"] == 2


def test_duration_stops_by_itself(mic, tone_bundle):
    result = subprocess.run([*DEVICE_CLI, "listen", str(tone_bundle), "--input", "pulse", "--duration", "2"],
                            env=mic.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no word was played: nothing detected
    assert re.search(r"duration reached: ran 2\.\d s, 0 detections, \d+ overflows?, 0 reconnects", result.stderr), result.stderr


def test_a_stalled_stdout_reader_does_not_stall_detection(mic, tone_bundle, tmp_path):
    """`listen --json | program-that-stopped-reading`: stdout is a real pipe, filled to the brim before
    the listener starts and never read. Detection and the --exec hook go on; SIGTERM still ends the
    listener at once, with its summary on stderr and the lines it could not write counted."""
    wave, _ = tone_stream(["high", "low"], np.random.default_rng(5), noise_dbfs=-60.0)
    log = tmp_path / "heard.txt"
    read_end, write_end = full_pipe()
    proc = subprocess.Popen([*DEVICE_CLI, "listen", str(tone_bundle), "--json", "--input", "pulse",
                             "--exec", f'echo "$TINYEAR_LABEL" >> {log}'],
                            env=mic.env, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(line.rstrip("\n") for line in proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("audio arriving from" in line for line in err), 30, "audio to arrive")
        mic.play(write_wav(tmp_path / "two.wav", wave))
        wait_until(lambda: log.exists() and log.read_text().split() == ["high", "low"], 30,
                   f"both detections to reach the hook; stderr: {err}")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        reader.join(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(read_end)
    stderr = "\n".join(err)
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert re.search(r"\d+ lines? not written: stdout was not being read", stderr), stderr
    assert re.search(r"terminated: ran [\d.]+ s, 2 detections", stderr), stderr
