"""A tiny server for the log format tests: ``python -m tests.actors.logs_app ID [MODE]``.

Modes: ``code`` sets logging up with ``logging.basicConfig`` and passes
``log_format="json"`` to the app (``App.run`` turns those handlers to JSON); ``env`` sets up
nothing but the INFO level and leaves the format to ``PITAYA_LOG_FORMAT`` (``App.run`` adds a
stderr handler); ``bare`` sets up nothing at all (the ``log_level`` option's default applies).
Serves until SIGTERM.
"""

from __future__ import annotations

import logging
import sys

from actors.app import App


def main() -> None:
    server_id = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "env"
    if mode == "code":
        logging.basicConfig(level=logging.INFO)
        App(server_type="tiny", server_id=server_id, log_format="json").run()
    elif mode == "env":
        logging.getLogger().setLevel(logging.INFO)
        App(server_type="tiny", server_id=server_id).run()
    else:
        App(server_type="tiny", server_id=server_id).run()


if __name__ == "__main__":
    main()
