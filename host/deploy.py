"""`tinyear deploy`: put a verified bundle and the device half on a device over SSH, or change nothing.

The steps, each shown as it runs ("[3/7] probing the device ... ok (0.4 s)"):

1. check the bundle here: read and verify it, run its self-test with this workstation's interpreter
   (this is the result the device must reproduce);
2. build the device wheel (`deploy_wheel`: `tinyear.device` only, deterministic);
3. connect (one master SSH connection, BatchMode: keys only) and probe the device: its Python
   version and platform, free space, systemd, the previous deploy; choose the runtime (ai-edge-litert
   where it has wheels, tflite-runtime otherwise) and refuse what cannot work before changing anything;
4. upload the wheel, the dependency wheels from --wheelhouse the device does not have yet, and the bundle,
   into a staging folder;
5. create the environment for this (wheel, runtime, Python), or reuse the one that is already there;
6. verify on the device: `tinyear-device selftest --json` with the new environment on the staged bundle,
   then compare its scores with the workstation's (same tolerance rule as the self-test);
7. switch: atomic renames make the new bundle and environment current, keeping the previous ones;
8. (with --service, or when one is installed) install and (re)start the systemd unit.

Any failure before step 7 removes what this deploy added (`deploy_remote.ABORT`): the device is left as
it was, still running its previous bundle. Imports no torch: deploying needs only the standard library,
the device half (to read the bundle and run its self-test here) and the system's OpenSSH client.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyear.device.errors import TinyearError

from . import deploy_remote as scripts
from .deploy_ssh import Remote, RemoteError, Target
from .deploy_wheel import build_device_wheel

MIN_PYTHON = (3, 10)  # tinyear's Requires-Python
# Which runtime has wheels where (checked by scripts/check_aarch64_wheels.sh, recorded in docs/DEPLOY.md):
# runtime -> (pip extra of the device wheel, machines, oldest and newest Python with wheels).
RUNTIMES = {
    "ai-edge-litert": ("device", ("aarch64", "x86_64"), (3, 10), (3, 13)),
    "tflite-runtime": ("tflite", ("aarch64", "x86_64", "armv7l"), (3, 9), (3, 11)),
}
# Room a new environment takes, measured: 41.6 MB of wheels (numpy 2, ai-edge-litert 2.3, soundfile,
# soxr, cffi, ...) became 166 MiB installed on x86_64 (du -sk of envs/KEY in the deploy test), 4.2x;
# 4.5x the wheel sizes covers it with a little room.
ENV_SIZE_FACTOR = 4.5
ENV_SIZE_ONLINE = 250 * 1024 * 1024  # without a wheelhouse the wheel sizes are unknown here
SPACE_MARGIN = 5 * 1024 * 1024
SERVICE_NAME = "tinyear-listen.service"


@dataclass
class DeployOptions:
    """Everything `tinyear deploy` was asked to do (see host/commands/deploy.py for the flags)."""

    bundle: Path
    target: Target
    port: int | None = None
    identity: str | None = None
    ssh_config: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    python: str = "python3"
    runtime: str | None = None
    wheelhouse: Path | None = None
    service: bool = False
    bundle_only: bool = False
    tolerance: float | None = None


class Progress:
    """The step lines on stderr: "[i/n] what ... ok (1.2 s)"; silent when `stream` is None."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream, self.index = total, stream, 0
        self.steps: list[dict] = []

    def start(self, what: str) -> None:
        self.index += 1
        self._t0, self._what = time.monotonic(), what
        if self.stream:
            self.stream.write(f"[{self.index}/{self.total}] {what} ... ")
            self.stream.flush()

    def done(self, note: str = "ok") -> None:
        seconds = time.monotonic() - self._t0
        self.steps.append({"step": self._what, "result": note, "seconds": round(seconds, 3)})
        if self.stream:
            self.stream.write(f"{note} ({seconds:.1f} s)\n")
            self.stream.flush()

    def fail(self) -> None:
        seconds = time.monotonic() - self._t0
        self.steps.append({"step": self._what, "result": "failed", "seconds": round(seconds, 3)})
        if self.stream:
            self.stream.write("failed\n")
            self.stream.flush()


