"""The sub-commands of `tinyear`, one module each (`HELP`, `add_arguments`, `run`)."""
