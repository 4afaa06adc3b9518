"""The `.tinyear` bundle: one file with everything a device needs to run a model, verified before use.

A bundle pairs the int8 TFLite model with its labels, the frontend config it was trained on (and that
config's fingerprint), detection defaults, the metrics measured at export, provenance, and an optional
self-test clip with the output the workstation got for it. A user cannot pair a model with the wrong
features by accident: `Bundle.frontend` is the only way to get them.

File layout (all integers little-endian):

    magic      8 bytes   b"TINYEAR\\0"
    version    u16       FORMAT_VERSION
    hlen       u32       length of the header
    header     hlen      UTF-8 JSON: metadata, and "sections": name -> {offset, size, sha256}
    sections   ...       raw bytes (model.tflite, selftest.pcm16, backbone/<file>), offsets relative to their start
    checksum   32 bytes  sha256 of everything before it

A bundle with a backbone (format 2; `tinyear.device.backbone`) also carries the pretrained network's
TFLite files as sections `backbone/<file>` and a "backbone" header entry (name, numerics version, the
spec's numbers, each file's sha256); its model is a head over the backbone's embeddings, so its
features are `Backbone.features`, not the log-mel frames. Bundles without one are still written as
format 1, byte for byte as before, so an older device reads every bundle it could read before.

`read_bundle` refuses, with a line that says what to do: a file that is not a bundle, a truncated or
damaged one (size and checksums), an unknown format version, a frontend fingerprint other than the one
this device computes (naming both), and labels that do not fit the model. `pack_bundle` is the pure
serialiser; the host's writer (`tinyear.host.bundle`) fills it in. Standard library and numpy only.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .detection import default_detection
from .errors import BundleError
from .features import FRONTEND_VERSION, FrontendConfig, clip_features, fingerprint
from .fileio import sha256_bytes
from .runtime import OUTPUT_KINDS, Model

MAGIC = b"TINYEAR\x00"
FORMAT_VERSION = 2  # the newest format this code reads and writes
PLAIN_FORMAT = 1  # what a bundle without a backbone is written as
BACKBONE_PREFIX = "backbone/"
_PREFIX = struct.Struct("<8sHI")  # magic, version, header length
_CHECKSUM_BYTES = 32
SUFFIX = ".tinyear"



@dataclass
class SelfTest:
    """A short clip stored in the bundle with the scores the workstation computed for it."""

    audio: np.ndarray  # float32 mono at the frontend's sample rate
    expected: list[float]  # output probabilities, one per label
    label: str


@dataclass
class Bundle:
    """A verified bundle. `model_bytes` is the TFLite flatbuffer; everything else is metadata."""

    model_bytes: bytes
    labels: list[str]
    frontend: FrontendConfig
    detection: dict = field(default_factory=default_detection)
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    selftest: SelfTest | None = None
    output: str = "logits"  # what the model emits: one of runtime.OUTPUT_KINDS
    path: Path | None = None
    model_sha256: str = ""
    backbone: dict | None = None  # the header's backbone entry, None for a plain log-mel bundle
    backbone_models: dict = field(default_factory=dict)  # file name -> TFLite bytes

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The shape of one model input: the backbone's (windows, dim) or the frontend's (frames, bins)."""
        if self.backbone is not None:
            return (int(self.backbone["windows"]), int(self.backbone["dim"]))
        return tuple(self.frontend.feature_shape)

    def load_backbone(self, num_threads: int = 1, runtime: str | None = None):
        """The bundle's backbone, ready to embed audio (`tinyear.device.backbone.Backbone`)."""
        from .backbone import Backbone

        if self.backbone is None:
            raise BundleError(f"{self.path or 'bundle'}: has no backbone")
        return Backbone(self.backbone["name"], self.backbone_models, normalize=self.backbone.get("normalize", "none"),
                        num_threads=num_threads, runtime=runtime)

    def featurizer(self, num_threads: int = 1, runtime: str | None = None):
        """A function from one mono clip (float32 at the bundle's sample rate) to one model input: the
        shared log-mel features, or the backbone's embeddings for a backbone bundle."""
        if self.backbone is None:
            return lambda wave: clip_features(wave, self.frontend)
        net = self.load_backbone(num_threads=num_threads, runtime=runtime)
        return lambda wave: net.features(np.asarray(wave, np.float32)[None], self.frontend)[0]

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.frontend)

    def load_model(self, num_threads: int = 1, runtime: str | None = None):
        """The model ready to run: a `tinyear.device.runtime.Model` checked against labels and features,
        whose `probabilities(features)` gives one probability per label."""
        model = Model(self.model_bytes, num_threads=num_threads, runtime=runtime, output=self.output)
        where = f"{self.path}" if self.path else "bundle"
        if model.num_outputs != len(self.labels):
            raise BundleError(
                f"{where}: the model has {model.num_outputs} outputs but the bundle lists {len(self.labels)} labels; "
                "re-export the bundle"
            )
        expected = self.feature_shape
        if tuple(model.feature_shape) != expected:
            raise BundleError(
                f"{where}: the model takes features of shape {tuple(model.feature_shape)} but its "
                f"{'backbone' if self.backbone is not None else 'frontend'} makes "
                f"{expected}; re-export the bundle"
            )
        return model


