"""The deploy, step by step (the steps and their guarantees: the package docstring, `tinyear.host.deploy`):
`deploy(options)` runs them in order, shows each as a numbered line, and on any failure before the
switch removes what it added on the device (`remote.ABORT`). Standard library, the device half (the
self-test here) and the OpenSSH client (`ssh`); no torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from tinyear.device.errors import TinyearError

from ..progress import Steps
from . import remote as scripts
from .options import DeployError, DeployOptions
from .plan import machine, plan, version_tuple
from .ssh import Remote, RemoteError
from .wheel import build_device_wheel, min_python

SERVICE_NAME = "tinyear-listen.service"


def local_selftest(bundle: Path, tolerance: float | None) -> dict:
    """The workstation's self-test of the bundle; refuses a bundle that fails it here already."""
    from tinyear.device.selftest import run_selftest

    if not bundle.is_file():
        raise TinyearError(f"{bundle}: no such bundle file")
    report = run_selftest(bundle, tolerance=tolerance)
    if not report["ok"]:
        raise TinyearError(f"{bundle}: its self-test fails on this workstation already ({report['reason']}); "
                           "the bundle was modified or exported wrongly: re-export it with tinyear export")
    return report


def deploy(opts: DeployOptions, stream=sys.stderr) -> dict:
    """Run a deploy (see the package docstring); returns the report `--json` prints. Raises DeployError
    (one line) on any failure, after undoing what it changed on the device."""
    return _Deploy(opts, stream).run()


