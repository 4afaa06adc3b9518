"""`tinyear deploy --rollback`: put the device's previous bundle back, verified, in three steps.

Every deploy keeps the bundle it replaced as `DIR/previous.tinyear` (`remote.SWITCH`). A rollback
connects and probes the device as a deploy does, runs that previous bundle's self-test on the device
with the environment in use (`tinyear-device selftest --json`: a bundle that fails it is not put back),
then swaps `current.tinyear` and `previous.tinyear` under the deploy lock (`remote.ROLLBACK`, atomic
renames), and records the swap in `deploy.json`. A second rollback therefore undoes the first. The
environment stays the one in use; a listener service installed by an earlier deploy is restarted on
the bundle put back. Standard library, the device half and the OpenSSH client; no torch.
"""

from __future__ import annotations

import json
import socket
import sys
import time

from tinyear.device.errors import TinyearError

from ..progress import Steps
from . import remote as scripts
from .options import DeployError, DeployOptions
from .ssh import Remote


def rollback(opts: DeployOptions, stream=sys.stderr) -> dict:
    """Swap the device's current and previous bundles after verifying the previous one there; returns
    the report `--json` prints. Raises DeployError (one line) when there is nothing to roll back to or
    the previous bundle fails its self-test; the device is then left as it was."""
    from .run import _connect_and_probe, _selftest_report, _service

    progress = Steps(3, stream)
    report: dict = {"target": str(opts.target), "rollback": True, "ok": False}
    remote = Remote(opts.target, port=opts.port, identity=opts.identity, ssh_config=opts.ssh_config,
                    options=opts.ssh_options, connect_timeout=opts.connect_timeout)

    def step(what, fn, note):
        progress.start(what)
        try:
            value = fn()
        except TinyearError as exc:
            progress.fail()
            raise DeployError(str(exc), progress.steps) from None
        except BaseException:
            progress.fail()
            raise
        progress.done(note(value))
        return value

    try:
        probe = step(f"connecting to {opts.target.ssh_destination}", lambda: _probe(remote, opts, _connect_and_probe),
                     lambda p: f"current {p['state'].get('bundle')}, previous {p['state'].get('previous_bundle')}")
        folder = probe["dir"]
        device = step("verifying the previous bundle on the device", lambda: _verify(remote, folder, _selftest_report),
                      lambda d: f"'{d['label']}' {max(d['scores']):.3f}, {d['runtime']}")
        state = _swapped_state(probe["state"], device)
        step("switching back to the previous bundle", lambda: _swap(remote, folder, state), lambda _: "ok")
        report.update(ok=True, state=state, verification={"device": device}, steps=progress.steps,
                      device={"dir": folder, "user": probe.get("user")})
        if state.get("service"):
            report["service"] = _service(remote, opts, probe, install=False)
        return report
    finally:
        remote.close()


def _probe(remote: Remote, opts: DeployOptions, connect_and_probe) -> dict:
    probe = connect_and_probe(remote, opts)
    state = probe.get("state")
    where = f"{opts.target.ssh_destination}:{probe['dir']}"
    if not state:
        raise TinyearError(f"{where} holds no deploy (no deploy.json); nothing to roll back to")
    if probe.get("previous") != "1":
        raise TinyearError(f"{where} has no previous bundle (only one deploy so far); nothing to roll back to")
    return probe


def _verify(remote: Remote, folder: str, selftest_report) -> dict:
    """The previous bundle's self-test on the device, with the environment in use."""
    proc = remote.run(scripts.VERIFY, f"{folder}/venv/bin/tinyear-device", f"{folder}/previous.tinyear", timeout=300)
    try:
        return selftest_report(proc)
    except TinyearError as exc:  # same checks as a deploy's; here it is the current bundle that stays
        raise TinyearError(f"previous.tinyear: {exc}".replace("the device keeps its previous bundle",
                                                              "the device keeps its current bundle")) from None


def _swapped_state(state: dict, device: dict) -> dict:
    """deploy.json after the swap: the previous bundle is current, the current one previous."""
    return {**state, "bundle": state.get("previous_bundle") or "previous.tinyear",
            "previous_bundle": state.get("bundle"), "model_sha256": device.get("model_sha256"),
            "labels": device.get("labels"), "rolled_back_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rolled_back_from": socket.gethostname()}


def _swap(remote: Remote, folder: str, state: dict) -> None:
    proc = remote.run(scripts.ROLLBACK, folder, json.dumps(state, sort_keys=True), timeout=60)
    if proc.returncode == 4:
        out = scripts.parse_lines(proc.stdout)
        raise TinyearError(f"another deploy to {folder} is under way ({out.get('locked')}); if none is, remove "
                           f"{folder}/.deploy-lock on the device and roll back again")
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise TinyearError(f"switching back failed on the device ({detail}); its current bundle is unchanged")