def pack_bundle(
    model_bytes: bytes,
    labels: list[str],
    frontend: FrontendConfig,
    *,
    detection: dict | None = None,
    metrics: dict | None = None,
    provenance: dict | None = None,
    selftest: SelfTest | None = None,
    output: str = "logits",
    backbone: dict | None = None,
    backbone_models: dict | None = None,
) -> bytes:
    """Serialise a bundle to bytes (see the module docstring for the layout). `backbone` names a
    pretrained backbone (`{"name": one of tinyear.device.backbone.BACKBONES, "normalize": "none" or
    "layer"}`, or a read bundle's whole entry) whose files `backbone_models` holds."""
    if not model_bytes:
        raise ValueError("empty model")
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"labels must be unique and non-empty: {labels}")
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {OUTPUT_KINDS}, not {output!r}")
    sections: dict[str, bytes] = {"model": bytes(model_bytes)}
    header: dict = {
        "format": PLAIN_FORMAT,
        "labels": list(labels),
        "output": output,
        "frontend": frontend.to_dict(),
        "frontend_version": FRONTEND_VERSION,
        "frontend_fingerprint": fingerprint(frontend),
        "detection": default_detection(**(detection or {})),
        "metrics": metrics or {},
        "provenance": provenance or {},
    }
    version = PLAIN_FORMAT
    if backbone is not None:
        from .backbone import describe

        entry = describe(backbone["name"], backbone.get("normalize", "none"))
        models = backbone_models or {}
        missing = [f for f in entry["files"] if f not in models]
        if missing:
            raise ValueError(f"backbone {backbone}: no bytes for {missing}")
        entry["sha256"] = {f: sha256_bytes(models[f]) for f in entry["files"]}
        header["backbone"] = entry
        for f in entry["files"]:
            sections[BACKBONE_PREFIX + f] = bytes(models[f])
        version = FORMAT_VERSION
    header["format"] = version
    if selftest is not None:
        pcm = np.clip(np.round(np.asarray(selftest.audio, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
        sections["selftest"] = pcm.tobytes()
        header["selftest"] = {"label": selftest.label, "expected": [float(v) for v in selftest.expected]}
    offset, table = 0, {}
    for name, data in sections.items():
        table[name] = {"offset": offset, "size": len(data), "sha256": sha256_bytes(data)}
        offset += len(data)
    header["sections"] = table
    header["total_size"] = 0  # placeholder, fixed below once the header length is known
    while True:  # the header's own length changes the total: iterate to the fixed point (2-3 rounds)
        blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        total = _PREFIX.size + len(blob) + offset + _CHECKSUM_BYTES
        if header["total_size"] == total:
            break
        header["total_size"] = total
    body = _PREFIX.pack(MAGIC, version, len(blob)) + blob + b"".join(sections.values())
    return body + bytes.fromhex(sha256_bytes(body))


def read_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle file. Raises BundleError with a one-line reason and remedy."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle file")
    if path.is_dir():
        raise BundleError(f"{path}: is a folder; give the .tinyear file")
    return parse_bundle(path.read_bytes(), source=path)


def parse_bundle(data: bytes, source: str | Path = "bundle") -> Bundle:
    """Verify and decode bundle bytes. Checks run from the cheapest that explains a failure best
    (not a bundle, newer format, truncated) to checksums, then frontend compatibility."""
    again = "copy the bundle again from the workstation (tinyear deploy or scp)"
    if len(data) < _PREFIX.size or data[:8] != MAGIC:
        hint = " (it looks like a bare .tflite model; wrap it with tinyear export)" if data[4:8] == b"TFL3" else ""
        raise BundleError(f"{source}: not a tinyear bundle{hint}; expected a .tinyear file made by tinyear export")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if version not in (PLAIN_FORMAT, FORMAT_VERSION):
        newer = "a newer" if version > FORMAT_VERSION else "an older"
        raise BundleError(
            f"{source}: bundle format {version} was written by {newer} tinyear; this tinyear-device reads formats "
            f"{PLAIN_FORMAT}-{FORMAT_VERSION}: install the tinyear version that exported it on the device (pip install -U 'tinyear[device]')"
        )
    if len(data) < _PREFIX.size + hlen + _CHECKSUM_BYTES:
        raise BundleError(f"{source}: truncated ({len(data)} bytes, shorter than its own header); {again}")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + hlen].decode())
        total = int(header["total_size"])
        sections = header["sections"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise BundleError(f"{source}: damaged header (not valid bundle metadata); {again}") from None
    if len(data) != total:
        what = "truncated" if len(data) < total else "has trailing bytes"
        raise BundleError(f"{source}: {what} ({len(data)} bytes, header says {total}); {again}")
    body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    if sha256_bytes(body) != checksum.hex():
        raise BundleError(f"{source}: checksum mismatch, the file was damaged or modified after export; {again}")
    start = _PREFIX.size + hlen
    payload: dict[str, bytes] = {}
    for name, info in sections.items():
        chunk = data[start + info["offset"] : start + info["offset"] + info["size"]]
        if len(chunk) != info["size"] or sha256_bytes(chunk) != info["sha256"]:
            raise BundleError(f"{source}: section '{name}' fails its sha256; {again}")
        payload[name] = chunk
    if "model" not in payload:
        raise BundleError(f"{source}: holds no model; re-export it with tinyear export")

    try:
        frontend = FrontendConfig.from_dict(header["frontend"])
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"{source}: its frontend config cannot be used here ({exc}); upgrade tinyear on the device") from None
    ours = fingerprint(frontend)
    theirs = header.get("frontend_fingerprint")
    if theirs != ours:
        raise BundleError(
            f"{source}: made for frontend {theirs} (frontend version {header.get('frontend_version')}), but this "
            f"device computes {ours} (frontend version {FRONTEND_VERSION}) for that config; re-export the model "
            "with this tinyear version, or install the tinyear version that exported it on the device"
        )
    labels = header.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise BundleError(f"{source}: labels missing or malformed; re-export it with tinyear export")

    backbone, backbone_models = header.get("backbone"), {}
    if backbone is not None:
        backbone_models = _check_backbone(backbone, payload, source)

    selftest = None
    if "selftest" in payload and "selftest" in header:
        audio = np.frombuffer(payload["selftest"], dtype="<i2").astype(np.float32) / 32767.0
        selftest = SelfTest(audio=audio, expected=list(header["selftest"]["expected"]), label=header["selftest"]["label"])
    return Bundle(
        model_bytes=payload["model"],
        labels=labels,
        frontend=frontend,
        detection=default_detection(**header.get("detection", {})),
        metrics=header.get("metrics", {}),
        provenance=header.get("provenance", {}),
        selftest=selftest,
        output=header.get("output", "logits"),
        path=Path(source) if not isinstance(source, Path) else source,
        model_sha256=sections["model"]["sha256"],
        backbone=backbone,
        backbone_models=backbone_models,
    )


