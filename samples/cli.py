"""What every sample's ``__main__`` shares: listener arguments and logging set-up."""

from __future__ import annotations

import argparse
import os
import sys

from actors.logs import configure_logging


def program(module: str) -> str:
    """The name a sample was started by: its console script (``pitaya-chat``) or
    ``python -m <module>``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("pitaya-") else f"python -m {module}"


def server_arguments(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser with ``--host``, ``--tcp-port`` (3250), ``--ws-port`` (3251), ``--log-level``.

    ``prog`` is the sample's module (``samples.chat``); help shows how it was started.
    """
    parser = argparse.ArgumentParser(
        prog=program(prog), description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tcp-port", type=int, default=3250)
    parser.add_argument("--ws-port", type=int, default=3251)
    parser.add_argument("--log-level", default="INFO")
    return parser


def setup_logging(level: str) -> None:
    """Plain-text lines, one per record (``App.run`` turns them to JSON with
    ``PITAYA_LOG_FORMAT=json``)."""
    configure_logging("text", level=level)
