"""tinyear's device half: everything a Raspberry Pi needs to run a keyword model on a microphone.

The shared feature frontend (`features`), audio reading (`audio`), the bundle reader (`bundle`), the
LiteRT runner (`runtime`), classification and streaming detection, and the `tinyear-device` command
line. It imports numpy, soundfile, soxr, sounddevice and a TFLite runtime, and never torch,
tensorflow or `tinyear.host`: a test imports every module here in a fresh interpreter to prove it.
"""

__version__ = "0.1.0"