class DeployError(TinyearError):
    """A deploy that stopped; `steps` holds what ran (for --json)."""

    def __init__(self, message: str, steps: list[dict] | None = None):
        super().__init__(message)
        self.steps = steps or []


def choose_runtime(version: tuple[int, int], machine: str, forced: str | None) -> str:
    """The runtime to install for a device Python `version` (major, minor) on `machine` (as the device's
    Python sees it: aarch64, armv7l, x86_64). Raises TinyearError when none has wheels there."""
    py = f"{version[0]}.{version[1]}"
    if forced:
        extra, machines, lo, hi = RUNTIMES[forced]
        if machine not in machines or not lo <= version <= hi:
            raise TinyearError(f"{forced} has no wheels for Python {py} on {machine} (it has them for Python "
                               f"{lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} on {', '.join(machines)}); drop --runtime")
        return forced
    for name, (extra, machines, lo, hi) in RUNTIMES.items():
        if machine in machines and lo <= version <= hi:
            return name
    raise TinyearError(f"no TFLite runtime has wheels for Python {py} on {machine}: ai-edge-litert covers Python "
                       "3.10-3.13 on aarch64 and x86_64, tflite-runtime 3.9-3.11 (also armv7l); use a 64-bit Pi OS "
                       "(Bookworm or Trixie) or point --python at a supported Python on the device")


def _machine(probe: dict) -> str:
    """The device's architecture as its Python was built for (a 32-bit Pi OS on a 64-bit kernel is armv7l)."""
    plat = probe.get("python_platform", "")
    return plat.split("-", 1)[1] if plat.startswith("linux-") else (plat or probe.get("kernel_machine", "unknown"))


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


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


def _env_key(wheel: bytes, runtime: str, probe: dict) -> str:
    h = hashlib.sha256(wheel)
    h.update(f"|{runtime}|{probe.get('python_version')}|{probe.get('python_executable')}".encode())
    return h.hexdigest()[:16]


