"""Writing `.tinyear` bundles on the workstation.

Fills in what only the host knows (tool versions, provenance) around the device's pure serialiser
`tinyear.device.bundle.pack_bundle`, and writes atomically (`tinyear.device.fileio.atomic_write_bytes`):
a bundle that exists is complete, and readable by other users (a listener service runs as its own).
"""

from __future__ import annotations

from pathlib import Path

from tinyear.device.bundle import SUFFIX, SelfTest, pack_bundle
from tinyear.device.errors import TinyearError
from tinyear.device.features import FrontendConfig
from tinyear.device.fileio import atomic_write_bytes, tool_versions

# The distributions whose versions shape a bundle's numbers: training, conversion, verification.
HOST_TOOLS = ("torch", "litert-torch", "torchao", "ai-edge-litert", "tflite-micro", "numpy")


def write_bundle(
    path: str | Path,
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
) -> Path:
    """Write a bundle file atomically; returns its path. Tool versions are added to provenance.
    `backbone`/`backbone_models`: a pretrained backbone the model is a head over, and its files."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise TinyearError(f"{path}: a bundle file name must end in {SUFFIX}")
    data = pack_bundle(
        model_bytes,
        labels,
        frontend,
        detection=detection,
        metrics=metrics,
        provenance={**(provenance or {}), "tools": tool_versions(*HOST_TOOLS)},
        selftest=selftest,
        output=output,
        backbone=backbone,
        backbone_models=backbone_models,
    )
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(path, data)
    except OSError as exc:
        raise TinyearError(f"{folder}: cannot write there ({exc.strerror}); choose another --out") from None


def rewrite_bundle(bundle, path: str | Path, *, detection: dict | None = None, metrics: dict | None = None) -> Path:
    """Write a read `Bundle` again at `path` with its detection settings and/or metrics replaced and
    everything else (model, labels, frontend, backbone, self-test, provenance) as it was."""
    return write_bundle(path, bundle.model_bytes, bundle.labels, bundle.frontend,
                        detection=bundle.detection if detection is None else detection,
                        metrics=bundle.metrics if metrics is None else metrics, provenance=bundle.provenance,
                        selftest=bundle.selftest, output=bundle.output, backbone=bundle.backbone,
                        backbone_models=bundle.backbone_models)
