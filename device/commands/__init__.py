"""The sub-commands of `tinyear-device`, one module each (`HELP`, `add_arguments`, `run`)."""
