"""A child process for the binary module tests: ``python -m tests.actors.modules.child MODE``.

``talk``: one line on stdout, one on stderr, then waits; on SIGTERM says goodbye and exits 0.
``stubborn``: same lines, ignores SIGTERM. ``die``: the lines, then exits 7 at once.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    mode = sys.argv[1]
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: (print("goodbye", flush=True), sys.exit(0)))
    print("hello from stdout", flush=True)
    print("trouble on stderr", file=sys.stderr, flush=True)
    if mode == "die":
        sys.exit(7)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
