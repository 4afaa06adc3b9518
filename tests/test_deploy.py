"""`tinyear deploy` against a real OpenSSH server on 127.0.0.1, and its pure parts.

The `device` fixture is a real sshd (`/usr/sbin/sshd -D`, its own host key, config, pid file and
authorized_keys in a temp folder, a free port on 127.0.0.1, no PAM) and a real unprivileged user made
with `useradd`, whose home is the "device". Its deploy folder is a real 512 MiB tmpfs, so a full disk is
a real full file system (a ballast file fills it). The client side is an ssh config file made by the
fixture (IdentityFile, UserKnownHostsFile in the temp folder, StrictHostKeyChecking accept-new,
IdentitiesOnly), passed with --ssh-config the way a user's own ~/.ssh/config would be read. Nothing of
ssh is mocked; the remote `pip install` uses a wheelhouse downloaded once with `pip download`
(cached in the artifacts folder) and copied along with --wheelhouse, as for a device without internet.

What is simulated, and how: a device Python that is too old is a wrapper script around the real
python3 that reports version 3.8 (given with --python); a bundle the device cannot read is written by a
"newer workstation" (this test process with `FORMAT_VERSION` raised to 2, deploying in-process), while
the device runs this checkout's reader (format 1); an unreachable host is a closed port and a socket that
accepts connections but never answers. The tests need root (sshd for another user, useradd, mount),
as CI runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ARTIFACTS, write_wav
from tinyear.device.bundle import SelfTest, pack_bundle, read_bundle
from tinyear.host.deploy import choose_runtime
from tinyear.host.deploy.ssh import parse_target
from tinyear.host.deploy.wheel import device_requirements, wheel_bytes

# One device user per test process: two test runs on one machine (CI beside a developer) must not
# delete each other's user. Users left by killed runs (their process gone) are removed at start.
USER_PREFIX = "tinyeardev"
DEVICE_USER = f"{USER_PREFIX}{os.getpid()}"
TMPFS_MB = 512


# -- pure parts (fast) ------------------------------------------------------------------------------

def test_parse_target():
    t = parse_target("pi@raspberrypi.local")
    assert (t.user, t.host, t.dir) == ("pi", "raspberrypi.local", "~/tinyear")
    t = parse_target("mypi:/opt/kws/")
    assert (t.user, t.host, t.dir) == (None, "mypi", "/opt/kws")
    assert parse_target("pi@192.168.1.20:kws").dir == "~/kws"
    assert parse_target("pi@[fe80::1]:~/x").host == "fe80::1"
    from tinyear.device.errors import TinyearError

    for bad in ("", "pi@", "@host", "pi@host:it's"):
        with pytest.raises(TinyearError):
            parse_target(bad)


def test_choose_runtime_follows_the_wheels():
    assert choose_runtime((3, 11), "aarch64", None) == "ai-edge-litert"
    assert choose_runtime((3, 13), "aarch64", None) == "ai-edge-litert"
    assert choose_runtime((3, 11), "armv7l", None) == "tflite-runtime"  # 32-bit Pi OS
    assert choose_runtime((3, 11), "aarch64", "tflite-runtime") == "tflite-runtime"
    from tinyear.device.errors import TinyearError

    with pytest.raises(TinyearError, match="no TFLite runtime has wheels for Python 3.13 on armv7l"):
        choose_runtime((3, 13), "armv7l", None)
    with pytest.raises(TinyearError, match="tflite-runtime has no wheels for Python 3.13"):
        choose_runtime((3, 13), "aarch64", "tflite-runtime")


def test_device_wheel_is_deterministic_and_device_only():
    import io
    import zipfile

    name, data = wheel_bytes()
    assert name.endswith("-py3-none-any.whl") and wheel_bytes()[1] == data
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "tinyear/device/commands/selftest.py" in names
    assert not any(n.startswith("tinyear/host") for n in names)
    meta = zipfile.ZipFile(io.BytesIO(data)).read(name.split("-py3")[0] + ".dist-info/METADATA").decode()
    assert "Requires-Dist: ai-edge-litert" in meta and 'extra == "device"' in meta
    reqs = device_requirements()
    assert not any("torch" in r for r in reqs["base"] + reqs["device"])


# -- the real sshd ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sh(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def device():
    """A real sshd on 127.0.0.1 and a device user; yields a dict of paths and the port."""
    if os.geteuid() != 0:
        pytest.fail("the deploy tests start sshd for a second user, useradd and mount a tmpfs: run them as root (CI does)")
    base = Path(tempfile.mkdtemp(prefix="tinyear-sshd-"))
    base.chmod(0o755)
    home = base / "home"
    for line in Path("/etc/passwd").read_text().splitlines():  # left over from killed runs
        name = line.split(":")[0]
        pid = name[len(USER_PREFIX):]
        if name.startswith(USER_PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["userdel", "-r", name], capture_output=True)
    _sh("useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/bash", DEVICE_USER)
    _sh("usermod", "-p", "*", DEVICE_USER)  # no password, but not locked: sshd without PAM refuses locked accounts
    deploy_dir = home / "tinyear"
    deploy_dir.mkdir()
    _sh("mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0755", "tmpfs", str(deploy_dir))
    shutil.chown(deploy_dir, DEVICE_USER, DEVICE_USER)
    keys = base / "keys"
    keys.mkdir(mode=0o700)
    for name in ("host_ed25519", "id_ed25519", "id_wrong"):
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name))
    authorized = base / "authorized_keys"
    authorized.write_text((keys / "id_ed25519.pub").read_text())
    authorized.chmod(0o644)
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {keys / 'host_ed25519'}
AuthorizedKeysFile {authorized}
StrictModes no
PidFile {base / 'sshd.pid'}
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers {DEVICE_USER}
Subsystem sftp internal-sftp
MaxSessions 50
LogLevel VERBOSE
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    log = open(base / "sshd.log", "w")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-e"], stdout=log, stderr=log)
    client = base / "ssh_config"
    client.write_text(f"""\