def deploy(opts: DeployOptions, stream=sys.stderr) -> dict:
    """Run a deploy (see the module docstring); returns the report `--json` prints. Raises DeployError
    (one line) on any failure, after undoing what it changed on the device."""
    from tinyear.device.selftest import compare

    service_steps = 1 if opts.service else 0
    total = (5 if opts.bundle_only else 7) + service_steps
    progress = Progress(total, stream)
    report: dict = {"target": str(opts.target), "bundle": str(opts.bundle), "ok": False}

    def step(what, fn, note=None):
        progress.start(what)
        try:
            value = fn()
        except TinyearError as exc:
            progress.fail()
            raise DeployError(str(exc), progress.steps) from None
        except BaseException:
            progress.fail()
            raise
        progress.done(note(value) if note else "ok")
        return value

    here = step("checking the bundle here", lambda: local_selftest(opts.bundle, opts.tolerance),
                lambda r: f"'{r['label']}' {max(r['scores']):.3f}, {r['runtime']}")
    report["workstation"] = {k: here[k] for k in ("label", "scores", "tolerance", "log_tolerance", "runtime", "python", "machine", "model_sha256")}

    remote = Remote(opts.target, port=opts.port, identity=opts.identity, ssh_config=opts.ssh_config,
                    options=opts.ssh_options, connect_timeout=opts.connect_timeout)
    workdir = Path(tempfile.mkdtemp(prefix="tinyear-deploy-"))
    staged: dict = {}
    try:
        wheel = None
        if not opts.bundle_only:
            wheel = step("building the device wheel", lambda: build_device_wheel(workdir),
                         lambda p: f"{p.name}, {p.stat().st_size / 1024:.0f} KiB")
        def connect():
            probe = _connect_and_probe(remote, opts)
            return probe, _plan(opts, probe, wheel)

        probe, plan = step(f"connecting to {opts.target.ssh_destination}", connect,
                           lambda pp: f"Python {pp[0]['python_version']} {_machine(pp[0])}, {int(pp[0].get('free_kb') or 0) // 1024} MiB free, "
                                      f"{pp[1]['runtime']}")
        report["device"] = {k: probe.get(k) for k in ("dir", "user", "python_version", "python_executable", "python_platform", "libc", "systemd")}
        report.update(runtime=plan["runtime"], env=plan["env_key"], env_reused=plan["env_ready"])

        def upload():
            staged.update(_begin(remote, opts, probe))
            files = [f for f in (wheel,) if f and not plan["env_ready"]] + plan["upload_wheels"]
            bundle_copy = workdir / "bundle.tinyear"
            bundle_copy.write_bytes(opts.bundle.read_bytes())
            remote.upload(files + [bundle_copy], staged["stage"])
            return sum(f.stat().st_size for f in files + [bundle_copy])

        step("uploading", upload, lambda n: f"{n / 1e6:.1f} MB")
        if not opts.bundle_only:
            def environment():
                if plan["env_ready"]:
                    return "reused"
                staged["new_env"] = plan["env_key"]
                proc = remote.run(scripts.ENV, probe["dir"], plan["env_key"], opts.python, staged["stage"],
                                  wheel.name, plan["extra"], "1" if opts.wheelhouse else "0", timeout=900)
                if proc.returncode != 0:
                    raise RemoteError(_explain_env_failure(proc, opts, probe, plan))
                size = scripts.parse_lines(proc.stdout).get("env_kb", "")
                return f"created, {plan['runtime']}" + (f", {int(size) // 1024} MiB" if size.isdigit() else "")

            step("preparing the environment", environment, lambda s: s)

        def verify():
            tool = f"{probe['dir']}/envs/{plan['env_key']}/bin/tinyear-device"
            proc = remote.run(scripts.VERIFY, tool, f"{staged['stage']}/bundle.tinyear", timeout=300)
            device = _selftest_report(proc)
            verdict = compare(device["scores"], here["scores"], here["labels"], here["tolerance"], here["log_tolerance"])
            if not verdict["ok"]:
                raise TinyearError(f"the device computes other scores than this workstation: {verdict['reason']} "
                                   f"(device {device.get('runtime')} on {device.get('machine')}, workstation {here['runtime']}); "
                                   "the device keeps its previous bundle")
            report["verification"] = {"device": device, "max_abs_diff_vs_workstation": verdict["max_abs_diff"],
                                      "max_abs_logprob_diff_vs_workstation": verdict["max_abs_logprob_diff"],
                                      "identical_to_workstation": verdict["identical"], "tolerance": here["tolerance"],
                                      "log_tolerance": here["log_tolerance"]}
            return verdict

        step("verifying on the device", verify,
             lambda v: "identical to the workstation" if v["identical"] else f"max difference {v['max_abs_diff']:.2g} (tolerance {here['tolerance']:.2g})")

        state = _state(opts, probe, plan, here)
        step("switching to the new bundle", lambda: _switch(remote, probe, staged, plan, state),
             lambda _: "previous kept" if probe.get("state") else "first deploy")
        staged.clear()  # from here on, nothing to undo
        report["state"] = state

        if opts.service or (probe.get("state") or {}).get("service"):
            what = "installing the service" if opts.service else "restarting the service"
            if opts.service:
                report["service"] = step(what, lambda: _service(remote, opts, probe, install=True),
                                         lambda s: "started" if s["started"] else f"installed, not started: {s['reason']}")
            else:  # a unit from an earlier deploy: restart it on the new bundle, not counted as a step
                report["service"] = _service(remote, opts, probe, install=False)
        report["ok"] = True
        report["steps"] = progress.steps
        return report
    except DeployError as exc:
        _abort(remote, staged.get("dir"), staged)
        exc.steps = progress.steps
        raise
    except BaseException:  # Ctrl-C or a bug: still leave the device as it was
        _abort(remote, staged.get("dir"), staged)
        raise
    finally:
        remote.close()
        shutil.rmtree(workdir, ignore_errors=True)


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
    version = _version(probe["python_version"])
    if version[:2] < MIN_PYTHON:
        raise TinyearError(f"the device's Python is {probe['python_version']} ({opts.python}), older than the "
                           f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} tinyear needs; use Pi OS Bookworm (3.11) or Trixie (3.13), or pass --python")
    if probe.get("venv") != "1" and not opts.bundle_only:
        raise TinyearError(f"the device's Python {probe['python_version']} cannot create virtual environments; "
                           "install them there: sudo apt install python3-venv (scripts/install_pi.sh does)")
    if probe.get("locked"):
        raise TinyearError(f"another deploy to {probe['dir']} is under way ({probe['locked']}); if none is, remove "
                           f"{probe['dir']}/.deploy-lock on the device and deploy again")
    if probe.get("writable") != "1":
        raise TinyearError(f"{who} cannot write to {probe.get('nearest')} (to make {probe['dir']}); choose another DIR in --to")
    return probe


