"""The public surface of `tinyear.device`: the README's "Use it from Python" example runs as written,
every public name resolves to its one home, and importing the package stays light."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, write_wav

pytestmark = pytest.mark.device

KEYWORDS_BUNDLE = ROOT / "models" / "keywords.tinyear"


def readme_example() -> str:
    """The first python block under the README's "Use it from Python" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "no python block in the README's 'Use it from Python' section"
    return blocks[0]


def test_readme_example_is_short():
    assert len(readme_example().strip().splitlines()) <= 12


def test_readme_example_runs(tmp_path):
    """In a folder with the shipped bundle, a clip (the bundle's self-test word) and a long recording
    with that word in it: the example prints the word on top and detects it once, at its place."""
    from tinyear.device import read_bundle

    bundle = read_bundle(KEYWORDS_BUNDLE)
    word = bundle.selftest.audio
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "keywords.tinyear").symlink_to(KEYWORDS_BUNDLE)
    write_wav(tmp_path / "clip.wav", word)
    silence = np.zeros(2 * bundle.sample_rate, dtype=np.float32)
    write_wav(tmp_path / "long.wav", np.concatenate([silence, word, silence]))
    proc = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    label = bundle.selftest.label
    assert lines[0].startswith(f"[('{label}', "), proc.stdout
    events = [line.split() for line in lines[1:]]
    assert [e[2] for e in events] == [label], proc.stdout
    assert 2.0 < float(events[0][0]) < 2.0 + 1.0 + 1.5  # after the word starts, before its detection window ends


def test_public_names_resolve_to_their_homes():
    import tinyear.device as device

    for name, module in device._PUBLIC.items():
        value = getattr(device, name)
        assert value.__module__ == f"tinyear.device.{module}", name
    assert set(device.__all__) == {"__version__", *device._PUBLIC}
    with pytest.raises(AttributeError):
        device.no_such_name  # noqa: B018


def test_importing_the_package_stays_light():
    code = ("import sys\nimport tinyear.device\nprint(sorted(m for m in ('numpy', 'sounddevice', 'soundfile') if m in sys.modules))\n"
            "from tinyear.device import Detector, Listener, read_bundle\nprint('sounddevice' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[]", "False"]
