"""`tinyear export`: a really trained (tiny) student run -> int8 bundle, verified; QAT; bad input.

The run is a DS-CNN (registered architecture, shrunk through its arch_kwargs) trained for a few
seconds on a tone dataset written by the test (folders low/high/noise, Speech Commands list files for
the splits), saved in the run-folder format of `tinyear.host.runs`. Conversions are real (litert-torch),
so these tests are slow; the run and its export are made once per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
TONES = ["low", "high", "noise"]
SPLIT_COUNTS = {"train": 40, "validation": 12, "test": 12}


def make_tone_dataset(root: Path, seed: int = 0) -> Path:
    """Folders low/, high/, noise/ of 1 s tone clips, with validation_list.txt and testing_list.txt."""
    import soundfile as sf
    import tiny_model

    rng = np.random.default_rng(seed)
    lists = {"validation": [], "test": []}
    for label in TONES:
        (root / label).mkdir(parents=True, exist_ok=True)
        n = 0
        for split, count in SPLIT_COUNTS.items():
            for _ in range(count):
                name = f"{label}/spk{n:03d}_nohash_0.wav"
                sf.write(str(root / name), tiny_model.make_clip(label, rng), 16000, subtype="PCM_16")
                if split in lists:
                    lists[split].append(name)
                n += 1
    (root / "validation_list.txt").write_text("\n".join(lists["validation"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
    return root


def train_tiny_run(run_dir: Path, data_root: Path, *, steps: int = 150, seed: int = 0, teacher=None) -> Path:
    """A tiny DS-CNN trained on the tone dataset, saved as a finished student run folder."""
    import torch

    from tinyear.device.features import DEFAULT_CONFIG, fingerprint
    from tinyear.host.data import load_dataset
    from tinyear.host.evaluate import batch_features
    from tinyear.host.runs import save_checkpoint, write_run_json
    from tinyear.host.students import DSCNN

    dataset = load_dataset(data_root, TONES, quiet=True)
    waves, y = dataset.arrays("train", progress=False)
    x = torch.from_numpy(batch_features(waves, DEFAULT_CONFIG, progress=False))
    yt = torch.from_numpy(y)
    torch.manual_seed(seed)
    kwargs = {"channels": 8, "blocks": 1}
    model = DSCNN(len(dataset.labels), **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    vw, vy = dataset.arrays("validation", progress=False)
    with torch.no_grad():
        acc = float((model(torch.from_numpy(batch_features(vw, DEFAULT_CONFIG, progress=False))).argmax(1).numpy() == vy).mean())
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir / "best.pt", {
        "kind": "student", "arch": "DSCNN", "arch_kwargs": kwargs, "state_dict": model.state_dict(),
        "labels": dataset.labels, "frontend": DEFAULT_CONFIG.to_dict(), "frontend_fingerprint": fingerprint(),
        "data": {"roots": [str(data_root)], "fingerprint": dataset.fingerprint(), "params": dataset.params},
        "teacher": teacher, "metrics": {"val_accuracy": 100 * acc}, "name": "dscnn-tiny", "format": 1,
    })
    write_run_json(run_dir, {"test": True, "metrics": {"val_accuracy": 100 * acc}})
    return run_dir


def tinyear(*args, env_extra=None, timeout=600, prelude: str | None = None):
    """Run the real `tinyear` CLI in a fresh interpreter; `prelude` is Python run before main()."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    code = (prelude or "") + "\nimport sys\nfrom tinyear.host.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def error_line(proc) -> str:
    """The one error line a refused command ends with; anything before it is progress, never a traceback."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tinyear: error: "), proc.stderr[-3000:]
    return last


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    data = make_tone_dataset(base / "tones")
    run = train_tiny_run(base / "run", data)
    return {"data": data, "run": run, "base": base}


@pytest.fixture(scope="module")
def exported(tone_run):
    out = tone_run["base"] / "tones.tinyear"
    proc = tinyear("export", tone_run["run"], "--out", out, "--calibration", "40", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"path": out, "result": json.loads(proc.stdout.strip().splitlines()[-1]), **tone_run}


@pytest.mark.slow
def test_export_writes_a_verified_int8_bundle(exported):
    from tinyear.device.bundle import read_bundle
    from tinyear.device.classify import Classifier

    bundle = read_bundle(exported["path"])
    # readable by other users (a listener service runs as its own user), as a plain open() would make it
    umask = os.umask(0)
    os.umask(umask)
    assert Path(exported["path"]).stat().st_mode & 0o777 == 0o666 & ~umask
    model = bundle.load_model()
    assert model.input_dtype == np.int8 and model.output_dtype == np.int8
    assert bundle.labels == TONES + ["_unknown_", "_silence_"]
    m = bundle.metrics
    assert m["quantization"] == "ptq"
    v = m["verification"]
    assert v["input"]["dtype"] == "int8" and v["output"]["dtype"] == "int8"
    assert "FULLY_CONNECTED" not in v["ops"] and v["ops"]["CONV_2D"] >= 1
    # agreement and drop are measured on the whole validation split of the tone data
    from tinyear.host.data import load_dataset

    assert v["validation"]["clips"] == len(load_dataset(exported["data"], TONES, quiet=True).clips_in("validation"))
    assert v["validation"]["agreement_percent"] >= 95.0
    assert abs(m["float_accuracy"] - m["int8_accuracy"]) <= 5.0
    assert m["float_accuracy"] > 80.0
    # TFLite Micro: bit-identical to LiteRT's reference kernels, arena measured
    assert v["tflm"]["bit_exact"] is True and m["microcontroller_ready"] is True
    assert 1000 < v["tflm"]["arena_bytes"] < 1_000_000
    assert m["calibration"]["clips"] == 40 and m["calibration"]["split"] == "train"
    # no _unknown_ offset unless asked for
    assert m["unknown_offset"] == {**m["unknown_offset"], "offset": 0.0, "chosen_on": "none (the default)"}
    # provenance: student, data fingerprint, tools
    p = bundle.provenance
    assert p["student"]["arch"] == "DSCNN" and p["data"]["fingerprint"].startswith("data-")
    assert "torch" in p["tools"] and "litert-torch" in p["tools"]
    # the self-test clip reproduces exactly on the device side
    assert bundle.selftest is not None
    probs = Classifier(bundle).scores(bundle.selftest.audio)
    np.testing.assert_allclose(probs, bundle.selftest.expected, atol=1e-6)


@pytest.mark.slow
def test_export_prints_microcontroller_ready_in_text_mode(exported, tmp_path):
    out = tmp_path / "again.tinyear"
    proc = tinyear("export", exported["run"], "--out", out, "--calibration", "12", "--tflm-samples", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "microcontroller-ready" in proc.stdout
    assert "top-1 agreement float vs int8" in proc.stdout and out.exists()


@pytest.mark.slow
def test_export_takes_a_given_unknown_offset_and_refuses_a_negative_one(exported, tmp_path):
    """--unknown-offset X moves the int8 model's _unknown_ score up on every clip (folded into its last
    layer); a negative or unreadable value is one line, and no bundle."""
    from tinyear.device.bundle import read_bundle
    from tinyear.host.data import load_dataset
    from tinyear.host.evaluate import batch_features

    out = tmp_path / "offset.tinyear"
    proc = tinyear("export", exported["run"], "--out", out, "--calibration", "40", "--tflm-samples", "8",
                   "--unknown-offset", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "_unknown_ offset 3 (given (--unknown-offset))" in proc.stdout
    moved, plain = read_bundle(out), read_bundle(exported["path"])
    assert moved.metrics["unknown_offset"]["offset"] == 3.0
    waves, _ = load_dataset(exported["data"], TONES, quiet=True).arrays("validation", progress=False)
    x = batch_features(waves, moved.frontend, progress=False)
    u = moved.labels.index("_unknown_")
    shift = moved.load_model().predict(x)[:, u] - plain.load_model().predict(x)[:, u]
    assert shift.min() > 1.5 and abs(float(np.median(shift)) - 3.0) < 0.75  # int8 steps round it
    # auto: the tone data has no _unknown_ clips to fit, so it stays 0 and says why
    out_auto = tmp_path / "auto.tinyear"
    proc = tinyear("export", exported["run"], "--out", out_auto, "--calibration", "40", "--tflm-samples", "8",
                   "--unknown-offset", "auto", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])["metrics"]["unknown_offset"]
    assert record["offset"] == 0.0 and "no _unknown_ clips" in record["chosen_on"]
    for bad in ("-1", "lots"):
        out_bad = tmp_path / f"bad{bad}.tinyear"
        refused = tinyear("export", exported["run"], "--out", out_bad, "--unknown-offset", bad)
        assert "give auto or a number" in error_line(refused) and not out_bad.exists()


@pytest.mark.slow
def test_export_qat_route_through_the_cli(exported, tmp_path):
    """--qat: fine-tune through fake quantization (litert-torch's quantizer in QAT mode, with the
    annotator fix), then int8: still int8 in/out, agreeing with the float student, bit-exact under TFLM."""
    from tinyear.device.bundle import read_bundle

    out = tmp_path / "qat.tinyear"
    proc = tinyear("export", exported["run"], "--out", out, "--qat", "--qat-epochs", "1", "--tflm-samples", "6",
                   "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = read_bundle(out)
    m = bundle.metrics
    assert m["quantization"] == "qat" and m["calibration"]["by"].startswith("QAT")
    assert m["qat"]["history"][0]["loss"] > 0 and m["qat"]["teacher"] is False and m["qat"]["config"]["epochs"] == 1
    v = m["verification"]
    assert v["input"]["dtype"] == "int8" and v["output"]["dtype"] == "int8"
    assert v["validation"]["agreement_percent"] >= 90.0
    # the verdicts follow from the numbers, against the QAT targets (a stricter drop than PTQ's)
    from tinyear.host.verify import AGREEMENT_TARGET, DROP_TARGET_QAT

    c, targets = v["validation"], v["validation"]["targets"]
    assert targets["accuracy_drop_points"] == DROP_TARGET_QAT and targets["agreement_percent"] == AGREEMENT_TARGET
    assert targets["drop_met"] is (c["accuracy_drop_points"] <= DROP_TARGET_QAT)
    assert targets["agreement_met"] is (c["agreement_percent"] >= AGREEMENT_TARGET)
    assert v["tflm"]["bit_exact"] and m["microcontroller_ready"]


@pytest.mark.slow
def test_litert_qat_annotator_still_needs_the_fix():
    """litert-torch 0.10 + torch 2.13: prepare_qat_pt2e fails without `conv_bn_annotator_fix`. When this
    starts passing without the fix, the fix can go."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from tinyear.host.convert import export_graph, ptq_quantizer

    class ConvBN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x.unsqueeze(1)))).mean(dim=(2, 3))

    graph = export_graph(ConvBN().train(), torch.zeros(1, 98, 40), dynamic_batch=True)
    with pytest.raises(ValueError, match="instance of `torch.nn.Module`"):
        prepare_qat_pt2e(graph, ptq_quantizer(qat=True))