Host tinyear-test-device
  HostName 127.0.0.1
  Port {port}
  User {DEVICE_USER}
  IdentityFile {keys / 'id_ed25519'}
  IdentitiesOnly yes
  UserKnownHostsFile {base / 'known_hosts'}
  StrictHostKeyChecking accept-new
  LogLevel ERROR
""")
    (base / "empty_config").write_text("")
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(base / 'sshd.log').read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield {"base": base, "home": home, "dir": deploy_dir, "port": port, "config": client, "keys": keys,
               "empty_config": base / "empty_config", "log": base / "sshd.log"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        subprocess.run(["umount", "-l", str(deploy_dir)], capture_output=True)
        subprocess.run(["userdel", "-r", DEVICE_USER], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _wheelhouse(extra: str) -> Path:
    """Dependency wheels of one extra for the device's Python (this machine's /usr/bin/python3),
    downloaded once with pip download and kept in the artifacts folder."""
    out = _sh("/usr/bin/python3", "-c", "import sys,sysconfig;print('%d.%d' % sys.version_info[:2], sysconfig.get_platform())").stdout.split()
    version, plat = out[0], out[1].split("-", 1)[1]
    folder = ARTIFACTS / f"wheelhouse-cp{version.replace('.', '')}-{plat}" / extra
    marker = folder / ".complete"
    reqs = device_requirements()
    wanted = reqs["base"] + reqs[extra]
    if not marker.exists() or marker.read_text() != "\n".join(wanted):
        shutil.rmtree(folder, ignore_errors=True)
        platforms = [f"manylinux_2_{v}_{plat}" for v in (17, 24, 27, 28, 31, 34, 35, 36)] + [f"manylinux2014_{plat}", f"linux_{plat}"]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", version,
               "-d", str(folder), *[a for p in platforms for a in ("--platform", p)], *wanted]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"pip download of the device wheels failed (PyPI unreachable?): {proc.stderr.strip()[-500:]}")
        marker.write_text("\n".join(wanted))
    return folder


@pytest.fixture(scope="module")
def wheelhouse():
    return _wheelhouse("device")


TRANSCRIPT = ARTIFACTS / "deploy-transcript.txt"  # every deploy command these tests ran, with its output


def _tinyear(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}  # no agent: only the fixture's keys
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tinyear.host.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(TRANSCRIPT, "a") as f:
        f.write(f"$ tinyear {' '.join(map(str, args))}\n{proc.stderr}{proc.stdout}"
                f"(exit {proc.returncode}, {time.monotonic() - start:.1f} s)\n\n")
    return proc


def _deploy(device, bundle, *extra, timeout=600):
    return _tinyear("deploy", bundle, "--to", "tinyear-test-device:~/tinyear", "--ssh-config", device["config"], *extra,
                    timeout=timeout)


def _ssh(device, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(device["config"]), "-o", "BatchMode=yes", "tinyear-test-device", command],
                          capture_output=True, text=True, timeout=120)


def snapshot(folder: Path) -> dict:
    """Everything in the deploy folder: files by size and sha256 (environments by size and mtime),
    symlinks by target. Two equal snapshots mean the device was left as it was."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            elif "envs/" in rel:
                st = path.stat()
                out[rel] = ("file", st.st_size, st.st_mtime_ns)
            else:
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("[")]  # progress lines start with [i/n]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tinyear: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def deployed(device, tiny_bundles, wheelhouse):
    """The first deploy (int8 bundle); every later test starts from this state."""
    TRANSCRIPT.unlink(missing_ok=True)
    proc = _deploy(device, tiny_bundles["int8"], "--wheelhouse", wheelhouse)
    assert proc.returncode == 0, proc.stderr
    return {"state": json.loads((device["dir"] / "deploy.json").read_text()), "stderr": proc.stderr, "stdout": proc.stdout}


