"""`tinyear-device`: the command line of the device half (classify, info, listen, devices, bench).

Needs only the `device` extra. Each command lives in `tinyear.device.commands.<name>` and is imported
only when it runs.
"""

from __future__ import annotations

from . import __version__
from .cliutil import Command, run_cli

DESCRIPTION = """\
Run a tinyear keyword model (a .tinyear bundle) on audio files or a live microphone.

examples:
  tinyear-device info models/keywords.tinyear
  tinyear-device classify models/keywords.tinyear clip.wav other.flac --top 3
  tinyear-device classify --stream models/keywords.tinyear long.wav --truth long.csv
  tinyear-device listen models/keywords.tinyear --json
"""

COMMANDS = [
    Command("classify", "tinyear.device.commands.classify", "classify audio files (or stream a long one) with a bundle"),
    Command("info", "tinyear.device.commands.info", "show and verify what a bundle holds"),
    Command("selftest", "tinyear.device.commands.selftest", "check that this device computes the bundle's self-test clip as the workstation did"),
    Command("listen", "tinyear.device.commands.listen", "detect keywords on a live microphone"),
    Command("devices", "tinyear.device.commands.devices", "list audio inputs with their rates and channels"),
    Command("bench", "tinyear.device.commands.bench", "measure inference latency, feature cost, CPU share and memory of a bundle"),
]


def main(argv=None) -> int:
    return run_cli("tinyear-device", DESCRIPTION, COMMANDS, __version__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
