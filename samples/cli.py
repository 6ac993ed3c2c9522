"""What every sample's ``__main__`` shares: listener arguments and logging set-up."""

from __future__ import annotations

import argparse
import logging


def server_arguments(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser with ``--host``, ``--tcp-port`` (3250), ``--ws-port`` (3251), ``--log-level``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tcp-port", type=int, default=3250)
    parser.add_argument("--ws-port", type=int, default=3251)
    parser.add_argument("--log-level", default="INFO")
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
