"""Talking to a device over OpenSSH: the `ssh` and `scp` programs, as the user has set them up.

`tinyear deploy` stores no password and asks for none: every call runs with `BatchMode=yes`, so keys
come from the user's own ssh config, agent and key files (or `--identity`), and a device that wants a
password is an authentication failure with a line saying how to install a key. One master connection
(ControlMaster) is opened first and shared by every later call, so a deploy authenticates once; its
failure is turned into one line that says what went wrong (refused, timed out, unknown host, wrong key,
changed host key) and what to do. `ConnectTimeout` bounds how long an unreachable device can hold us.

Remote work is POSIX shell scripts sent on stdin to `sh -s` (no quoting of the script itself; its
arguments are quoted with `shlex.quote`). Standard library only.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tinyear.device.errors import TinyearError

DEFAULT_DIR = "~/tinyear"


class RemoteError(TinyearError):
    """A remote step failed; the message is one line for the user."""


@dataclass(frozen=True)
class Target:
    """Where to deploy: `[USER@]HOST[:DIR]`. `user` None means "as the ssh config says"."""

    host: str
    user: str | None = None
    dir: str = DEFAULT_DIR

    @property
    def destination(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"{self.user}@{host}" if self.user else host

    @property
    def ssh_destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return f"{self.ssh_destination}:{self.dir}"


def parse_target(text: str) -> Target:
    """Parse `[USER@]HOST[:DIR]` (an IPv6 host in brackets: `pi@[fe80::1]:tinyear`). A relative DIR is
    taken from the device user's home, as scp does."""
    match = re.fullmatch(r"(?:(?P<user>[^@/:\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^@:/\s\[\]]+))(?::(?P<dir>.*))?", text)
    if not match:
        raise TinyearError(f"--to {text!r}: expected USER@HOST[:DIR], e.g. pi@raspberrypi.local or pi@192.168.1.20:~/tinyear")
    folder = match.group("dir") or DEFAULT_DIR
    if "\n" in folder or "'" in folder:
        raise TinyearError(f"--to {text!r}: the device folder may not contain quotes or newlines")
    if not folder.startswith(("/", "~")):
        folder = "~/" + folder
    return Target(host=match.group("v6") or match.group("host"), user=match.group("user"), dir=folder.rstrip("/") or "/")


def explain_ssh_failure(stderr: str, target: Target, port: int | None, timeout: float) -> str:
    """Turn what ssh printed (exit status 255) into one line: what went wrong and what to do."""
    text = stderr.strip()
    where = f"{target.host}" + (f" port {port}" if port else "")
    low = text.lower()
    if "could not resolve hostname" in low or "name or service not known" in low:
        return f"cannot find host '{target.host}' (no such name); check the address in --to (try its IP address)"
    if "connection refused" in low:
        return f"{where} refused the connection: is the device on and its SSH server running (sudo systemctl enable --now ssh)? check --port"
    if "timed out" in low or "no route to host" in low or "network is unreachable" in low:
        return (f"no answer from {where} within {timeout:g} s ({_last_line(text)}); check that the device is on and on "
                "this network, or raise --connect-timeout")
    if "permission denied" in low or "too many authentication failures" in low:
        who = target.ssh_destination
        return (f"authentication failed for {who}: the device accepted none of your SSH keys (tinyear never asks for "
                f"passwords); install one with: ssh-copy-id {who}, or pass --identity KEY")
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return (f"the host key of {target.host} is unknown or has changed; connect once with plain ssh to check and "
                "accept it (ssh-keygen -R HOST if the device was reinstalled)")
    if "connection closed" in low or "connection reset" in low or "kex_exchange_identification" in low:
        return f"{where} closed the connection before login ({_last_line(text)}); check that it is an SSH server and --port is right"
    return f"ssh to {where} failed: {_last_line(text) or 'no message'}"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("Warning: Permanently added")]
    return lines[-1] if lines else ""


