"""Audio inputs as PortAudio (through sounddevice) sees them: listing, choosing one by the user's spec,
and asking it for a rate and channel count it accepts.

Devices are asked, not assumed: the rate is the first of 16000, 48000, 44100 Hz and the device's
default that `sd.check_input_settings` accepts (or the one the user forces), the channel count two
(when the device has them) or as many as the requested channel needs. Every call into PortAudio is
wrapped in `fileio.quiet_fd`, since ALSA prints its probing to fd 2. sounddevice is imported only when
a function here runs, with an install hint when it or PortAudio is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TinyearError
from .fileio import quiet_fd

PREFERRED_RATES = (16000, 48000, 44100)


def import_sounddevice():
    """sounddevice, or a TinyearError saying what to install (it needs the PortAudio library)."""
    try:
        with quiet_fd():
            import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise TinyearError(f"PortAudio is not installed ({exc}); on Debian / Raspberry Pi OS: sudo apt install libportaudio2") from None
    except ImportError:
        raise TinyearError("sounddevice is not installed; pip install 'tinyear[device]' (or pip install sounddevice)") from None
    return sounddevice


@dataclass
class InputChoice:
    """The device and settings a stream is opened with."""

    index: int
    name: str
    hostapi: str
    rate: int
    channels: int  # channels opened
    channel: int | None  # the one used, or None for the average of all opened

    def describe(self) -> str:
        if self.channels == 1:
            use = "1 channel"
        elif self.channel is None:
            use = f"{self.channels} channels downmixed"
        else:
            use = f"channel {self.channel} of {self.channels}"
        return f"'{self.name}' ({self.hostapi}) at {self.rate} Hz, {use}"


def list_inputs(sd=None) -> list[dict]:
    """Every device that can record: index, name, hostapi, default_samplerate (Hz),
    max_input_channels, supported_rates (those of 16000/44100/48000 it accepts), is_default."""
    sd = sd or import_sounddevice()
    with quiet_fd():
        devices = sd.query_devices()
        try:
            default_in = sd.default.device[0]
            if default_in is None or default_in < 0:
                default_in = sd.query_devices(kind="input")["index"]
        except Exception:  # no default input at all
            default_in = -1
        rows = []
        for dev in devices:
            if dev["max_input_channels"] < 1:
                continue
            rows.append({
                "index": dev["index"], "name": dev["name"], "hostapi": sd.query_hostapis(dev["hostapi"])["name"],
                "default_samplerate": int(dev["default_samplerate"]), "max_input_channels": dev["max_input_channels"],
                "supported_rates": [r for r in sorted((16000, 44100, 48000)) if _accepts(sd, dev["index"], r, 1)],
                "is_default": dev["index"] == default_in,
            })
    return rows


def _accepts(sd, index: int, rate: int, channels: int) -> bool:
    try:
        sd.check_input_settings(device=index, samplerate=rate, channels=channels, dtype="float32")
        return True
    except Exception:  # PortAudioError or ValueError: this combination is not supported
        return False


def find_input(spec: str | int | None, sd=None) -> dict:
    """The input device `spec` names: None for the default input, an index, an exact name, or a unique
    part of a name (case-insensitive). TinyearError naming the choices when none (or several) match."""
    sd = sd or import_sounddevice()
    inputs = list_inputs(sd)
    hint = "run tinyear-device devices to list them"
    if not inputs:
        raise TinyearError("no audio input devices found (is a microphone connected, is the sound server running?); " + hint)
    if spec is None or spec == "":
        default = [d for d in inputs if d["is_default"]]
        return default[0] if default else inputs[0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        for d in inputs:
            if d["index"] == index:
                return d
        raise TinyearError(f"--input {index}: no input device has that index; {hint}")
    exact = [d for d in inputs if d["name"].lower() == text.lower()]
    if exact:
        return exact[0]
    partial = [d for d in inputs if text.lower() in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        names = ", ".join(f"{d['index']}: {d['name']}" for d in partial)
        raise TinyearError(f"--input {text!r} matches several devices ({names}); give the index or the full name")
    raise TinyearError(f"--input {text!r}: no input device has that name; {hint}")


def choose_settings(device: dict, channel: int | None, target_rate: int, force_rate: int | None = None, sd=None) -> InputChoice:
    """Ask the device which rate and channel count to open it with (see the module docstring)."""
    sd = sd or import_sounddevice()
    max_channels = int(device["max_input_channels"])
    if max_channels < 1:
        raise TinyearError(f"input '{device['name']}' cannot record (it has no input channels); pick another with --input")
    if channel is not None and not 0 <= channel < max_channels:
        raise TinyearError(f"--channel {channel}: input '{device['name']}' has {max_channels} channel(s) (0..{max_channels - 1}); pick one of those, or leave --channel out to average them")
    # At least two channels when the device has them: opened with one, a stereo source comes downmixed
    # (ALSA's pulse plugin does that), so "channel 0" would not be the left channel.
    channels = max(channel + 1 if channel is not None else 0, min(max_channels, 2))
    rates = [force_rate] if force_rate else list(dict.fromkeys([target_rate, *PREFERRED_RATES, int(device["default_samplerate"])]))
    with quiet_fd():
        for rate in rates:
            if _accepts(sd, device["index"], rate, channels):
                return InputChoice(index=device["index"], name=device["name"], hostapi=device["hostapi"], rate=int(rate),
                                   channels=channels, channel=channel if channels > 1 else None)
    tried = ", ".join(str(r) for r in rates)
    raise TinyearError(f"input '{device['name']}' cannot record {channels} channel(s) at {tried} Hz; "
                       "pick another device with --input (tinyear-device devices lists them)")
