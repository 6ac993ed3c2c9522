"""A stand-in server for launcher tests: ``python -m tests.launch.dummy NAME MODE``.

Modes: ``serve`` (runs until SIGTERM, then exits 0), ``drain`` (on SIGTERM takes a second
to exit 0, like a server draining its sessions), ``stubborn`` (ignores SIGTERM), ``crash``
(exits 3 at once), ``held FILE N`` (the first N starts, counted in FILE, exit 75 as a server
whose id is still held in discovery; then it serves). Each prints ``dummy NAME up pid PID``
when it runs, and ``dummy NAME got SIGTERM`` and ``dummy NAME stopped`` when it stops.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from actors.startup import EXIT_ID_HELD


def main() -> None:
    name, mode = sys.argv[1], sys.argv[2]
    if mode == "crash":
        print(f"dummy {name} crashing pid {os.getpid()}", flush=True)
        sys.exit(3)
    if mode == "held":
        counter, refusals = Path(sys.argv[3]), int(sys.argv[4])
        starts = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(starts))
        if starts <= refusals:
            print(f"dummy {name} id held pid {os.getpid()}", flush=True)
            sys.exit(EXIT_ID_HELD)
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