# -- bad input, through the CLI ----------------------------------------------------------------------------


def test_omp_wait_policy_is_set_before_torch_on_the_export_path():
    """The export path (command -> export -> qat, which imports torch at module level) gets PASSIVE from
    the package, before torch loads; a value the user set wins. And importing tinyear.host stays cheap."""
    code = ("import os, sys\nimport tinyear.host\nassert 'torch' not in sys.modules\n"
            "import tinyear.host.commands.export, tinyear.host.export, tinyear.host.qat\n"
            "print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "PASSIVE"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert done.stdout.strip() == "ACTIVE"


def test_export_refuses_a_run_without_checkpoint(tmp_path):
    run = tmp_path / "empty-run"
    run.mkdir()
    proc = tinyear("export", run, "--out", tmp_path / "x.tinyear")
    assert "no checkpoint (best.pt)" in error_line(proc) and proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.tinyear").exists()


@pytest.mark.slow
def test_export_refuses_an_empty_calibration_set(tone_run, tmp_path):
    out = tmp_path / "x.tinyear"
    proc = tinyear("export", tone_run["run"], "--out", out, "--calibration", "0")
    assert "calibration set is empty" in error_line(proc) and not out.exists()


@pytest.mark.slow
def test_export_refuses_a_training_split_without_clips(tone_run, tmp_path):
    """Data whose lists put every clip in validation/test: nothing to calibrate on."""
    import shutil

    data = tmp_path / "no-train"
    shutil.copytree(tone_run["data"], data)
    names = [f"{label}/{p.name}" for label in TONES for p in sorted((data / label).iterdir())]
    (data / "validation_list.txt").write_text("\n".join(names[::2]) + "\n")
    (data / "testing_list.txt").write_text("\n".join(names[1::2]) + "\n")
    proc = tinyear("export", tone_run["run"], "--out", tmp_path / "x.tinyear", "--data", data)
    assert "train split" in error_line(proc)  # the dataset loader refuses it first, in one line


UNLOWERABLE = textwrap.dedent('''
    import torch
    import tinyear.host.students as students

    @torch.library.custom_op("tinyear_test::wiggle", mutates_args=())
    def wiggle(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @wiggle.register_fake
    def _(x):
        return torch.empty_like(x)

    class Wiggle(torch.nn.Module):
        def forward(self, x):
            return wiggle(x)

    class Spectral(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x, dim=-1).abs()

    class OddStudent(torch.nn.Module):
        """A conv student with one layer the int8 converter cannot handle (kind: wiggle | fft)."""
        def __init__(self, num_labels, kind="wiggle"):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, stride=2)
            self.odd = Wiggle() if kind == "wiggle" else Spectral()
            self.fc = torch.nn.Linear(4, num_labels)
        def forward(self, x):
            x = self.odd(self.conv(x.unsqueeze(1)))
            return self.fc(x.mean(dim=(2, 3)))

    students.ARCHS["OddStudent"] = OddStudent   # registered for this process only
''')


@pytest.mark.slow
@pytest.mark.parametrize("kind,message", [
    ("wiggle", "layer 'odd' (Wiggle) uses tinyear_test.wiggle.default, which litert-torch cannot lower"),
    ("fft", "op RFFT2D in layer 'odd' (Spectral) stays complex64"),
])
def test_export_names_the_layer_the_converter_cannot_handle(tone_run, tmp_path, kind, message):
    import torch

    from tinyear.host.runs import read_checkpoint, save_checkpoint

    run = tmp_path / f"odd-{kind}"
    run.mkdir()
    ckpt = read_checkpoint(tone_run["run"] / "best.pt")
    labels = ckpt["labels"]
    torch.manual_seed(0)
    conv, fc = torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.Linear(4, len(labels))
    state = {**{f"conv.{k}": v for k, v in conv.state_dict().items()}, **{f"fc.{k}": v for k, v in fc.state_dict().items()}}
    save_checkpoint(run / "best.pt", {**ckpt, "arch": "OddStudent", "arch_kwargs": {"kind": kind}, "state_dict": state})
    (run / "run.json").write_text("{}\n")
    out = tmp_path / "x.tinyear"
    proc = tinyear("export", run, "--out", out, "--calibration", "8", prelude=UNLOWERABLE)
    assert message in error_line(proc)
    assert not out.exists()


@pytest.mark.slow
def test_export_refuses_data_whose_labels_do_not_fit_the_model(tone_run, tmp_path):
    """The run's own clips with their folders rotated (low clips in high/, high in noise/, noise in low/):
    the int8 model names no keyword clip with its folder's label, so no self-test clip would pass on
    the device; export refuses rather than write a bundle that says "noise" for a high tone."""
    import shutil

    rotate = {"low": "high", "high": "noise", "noise": "low"}
    data = tmp_path / "rotated"
    data.mkdir()
    for src, dst in rotate.items():
        shutil.copytree(tone_run["data"] / src, data / dst)
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = (tone_run["data"] / name).read_text().split()
        (data / name).write_text("\n".join(rotate[ln.split("/")[0]] + "/" + ln.split("/")[1] for ln in lines) + "\n")
    out = tmp_path / "x.tinyear"
    proc = tinyear("export", tone_run["run"], "--out", out, "--calibration", "12", "--tflm-samples", "4",
                   "--data", data)
    line = error_line(proc)
    assert "labels do not fit the model" in line and "validation clips" in line and "--data" in line, line
    assert not out.exists()