@pytest.mark.slow
def test_full_deploy_then_classify_on_the_device(device, deployed, tiny_bundles, tmp_path):
    state, stderr = deployed["state"], deployed["stderr"]
    for i, what in enumerate(["checking the bundle here", "building the device wheel", "connecting to",
                              "uploading", "preparing the environment", "verifying on the device", "switching"], 1):
        assert f"[{i}/7] {what}" in stderr
    assert "failed" not in stderr
    assert "created, ai-edge-litert" in stderr and "identical to the workstation" in stderr
    assert deployed["stdout"].startswith("deployed tiny_int8.tinyear to tinyear-test-device:")
    d = device["dir"]
    assert (d / "current.tinyear").read_bytes() == tiny_bundles["int8"].read_bytes()
    assert not (d / "previous.tinyear").exists()
    assert os.readlink(d / "venv") == f"envs/{state['env']}"
    assert state["model_sha256"] == read_bundle(tiny_bundles["int8"]).model_sha256 and state["runtime"] == "ai-edge-litert"
    assert not list(d.glob(".staging-*")) and not (d / ".deploy-lock").exists()
    assert (d / "current.tinyear").stat().st_uid == (device["home"]).stat().st_uid  # owned by the device user

    import tiny_model

    wav = device["home"] / "low.wav"
    write_wav(wav, tiny_model.make_clip("low", np.random.default_rng(0)))
    shutil.chown(wav, DEVICE_USER, DEVICE_USER)
    proc = _ssh(device, "~/tinyear/venv/bin/tinyear-device classify ~/tinyear/current.tinyear ~/low.wav --json --top 3")
    assert proc.returncode == 0, proc.stderr
    remote = json.loads(proc.stdout)
    from tinyear.device.classify import Classifier

    here = Classifier(tiny_bundles["int8"])
    probs = here.classify_file(wav)
    assert remote["label"] == "low" == here.top(probs)[0][0]
    assert {t["label"]: t["score"] for t in remote["top"]} == {l: round(float(p), 6) for l, p in zip(here.labels, probs)}
    proc = _ssh(device, "~/tinyear/venv/bin/python -c 'import torch'")
    assert proc.returncode != 0  # the device half needs no torch, and has none


