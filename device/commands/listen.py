"""`tinyear-device listen BUNDLE`: detect keywords on a live microphone until stopped.

Wires the pieces together: the verified bundle, the streaming `Detector` with the bundle's detection
defaults (flags override), the `Listener` (capture, resampling, reconnects), the output (text or JSON
lines on stdout, status on stderr) and the `--exec` hook. SIGTERM and Ctrl-C stop it cleanly with a
one-line summary on stderr. Device half only.
"""

from __future__ import annotations

import signal
import sys
import time

from ..cliutil import add_json_option, add_threads_option, json_line, positive_float, positive_int
from ._options import add_detection_options, detection_config

HELP = "detect keywords on a live microphone"
DESCRIPTION = """\
Listen to a microphone and print each keyword the model hears: the time (seconds since the listener
started), the label and its smoothed score. The detection settings come from the bundle (see
`tinyear-device info BUNDLE`); the flags below override them.

The input is opened at a rate it supports (16 kHz if it can, else 48 or 44.1 kHz, resampled in the
stream) and stereo inputs are averaged unless --channel picks one. A microphone that disappears is
retried with backoff until it is back. Ctrl-C or SIGTERM stops with a one-line summary (run time,
detections, input overflows) on stderr.

examples:
  tinyear-device devices                                     # which inputs are there
  tinyear-device listen models/keywords.tinyear
  tinyear-device listen models/keywords.tinyear --input "USB" --channel 0 --threshold 0.9
  tinyear-device listen models/keywords.tinyear --json | jq .label
  tinyear-device listen models/keywords.tinyear --exec 'echo "$TINYEAR_LABEL $TINYEAR_SCORE" >> heard.log'
  tinyear-device listen models/keywords.tinyear --duration 60 --json   # one minute, then the summary

--json prints one object a line: {"type": "detection", "time": s, "label": ..., "score": ...,
"wall_time": unix seconds}, and at the end {"type": "summary", ...}. --exec runs CMD with /bin/sh for
each detection, with TINYEAR_LABEL, TINYEAR_SCORE and TINYEAR_TIME in its environment, one at a time
on a thread of its own (a slow command never delays listening). Output is written by a thread of its
own too: a program that stops reading stdout never stalls detection; lines it misses are dropped and
counted ("unprinted" in the summary).
"""


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="a .tinyear bundle")
    parser.add_argument("--input", default=None, metavar="NAME|INDEX",
                        help="input device: its index or (part of) its name (default: the system's default input)")
    parser.add_argument("--channel", type=int, default=None, metavar="C",
                        help="use channel C (0-based) of the input instead of the average of its first two")
    parser.add_argument("--capture-rate", type=positive_int, default=None, metavar="HZ",
                        help="open the input at this rate instead of asking it (audio is resampled to the model's rate)")
    add_detection_options(parser)
    add_json_option(parser, "one JSON object per detection (and a summary at the end)")
    parser.add_argument("--duration", type=positive_float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--exec", dest="exec_command", default=None, metavar="CMD",
                        help="run the shell command CMD for each detection (TINYEAR_LABEL, TINYEAR_SCORE, TINYEAR_TIME set)")
    add_threads_option(parser)


def run(args) -> int:
    from ..bundle import read_bundle
    from ..capture import Listener
    from ..detector import Detector
    from ..events import EventPrinter, event_line
    from ..hooks import HookRunner
    from ..stderrfilter import NativeNoiseFilter

    bundle = read_bundle(args.bundle)
    config = detection_config(bundle, args)
    detector = Detector(bundle, config, num_threads=args.threads)

    def log(line: str) -> None:
        print(f"tinyear-device: {line}", file=sys.stderr, flush=True)

    hooks = HookRunner(args.exec_command, stdout=sys.stderr if args.json else None) if args.exec_command else None
    printer = None

    def on_event(event) -> None:  # on the detector's worker: hand the line and the hook over, never wait
        printer.submit(event_line(event, as_json=args.json, wall_time=time.time() if args.json else None))
        if hooks is not None:
            hooks.submit(event)

    with NativeNoiseFilter():
        listener = Listener(detector, input_spec=args.input, channel=args.channel, force_rate=args.capture_rate,
                            on_event=on_event, log=log)
        sys.stdout.flush()
        printer = EventPrinter(_stdout(), on_gone=listener.stop_event.set)
        interrupts = []

        def stop(signum, frame):
            interrupts.append(signum)
            if len(interrupts) > 1 and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
            listener.stop_event.set()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            listener.open()
            log(f"labels {', '.join(l for l in bundle.labels if l not in config.ignore)}; threshold {_thresholds(config, bundle)}, "
                f"smoothing {config.smoothing_ms:g} ms, refractory {config.refractory_ms:g} ms, hop {config.hop_ms:g} ms"
                + _rules(config))
            stats = listener.run(duration=args.duration)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if hooks is not None:
                hooks.close()
        summary = stats.to_dict()
        if hooks is not None:
            summary.update(exec_ran=hooks.ran, exec_failed=hooks.failed, exec_skipped=hooks.skipped)
        summary["unprinted"] = printer.dropped
        why = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}.get(interrupts[0], "stopped") if interrupts else (
            "stdout closed" if printer.gone else "duration reached" if args.duration else "stopped")
        if args.json:
            printer.submit(json_line({"type": "summary", "reason": why, **summary}))
        unwritten = printer.close()
        if unwritten and not printer.gone:
            log(f"{unwritten} line{'s' * (unwritten != 1)} not written: stdout was not being read")
        log(f"{why}: ran {summary['run_seconds']:.1f} s, {summary['detections']} detection{'s' * (summary['detections'] != 1)}, "
            f"{summary['overflows']} overflow{'s' * (summary['overflows'] != 1)}, {summary['reconnects']} reconnect"
            f"{'s' * (summary['reconnects'] != 1)}, CPU {summary['cpu_percent']:.1f}% of one core")
    return 0


def _stdout():
    """stdout's file descriptor (written with os.write: see events.EventPrinter), or the stream itself
    when it has none (an embedding program's replacement)."""
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stdout


def _rules(config) -> str:
    from ..detection import describe_rules

    words = describe_rules(config.to_dict())
    return "" if words == "no extra rules" else f"; {words}"


def _thresholds(config, bundle) -> str:
    special = {l: config.threshold_for(l) for l in bundle.labels if l in config.per_class_threshold and l not in config.ignore}
    return f"{config.threshold:g}" + (" (" + ", ".join(f"{l} {v:g}" for l, v in special.items()) + ")" if special else "")
