"""A stand-in server for launcher tests: ``python -m tests.launch.dummy NAME MODE``.

Modes: ``serve`` (runs until SIGTERM, then exits 0), ``stubborn`` (ignores SIGTERM),
``crash`` (exits 3 at once). Each prints ``dummy NAME up pid PID`` when it runs.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    name, mode = sys.argv[1], sys.argv[2]
    if mode == "crash":
        print(f"dummy {name} crashing pid {os.getpid()}", flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"dummy {name} up pid {os.getpid()}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
