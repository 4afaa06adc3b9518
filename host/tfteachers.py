"""Teachers from the TensorFlow world: TFLite files, TensorFlow frozen graphs and SavedModel folders.

Most published keyword models live there (KWT, DS-CNN, the MLPerf Tiny and Hello Edge models), so a
teacher may be
- a `.tflite` file, run with the LiteRT interpreter the device half already uses
  (`tinyear.device.runtime.Model`: float or int8 I/O, scale and zero point read from the interpreter).
  What it takes is told from its input shape: `(1, samples)` is raw audio (the model has its own front
  end, as KWT-1 has), `(1, frames, bins[, 1])` equal to the shared frontend's feature shape is a model
  over the shared log-mel features (a tinyear student can teach, and then takes feature batches
  directly); any other shape is refused with what was found;
- a TensorFlow frozen graph (`.pb`), run in a v1 session. Its input and output tensors are options,
  defaulting to the Speech Commands convention `wav_data:0` (the bytes of a 16-bit WAV file, decoded
  by the graph) -> `labels_softmax:0`; a float input tensor gets the waveform in its own shape;
- a SavedModel folder (`saved_model.pb` inside), through a signature (default `serving_default`).
TensorFlow is imported only for the last two, only here, and only on the workstation (the
`tensorflow` extra: `pip install 'tinyear[host,tensorflow]'`).

Labels come from the `labels=` option or a `labels.txt` beside the model; their count must equal the
output size. Scores are logits or probabilities: said with `scores=logits|probs` or detected on two probe
clips (rows that are non-negative and sum to 1 are probabilities); probabilities become log-probabilities,
which the distillation arithmetic treats as logits (softmax(log p) = p). A teacher expecting clips of
another length gets the waveform centre-padded or cut to its length (as `fit_clip` does).

Imports torch, numpy and `tinyear.device`; tensorflow lazily.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyear.device.errors import TinyearError, first_line
from tinyear.device.fileio import quiet_fd

from .teacher_base import Teacher, file_identity, read_labels, reject_options

SCORES = ("auto", "logits", "probs")
SPEECH_COMMANDS_INPUT, SPEECH_COMMANDS_OUTPUT = "wav_data:0", "labels_softmax:0"
SAMPLE_RATE = 16000


def fit_length(waves: np.ndarray, samples: int) -> np.ndarray:
    """(B, n) -> (B, samples): centre-padded with zeros, or the centre cut out."""
    n = waves.shape[1]
    if n == samples:
        return waves
    if n < samples:
        pad = samples - n
        return np.pad(waves, ((0, 0), (pad // 2, pad - pad // 2)))
    start = (n - samples) // 2
    return waves[:, start : start + samples]


def _is_probs(rows: np.ndarray) -> bool:
    return bool(np.all(rows >= -1e-6) and np.all(np.abs(rows.sum(axis=-1) - 1.0) < 1e-3))


def _probe_waves(samples: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(samples) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(samples)
    return np.stack([tone, 0.05 * rng.standard_normal(samples)]).astype(np.float32)


class ScoresModule(nn.Module):
    """Waveforms (B, samples) torch -> logits (B, labels) torch for a teacher that runs outside torch:
    `run(waves numpy (B, n)) -> scores numpy (B, labels)`, probabilities turned into log-probabilities.
    Not differentiable, which a teacher never needs; `.to(device)` is accepted and ignored."""

    def __init__(self, run, probs: bool):
        super().__init__()
        self._run = run
        self.probs = probs

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        scores = np.asarray(self._run(waves.detach().cpu().numpy().astype(np.float32)), dtype=np.float32)
        if self.probs:
            scores = np.log(np.clip(scores, 1e-7, None))
        return torch.from_numpy(scores)


def _decide_scores(probe: np.ndarray, scores: str, where: str) -> bool:
    """True when the model's outputs are probabilities: said, or detected on the probe clips' outputs."""
    if scores not in SCORES:
        raise TinyearError(f"{where}: scores={scores} must be one of {', '.join(SCORES)}")
    if scores != "auto":
        return scores == "probs"
    return _is_probs(np.asarray(probe, dtype=np.float64))


# -- TFLite ---------------------------------------------------------------------------------------------


def open_tflite(path: Path, threads: int = 1):
    """A `tinyear.device.runtime.Model` for a teacher file, or one line naming the file."""
    from tinyear.device.runtime import Model

    if not path.is_file():
        raise TinyearError(f"{path}: no such TFLite file")
    try:
        return Model(str(path), num_threads=threads)
    except TinyearError as exc:
        raise TinyearError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (LiteRT raises RuntimeError for unknown ops, ...)
        raise TinyearError(f"{path}: the TFLite runtime cannot run it ({first_line(exc)})") from None


def tflite_input_kind(model, frontend) -> str:
    """'audio' or 'features', from the input shape (without batch); TinyearError otherwise."""
    shape = tuple(model.feature_shape)
    feature_shape = tuple(frontend.feature_shape)
    if len(shape) == 1 and shape[0] >= SAMPLE_RATE // 4:
        return "audio"
    if shape == feature_shape or shape == (*feature_shape, 1):
        return "features"
    raise TinyearError(f"the model's input is {list(shape)} (without batch): neither raw audio (samples) nor "
                       f"the shared features {list(feature_shape)}; a teacher must take one of the two")


class TFLiteFeatureModel(nn.Module):
    """Shared features (B, frames, bins) torch -> logits (B, labels) torch through a TFLite model."""

    def __init__(self, model, probs: bool):
        super().__init__()
        self.model = model
        self.probs = probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x.detach().cpu().numpy().astype(np.float32)
        if len(self.model.feature_shape) == 3:
            feats = feats[..., None]
        scores = self.model.predict(feats)
        if self.probs:
            scores = np.log(np.clip(scores, 1e-7, None))
        return torch.from_numpy(np.asarray(scores, dtype=np.float32))


def load_tflite_teacher(spec: str, options: dict):
    from tinyear.device.features import DEFAULT_CONFIG, fingerprint, fit_clip, log_mel

    reject_options(spec, options, ("labels", "scores", "threads"))
    path = Path(spec)
    model = open_tflite(path, int(options.get("threads", 1)))
    labels = read_labels(path, options.get("labels"))
    if model.num_outputs != len(labels):
        raise TinyearError(f"{path}: {len(labels)} labels for {model.num_outputs} outputs; give the model's own "
                           "labels file (one label a line, in output order)")
    kind = tflite_input_kind(model, DEFAULT_CONFIG)
    if kind == "audio":
        samples = int(model.feature_shape[0])

        def run(waves: np.ndarray) -> np.ndarray:
            return model.predict(fit_length(waves, samples))
    else:
        def run(waves: np.ndarray) -> np.ndarray:
            feats = np.stack([log_mel(fit_clip(w, DEFAULT_CONFIG), DEFAULT_CONFIG) for w in waves])
            return model.predict(feats[..., None] if len(model.feature_shape) == 3 else feats)
        samples = DEFAULT_CONFIG.clip_samples
    probs = _decide_scores(run(_probe_waves(samples)), options.get("scores", "auto"), str(path))
    info = {"input": kind, "scores": "probs" if probs else "logits", "runtime": model.runtime,
            "quantized": model.quantized}
    feature_model = TFLiteFeatureModel(model, probs) if kind == "features" else None
    return Teacher(kind="tflite", source=str(path), labels=labels, module=ScoresModule(run, probs),
                   identity=file_identity([path], labels, f"tflite {info['scores']}"), feature_model=feature_model,
                   frontend_fingerprint=fingerprint(DEFAULT_CONFIG) if feature_model is not None else None,
                   info=info)


# -- TensorFlow -----------------------------------------------------------------------------------------


def import_tensorflow():
    """tensorflow, quietly (no oneDNN or CUDA banners), or one line on how to install it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        with quiet_fd(2):
            import tensorflow as tf
    except ImportError:
        raise TinyearError("TensorFlow teachers (.pb, SavedModel) need tensorflow on the workstation: "
                           "pip install 'tinyear[host,tensorflow]'") from None
    tf.get_logger().setLevel("ERROR")
    return tf