class Remote:
    """A connection to one device through the system's OpenSSH client.

    `connect()` opens the shared master connection (and is where reachability and authentication fail);
    `run(script, *args)` runs a POSIX shell script there; `upload(files, remote_dir)` copies files with
    scp; `close()` ends the master. Use as a context manager."""

    def __init__(self, target: Target, *, port: int | None = None, identity: str | None = None,
                 ssh_config: str | None = None, options: list[str] | tuple = (), connect_timeout: float = 10.0):
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise TinyearError(f"the OpenSSH client ('{tool}') is not installed here; install it (apt install openssh-client)")
        if identity is not None and not Path(identity).expanduser().is_file():
            raise TinyearError(f"--identity {identity}: no such key file")
        if ssh_config is not None and not Path(ssh_config).expanduser().is_file():
            raise TinyearError(f"--ssh-config {ssh_config}: no such file")
        self.target, self.port, self.connect_timeout = target, port, connect_timeout
        # A short folder: a socket path must fit in ~100 bytes.
        self._control_dir = tempfile.mkdtemp(prefix="tinyear-ssh-")
        opts: list[str] = []
        if ssh_config:
            opts += ["-F", str(Path(ssh_config).expanduser())]
        opts += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(round(connect_timeout)))}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                 "-o", f"ControlPath={self._control_dir}/%C"]
        if port:
            opts += ["-o", f"Port={port}"]
        if identity:
            opts += ["-o", f"IdentityFile={Path(identity).expanduser()}"]
        for opt in options:
            opts += ["-o", opt]
        self._opts = opts
        self._connected = False

    # -- connection --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the master connection; raises RemoteError with one explained line on failure."""
        # ControlPersist: the master also ends by itself 120 s after its last use, should we die first.
        with tempfile.TemporaryFile("w+") as err:  # not a pipe: the backgrounded master keeps stderr open
            try:
                proc = subprocess.run(["ssh", *self._opts, "-o", "ControlMaster=yes", "-o", "ControlPersist=120",
                                       "-f", "-N", self.target.ssh_destination],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      timeout=self.connect_timeout * 3 + 30)
            except subprocess.TimeoutExpired:
                raise RemoteError(f"no answer from {self.target.host} within {self.connect_timeout * 3 + 30:g} s; check that "
                                  "the device is on and on this network") from None
            err.seek(0)
            message = err.read()
        if proc.returncode != 0:
            raise RemoteError(explain_ssh_failure(message, self.target, self.port, self.connect_timeout))
        self._connected = True

    def close(self) -> None:
        if self._connected:
            subprocess.run(["ssh", *self._opts, "-O", "exit", self.target.ssh_destination],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            self._connected = False
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def __enter__(self) -> "Remote":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- work ----------------------------------------------------------------------------------------
    def run(self, script: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run a POSIX shell script on the device with positional arguments; returns the completed
        process (text stdout/stderr, any exit status). Raises RemoteError only when ssh itself fails."""
        command = "sh -s -- " + " ".join(shlex.quote(str(a)) for a in args)
        try:
            proc = subprocess.run(["ssh", *self._opts, self.target.ssh_destination, command], input=script,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"the device did not finish a step within {timeout:g} s; check it (ssh {self.target.ssh_destination}) and try again") from None
        if proc.returncode == 255 and not proc.stdout:
            raise RemoteError(explain_ssh_failure(proc.stderr, self.target, self.port, self.connect_timeout))
        return proc

    def upload(self, files: list[Path], remote_dir: str, timeout: float = 600.0) -> None:
        """Copy local files into an existing remote folder (absolute path) with scp."""
        if not files:
            return
        dest = f"{self.target.destination}:{remote_dir.rstrip('/')}/"
        try:
            proc = subprocess.run(["scp", "-q", *self._opts, *[str(f) for f in files], dest],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"copying to the device took longer than {timeout:g} s; check the network and try again") from None
        if proc.returncode != 0:
            low = proc.stderr.lower()
            if "no space left" in low or "quota" in low:
                raise RemoteError(f"the device's disk is full: copying into {remote_dir} failed ({_last_line(proc.stderr)}); free some space there")
            if proc.returncode == 255 and ("connect" in low or "permission denied" in low):
                raise RemoteError(explain_ssh_failure(proc.stderr, self.target, self.port, self.connect_timeout))
            raise RemoteError(f"copying to {remote_dir} on the device failed: {_last_line(proc.stderr) or f'scp exit {proc.returncode}'}")