def _check_backbone(entry, payload: dict, source) -> dict:
    """The backbone's model bytes from a bundle's sections, after checking that this device computes
    the same embeddings: a known backbone, the same numerics version and spec, every file present."""
    from .backbone import BACKBONE_VERSION, BACKBONES, NORMALIZE, describe

    upgrade = "install the tinyear version that exported it on the device, or re-export it with this one"
    if not isinstance(entry, dict) or entry.get("name") not in BACKBONES:
        name = entry.get("name") if isinstance(entry, dict) else entry
        raise BundleError(f"{source}: made for backbone {name!r}, which this tinyear does not know; {upgrade}")
    if entry.get("normalize", "none") not in NORMALIZE:
        raise BundleError(f"{source}: its backbone input is normalised as {entry.get('normalize')!r}, which this "
                          f"tinyear does not know; {upgrade}")
    ours = describe(entry["name"], entry.get("normalize", "none"))
    if entry.get("version") != BACKBONE_VERSION or any(entry.get(k) != v for k, v in ours.items()
                                                       if k not in ("files", "version")):
        raise BundleError(f"{source}: made for {entry['name']} embeddings version {entry.get('version')}, but this "
                          f"device computes version {BACKBONE_VERSION}; {upgrade}")
    models = {}
    for f in ours["files"]:
        data = payload.get(BACKBONE_PREFIX + f)
        if data is None or sha256_bytes(data) != (entry.get("sha256") or {}).get(f):
            raise BundleError(f"{source}: its backbone file {f} is missing or fails its sha256; re-export it with "
                              "tinyear export")
        models[f] = data
    return models
