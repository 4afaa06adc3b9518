"""The systemd unit `tinyear deploy --service` installs on a device: the listener on the deployed bundle.

The unit comes from the listener's template, `scripts/systemd/tinyear-listen.service` in a tinyear
checkout (its header documents the placeholders), rendered with the device's paths. When the workstation
runs tinyear from an installed package (no checkout), the same unit is built from `FALLBACK` below. A
user unit (`systemctl --user`, WantedBy=default.target) when the device user is unprivileged, which is
what PipeWire/PulseAudio sessions on Pi OS expect; a system unit (`User=` that user) when deploying as
root. Standard library only.
"""

from __future__ import annotations

import re
from pathlib import Path

from tinyear.device.errors import TinyearError

TEMPLATE = Path(__file__).resolve().parent.parent / "scripts" / "systemd" / "tinyear-listen.service"

FALLBACK = """\
# tinyear-listen.service: written by tinyear deploy (built-in unit; the checkout's
# scripts/systemd/tinyear-listen.service was not available on the workstation).
[Unit]
Description=tinyear keyword listener ({bundle})
After=sound.target

[Service]
Type=simple
{user_line}ExecStart={venv}/bin/tinyear-device listen {bundle} --json
Restart=on-failure
RestartSec=5
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy={wanted_by}
"""


def render_unit(folder: str, user: str, scope: str, template: Path | None = None) -> str:
    """The unit text for a deploy folder (absolute path on the device) and device user; `scope` is
    "user" or "system". Uses the checkout's template when there is one."""
    venv, bundle = f"{folder}/venv", f"{folder}/current.tinyear"
    wanted_by = "default.target" if scope == "user" else "multi-user.target"
    path = TEMPLATE if template is None else template
    values = {"VENV": venv, "BUNDLE": bundle, "USER": user, "DIR": folder, "WANTED_BY": wanted_by,
              "TINYEAR_DEVICE": f"{venv}/bin/tinyear-device"}
    if path.is_file():
        text = path.read_text()
        for key, value in values.items():
            text = text.replace("@" + key + "@", value)
        left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
        if left:
            raise TinyearError(f"{path}: placeholders tinyear deploy does not fill: {', '.join(left)}; update tinyear "
                               "(the unit template and host/deploy_service.py disagree)")
        if scope == "user":  # a user unit runs as its user already; User= is not allowed there
            text = re.sub(r"(?m)^User=.*\n", "", text).replace("WantedBy=multi-user.target", "WantedBy=default.target")
        return text
    user_line = "" if scope == "user" else f"User={user}\n"
    return FALLBACK.format(bundle=bundle, venv=venv, user_line=user_line, wanted_by=wanted_by)
