"""A stand-in server for launcher tests: ``python -m tests.launch.dummy NAME MODE``.

Modes: ``serve`` (runs until SIGTERM, then exits 0), ``drain`` (on SIGTERM takes a second
to exit 0, like a server draining its sessions), ``stubborn`` (ignores SIGTERM), ``crash``
(exits 3 at once). Each prints ``dummy NAME up pid PID`` when it runs, and ``dummy NAME got
SIGTERM`` and ``dummy NAME stopped`` when it stops.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType


def main() -> None:
    name, mode = sys.argv[1], sys.argv[2]
    if mode == "crash":
        print(f"dummy {name} crashing pid {os.getpid()}", flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:

        def stop(signum: int, frame: FrameType | None) -> None:
            print(f"dummy {name} got SIGTERM", flush=True)
            if mode == "drain":
                time.sleep(1.0)
            print(f"dummy {name} stopped", flush=True)
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop)
    print(f"dummy {name} up pid {os.getpid()}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
