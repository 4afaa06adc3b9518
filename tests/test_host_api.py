"""The public surface of `tinyear.host`: a user's own distill-and-export script runs as written, every
public name resolves to its one home, and importing the package stays light."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import train_data

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The second python block under the README's "Use it from Python" heading (the first is the
    device's): tones stand in for keywords so that it runs in seconds."""
    section = (ROOT / "README.md").read_text().split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2, "no host example (second python block) in the README's 'Use it from Python'"
    return blocks[1]


EXAMPLE = readme_example()


def test_public_names_resolve_to_their_homes():
    import tinyear.host as host

    for name, (module, attr) in host._PUBLIC.items():
        assert getattr(host, name) is getattr(importlib.import_module(f"tinyear.host.{module}"), attr), name
    assert set(host.__all__) == set(host._PUBLIC) and set(host._PUBLIC) <= set(dir(host))
    with pytest.raises(AttributeError):
        host.no_such_name  # noqa: B018


def test_a_submodule_import_does_not_shadow_a_public_name():
    code = ("import tinyear.host as h, tinyear.host.distill, tinyear.host.evaluate\n"
            "print(callable(h.distill_student), callable(h.evaluate_model), h.distill_student.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", "tinyear.host.distill"]


def test_importing_the_package_loads_no_torch_or_numpy():
    code = "import sys, tinyear.host\nprint(sorted(m for m in ('torch', 'numpy', 'tqdm') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_example_is_short():
    assert len(EXAMPLE.strip().splitlines()) <= 10


@pytest.mark.slow
def test_example_runs(tmp_path):
    train_data.make_dataset(tmp_path / "tones", per_word=30)
    done = subprocess.run([sys.executable, "-c", EXAMPLE], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    val, int8, bundle = done.stdout.split()
    assert 0.0 <= float(val) <= 1.0 and 0.0 <= float(int8) <= 100.0
    assert (tmp_path / bundle).is_file() and (tmp_path / "runs" / "student" / "run.json").is_file()
    info = json.loads((tmp_path / "runs" / "student" / "run.json").read_text())
    assert info["name"] == "dscnn-s"
