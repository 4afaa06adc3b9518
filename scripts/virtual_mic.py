#!/usr/bin/env python3
"""A virtual microphone: a private PulseAudio server whose null sink's monitor is the microphone.

Whatever `paplay` plays into the sink (`tinyear_mic`, 48 kHz stereo by default, so listeners have to
resample and downmix) is what PortAudio records from ALSA's `pulse` device, through the monitor source
(`tinyear_mic.monitor`, made the default source and named in PULSE_SOURCE). Everything lives in a
folder of its own: the server's socket and runtime files, a HOME with an `.asoundrc` that routes ALSA's
default device to PulseAudio, so it touches nothing of the machine's own sound setup and several can
run side by side. Used by tests/test_listen_pulse.py and scripts/bench_live.py; run it by hand to try
`tinyear-device listen` without a microphone:

    python scripts/virtual_mic.py            # prints the environment to export, runs until Ctrl-C
    paplay --device=tinyear_mic words.wav    # in a shell with that environment

Needs the `pulseaudio`, `pulseaudio-utils` (pactl, paplay) and `libasound2-plugins` (ALSA's pulse
plugin) packages. Works as root: the server is started with -n (no default script), the null sink
and the native protocol on a private socket, and no idle exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ASOUNDRC = """\
# ALSA's default device and the named `pulse` device go to the PulseAudio server in PULSE_SERVER.
pcm.!default {
    type pulse
}
ctl.!default {
    type pulse
}
"""
TOOLS = ("pulseaudio", "pactl", "paplay")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class VirtualMic:
    """A private PulseAudio server with one null sink; `env` is the environment its clients need."""

    def __init__(self, root: Path | None = None, *, sink: str = "tinyear_mic", rate: int = 48000, channels: int = 2):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="tinyear-vmic-"))
        self.sink, self.rate, self.channels = sink, rate, channels
        self.runtime = self.root / "run"
        self.home = self.root / "home"
        self.socket = self.runtime / "native"
        self.log_path = self.root / "pulseaudio.log"
        self.server: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "HOME": str(self.home),
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_SOURCE": f"{sink}.monitor",
            "PULSE_SINK": sink,
        }
        self.env.pop("PULSE_COOKIE", None)

    @property
    def sink_args(self) -> str:
        return f"sink_name={self.sink} rate={self.rate} channels={self.channels}"

    def start(self, timeout: float = 20.0) -> "VirtualMic":
        """Start the server and wait until it answers (RuntimeError with its log if it does not)."""
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}: apt-get install pulseaudio pulseaudio-utils libasound2-plugins")
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / ".asoundrc").write_text(ASOUNDRC)
        if self.socket.exists():  # left by a server that was killed: a new one cannot bind over it
            self.socket.unlink()
        log = open(self.log_path, "ab")
        self.server = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "--use-pid-file=no",
             "--log-target=stderr", "--log-level=warning",
             "-L", f"module-null-sink {self.sink_args}",
             "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                break
            if self.pactl("info", check=False).returncode == 0 and self.sink_module() is not None:
                self.pactl("set-default-source", f"{self.sink}.monitor", check=False)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"PulseAudio did not start: {self.log_path.read_text(errors='replace')[-2000:]}")

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, check=check, timeout=10)

    def sink_module(self) -> int | None:
        """Index of the module that made our null sink, or None if it is not loaded."""
        out = self.pactl("list", "short", "modules", check=False).stdout
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] == "module-null-sink" and f"sink_name={self.sink}" in parts[2]:
                return int(parts[0])
        return None

    def unload_sink(self) -> None:
        """Make the microphone disappear (as a USB microphone pulled out does)."""
        index = self.sink_module()
        if index is not None:
            self.pactl("unload-module", str(index))

    def load_sink(self) -> None:
        """Bring the microphone back."""
        if self.sink_module() is None:
            self.pactl("load-module", "module-null-sink", *self.sink_args.split())
            self.pactl("set-default-source", f"{self.sink}.monitor", check=False)

    def play(self, path: Path, wait: bool = True) -> subprocess.Popen:
        """Play an audio file into the sink with paplay; wait for it to finish unless wait=False."""
        proc = subprocess.Popen(["paplay", f"--device={self.sink}", str(path)], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"paplay failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
        return proc

    def kill_server(self) -> None:
        """Kill the server outright (SIGKILL), as a crashed sound server would be."""
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=10)
        self.server = None

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(timeout=5)
        self.server = None

    def __enter__(self) -> "VirtualMic":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> int:
    with VirtualMic() as mic:
        for key in ("XDG_RUNTIME_DIR", "HOME", "PULSE_SERVER", "PULSE_SOURCE", "PULSE_SINK"):
            print(f"export {key}={mic.env[key]}")
        print(f"# virtual microphone '{mic.sink}' ({mic.rate} Hz, {mic.channels} channels) running; Ctrl-C stops it", file=sys.stderr)
        try:
            while mic.server is not None and mic.server.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