def wav_bytes(wave: np.ndarray) -> bytes:
    """A 16 kHz mono 16-bit WAV file of the waveform, as a graph's `wav_data` input wants."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _tf_session_config(tf, threads: int):
    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)


def load_graph_teacher(spec: str, options: dict):
    reject_options(spec, options, ("labels", "scores", "input", "output", "threads", "samples"))
    path = Path(spec)
    if not path.is_file():
        raise TinyearError(f"{path}: no such TensorFlow graph file")
    labels = read_labels(path, options.get("labels"))
    tf = import_tensorflow()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(graph_def, name="")
    except Exception as exc:  # noqa: BLE001  (DecodeError, InvalidArgumentError, NotFoundError for ops)
        raise TinyearError(f"{path}: not a TensorFlow frozen graph this tensorflow can load ({first_line(exc)})") from None
    in_name = options.get("input", SPEECH_COMMANDS_INPUT)
    out_name = options.get("output", SPEECH_COMMANDS_OUTPUT)
    try:
        in_tensor, out_tensor = graph.get_tensor_by_name(in_name), graph.get_tensor_by_name(out_name)
    except (KeyError, ValueError) as exc:
        placeholders = [op.name + ":0" for op in graph.get_operations() if op.type == "Placeholder"]
        raise TinyearError(f"{path}: {first_line(exc, 160)}; give ,input=TENSOR and ,output=TENSOR "
                           f"(its placeholders: {', '.join(placeholders) or 'none'})") from None
    width = out_tensor.shape[-1] if out_tensor.shape.rank else None
    if width is not None and int(width) != len(labels):
        raise TinyearError(f"{path}: {len(labels)} labels for {int(width)} outputs of {out_name}; give the model's own "
                           "labels file (one label a line, in output order)")
    session = tf.compat.v1.Session(graph=graph, config=_tf_session_config(tf, int(options.get("threads", 1))))
    samples = int(options.get("samples", SAMPLE_RATE))
    as_wav = in_tensor.dtype == tf.string
    in_shape = [int(d) if d is not None else -1 for d in (in_tensor.shape.as_list() if in_tensor.shape.rank else [])]

    def run(waves: np.ndarray) -> np.ndarray:
        waves = fit_length(waves, samples)
        rows = []
        for w in waves:
            feed = wav_bytes(w) if as_wav else w.reshape(in_shape if in_shape else (-1,))
            rows.append(np.asarray(session.run(out_tensor, {in_tensor: feed})).reshape(-1))
        return np.stack(rows)

    probs = _decide_scores(_probe(run, samples, labels, path), options.get("scores", "auto"), str(path))
    info = {"input": in_name, "output": out_name, "scores": "probs" if probs else "logits",
            "tensorflow": tf.__version__}
    return Teacher(kind="tf", source=str(path), labels=labels, module=ScoresModule(run, probs),
                   identity=file_identity([path], labels, f"tf {in_name} {out_name} {info['scores']}"), info=info)


def load_savedmodel_teacher(spec: str, options: dict):
    reject_options(spec, options, ("labels", "scores", "signature", "input", "output", "samples"))
    folder = Path(spec)
    if not (folder / "saved_model.pb").is_file():
        raise TinyearError(f"{folder}: not a SavedModel folder (no saved_model.pb)")
    labels = read_labels(folder, options.get("labels"))
    tf = import_tensorflow()
    try:
        loaded = tf.saved_model.load(str(folder))
    except Exception as exc:  # noqa: BLE001
        raise TinyearError(f"{folder}: the SavedModel does not load ({first_line(exc)})") from None
    name = options.get("signature", "serving_default")
    if name not in loaded.signatures:
        raise TinyearError(f"{folder}: no signature {name!r} (it has {', '.join(loaded.signatures) or 'none'}); "
                           "give ,signature=NAME")
    fn = loaded.signatures[name]
    inputs = fn.structured_input_signature[1]
    in_key = options.get("input") or (next(iter(inputs)) if len(inputs) == 1 else None)
    if in_key not in inputs:
        raise TinyearError(f"{folder}: signature {name} takes {', '.join(inputs)}; give ,input=NAME")
    in_spec = inputs[in_key]
    out_key = options.get("output")
    samples = int(options.get("samples", (in_spec.shape[-1] if in_spec.shape.rank and in_spec.shape[-1] else SAMPLE_RATE)))
    as_wav = in_spec.dtype == tf.string

    def run(waves: np.ndarray) -> np.ndarray:
        waves = fit_length(waves, samples)
        if as_wav:
            outs = [fn(**{in_key: tf.constant(wav_bytes(w))}) for w in waves]
        else:
            outs = [fn(**{in_key: tf.constant(waves, dtype=in_spec.dtype)})]
        rows = []
        for out in outs:
            key = out_key or (next(iter(out)) if len(out) == 1 else None)
            if key not in out:
                raise TinyearError(f"{folder}: signature {name} gives {', '.join(out)}; give ,output=NAME")
            rows.append(np.asarray(out[key]).reshape(-1 if as_wav else len(waves), len(labels)))
        return np.concatenate(rows) if not as_wav else np.stack([r.reshape(-1) for r in rows])

    probs = _decide_scores(_probe(run, samples, labels, folder), options.get("scores", "auto"), str(folder))
    info = {"signature": name, "scores": "probs" if probs else "logits", "tensorflow": tf.__version__}
    weights = sorted(p for p in folder.rglob("*") if p.is_file())
    return Teacher(kind="savedmodel", source=str(folder), labels=labels, module=ScoresModule(run, probs),
                   identity=file_identity(weights, labels, f"savedmodel {name} {info['scores']}"), info=info)


def _probe(run, samples: int, labels: list[str], where: Path) -> np.ndarray:
    """The outputs on the probe clips, after checking the teacher runs and gives one score a label."""
    try:
        out = np.asarray(run(_probe_waves(samples)))
    except TinyearError:
        raise
    except Exception as exc:  # noqa: BLE001  (a graph that cannot run: missing op, wrong input)
        raise TinyearError(f"{where}: the teacher does not run on a 1 s clip ({first_line(exc)})") from None
    if out.shape[-1] != len(labels):
        raise TinyearError(f"{where}: {len(labels)} labels for {out.shape[-1]} outputs; give the model's own labels "
                           "file (one label a line, in output order)")
    return out