@pytest.mark.slow
def test_redeploy_updates_and_keeps_the_previous_bundle(device, deployed, tiny_bundles, wheelhouse):
    proc = _deploy(device, tiny_bundles["float"], "--wheelhouse", wheelhouse, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["runtime"] == "ai-edge-litert"
    assert report["env_reused"] is True and report["env"] == deployed["state"]["env"]
    assert len(report["steps"]) == 7 and all(s["result"] != "failed" for s in report["steps"])
    assert report["verification"]["identical_to_workstation"] is True
    assert report["verification"]["device"]["ok"] is True
    assert "reused" in proc.stderr
    d = device["dir"]
    assert (d / "current.tinyear").read_bytes() == tiny_bundles["float"].read_bytes()
    assert (d / "previous.tinyear").read_bytes() == tiny_bundles["int8"].read_bytes()
    assert json.loads((d / "deploy.json").read_text())["previous_bundle"] == tiny_bundles["int8"].name
    # Back to the int8 bundle, the model only.
    proc = _deploy(device, tiny_bundles["int8"], "--bundle-only")
    assert proc.returncode == 0, proc.stderr
    assert "[5/5] switching" in proc.stderr
    assert (d / "current.tinyear").read_bytes() == tiny_bundles["int8"].read_bytes()


@pytest.mark.slow
def test_rollback_puts_the_previous_bundle_back_and_a_second_one_undoes_it(device, deployed, tiny_bundles, tmp_path):
    d = device["dir"]
    proc = _deploy(device, tiny_bundles["float"], "--bundle-only")
    assert proc.returncode == 0, proc.stderr
    proc = _deploy(device, tiny_bundles["int8"], "--bundle-only")  # current int8, previous float
    assert proc.returncode == 0, proc.stderr
    int8, flt = tiny_bundles["int8"].read_bytes(), tiny_bundles["float"].read_bytes()
    env_before = os.readlink(d / "venv")
    proc = _tinyear("deploy", "--rollback", "--to", "tinyear-test-device:~/tinyear", "--ssh-config", device["config"])
    assert proc.returncode == 0, proc.stderr
    for i, what in enumerate(["connecting to", "verifying the previous bundle on the device",
                              "switching back to the previous bundle"], 1):
        assert f"[{i}/3] {what}" in proc.stderr
    assert proc.stdout.startswith("rolled back tinyear-test-device:") and "to tiny_float.tinyear" in proc.stdout
    assert (d / "current.tinyear").read_bytes() == flt and (d / "previous.tinyear").read_bytes() == int8
    state = json.loads((d / "deploy.json").read_text())
    assert state["bundle"] == "tiny_float.tinyear" and state["previous_bundle"] == "tiny_int8.tinyear"
    assert state["model_sha256"] == read_bundle(tiny_bundles["float"]).model_sha256 and "rolled_back_at" in state
    assert os.readlink(d / "venv") == env_before and not (d / ".deploy-lock").exists()
    assert not list(d.glob(".*.new"))
    proc = _tinyear("deploy", "--rollback", "--to", "tinyear-test-device:~/tinyear", "--ssh-config", device["config"],
                    "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["rollback"] is True and report["state"]["bundle"] == "tiny_int8.tinyear"
    assert (d / "current.tinyear").read_bytes() == int8 and (d / "previous.tinyear").read_bytes() == flt
    # A previous bundle that fails its self-test on the device is not put back; nothing changes.
    b = read_bundle(tiny_bundles["float"])
    swapped = pack_bundle(b.model_bytes, ["high", "low", "noise"], b.frontend, selftest=b.selftest, output=b.output)
    (d / "previous.tinyear").write_bytes(swapped)
    before = snapshot(d)
    proc = _tinyear("deploy", "--rollback", "--to", "tinyear-test-device:~/tinyear", "--ssh-config", device["config"])
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert "previous.tinyear: the self-test fails on the device" in line and "'high' clip" in line, line
    assert "the device keeps its current bundle" in line
    assert snapshot(d) == before and (d / "current.tinyear").read_bytes() == int8
    (d / "previous.tinyear").write_bytes(flt)


def test_rollback_refuses_a_bundle_argument():
    proc = _tinyear("deploy", "x.tinyear", "--rollback", "--to", "pi@127.0.0.1")
    assert proc.returncode == 1 and "--rollback puts the device's previous bundle back: drop MODEL.tinyear" in proc.stderr
    proc = _tinyear("deploy", "--to", "pi@127.0.0.1")
    assert proc.returncode == 1 and "name the bundle to deploy" in proc.stderr


def _repack(src: Path, dst: Path, **changes) -> Path:
    b = read_bundle(src)
    selftest = changes.pop("selftest", b.selftest)
    dst.write_bytes(pack_bundle(b.model_bytes, b.labels, b.frontend, detection=b.detection, metrics=b.metrics,
                                provenance=b.provenance, selftest=selftest, output=b.output))
    return dst


def test_bundle_with_swapped_labels_is_refused_before_connecting(tiny_bundles, tmp_path):
    """Labels reordered after export with every checksum recomputed: the scores are identical, but the
    self-test clip's label is no longer the top label; deploy refuses at its first step, here."""
    b = read_bundle(tiny_bundles["int8"])
    swapped = tmp_path / "swapped.tinyear"
    swapped.write_bytes(pack_bundle(b.model_bytes, ["high", "low", "noise"], b.frontend, detection=b.detection,
                                    metrics=b.metrics, provenance=b.provenance, selftest=b.selftest, output=b.output))
    proc = _tinyear("deploy", swapped, "--to", "nobody@127.0.0.1", "--port", _free_port(), "--connect-timeout", "1")
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert "self-test fails on this workstation already" in line and "'high' clip" in line, line
    assert "[1/7] checking the bundle here ... failed" in proc.stderr and "[2/7]" not in proc.stderr


@pytest.mark.slow
def test_tampered_bundle_is_refused_and_the_device_is_unchanged(device, deployed, tiny_bundles, tmp_path):
    before = snapshot(device["dir"])
    tampered = tmp_path / "tampered.tinyear"
    data = bytearray(tiny_bundles["float"].read_bytes())
    data[200] ^= 0x01
    tampered.write_bytes(bytes(data))
    proc = _deploy(device, tampered)
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert "damaged or modified" in line or "sha256" in line or "damaged header" in line
    # Valid checksums, but scores that are not what its model computes: its self-test fails here first.
    b = read_bundle(tiny_bundles["float"])
    wrong = _repack(tiny_bundles["float"], tmp_path / "wrong.tinyear",
                    selftest=SelfTest(audio=b.selftest.audio, expected=list(np.roll(b.selftest.expected, 1)), label="high"))
    proc = _deploy(device, wrong)
    assert proc.returncode == 1
    assert "self-test fails on this workstation already" in _one_error_line(proc)
    assert snapshot(device["dir"]) == before


@pytest.mark.slow
def test_bundle_the_device_cannot_read_is_rolled_back(device, deployed, tiny_bundles, tmp_path, monkeypatch, capsys):
    """A newer workstation (format 3) deploys to a device whose tinyear reads formats 1 and 2: the device
    rejects the staged bundle, the deploy removes it, and the device keeps its bundle and environment."""
    import tinyear.device.bundle as bundle_module
    from tinyear.host.cli import main

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    b = read_bundle(tiny_bundles["float"])
    monkeypatch.setattr(bundle_module, "FORMAT_VERSION", 3)
    monkeypatch.setattr(bundle_module, "PLAIN_FORMAT", 3)
    future = tmp_path / "future.tinyear"
    future.write_bytes(pack_bundle(b.model_bytes, b.labels, b.frontend, selftest=b.selftest, output=b.output))
    assert future.read_bytes()[8:10] == (3).to_bytes(2, "little")
    before = snapshot(device["dir"])
    for extra in ([], ["--bundle-only"]):
        argv = ["deploy", str(future), "--to", "tinyear-test-device:~/tinyear", "--ssh-config", str(device["config"]), *extra]
        code = main(argv)
        err = capsys.readouterr().err
        with open(TRANSCRIPT, "a") as f:
            f.write(f"$ tinyear {' '.join(argv)}    # in-process, as a workstation whose tinyear writes format 3\n{err}(exit {code})\n\n")
        assert code == 1
        line = [ln for ln in err.splitlines() if ln.startswith("tinyear: error:")]
        assert len(line) == 1 and "bundle format 3 was written by a newer tinyear" in line[0], err
        assert "the device keeps its previous bundle" in line[0]
        assert "verifying on the device ... failed" in err
        assert snapshot(device["dir"]) == before


@pytest.mark.slow
def test_failed_environment_install_is_rolled_back(device, deployed, tiny_bundles, wheelhouse, tmp_path):
    """tflite-runtime is not in the wheelhouse and the device installs without an index: pip fails,
    the half-made environment is removed."""
    before = snapshot(device["dir"])
    proc = _deploy(device, tiny_bundles["float"], "--wheelhouse", wheelhouse, "--runtime", "tflite-runtime")
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert "lacks a wheel the device needs" in line and ("tflite-runtime" in line or "numpy<2" in line), line
    assert "preparing the environment ... failed" in proc.stderr
    assert snapshot(device["dir"]) == before


@pytest.mark.slow
def test_device_python_older_than_supported_is_refused(device, deployed, tiny_bundles):
    fake = device["home"] / "python3.8"
    # A wrapper around the real python3 that reports itself as 3.8, as a Pi OS Bullseye python3 would.
    fake.write_text('#!/bin/sh\nexec /usr/bin/python3 -c "import sys; sys.version_info = (3, 8, 18, \'final\', 0); '
                    'exec(sys.argv[1])" "$2"\n')
    fake.chmod(0o755)
    before = snapshot(device["dir"])
    proc = _deploy(device, tiny_bundles["float"], "--python", "~/python3.8")
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert "the device's Python is 3.8.18" in line and "older than the 3.10 tinyear needs" in line
    assert snapshot(device["dir"]) == before


@pytest.mark.slow
def test_full_disk_is_refused_and_the_device_is_unchanged(device, deployed, tiny_bundles):
    d = device["dir"]
    free = shutil.disk_usage(d).free
    ballast = d / "ballast"
    subprocess.run(["fallocate", "-l", str(free - 1024 * 1024), str(ballast)], check=True)  # leave 1 MiB
    shutil.chown(ballast, DEVICE_USER, DEVICE_USER)
    before = snapshot(d)
    try:
        for extra in ([], ["--bundle-only"]):
            proc = _deploy(device, tiny_bundles["float"], *extra)
            assert proc.returncode == 1
            line = _one_error_line(proc)
            assert "the device's disk is full" in line and "MiB free" in line, line
            assert snapshot(d) == before
    finally:
        ballast.unlink()


@pytest.mark.slow
def test_unreachable_host_fails_within_the_timeout(tiny_bundles, device):
    closed = _free_port()
    proc = _tinyear("deploy", tiny_bundles["int8"], "--to", f"{DEVICE_USER}@127.0.0.1", "--port", closed,
                    "--ssh-config", device["empty_config"], timeout=60)
    assert proc.returncode == 1
    assert "refused the connection" in _one_error_line(proc)
    # A host that accepts TCP but never speaks: only ConnectTimeout ends the wait.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        proc = _tinyear("deploy", tiny_bundles["int8"], "--to", f"{DEVICE_USER}@127.0.0.1", "--port", silent.getsockname()[1],
                        "--ssh-config", device["empty_config"], "--connect-timeout", "2", timeout=60)
        elapsed = time.monotonic() - start
    assert proc.returncode == 1
    assert "no answer from 127.0.0.1" in _one_error_line(proc) and "within 2 s" in proc.stderr
    assert elapsed < 50  # bounded by --connect-timeout (the subprocess timeout would fire at 60 s)


@pytest.mark.slow
def test_wrong_key_is_one_clear_line(tiny_bundles, device):
    proc = _tinyear("deploy", tiny_bundles["int8"], "--to", f"{DEVICE_USER}@127.0.0.1", "--port", device["port"],
                    "--ssh-config", device["empty_config"], "--identity", device["keys"] / "id_wrong",
                    "--ssh-option", "IdentitiesOnly=yes", "--ssh-option", f"UserKnownHostsFile={device['base'] / 'known_hosts'}",
                    "--ssh-option", "StrictHostKeyChecking=accept-new", timeout=60)
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert f"authentication failed for {DEVICE_USER}@127.0.0.1" in line and "ssh-copy-id" in line


@pytest.mark.slow
def test_unknown_host_key_is_one_clear_line(tiny_bundles, device, tmp_path):
    """BatchMode never asks whether to trust a new host key: an unknown one is refused, with what to do."""
    proc = _tinyear("deploy", tiny_bundles["int8"], "--to", f"{DEVICE_USER}@127.0.0.1", "--port", device["port"],
                    "--ssh-config", device["empty_config"], "--identity", device["keys"] / "id_ed25519",
                    "--ssh-option", "IdentitiesOnly=yes", "--ssh-option", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
                    "--ssh-option", "StrictHostKeyChecking=yes", timeout=60)
    assert proc.returncode == 1
    assert "the host key of 127.0.0.1 is unknown or has changed" in _one_error_line(proc)


@pytest.mark.slow
def test_a_deploy_under_way_is_not_disturbed(device, deployed, tiny_bundles):
    lock = device["dir"] / ".deploy-lock"
    lock.mkdir()
    (lock / "owner").write_text("someone@elsewhere pid 1")
    try:
        before = snapshot(device["dir"])
        proc = _deploy(device, tiny_bundles["float"])
        assert proc.returncode == 1
        assert "another deploy to" in _one_error_line(proc)
        assert snapshot(device["dir"]) == before
    finally:
        shutil.rmtree(lock)


@pytest.mark.slow
def test_service_unit_is_installed_and_reported_not_started_without_systemd(device, deployed, tiny_bundles):
    proc = _deploy(device, tiny_bundles["int8"], "--service", "--bundle-only", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    service = report["service"]
    unit = device["home"] / ".config/systemd/user/tinyear-listen.service"
    assert service["unit"] == str(unit) and unit.is_file()
    text = unit.read_text()
    assert f"ExecStart={device['dir']}/venv/bin/tinyear-device listen {device['dir']}/current.tinyear" in text
    assert "WantedBy=default.target" in text and "User=" not in text  # a user unit
    systemd_running = Path("/run/systemd/system").is_dir()
    assert service["started"] is systemd_running
    if not systemd_running:
        assert "systemd is not running on the device" in service["reason"]
        assert "warning" not in proc.stdout
    assert json.loads((device["dir"] / "deploy.json").read_text())["service"]["scope"] == "user"
    if shutil.which("systemd-analyze"):  # the unit parses as systemd reads it
        check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert "Unknown key" not in check.stderr and "Invalid" not in check.stderr, check.stderr


@pytest.mark.slow
def test_every_device_dependency_has_an_aarch64_wheel_for_pi_os_pythons():
    """scripts/check_aarch64_wheels.sh against PyPI: Bookworm (3.11) and Trixie (3.13) with ai-edge-litert,
    Bookworm with tflite-runtime. Its output is recorded in docs/DEPLOY.md; here it must still hold."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "check_aarch64_wheels.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("OK:") == 3 and "FAIL" not in proc.stdout
    for wheel in ("ai_edge_litert-", "cp311-cp311-manylinux", "cp313-cp313-manylinux", "tflite_runtime-2.14.0-cp311"):
        assert wheel in proc.stdout


def test_install_pi_script_dry_run():
    script = Path(__file__).resolve().parent.parent / "scripts" / "install_pi.sh"
    proc = subprocess.run(["bash", str(script), "--dry-run", "--venv", "/nonexistent/venv"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "python3-venv" in proc.stdout and "libportaudio2" in proc.stdout
    assert "-m venv /nonexistent/venv" in proc.stdout and "[device]" in proc.stdout
    proc = subprocess.run(["bash", str(script), "--dry-run", "--venv", "/nonexistent/venv", "--service", "/srv/kws.tinyear"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # the unit comes from the package's one unit file, rendered by host/deploy/service.py
    assert "/nonexistent/venv/bin/python -m tinyear.host.deploy.service" in proc.stdout
    assert "--bundle /srv/kws.tinyear" in proc.stdout and "enable --now tinyear-listen" in proc.stdout


def test_service_unit_rendering(tmp_path):
    from tinyear.device.errors import TinyearError
    from tinyear.host.deploy.service import TEMPLATE, render_unit

    # the one unit, shipped in the package: a user unit and a system unit from it
    assert TEMPLATE.is_file()
    user = render_unit("/home/pi/tinyear", "pi", "user")
    assert "ExecStart=/home/pi/tinyear/venv/bin/tinyear-device listen /home/pi/tinyear/current.tinyear --json" in user
    assert "User=" not in user and "WantedBy=default.target" in user
    assert "StartLimitBurst=5" in user and "WorkingDirectory=/home/pi/tinyear\n" in user and "NoNewPrivileges=yes" in user
    system = render_unit("/home/pi/tinyear", "pi", "system")
    assert "User=pi\n" in system and "WantedBy=multi-user.target" in system
    elsewhere = render_unit("/home/pi", "pi", "user", venv="/home/pi/tinyear-venv", bundle="/home/pi/kws.tinyear")
    assert "ExecStart=/home/pi/tinyear-venv/bin/tinyear-device listen /home/pi/kws.tinyear --json" in elsewhere
    template = tmp_path / "t.service"
    template.write_text("[Service]\nUser=@USER@\nExecStart=@TINYEAR_DEVICE@ listen @BUNDLE@\n[Install]\nWantedBy=multi-user.target\n")
    text = render_unit("/d", "pi", "user", template=template)
    assert "ExecStart=/d/venv/bin/tinyear-device listen /d/current.tinyear" in text
    assert "User=" not in text and "WantedBy=default.target" in text
    template.write_text("ExecStart=@SOMETHING_NEW@\n")
    with pytest.raises(TinyearError, match="@SOMETHING_NEW@"):
        render_unit("/d", "pi", "user", template=template)
    with pytest.raises(TinyearError, match="missing"):
        render_unit("/d", "pi", "user", template=tmp_path / "none.service")


@pytest.mark.slow
def test_service_unit_is_package_data_of_an_installed_wheel(tmp_path):
    """Built as a user installs it (a wheel, no checkout), the unit travels with tinyear.host.deploy."""
    import zipfile

    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    for name in ("device", "host"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                           str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("tinyear-*.whl"))
    assert "tinyear/host/deploy/tinyear-listen.service" in zipfile.ZipFile(wheel).namelist()


@pytest.mark.slow
def test_deploy_with_tflite_runtime_on_the_device(device, deployed, tiny_bundles):
    """tflite-runtime 2.14 (numpy<2) on the device against ai-edge-litert 2.3 on the workstation: a new
    environment beside the first, and scores within the tolerance (the two runtimes gave identical
    scores for some builds of the tiny model and one output step apart for another, docs/DEPLOY.md)."""
    proc = _deploy(device, tiny_bundles["int8"], "--wheelhouse", _wheelhouse("tflite"), "--runtime", "tflite-runtime", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["runtime"] == "tflite-runtime" and report["env_reused"] is False
    assert report["verification"]["device"]["runtime"] == "tflite-runtime"
    assert report["verification"]["device"]["numpy"].startswith("1.")
    diff = report["verification"]["max_abs_logprob_diff_vs_workstation"]
    assert diff <= report["verification"]["log_tolerance"]
    d = device["dir"]
    assert os.readlink(d / "venv") == f"envs/{report['env']}"
    assert sorted(p.name for p in (d / "envs").iterdir()) == sorted([report["env"], deployed["state"]["env"]])
    proc = _ssh(device, "~/tinyear/venv/bin/tinyear-device info ~/tinyear/current.tinyear --json")
    assert json.loads(proc.stdout)["runtime"] == "tflite-runtime"


@pytest.mark.slow
def test_device_half_on_arm64_under_qemu_is_bit_identical(tiny_bundles):
    """scripts/arm64_check.sh: a Debian bookworm arm64 userland (debootstrap --foreign + dpkg-deb -x),
    the device wheel and its aarch64 wheels, selftest and classify under qemu-aarch64-static on the
    Pi 4 and Pi 5 cores, for both runtimes, compared exactly with x86_64. ~100 s the first time (the
    userland is kept in the artifacts folder), ~60 s after."""
    missing = [t for t in ("debootstrap", "qemu-aarch64-static", "dpkg-deb") if shutil.which(t) is None]
    if missing or not Path("/usr/bin/python3.11").exists():
        pytest.fail(f"missing {missing or '/usr/bin/python3.11'}: apt-get install debootstrap qemu-user-static python3.11 "
                    "(scripts/setup.sh should)")
    if os.geteuid() != 0:
        pytest.fail("debootstrap needs root (CI runs as root)")
    script = Path(__file__).resolve().parent.parent / "scripts" / "arm64_check.sh"
    proc = subprocess.run(["bash", str(script), str(tiny_bundles["int8"]), str(ARTIFACTS / "arm64")], capture_output=True,
                          text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    (ARTIFACTS / "arm64-check.txt").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("arm64 (")]
    assert len(lines) == 8, proc.stdout  # 2 CPUs x 2 runtimes x (selftest, classify)
    assert all("identical to x86" in ln for ln in lines), proc.stdout
