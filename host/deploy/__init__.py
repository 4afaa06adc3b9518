"""`tinyear deploy`: put a verified bundle and the device half on a device over SSH, or change nothing.

The steps, each shown as it runs ("[3/7] probing the device ... ok (0.4 s)"):

1. check the bundle here: read and verify it, run its self-test with this workstation's interpreter
   (this is the result the device must reproduce);
2. build the device wheel (`wheel`: `tinyear.device` only, deterministic);
3. connect (one master SSH connection, BatchMode: keys only; `ssh`) and probe the device: its Python
   version and platform, free space, systemd, the previous deploy; choose the runtime (ai-edge-litert
   where it has wheels, tflite-runtime otherwise) and refuse what cannot work before changing anything
   (`plan`);
4. upload the wheel, the dependency wheels from --wheelhouse the device does not have yet, and the bundle,
   into a staging folder;
5. create the environment for this (wheel, runtime, Python), or reuse the one that is already there;
6. verify on the device: `tinyear-device selftest --json` with the new environment on the staged bundle,
   then compare its scores with the workstation's (same tolerance rule as the self-test);
7. switch: atomic renames make the new bundle and environment current, keeping the previous ones;
8. (with --service, or when one is installed) install and (re)start the systemd unit (`service`, from
   the unit file shipped in this package, `tinyear-listen.service`).

Any failure before step 7 removes what this deploy added (`remote.ABORT`): the device is left as it
was, still running its previous bundle. The modules: `run` (the steps in order), `plan` (runtime and
space), `remote` (the shell scripts run on the device), `ssh`, `wheel`, `service`, `options`. Imports
no torch: deploying needs only the standard library, the device half (to read the bundle and run its
self-test here) and the system's OpenSSH client.
"""

from __future__ import annotations

from .options import DeployError, DeployOptions
from .plan import choose_runtime
from .run import deploy

__all__ = ["DeployError", "DeployOptions", "choose_runtime", "deploy"]
