"""`tinyear deploy MODEL.tinyear --to USER@HOST[:DIR]`: install, verify and switch a bundle on a device."""

from __future__ import annotations

import sys
from pathlib import Path

from tinyear.device.cliutil import add_json_option, positive_float, positive_int, print_json
from tinyear.device.cliutil import non_negative_float

HELP = "copy a bundle and the device half to a Raspberry Pi over SSH, verify it there, switch to it"
DESCRIPTION = """\
Deploy a .tinyear bundle to a device over SSH in one command: build the device half as a wheel, copy
it and the bundle, create or update a virtual environment there (ai-edge-litert, or tflite-runtime where
only it has wheels for the device's Python), run the bundle's self-test clip on the device and compare
the scores with this workstation's, and only then switch the device to the new bundle, keeping the
previous one. On any failure the device is left exactly as it was.

SSH is the system's OpenSSH with your own keys, agent and ~/.ssh/config; tinyear never asks for or
stores a password (BatchMode): install a key first with ssh-copy-id. The device needs a Python that
tinyear supports (its Requires-Python; Pi OS Bookworm and Trixie have one) with venv
(scripts/install_pi.sh prepares that) and internet for PyPI, or --wheelhouse with the dependency
wheels for it.

On the device (default DIR ~/tinyear): DIR/current.tinyear, DIR/previous.tinyear, DIR/venv/bin/tinyear-device,
DIR/deploy.json. --rollback swaps current.tinyear and previous.tinyear back, after the previous
bundle's self-test passes on the device (a second --rollback undoes the first). --service installs tinyear-listen.service (a user unit, or a system unit when deploying
as root) and starts it; later deploys restart it on the new bundle.

examples:
  tinyear deploy keywords.tinyear --to pi@raspberrypi.local
  tinyear deploy keywords.tinyear --to pi@192.168.1.20:~/kws --service
  tinyear deploy keywords.tinyear --to mypi --ssh-config ~/.ssh/config.d/lab --identity ~/.ssh/id_pi
  tinyear deploy keywords.tinyear --to pi@pi.local --wheelhouse wheels-py311-aarch64   # device offline
  tinyear deploy new.tinyear --to pi@pi.local --bundle-only --json                       # model only
  tinyear deploy --rollback --to pi@pi.local                                             # previous bundle back

exit status: 0 deployed and verified; 1 nothing changed on the device (one line says why).
"""


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="MODEL.tinyear", nargs="?", default=None,
                        help="the bundle to deploy (made by tinyear export); none with --rollback")
    parser.add_argument("--rollback", action="store_true",
                        help="put the device's previous bundle back (verified there first); a second rollback undoes it")
    parser.add_argument("--to", required=True, metavar="[USER@]HOST[:DIR]", help="the device, and its folder for tinyear (default ~/tinyear)")
    parser.add_argument("--port", type=positive_int, default=None, metavar="N", help="SSH port (default: from your ssh config, else 22)")
    parser.add_argument("--identity", default=None, metavar="FILE", help="SSH private key to use (default: your agent and ssh config)")
    parser.add_argument("--ssh-config", default=None, metavar="FILE", help="ssh config file to use instead of ~/.ssh/config (ssh -F)")
    parser.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                        help="extra ssh option as for ssh -o, e.g. StrictHostKeyChecking=accept-new (repeatable)")
    parser.add_argument("--connect-timeout", type=positive_float, default=10.0, metavar="S", help="give up on an unreachable device after S seconds")
    parser.add_argument("--python", default="python3", metavar="PATH", help="the Python on the device to build the environment with")
    parser.add_argument("--runtime", choices=["ai-edge-litert", "tflite-runtime"], default=None,
                        help="force the device's TFLite runtime (default: ai-edge-litert where it has wheels, else tflite-runtime)")
    parser.add_argument("--wheelhouse", type=Path, default=None, metavar="DIR",
                        help="dependency wheels for the device, copied along and installed without PyPI (pip --no-index)")
    parser.add_argument("--bundle-only", action="store_true", help="only replace the bundle; keep the device's installed tinyear and environment")
    parser.add_argument("--service", action="store_true", help="install and start the systemd unit tinyear-listen.service on the device")
    parser.add_argument("--tolerance", type=non_negative_float, default=None, metavar="P",
                        help="largest allowed probability difference between device and workstation (default: from the model, see tinyear-device selftest --help)")
    parser.add_argument("--quiet", action="store_true", help="no step-by-step progress on stderr")
    add_json_option(parser, "one JSON object with the steps, the verification and the device's state")


def run(args) -> int:
    from tinyear.device.errors import TinyearError
    from tinyear.host.deploy import DeployError, DeployOptions, deploy
    from tinyear.host.deploy.ssh import parse_target

    if args.rollback and (args.bundle or args.service or args.wheelhouse or args.runtime):
        given = [n for n, v in (("MODEL.tinyear", args.bundle), ("--service", args.service),
                                ("--wheelhouse", args.wheelhouse), ("--runtime", args.runtime)) if v]
        raise TinyearError(f"--rollback puts the device's previous bundle back: drop {', '.join(given)}")
    if not args.rollback and not args.bundle:
        raise TinyearError("name the bundle to deploy (tinyear deploy MODEL.tinyear --to ...), or give --rollback")
    opts = DeployOptions(
        bundle=Path(args.bundle or "previous.tinyear"), target=parse_target(args.to), port=args.port, identity=args.identity,
        ssh_config=args.ssh_config, ssh_options=list(args.ssh_option), connect_timeout=args.connect_timeout,
        python=args.python, runtime=args.runtime, wheelhouse=args.wheelhouse, service=args.service,
        bundle_only=args.bundle_only or args.rollback, tolerance=args.tolerance,
    )
    if args.rollback:
        return _rollback(opts, args)
    try:
        report = deploy(opts, stream=None if args.quiet else sys.stderr)
    except DeployError as exc:
        if args.json:
            print_json({"ok": False, "error": str(exc), "target": args.to, "bundle": args.bundle, "steps": exc.steps})
        raise
    if args.json:
        print_json(report)
    else:
        verification = report["verification"]
        where = f"{opts.target.ssh_destination}:{report['device']['dir']}/current.tinyear"
        diff = "identical scores" if verification["identical_to_workstation"] else f"max difference {verification['max_abs_diff_vs_workstation']:.2g}"
        print(f"deployed {opts.bundle.name} to {where} ({report['runtime']}, Python {report['device']['python_version']}, {diff})")
        service = report.get("service")
        if service and not service["started"]:
            print(f"tinyear: warning: the service unit is installed at {service['unit']} but not running: {service['reason']}", file=sys.stderr)
        elif service:
            print(f"service {service['unit']} running")
    return 0


def _rollback(opts, args) -> int:
    from tinyear.host.deploy import DeployError
    from tinyear.host.deploy.rollback import rollback

    try:
        report = rollback(opts, stream=None if args.quiet else sys.stderr)
    except DeployError as exc:
        if args.json:
            print_json({"ok": False, "rollback": True, "error": str(exc), "target": args.to, "steps": exc.steps})
        raise
    if args.json:
        print_json(report)
        return 0
    state = report["state"]
    print(f"rolled back {opts.target.ssh_destination}:{report['device']['dir']} to {state['bundle']} "
          f"(verified there; {state['previous_bundle']} is now previous.tinyear)")
    service = report.get("service")
    if service and service["started"]:
        print(f"service {service['unit']} running")
    return 0
