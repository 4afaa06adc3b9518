"""The systemd unit that runs the listener on a device: `tinyear deploy --service` and
`scripts/install_pi.sh --service` both install it.

The unit is one file, `tinyear-listen.service` in this package (shipped as package data; its header
documents the placeholders), rendered with the device's paths. A user unit (`systemctl --user`,
WantedBy=default.target) when the device user is unprivileged, which is what PipeWire/PulseAudio
sessions on Pi OS expect; a system unit (`User=` that user) when deploying as root.

`python -m tinyear.host.deploy.service --dir DIR --user USER [--venv V] [--bundle B] [--scope S]`
prints the rendered unit (install_pi.sh uses it on the Pi). Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tinyear.device.errors import TinyearError

TEMPLATE = Path(__file__).resolve().with_name("tinyear-listen.service")
SCOPES = ("user", "system")


def render_unit(folder: str, user: str, scope: str, template: Path | None = None, *, venv: str | None = None,
                bundle: str | None = None) -> str:
    """The unit text for a deploy folder (absolute path on the device) and device user; `scope` is
    "user" or "system". The venv and bundle default to the deploy layout's (`folder/venv`,
    `folder/current.tinyear`)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    venv = venv or f"{folder}/venv"
    bundle = bundle or f"{folder}/current.tinyear"
    wanted_by = "default.target" if scope == "user" else "multi-user.target"
    path = TEMPLATE if template is None else Path(template)
    values = {"VENV": venv, "BUNDLE": bundle, "USER": user, "DIR": folder, "WANTED_BY": wanted_by,
              "TINYEAR_DEVICE": f"{venv}/bin/tinyear-device"}
    try:
        text = path.read_text()
    except OSError as exc:
        raise TinyearError(f"{path}: the service unit is missing ({exc.strerror}); reinstall tinyear") from None
    for key, value in values.items():
        text = text.replace("@" + key + "@", value)
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if left:
        raise TinyearError(f"{path}: placeholders tinyear deploy does not fill: {', '.join(left)}; update tinyear "
                           "(the unit and host/deploy/service.py disagree)")
    if scope == "user":  # a user unit runs as its user already; User= is not allowed there
        text = re.sub(r"(?m)^User=.*\n", "", text).replace("WantedBy=multi-user.target", "WantedBy=default.target")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyear.host.deploy.service",
                                     description="print the tinyear-listen systemd unit for a device")
    parser.add_argument("--dir", required=True, help="working directory of the listener (absolute)")
    parser.add_argument("--user", required=True, help="the user a system unit runs as")
    parser.add_argument("--venv", default=None, help="the venv holding tinyear-device (default DIR/venv)")
    parser.add_argument("--bundle", default=None, help="the bundle to listen with (default DIR/current.tinyear)")
    parser.add_argument("--scope", choices=SCOPES, default="user")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render_unit(args.dir, args.user, args.scope, venv=args.venv, bundle=args.bundle))
    except TinyearError as exc:
        print(f"tinyear: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
