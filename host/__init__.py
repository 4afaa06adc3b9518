"""tinyear's workstation half: data, synthetic speech, teachers, students, distillation, int8 export,
evaluation, the one-command pipeline and deploy. It needs the `host` extra (torch, litert-torch) and
builds on `tinyear.device` for features and bundles, never the other way round.

Importing this package sets OMP_WAIT_POLICY=PASSIVE (unless the user set it) before anything here can
load torch: torch's OpenMP worker threads spin-wait between parallel regions by default, and on a
machine whose cores are shared with other busy processes a spinning thread steals the core the other
thread needs (training a 23k-parameter student took 23 ms per clip with two threads against 3.5 ms with
PASSIVE, measured side by side, and no slower on an idle core). The setting only counts if it is in the
environment when the OpenMP runtime loads, that is when torch is first imported; every host module is
imported through this package, so every path (commands, scripts, a user's own code) gets it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
