"""tinyear's device half: everything a Raspberry Pi needs to run a keyword model on a microphone.

The shared feature frontend (`features`), audio reading (`audio`), the bundle reader (`bundle`), the
LiteRT runner (`runtime`), classification and streaming detection, and the `tinyear-device` command
line. It imports numpy, soundfile, soxr, sounddevice and a TFLite runtime, and never torch,
tensorflow or `tinyear.host`: a test imports every module here in a fresh interpreter to prove it.

What a user's own script needs is importable from here, and loaded only when first used (importing
`tinyear.device` itself loads neither numpy nor sounddevice):

    read_bundle(path) -> Bundle       a verified .tinyear bundle (model, labels, frontend, defaults)
    Classifier(bundle)                .scores(waveform) -> probabilities; .top(probs, k)
    Detector(bundle[, config])        .push(samples) -> [Detection(time, label, score)]; .reset()
    DetectionConfig.from_bundle(...)  the bundle's detection settings, with overrides
    load_audio(path, rate)            any audio file as mono float32 at `rate`
    Listener(detector, on_event=...)  a live microphone into a Detector (needs sounddevice)
    TinyearError                      what every user-facing error is
"""

from __future__ import annotations

from .lazy import public_api

__version__ = "0.1.0"

# public name -> the module that defines it (its one home)
_PUBLIC = {
    "Bundle": "bundle",
    "read_bundle": "bundle",
    "Classifier": "classify",
    "Detector": "detector",
    "Detection": "detector",
    "DetectionConfig": "detection",
    "load_audio": "audio",
    "Listener": "capture",
    "TinyearError": "errors",
}

__all__ = ["__version__", *_PUBLIC]


__getattr__, __dir__ = public_api(__name__, {name: (module, name) for name, module in _PUBLIC.items()})