class _Deploy:
    """One deploy: the steps in order (`run`), each a method, sharing what earlier steps found."""

    def __init__(self, opts: DeployOptions, stream):
        self.opts = opts
        self.progress = Steps((5 if opts.bundle_only else 7) + (1 if opts.service else 0), stream)
        self.report: dict = {"target": str(opts.target), "bundle": str(opts.bundle), "ok": False}
        self.staged: dict = {}  # what this deploy has added on the device so far (undone on failure)
        self.wheel: Path | None = None

    def run(self) -> dict:
        opts = self.opts
        here = self._step("checking the bundle here", self.check_here,
                          lambda r: f"'{r['label']}' {max(r['scores']):.3f}, {r['runtime']}")
        self.remote = Remote(opts.target, port=opts.port, identity=opts.identity, ssh_config=opts.ssh_config,
                             options=opts.ssh_options, connect_timeout=opts.connect_timeout)
        self.workdir = Path(tempfile.mkdtemp(prefix="tinyear-deploy-"))
        try:
            if not opts.bundle_only:
                self._step("building the device wheel", self.build_wheel,
                           lambda p: f"{p.name}, {p.stat().st_size / 1024:.0f} KiB")
            self._step(f"connecting to {opts.target.ssh_destination}", self.connect,
                       lambda _: f"Python {self.probe['python_version']} {machine(self.probe)}, "
                                 f"{int(self.probe.get('free_kb') or 0) // 1024} MiB free, {self.plan['runtime']}")
            self._step("uploading", self.upload, lambda n: f"{n / 1e6:.1f} MB")
            if not opts.bundle_only:
                self._step("preparing the environment", self.environment, lambda s: s)
            self._step("verifying on the device", self.verify,
                       lambda v: "identical to the workstation" if v["identical"] else
                       f"max difference {v['max_abs_diff']:.2g} (tolerance {here['tolerance']:.2g})")
            self._step("switching to the new bundle", self.switch,
                       lambda _: "previous kept" if self.probe.get("state") else "first deploy")
            self.service()
            self.report["ok"] = True
            self.report["steps"] = self.progress.steps
            return self.report
        except DeployError as exc:
            _abort(self.remote, self.staged.get("dir"), self.staged)
            exc.steps = self.progress.steps
            raise
        except BaseException:  # Ctrl-C or a bug: still leave the device as it was
            _abort(self.remote, self.staged.get("dir"), self.staged)
            raise
        finally:
            self.remote.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _step(self, what: str, fn, note=None):
        """Run one numbered step; a TinyearError becomes a DeployError carrying the steps so far."""
        self.progress.start(what)
        try:
            value = fn()
        except TinyearError as exc:
            self.progress.fail()
            raise DeployError(str(exc), self.progress.steps) from None
        except BaseException:
            self.progress.fail()
            raise
        self.progress.done(note(value) if note else "ok")
        return value

    # -- the steps, in order ---------------------------------------------------------------------------

    def check_here(self) -> dict:
        self.here = local_selftest(self.opts.bundle, self.opts.tolerance)
        self.report["workstation"] = {k: self.here[k] for k in ("label", "scores", "tolerance", "log_tolerance",
                                                                "runtime", "python", "machine", "model_sha256")}
        return self.here

    def build_wheel(self) -> Path:
        self.wheel = build_device_wheel(self.workdir)
        return self.wheel

    def connect(self) -> None:
        self.probe = _connect_and_probe(self.remote, self.opts)
        self.plan = plan(self.opts, self.probe, self.wheel)
        self.report["device"] = {k: self.probe.get(k) for k in ("dir", "user", "python_version", "python_executable",
                                                                 "python_platform", "libc", "systemd")}
        self.report.update(runtime=self.plan["runtime"], env=self.plan["env_key"], env_reused=self.plan["env_ready"])

    def upload(self) -> int:
        self.staged.update(_begin(self.remote, self.opts, self.probe))
        files = [f for f in (self.wheel,) if f and not self.plan["env_ready"]] + self.plan["upload_wheels"]
        bundle_copy = self.workdir / "bundle.tinyear"
        shutil.copyfile(self.opts.bundle, bundle_copy)
        self.remote.upload(files + [bundle_copy], self.staged["stage"])
        return sum(f.stat().st_size for f in files + [bundle_copy])

    def environment(self) -> str:
        opts, probe, chosen = self.opts, self.probe, self.plan
        if chosen["env_ready"]:
            return "reused"
        self.staged["new_env"] = chosen["env_key"]
        proc = self.remote.run(scripts.ENV, probe["dir"], chosen["env_key"], opts.python, self.staged["stage"],
                               self.wheel.name, chosen["extra"], "1" if opts.wheelhouse else "0", timeout=900)
        if proc.returncode != 0:
            raise RemoteError(_explain_env_failure(proc, opts, probe, chosen))
        size = scripts.parse_lines(proc.stdout).get("env_kb", "")
        return f"created, {chosen['runtime']}" + (f", {int(size) // 1024} MiB" if size.isdigit() else "")

    def verify(self) -> dict:
        from tinyear.device.selftest import compare

        here = self.here
        tool = f"{self.probe['dir']}/envs/{self.plan['env_key']}/bin/tinyear-device"
        proc = self.remote.run(scripts.VERIFY, tool, f"{self.staged['stage']}/bundle.tinyear", timeout=300)
        device = _selftest_report(proc)
        verdict = compare(device["scores"], here["scores"], here["labels"], here["tolerance"], here["log_tolerance"])
        if not verdict["ok"]:
            raise TinyearError(f"the device computes other scores than this workstation: {verdict['reason']} "
                               f"(device {device.get('runtime')} on {device.get('machine')}, workstation {here['runtime']}); "
                               "the device keeps its previous bundle")
        self.report["verification"] = {"device": device, "max_abs_diff_vs_workstation": verdict["max_abs_diff"],
                                       "max_abs_logprob_diff_vs_workstation": verdict["max_abs_logprob_diff"],
                                       "identical_to_workstation": verdict["identical"], "tolerance": here["tolerance"],
                                       "log_tolerance": here["log_tolerance"]}
        return verdict

    def switch(self) -> None:
        state = _state(self.opts, self.probe, self.plan, self.here)
        _switch(self.remote, self.probe, self.staged, self.plan, state)
        self.staged.clear()  # from here on, nothing to undo
        self.report["state"] = state

    def service(self) -> None:
        """With --service: install and start the unit (a numbered step). Without it, a unit from an earlier
        deploy is restarted on the new bundle (not counted as a step)."""
        if self.opts.service:
            self.report["service"] = self._step(
                "installing the service", lambda: _service(self.remote, self.opts, self.probe, install=True),
                lambda s: "started" if s["started"] else f"installed, not started: {s['reason']}")
        elif (self.probe.get("state") or {}).get("service"):
            self.report["service"] = _service(self.remote, self.opts, self.probe, install=False)


