"""What both command lines (`tinyear` and `tinyear-device`) share: the lazy sub-command dispatcher, the
option definitions used by several commands, and the rule for errors.

A command is a module with `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and
optionally `INTERRUPTED`: what Ctrl-C's line adds (how to resume, for a command that can; a string,
or a function of the parsed arguments). The
dispatcher imports only the module of the command being run, so `tinyear --help` does not pay for
importing torch, and `tinyear-device` never touches a host module. A `TinyearError` becomes one line on
stderr and exit status 1; Ctrl-C becomes exit 130 with no traceback; anything else is a bug and keeps
its traceback. Standard library only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass

from .errors import TinyearError


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep hand-written paragraphs and examples in descriptions, and show defaults that say something
    (not "None" or "False": an unset option or a switch that is off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" not in text and default not in (None, False, argparse.SUPPRESS)
                and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


def build_parser(prog: str, description: str, commands: list[Command], version: str, only: str | None = None):
    """The top-level parser. Sub-command arguments are added for `only` (the command being run) or,
    when None, for none of them: `prog --help` lists the commands from their one-line help alone."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for cmd in commands:
        if cmd.name == only:
            module = importlib.import_module(cmd.module)
            p = sub.add_parser(
                cmd.name,
                help=cmd.help,
                description=getattr(module, "DESCRIPTION", cmd.help),
                formatter_class=_Formatter,
            )
            module.add_arguments(p)
            p.set_defaults(_run=module.run, _interrupted=getattr(module, "INTERRUPTED", None))
            parser.command_parser = p  # its usage is the one a mistake in this command's options shows
        else:
            sub.add_parser(cmd.name, help=cmd.help, add_help=False)
    return parser


def run_cli(prog: str, description: str, commands: list[Command], version: str, argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {c.name for c in commands}
    only = next((a for a in argv if not a.startswith("-")), None)
    only = only if only in names else None
    parser = build_parser(prog, description, commands, version, only)
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame the top-level parser: show the command's own usage instead
        getattr(parser, "command_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv or args.command is None else 2
    try:
        return int(args._run(args) or 0)
    except TinyearError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = getattr(args, "_interrupted", None)  # a command that resumes says how (its INTERRUPTED)
        hint = hint(args) if callable(hint) else hint
        print(f"{prog}: interrupted" + (f": {hint}" if hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


# -- option definitions shared by several commands (written once, reused) ------------------------------


def add_json_option(parser: argparse.ArgumentParser, what: str = "one JSON object per line") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} instead of text, for programs")


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def json_line(obj) -> str:
    """One JSON object as one compact line (with its newline): the form every `--json` output takes."""
    return json.dumps(obj, separators=(",", ":"), default=_jsonable) + "\n"


def print_json(obj, stream=None) -> None:
    """One JSON object on one line, flushed: what a program reading us line by line expects."""
    stream = stream or sys.stdout
    stream.write(json_line(obj))
    stream.flush()


def _jsonable(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