def _plan(opts: DeployOptions, probe: dict, wheel: Path | None) -> dict:
    """What this deploy will do on the device; refuses, before anything changes, what cannot fit."""
    version = _version(probe["python_version"])[:2]
    previous = probe.get("state") or {}
    bundle_size = opts.bundle.stat().st_size
    if opts.bundle_only:
        key = previous.get("env")
        if not key or key not in probe["env"]:
            raise TinyearError(f"the device has no tinyear environment in {probe['dir']} yet; deploy once without --bundle-only")
        plan = {"runtime": previous.get("runtime"), "extra": None, "env_key": key, "env_ready": True, "upload_wheels": []}
        need = bundle_size
    else:
        runtime = choose_runtime(version, _machine(probe), opts.runtime)
        key = _env_key(wheel.read_bytes(), runtime, probe)
        ready = key in probe["env"]
        uploads = []
        if opts.wheelhouse and not ready:
            folder = Path(opts.wheelhouse)
            if not folder.is_dir():
                raise TinyearError(f"--wheelhouse {folder}: no such folder")
            cached = probe["cached"]
            uploads = [f for f in sorted(folder.glob("*.whl")) if cached.get(f.name) != f.stat().st_size and not f.name.startswith("tinyear-")]
            if not any(folder.glob("*.whl")):
                raise TinyearError(f"--wheelhouse {folder}: holds no .whl files; fill it with pip download (see docs/DEPLOY.md)")
        upload_size = sum(f.stat().st_size for f in uploads) + (wheel.stat().st_size if not ready else 0) + bundle_size
        if ready:
            env_size = 0
        elif opts.wheelhouse:
            env_size = int(ENV_SIZE_FACTOR * sum(f.stat().st_size for f in Path(opts.wheelhouse).glob("*.whl")))
        else:
            env_size = ENV_SIZE_ONLINE
        plan = {"runtime": runtime, "extra": RUNTIMES[runtime][0], "env_key": key, "env_ready": ready, "upload_wheels": uploads}
        need = upload_size + env_size
    free = int(probe.get("free_kb") or 0) * 1024
    if free < need + SPACE_MARGIN:
        raise TinyearError(f"the device's disk is full: {probe['dir']} has {free / 2**20:.1f} MiB free, this deploy needs about "
                           f"{(need + SPACE_MARGIN) / 2**20:.1f} MiB; free some space there (or deploy to another DIR)")
    return plan


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
    py = f"Python {probe['python_version']} on {_machine(probe)}"
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
    from .deploy_service import render_unit

    scope = _service_scope(probe)
    unit = render_unit(probe["dir"], probe["user"], scope) if install else ""
    proc = remote.run(scripts.SERVICE, scope, unit, "1" if install else "0", timeout=120)
    out = scripts.parse_lines(proc.stdout)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise TinyearError(f"installing the service unit failed on the device ({detail}); the new bundle is deployed and verified")
    return {"scope": scope, "unit": out.get("unit"), "started": out.get("started") == "1",
            "reason": out.get("reason"), "linger": out.get("linger") != "0", "text": unit or None}