def _connect_and_probe(remote: Remote, opts: DeployOptions) -> dict:
    remote.connect()
    proc = remote.run(scripts.PROBE, opts.python, opts.target.dir, scripts.PROBE_PY, timeout=60)
    if proc.returncode != 0:
        raise RemoteError(f"probing the device failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    probe = scripts.parse_lines(proc.stdout)
    who = opts.target.ssh_destination
    if probe.get("python_missing"):
        raise TinyearError(f"{who} has no '{opts.python}'; install Python 3 there (sudo apt install python3 python3-venv) or pass --python")
    if probe.get("python_broken") or "python_version" not in probe:
        raise TinyearError(f"'{opts.python}' on {who} does not run as a Python 3 interpreter; point --python at one")
    version = version_tuple(probe["python_version"])
    floor = min_python()
    if version[:2] < floor:
        raise TinyearError(f"the device's Python is {probe['python_version']} ({opts.python}), older than the "
                           f"{floor[0]}.{floor[1]} tinyear needs; use Pi OS Bookworm (3.11) or Trixie (3.13), or pass --python")
    if probe.get("venv") != "1" and not opts.bundle_only:
        raise TinyearError(f"the device's Python {probe['python_version']} cannot create virtual environments; "
                           "install them there: sudo apt install python3-venv (scripts/install_pi.sh does)")
    if probe.get("locked"):
        raise TinyearError(f"another deploy to {probe['dir']} is under way ({probe['locked']}); if none is, remove "
                           f"{probe['dir']}/.deploy-lock on the device and deploy again")
    if probe.get("writable") != "1":
        raise TinyearError(f"{who} cannot write to {probe.get('nearest')} (to make {probe['dir']}); choose another DIR in --to")
    return probe


def _begin(remote: Remote, opts: DeployOptions, probe: dict) -> dict:
    owner = f"{os.environ.get('USER', 'someone')}@{socket.gethostname()} pid {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}"
    proc = remote.run(scripts.BEGIN, probe["dir"], owner, timeout=60)
    out = scripts.parse_lines(proc.stdout)
    if proc.returncode == 4:
        raise TinyearError(f"another deploy to {probe['dir']} is under way ({out.get('locked')}); if none is, remove "
                           f"{probe['dir']}/.deploy-lock on the device and deploy again")
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        staged = {"dir": probe["dir"], "created": out.get("created") == "1", "lock": False}
        _abort(remote, probe["dir"], staged)
        if "no space" in detail.lower():
            raise TinyearError(f"the device's disk is full: cannot create {probe['dir']} ({detail}); free some space there")
        raise TinyearError(f"cannot prepare {probe['dir']} on the device: {detail}")
    return {"dir": probe["dir"], "stage": out["stage"], "created": out.get("created") == "1", "lock": True,
            "new_envs": probe.get("envs_dir") != "1"}


def _selftest_report(proc) -> dict:
    """The JSON line `tinyear-device selftest --json` printed on the device, or a one-line error."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    device = None
    if lines:
        try:
            device = json.loads(lines[-1])
        except ValueError:
            device = None
    if device is None:
        detail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise TinyearError(f"the device could not run the self-test ({detail}); the device keeps its previous bundle")
    if "error" in device:
        raise TinyearError(f"the device rejected the bundle: {device['error']}; the device keeps its previous bundle")
    if not device.get("ok"):
        raise TinyearError(f"the self-test fails on the device: {device.get('reason')} (runtime {device.get('runtime')} on "
                           f"{device.get('machine')}); the device keeps its previous bundle")
    return device


def _explain_env_failure(proc, opts: DeployOptions, probe: dict, plan: dict) -> str:
    detail = " ".join(proc.stderr.strip().splitlines()[-2:]) or f"exit {proc.returncode}"
    low = proc.stderr.lower()
    py = f"Python {probe['python_version']} on {machine(probe)}"
    if "no space left" in low:
        return f"the device's disk filled up while installing the environment ({py}); free some space there"
    if proc.returncode == 10:
        return f"the device's {py} could not create a virtual environment ({detail}); sudo apt install python3-venv"
    missing = sorted(set(re.findall(r"depends on ([A-Za-z0-9_.\-]+[^\s;]*)", proc.stderr)) | set(
        re.findall(r"(?:No matching distribution found for|Could not find a version that satisfies the requirement) (\S+)", proc.stderr)))
    if missing or "no matching distribution" in low or "resolutionimpossible" in low:
        detail = "needs " + ", ".join(missing) if missing else detail
        if opts.wheelhouse:
            return (f"--wheelhouse {opts.wheelhouse} lacks a wheel the device needs ({detail}); fill it for {py} "
                    f"with scripts/check_aarch64_wheels.sh --keep DIR or pip download (docs/DEPLOY.md)")
        return f"the device could not get its dependencies from PyPI ({detail}); give it internet, or copy them along with --wheelhouse DIR"
    if "network" in low or "connection" in low or "temporary failure" in low:
        return f"the device could not reach PyPI to install {plan['runtime']} ({detail}); copy the wheels along with --wheelhouse DIR"
    return f"installing tinyear on the device failed ({py}): {detail}"


def _state(opts: DeployOptions, probe: dict, plan: dict, here: dict) -> dict:
    previous = probe.get("state") or {}
    service = previous.get("service")
    if opts.service:
        service = {"scope": _service_scope(probe), "name": SERVICE_NAME}
    from tinyear.device import __version__

    return {
        "bundle": opts.bundle.name,
        "model_sha256": here["model_sha256"],
        "labels": here["labels"],
        "env": plan["env_key"],
        "previous_env": previous.get("env") if previous.get("env") != plan["env_key"] else previous.get("previous_env"),
        "previous_bundle": previous.get("bundle"),
        "runtime": plan["runtime"],
        "python": probe["python_version"],
        "tinyear": __version__,
        "deployed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "deployed_from": socket.gethostname(),
        "service": service,
    }


def _switch(remote: Remote, probe: dict, staged: dict, plan: dict, state: dict) -> None:
    proc = remote.run(scripts.SWITCH, probe["dir"], staged["stage"], plan["env_key"], state.get("previous_env") or "",
                      json.dumps(state, sort_keys=True), timeout=120)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise TinyearError(f"switching to the new bundle failed on the device ({detail}); run tinyear deploy again")
    # The staging folder and the lock are left: removed now, as on success nothing else is undone.
    remote.run(scripts.ABORT, probe["dir"], staged["stage"], "0", "", "0", "1", timeout=60)


def _abort(remote: Remote, folder: str | None, staged: dict) -> None:
    """Undo what this deploy added on the device; best effort (the original error is what matters)."""
    if not folder or not staged:
        return
    try:
        remote.run(scripts.ABORT, folder, staged.get("stage", ""), "1" if staged.get("created") else "0",
                   staged.get("new_env", ""), "1" if staged.get("new_envs") else "0", "1" if staged.get("lock") else "0",
                   timeout=120)
    except TinyearError:
        pass


def _service_scope(probe: dict) -> str:
    return "system" if probe.get("uid") == "0" else "user"


def _service(remote: Remote, opts: DeployOptions, probe: dict, install: bool) -> dict:
    from .service import render_unit

    scope = _service_scope(probe)
    unit = render_unit(probe["dir"], probe["user"], scope) if install else ""
    proc = remote.run(scripts.SERVICE, scope, unit, "1" if install else "0", timeout=120)
    out = scripts.parse_lines(proc.stdout)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise TinyearError(f"installing the service unit failed on the device ({detail}); the new bundle is deployed and verified")
    return {"scope": scope, "unit": out.get("unit"), "started": out.get("started") == "1",
            "reason": out.get("reason"), "linger": out.get("linger") != "0", "text": unit or None}
