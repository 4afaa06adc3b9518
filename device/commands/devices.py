"""`tinyear-device devices`: the inputs this machine can record from, as PortAudio sees them."""

from __future__ import annotations

from ..cliutil import add_json_option, print_json
from ..errors import TinyearError

HELP = "list audio inputs with their rates and channels"
DESCRIPTION = """\
List every audio input (microphones, sound-server sources) with its index, name, host API, default
sample rate, the rates among 16000, 44100 and 48000 Hz it accepts, and its channel count. The default
input is marked with *. Give `tinyear-device listen --input` an index or (part of) a name from here.
A device that accepts none of these rates can still be used: listen falls back to its default rate.

examples:
  tinyear-device devices
  tinyear-device devices --json
"""


def add_arguments(parser) -> None:
    add_json_option(parser, "one JSON object per input device")


def run(args) -> int:
    from ..inputs import list_inputs

    inputs = list_inputs()
    if not inputs:
        raise TinyearError("no audio input devices found: connect a microphone (or start the sound server) and try again")
    for dev in inputs:
        if args.json:
            print_json(dev)
            continue
        rates = ", ".join(str(r) for r in dev["supported_rates"]) or "none of 16000/44100/48000"
        print(f"{'*' if dev['is_default'] else ' '} {dev['index']:>3}  {dev['name']}  [{dev['hostapi']}]  "
              f"default {dev['default_samplerate']} Hz, accepts {rates}; {dev['max_input_channels']} channel"
              f"{'s' * (dev['max_input_channels'] != 1)}", flush=True)
    return 0
