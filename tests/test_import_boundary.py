"""The device half must install and run on a Pi without torch: importing any `tinyear.device` module, in
a fresh interpreter with warnings as errors, must not load torch, tensorflow, litert_torch or
`tinyear.host`."""

import pkgutil
import subprocess
import sys

import pytest

import tinyear.device

pytestmark = pytest.mark.device
FORBIDDEN = ("torch", "tensorflow", "litert_torch", "tinyear.host", "jax")


def _device_modules():
    mods = ["tinyear.device"]
    for info in pkgutil.walk_packages(tinyear.device.__path__, "tinyear.device."):
        mods.append(info.name)
    return mods


def test_there_are_modules_to_check():
    mods = _device_modules()
    assert {"tinyear.device.features", "tinyear.device.bundle", "tinyear.device.runtime", "tinyear.device.cli"} <= set(mods)


@pytest.mark.parametrize("module", _device_modules())
def test_module_imports_nothing_host_side(module):
    code = (
        f"import importlib, sys\nimportlib.import_module({module!r})\n"
        f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r}))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"{module} loaded {proc.stdout.strip()}"


def test_classify_loads_no_host_module_at_run_time(tiny_bundles, tmp_path):
    """Not just imports: a whole classification, then look at sys.modules."""
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    code = (
        "import sys\nfrom tinyear.device.cli import main\n"
        f"main(['classify', {str(tiny_bundles['int8'])!r}, {str(wav)!r}])\n"
        f"print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'litert_torch')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_library_modules_never_import_a_command():
    """Layers point one way: commands (argument parsing, printing) call the library, never the reverse."""
    import ast
    from pathlib import Path

    root = Path(tinyear.device.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        if path.name in ("cli.py",):  # the dispatcher names the command modules (as strings, imported lazily)
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n.startswith((".commands", "tinyear.device.commands")) or n == "..commands" for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
