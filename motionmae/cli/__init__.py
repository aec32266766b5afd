"""The ``motionmae`` command: parses, builds configs, calls the library, shows progress.

Each module of this package holds a group of commands, each command's parser next to its
handler; this one builds the whole parser and runs a command. Parsing imports no torch or
OpenCV: the handlers import what they need.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from motionmae.cli.data import add_check_data, add_prepare
from motionmae.cli.evaluation import add_evaluate, add_features, add_probe
from motionmae.cli.finetune import add_finetune, finetune_overrides
from motionmae.cli.pretrain import (
    add_extract_teacher,
    add_extract_tracks,
    add_pretrain,
    pretrain_overrides,
)
from motionmae.cli.tools import add_demo, add_export, add_report, add_tracks, add_visualize
from motionmae.plugins import PLUGINS_VARIABLE, load_plugins

__all__ = ["build_parser", "finetune_overrides", "main", "pretrain_overrides"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="motionmae",
        description="Self-supervised video representation learning by motion-aware masked "
        "video modeling.",
    )
    _add_global_flags(parser, after_command=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_demo, add_pretrain, add_finetune, add_evaluate, add_features,
                add_probe, add_report,
                add_tracks, add_export, add_extract_tracks, add_extract_teacher,
                add_visualize, add_prepare, add_check_data):
        add(sub)
    for command in sub.choices.values():
        _add_global_flags(command, after_command=True)
    return parser


_GLOBAL_FLAGS = (
    (("-v", "--verbose"), "debug logging (before or after the command)"),
    (("--debug",), "show the full traceback of every error (also MOTIONMAE_DEBUG=1; before or "
     "after the command); exit status: 0 ok, 1 internal error, 2 usage or config, 3 data (a "
     "video, list, checkpoint or model folder), 4 environment (missing package, output "
     "folder), 5 non-finite training, 130 Ctrl-C, 143 preempted"),
)


def _add_global_flags(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """``--verbose`` and ``--debug``, accepted before the command and after it
    (``motionmae pretrain --debug ...``). After it they are hidden (listed once, before) and
    absent from the namespace unless given, so they never reset the ones before it."""
    for names, text in _GLOBAL_FLAGS:
        if after_command:
            parser.add_argument(*names, action="store_true", default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
        else:
            parser.add_argument(*names, action="store_true", help=text)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    return f"{category.__name__}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status says how it ended (see :mod:`motionmae.errors`)."""
    args = build_parser().parse_args(argv)
    # OpenMP threads that spin while waiting make a training step many times slower on a CPU
    # shared with loader workers (tracking, decoding) or another job (docs/benchmarks.md);
    # a sleeping wait costs little when the cores are free. Read once, at the first torch
    # import, which happens after this line; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    debug = args.debug or os.environ.get("MOTIONMAE_DEBUG", "") not in ("", "0")
    if not debug:
        # Python warnings (ours, e.g. CameraMotionWarning, and libraries') as one log line,
        # not a file path and a line of source; --debug keeps Python's own form.
        warnings.formatwarning = _one_line_warning
        logging.captureWarnings(True)
    try:
        plugins = os.environ.get(PLUGINS_VARIABLE, "")
        if plugins:
            load_plugins(plugins)
        return args.handler(args)
    except KeyboardInterrupt:
        # Ctrl-C outside a training loop, or a second one inside it: quit without a traceback
        # (a training run's last periodic checkpoint still resumes).
        if debug:
            traceback.print_exc()
        from motionmae.errors import INTERRUPTED

        print(f"motionmae {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        # The single place where errors a user can cause become one line and an exit status;
        # anything else (a bug) keeps its traceback.
        from motionmae.errors import classify

        known = classify(error)
        if known is None:
            raise
        code, message = known
        if debug:  # the traceback, and still the status a script tells errors apart by
            traceback.print_exc()
        print(f"motionmae {args.command}: error: {message}", file=sys.stderr)
        return code
